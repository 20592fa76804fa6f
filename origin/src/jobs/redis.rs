//! The shared job store: Redis, so that several `origin serve` and `origin worker` processes on
//! different machines share one queue. Same contract as the embedded store (at-least-once
//! delivery with leases; see [`super::store`]), same claim order (oldest created first among
//! the claimable jobs, ties by video id).
//!
//! # Data model
//! All keys start with `hls:`. One standalone Redis (or a Sentinel-managed primary); not Redis
//! Cluster: the claim script touches job keys it discovers, which Cluster forbids.
//!
//! | key | type | contents |
//! | --- | --- | --- |
//! | `hls:job:<video>` | hash | the [`Job`]: one field per top-level field of its JSON form, each value that field's JSON (`state` = `"queued"`, `progress` = `40.0`, `lease` = `{"worker":"w1","expires_at":1700000000}` or `null`, ...). The record is the truth; everything below is an index the scripts keep in step with it. |
//! | `hls:owner:<owner>` | sorted set | the owner's videos, score `-created_at`, so `ZRANGE` gives newest first and ties by video id (like the embedded store); serves `list`. |
//! | `hls:delayed` | sorted set | queued jobs waiting for their `not_before` (score); new jobs have 0. |
//! | `hls:queue` | sorted set | claimable candidates, score `created_at`: the oldest is claimed first. |
//! | `hls:leases` | sorted set | processing jobs, score = lease expiry (`-inf` without a lease). |
//! | `hls:state:<state>` | set | videos in that state; `counts` is five `SCARD`s. |
//! | `hls:events` | pub/sub channel | [`JobEvent`]s as JSON, across processes. |
//!
//! Invariant: a queued job is in exactly one of `hls:delayed` and `hls:queue`, a processing job
//! in exactly one of `hls:leases` and `hls:queue`, any other job in none of them. Every script
//! that changes a job's state, lease or backoff ends with `refile`, which puts the job where its
//! record says it belongs.
//!
//! # Scripts
//! Every operation that reads and then writes is one Lua script (`EVALSHA`, falling back to
//! `EVAL` after a restart emptied the script cache), so it is atomic and one round trip:
//! - `claim`: moves every due entry of `hls:delayed` (`not_before <= now`) and every expired
//!   entry of `hls:leases` (`expires_at < now`) into `hls:queue`, then takes the head of
//!   `hls:queue`, re-checks it against its record ([`Job::claimable`]; clocks of different
//!   callers need not agree, so an entry may have been promoted by a later `now`) and either
//!   claims it (state processing, new lease, attempts + 1, into `hls:leases`) or refiles it and
//!   looks at the next one.
//! - `heartbeat`, `progress`, `checkpoint`, `complete`, `fail`: refuse with `LeaseLost` unless
//!   the caller holds a live lease ([`Job::leased_by`]), then change the record; `fail` with
//!   `RetryAt` files the job into `hls:delayed` at the retry time, `Final` out of every queue.
//! - `create` (refuses an existing video), `requeue`, `delete`, `list`.
//!
//! The scripts never re-encode a whole job (Redis' cjson would print numbers with 14 digits and
//! empty arrays as `{}`): values come JSON-encoded from Rust, or are integers, constants, or
//! (checkpoints) an append to the stored JSON text; cjson only decodes. So every field
//! round-trips exactly as with the embedded store.
//!
//! # Failures
//! The connection is a [`ConnectionManager`], which reconnects by itself. Connection-level
//! failures (refused, dropped, timed out, Redis loading its data or read-only) are
//! [`StoreError::Unavailable`] (the API answers 503); anything else is
//! [`StoreError::Backend`]. Every call is bounded by [`RedisOptions::op_timeout`], so a frozen
//! or unreachable Redis fails calls quickly instead of hanging workers.
//! A call that failed this way may still have taken effect (a claim whose reply was lost):
//! its lease then runs out and another worker takes the job over, as after a worker crash.
//!
//! Durability is Redis' own: run it with `appendonly yes` (and `appendfsync everysec` or
//! `always`) so a restart loses no queued job.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Client, ErrorKind, RedisError, Script};
use serde::Serialize;
use shared::media::VideoId;
use tokio::sync::mpsc;

use super::model::{Job, JobState, Lease};
use super::store::{Failure, JobStore, StoreError};
use super::worker::JobEvent;
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

/// The pub/sub channel of job events.
pub const EVENTS_CHANNEL: &str = "hls:events";

const STATES: [JobState; 5] = [
    JobState::Registered,
    JobState::Queued,
    JobState::Processing,
    JobState::Ready,
    JobState::Failed,
];

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One connection attempt gives up after this long.
    pub connect_timeout: Duration,
    /// A command without an answer fails after this long.
    pub response_timeout: Duration,
    /// Extra connection attempts after the connection is lost, before the calls waiting for
    /// it fail (the next call starts over). In redis 0.32 these are at least a second apart
    /// (its backoff starts at 1 s whatever the factor), so the default is none: while Redis is
    /// down every call fails at once with `Unavailable` and tries one new connection.
    pub reconnect_retries: usize,
    /// Upper bound on any one store call, reconnection included.
    pub op_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            reconnect_retries: 0,
            op_timeout: Duration::from_secs(3),
        }
    }
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    options: RedisOptions,
    scripts: &'static Scripts,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Connection-level failures are `Unavailable` (503), the rest `Backend`.
fn redis_error(e: RedisError) -> StoreError {
    let unavailable = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
        )
        // A script or command is hogging the server.
        || e.code() == Some("BUSY");
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(backend)
}

/// The job as hash fields: each top-level field with its JSON value.
fn encode(job: &Job) -> Result<Vec<(String, String)>, StoreError> {
    match serde_json::to_value(job).map_err(backend)? {
        serde_json::Value::Object(map) => {
            Ok(map.into_iter().map(|(k, v)| (k, v.to_string())).collect())
        }
        other => Err(backend(format!("a job serialized to {other}"))),
    }
}

/// A job from a flat `HGETALL` reply.
fn decode(flat: &[String]) -> Result<Job, StoreError> {
    let mut map = serde_json::Map::new();
    for pair in flat.chunks(2) {
        let [field, value] = pair else {
            return Err(backend("odd job hash reply"));
        };
        let value =
            serde_json::from_str(value).map_err(|e| backend(format!("job field {field}: {e}")))?;
        map.insert(field.clone(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(backend)
}

fn job_key(video: &VideoId) -> String {
    format!("hls:job:{video}")
}

fn owner_key(owner: &str) -> String {
    format!("hls:owner:{owner}")
}

fn state_key(state: JobState) -> Result<String, StoreError> {
    Ok(format!("hls:state:{}", json(&state)?.trim_matches('"')))
}

/// What a lease-checked script answered.
fn leased(answer: i64, video: &VideoId) -> Result<(), StoreError> {
    match answer {
        1 => Ok(()),
        0 => Err(StoreError::NotFound(video.clone())),
        _ => Err(StoreError::LeaseLost(video.clone())),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`) with the default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url`; `Unavailable` if Redis cannot be reached within the timeouts.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| backend(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(options.connect_timeout)
            .set_response_timeout(options.response_timeout)
            .set_number_of_retries(options.reconnect_retries)
            .set_factor(2)
            .set_max_delay(2_000);
        let conn = tokio::time::timeout(
            options.op_timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Unavailable(format!("no answer from {url}")))?
        .map_err(redis_error)?;
        Ok(Self {
            client,
            conn,
            options,
            scripts: scripts(),
        })
    }

    /// Runs one call on the shared connection, bounded by the operation timeout.
    async fn call<T, F>(&self, op: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.options.op_timeout, op(self.conn.clone())).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from redis within {:?}",
                self.options.op_timeout
            ))),
        }
    }

    /// Runs `script` with `keys` and `args`.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        self.call(|mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for k in keys {
                invocation.key(k);
            }
            for a in args {
                invocation.arg(a);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a script that checks `worker`'s lease on `video` first.
    async fn eval_leased(
        &self,
        script: &'static Script,
        video: &VideoId,
        worker: &str,
        now: i64,
        rest: &[String],
    ) -> Result<(), StoreError> {
        let mut args = vec![video.to_string(), worker.to_owned(), now.to_string()];
        args.extend_from_slice(rest);
        let answer: i64 = self.eval(script, &[job_key(video)], &args).await?;
        leased(answer, video)
    }

    /// Publishes `event` to every subscriber on [`EVENTS_CHANNEL`], in any process.
    pub async fn publish_event(&self, event: &JobEvent) -> Result<(), StoreError> {
        let payload = json(event)?;
        self.call(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(EVENTS_CHANNEL)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
    }

    /// Subscribes to [`EVENTS_CHANNEL`]. The subscription is in place when this returns; the
    /// stream resubscribes by itself after a lost connection (events published meanwhile are
    /// lost: pub/sub is at-most-once, and the store keeps the truth) and ends when dropped. A
    /// slow reader skips events once 1024 are waiting.
    pub async fn subscribe_events(
        &self,
    ) -> Result<impl Stream<Item = JobEvent> + Send + Unpin + 'static, StoreError> {
        let first = self.open_subscription().await?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(forward_events(self.clone(), first, tx));
        Ok(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
        )))
    }

    async fn open_subscription(&self) -> Result<PubSub, StoreError> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(EVENTS_CHANNEL).await?;
            Ok(pubsub)
        };
        match tokio::time::timeout(self.options.op_timeout, subscribe).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(StoreError::Unavailable(
                "no answer from redis to SUBSCRIBE".into(),
            )),
        }
    }
}

/// Forwards messages of `pubsub` to `tx` until the receiver is dropped, resubscribing after a
/// lost connection.
async fn forward_events(store: RedisStore, first: PubSub, tx: mpsc::Sender<JobEvent>) {
    let mut pubsub = Some(first);
    loop {
        if let Some(subscription) = pubsub.take() {
            let mut messages = subscription.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        match serde_json::from_slice::<JobEvent>(message.get_payload_bytes()) {
                            Ok(event) => {
                                match tx.try_send(event) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        tracing::debug!("slow job event reader, event skipped");
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                            Err(error) => tracing::warn!(%error, "undecodable job event skipped"),
                        }
                    }
                    () = tx.closed() => return,
                }
            }
            tracing::warn!("job event subscription lost, resubscribing");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = tx.closed() => return,
        }
        match store.open_subscription().await {
            Ok(p) => pubsub = Some(p),
            Err(error) => tracing::debug!(%error, "cannot resubscribe to job events yet"),
        }
    }
}

impl JobStore for RedisStore {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        let mut args = vec![job.video.to_string(), (-job.created_at).to_string()];
        for (field, value) in encode(&job)? {
            args.push(field);
            args.push(value);
        }
        let keys = [job_key(&job.video), owner_key(&job.owner)];
        let created: i64 = self.eval(&self.scripts.create, &keys, &args).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Exists(job.video))
        }
    }

    async fn get(&self, video: &VideoId) -> Result<Option<Job>, StoreError> {
        let key = job_key(video);
        let flat: Vec<String> = self
            .call(|mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            })
            .await?;
        if flat.is_empty() {
            return Ok(None);
        }
        decode(&flat).map(Some)
    }

    async fn list(&self, owner: &str, offset: usize, limit: usize) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let stop = start.saturating_add(i64::try_from(limit - 1).unwrap_or(i64::MAX));
        let rows: Vec<Vec<String>> = self
            .eval(
                &self.scripts.list,
                &[owner_key(owner)],
                &[start.to_string(), stop.to_string()],
            )
            .await?;
        rows.iter().map(|flat| decode(flat)).collect()
    }

    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<Option<Job>, StoreError> {
        let expires_at = now + lease_secs;
        let lease = json(&Lease {
            worker: worker.to_owned(),
            expires_at,
        })?;
        let reply: Option<Vec<String>> = self
            .eval(
                &self.scripts.claim,
                &[],
                &[now.to_string(), lease, expires_at.to_string()],
            )
            .await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        let Some((previous, flat)) = reply.split_first() else {
            return Err(backend("empty claim reply"));
        };
        let job = decode(flat)?;
        if !previous.is_empty() {
            tracing::warn!(video = %job.video, previous = %previous, "lease expired, taking the job over");
        }
        Ok(Some(job))
    }

    async fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let expires_at = now + lease_secs;
        let lease = json(&Lease {
            worker: worker.to_owned(),
            expires_at,
        })?;
        self.eval_leased(&self.scripts.heartbeat, video, worker, now, &[lease])
            .await
    }

    async fn progress(
        &self,
        video: &VideoId,
        worker: &str,
        stage: Stage,
        percent: f64,
        thumbnail_ready: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        // The record keeps `percent.max(progress).min(100.0)`: NaN and -inf leave it as it is.
        let percent = match (!percent.is_nan()).then(|| percent.min(100.0)) {
            Some(p) if p.is_finite() => json(&p)?,
            _ => String::new(),
        };
        let rest = [
            json(&stage)?,
            percent,
            if thumbnail_ready { "1" } else { "" }.to_owned(),
            json(&100.0f64)?,
        ];
        self.eval_leased(&self.scripts.progress, video, worker, now, &rest)
            .await
    }

    async fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let rest = [rung.to_owned(), json(rung)?];
        self.eval_leased(&self.scripts.checkpoint, video, worker, now, &rest)
            .await
    }

    async fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> Result<(), StoreError> {
        let rest = [json(&Stage::Done)?, json(&result)?, json(&100.0f64)?];
        self.eval_leased(&self.scripts.complete, video, worker, now, &rest)
            .await
    }

    async fn fail(
        &self,
        video: &VideoId,
        worker: &str,
        error: &str,
        failure: Failure,
        now: i64,
    ) -> Result<(), StoreError> {
        let retry_at = match failure {
            Failure::RetryAt(at) => at.to_string(),
            Failure::Final => String::new(),
        };
        let rest = [json(error)?, retry_at, json(&Stage::Queued)?];
        self.eval_leased(&self.scripts.fail, video, worker, now, &rest)
            .await
    }

    async fn requeue(&self, video: &VideoId, now: i64) -> Result<(), StoreError> {
        let args = [
            video.to_string(),
            now.to_string(),
            json(&Stage::Queued)?,
            json(&0.0f64)?,
        ];
        let found: i64 = self
            .eval(&self.scripts.requeue, &[job_key(video)], &args)
            .await?;
        if found == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(video.clone()))
        }
    }

    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        let _: i64 = self
            .eval(
                &self.scripts.delete,
                &[job_key(video)],
                &[video.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn counts(&self) -> Result<Vec<(JobState, usize)>, StoreError> {
        let mut pipe = redis::pipe();
        for state in STATES {
            pipe.cmd("SCARD").arg(state_key(state)?);
        }
        let sizes: Vec<usize> = self
            .call(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(STATES
            .into_iter()
            .zip(sizes)
            .filter(|&(_, n)| n > 0)
            .collect())
    }
}

/// The Lua scripts, compiled (hashed) once per process.
struct Scripts {
    create: Script,
    list: Script,
    claim: Script,
    heartbeat: Script,
    progress: Script,
    checkpoint: Script,
    complete: Script,
    fail: Script,
    requeue: Script,
    delete: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create: Script::new(&format!("{PRELUDE}{CREATE}")),
        list: Script::new(&format!("{PRELUDE}{LIST}")),
        claim: Script::new(&format!("{PRELUDE}{CLAIM}")),
        heartbeat: Script::new(&format!("{PRELUDE}{HEARTBEAT}")),
        progress: Script::new(&format!("{PRELUDE}{PROGRESS}")),
        checkpoint: Script::new(&format!("{PRELUDE}{CHECKPOINT}")),
        complete: Script::new(&format!("{PRELUDE}{COMPLETE}")),
        fail: Script::new(&format!("{PRELUDE}{FAIL}")),
        requeue: Script::new(&format!("{PRELUDE}{REQUEUE}")),
        delete: Script::new(&format!("{PRELUDE}{DELETE}")),
    })
}

/// Helpers every script starts with. Job fields hold JSON: a state is `"queued"` with quotes.
const PRELUDE: &str = r#"
local P = 'hls:'
local QUEUE, DELAYED, LEASES = P .. 'queue', P .. 'delayed', P .. 'leases'
local function jkey(v) return P .. 'job:' .. v end

-- The expiry of a lease field, nil without a lease.
local function expiry(lease)
  if not lease or lease == 'null' then return nil end
  return cjson.decode(lease).expires_at
end

-- Sets the state field (JSON) and keeps the per-state sets in step.
local function set_state(key, v, old, new)
  redis.call('HSET', key, 'state', new)
  if old and old ~= new then redis.call('SREM', P .. 'state:' .. cjson.decode(old), v) end
  redis.call('SADD', P .. 'state:' .. cjson.decode(new), v)
end

-- Files v in the one scheduling set its record calls for (none once it is gone).
local function refile(v)
  redis.call('ZREM', QUEUE, v)
  redis.call('ZREM', DELAYED, v)
  redis.call('ZREM', LEASES, v)
  local f = redis.call('HMGET', jkey(v), 'state', 'lease', 'not_before')
  if f[1] == '"queued"' then
    redis.call('ZADD', DELAYED, f[3], v)
  elseif f[1] == '"processing"' then
    local e = expiry(f[2])
    redis.call('ZADD', LEASES, e and string.format('%d', e) or '-inf', v)
  end
end

-- 1 if worker holds a live lease on the job at key at now, 0 if there is no job, -1 if not.
local function held(key, worker, now)
  local f = redis.call('HMGET', key, 'state', 'lease')
  if not f[1] then return 0 end
  if f[1] ~= '"processing"' or not f[2] or f[2] == 'null' then return -1 end
  local l = cjson.decode(f[2])
  if l.worker ~= worker or l.expires_at < now then return -1 end
  return 1
end
"#;

/// KEYS: job, owner index. ARGV: video, -created_at, then field/value pairs.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
set_state(KEYS[1], ARGV[1], nil, redis.call('HGET', KEYS[1], 'state'))
refile(ARGV[1])
return 1
"#;

/// KEYS: owner index. ARGV: start, stop (inclusive ranks). Flat HGETALL replies.
const LIST: &str = r#"
local out = {}
for _, v in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local h = redis.call('HGETALL', jkey(v))
  if #h > 0 then out[#out + 1] = h end
end
return out
"#;

/// ARGV: now, lease JSON, lease expiry. Nil, or the previous lease (empty unless taken over)
/// followed by the claimed job's flat HGETALL.
const CLAIM: &str = r#"
local now = tonumber(ARGV[1])
local function promote(v)
  redis.call('ZREM', DELAYED, v)
  redis.call('ZREM', LEASES, v)
  local c = redis.call('HGET', jkey(v), 'created_at')
  if c then redis.call('ZADD', QUEUE, c, v) end
end
for _, v in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', ARGV[1])) do promote(v) end
for _, v in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. ARGV[1])) do promote(v) end
while true do
  local v = redis.call('ZRANGE', QUEUE, 0, 0)[1]
  if not v then return false end
  local key = jkey(v)
  local f = redis.call('HMGET', key, 'state', 'lease', 'not_before')
  local ok = false
  if f[1] == '"queued"' then
    ok = tonumber(f[3]) <= now
  elseif f[1] == '"processing"' then
    local e = expiry(f[2])
    ok = e == nil or e < now
  end
  if ok then
    set_state(key, v, f[1], '"processing"')
    redis.call('HSET', key, 'lease', ARGV[2], 'updated_at', ARGV[1])
    redis.call('HINCRBY', key, 'attempts', 1)
    refile(v)
    local out = redis.call('HGETALL', key)
    local previous = ''
    if f[1] == '"processing"' then previous = f[2] or 'null' end
    table.insert(out, 1, previous)
    return out
  end
  refile(v)
end
"#;

/// KEYS: job. ARGV: video, worker, now, lease JSON.
const HEARTBEAT: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
redis.call('HSET', KEYS[1], 'lease', ARGV[4], 'updated_at', ARGV[3])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, stage JSON, percent JSON (empty: keep), '1' if the
/// thumbnail is ready, JSON of 100.
const PROGRESS: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
local cur = tonumber(redis.call('HGET', KEYS[1], 'progress'))
local new = nil
if ARGV[5] ~= '' and tonumber(ARGV[5]) > cur then new = ARGV[5] end
if tonumber(new or cur) > 100 then new = ARGV[7] end
local set = {'stage', ARGV[4], 'updated_at', ARGV[3]}
if new then
  set[#set + 1] = 'progress'
  set[#set + 1] = new
end
if ARGV[6] == '1' then
  set[#set + 1] = 'thumbnail_ready'
  set[#set + 1] = 'true'
end
redis.call('HSET', KEYS[1], unpack(set))
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, rung, rung JSON.
const CHECKPOINT: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
local cps = redis.call('HGET', KEYS[1], 'checkpoints')
for _, r in ipairs(cjson.decode(cps)) do
  if r == ARGV[4] then
    redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
    return 1
  end
end
if cps == '[]' then
  cps = '[' .. ARGV[5] .. ']'
else
  cps = string.sub(cps, 1, -2) .. ',' .. ARGV[5] .. ']'
end
redis.call('HSET', KEYS[1], 'checkpoints', cps, 'updated_at', ARGV[3])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, stage JSON (done), result JSON, JSON of 100.
const COMPLETE: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
set_state(KEYS[1], ARGV[1], '"processing"', '"ready"')
redis.call('HSET', KEYS[1], 'stage', ARGV[4], 'progress', ARGV[6], 'error', 'null',
  'lease', 'null', 'result', ARGV[5], 'updated_at', ARGV[3])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, error JSON, retry time (empty: final), stage JSON
/// (queued).
const FAIL: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
redis.call('HSET', KEYS[1], 'error', ARGV[4], 'lease', 'null', 'updated_at', ARGV[3])
if ARGV[5] ~= '' then
  set_state(KEYS[1], ARGV[1], '"processing"', '"queued"')
  redis.call('HSET', KEYS[1], 'stage', ARGV[6], 'not_before', ARGV[5])
else
  set_state(KEYS[1], ARGV[1], '"processing"', '"failed"')
end
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, now, stage JSON (queued), JSON of 0.
const REQUEUE: &str = r#"
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return 0 end
set_state(KEYS[1], ARGV[1], old, '"queued"')
redis.call('HSET', KEYS[1], 'stage', ARGV[3], 'progress', ARGV[4], 'error', 'null',
  'attempts', '0', 'not_before', '0', 'lease', 'null', 'checkpoints', '[]', 'updated_at', ARGV[2])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video.
const DELETE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state')
if f[1] then redis.call('ZREM', P .. 'owner:' .. cjson.decode(f[1]), ARGV[1]) end
if f[2] then redis.call('SREM', P .. 'state:' .. cjson.decode(f[2]), ARGV[1]) end
redis.call('DEL', KEYS[1])
refile(ARGV[1])
return 1
"#;

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;
    use crate::jobs::embedded::EmbeddedStore;
    use crate::transcode::encoder::EncoderPreference;
    use crate::transcode::pipeline::{Profile, PublishedRung};

    /// A redis-server of the test's own on a free loopback port, in a temp dir, killed on drop.
    struct RedisServer {
        child: Option<Child>,
        port: u16,
        dir: tempfile::TempDir,
        aof: bool,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    impl RedisServer {
        /// Without persistence (`--save "" --appendonly no`), or with an fsynced AOF.
        fn start(aof: bool) -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut last = String::new();
            for _ in 0..5 {
                let port = free_port();
                match spawn(dir.path(), port, aof) {
                    Ok(child) => {
                        return Self {
                            child: Some(child),
                            port,
                            dir,
                            aof,
                        }
                    }
                    Err(why) => last = why,
                }
            }
            panic!("redis-server did not start: {last}");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        fn pid(&self) -> String {
            self.child.as_ref().expect("running").id().to_string()
        }

        /// Kills it like a crash (SIGKILL: nothing is flushed on the way out).
        fn crash(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Starts it again on the same port and directory.
        fn restart(&mut self) {
            self.crash();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match spawn(self.dir.path(), self.port, self.aof) {
                    Ok(child) => {
                        self.child = Some(child);
                        return;
                    }
                    Err(why) if Instant::now() > deadline => panic!("restart: {why}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }

        /// Freezes it (SIGSTOP): connections stay open, nothing answers.
        fn pause(&self) {
            signal("-STOP", &self.pid());
        }

        fn resume(&self) {
            signal("-CONT", &self.pid());
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            if let Some(child) = &self.child {
                signal("-CONT", &child.id().to_string());
            }
            self.crash();
        }
    }

    fn signal(sig: &str, pid: &str) {
        let status = Command::new("kill")
            .args([sig, pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Starts redis-server and waits until it answers PING.
    fn spawn(dir: &Path, port: u16, aof: bool) -> Result<Child, String> {
        let log = dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log);
        if aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: run scripts/test.sh, which installs it \
                 (or apt-get install redis-server); the Redis job store tests need a real server"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}): {log}"));
            }
            if ping(port) {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not answer PING within 10 s".into())
    }

    fn ping(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    fn id(s: &str) -> VideoId {
        s.parse().expect("valid id")
    }

    async fn store(server: &RedisServer) -> RedisStore {
        RedisStore::connect(&server.url()).await.expect("connect")
    }

    /// A raw command, to look at the keys behind the store.
    async fn raw<T: redis::FromRedisValue>(store: &RedisStore, cmd: &mut redis::Cmd) -> T {
        let mut conn = store.conn.clone();
        cmd.query_async(&mut conn).await.expect("raw command")
    }

    #[tokio::test]
    async fn redis_store_meets_the_contract() {
        let server = RedisServer::start(false);
        let store = store(&server).await;
        super::super::store::contract::run(&store).await;

        // The indexes agree with the records: a ready, b queued again (waiting in `delayed`), c
        // processing under a lease that ran out at t0 + 93 (so the claim at t0 + 100 moved it
        // to the claimable `queue`), bob1 gone.
        let mut counts = store.counts().await.expect("counts");
        counts.sort_by_key(|(s, _)| format!("{s:?}"));
        assert_eq!(
            counts,
            [
                (JobState::Processing, 1),
                (JobState::Queued, 1),
                (JobState::Ready, 1)
            ]
        );
        let zset = |k: &str| redis::cmd("ZRANGE").arg(k).arg(0).arg(-1).clone();
        let delayed: Vec<String> = raw(&store, &mut zset("hls:delayed")).await;
        let leases: Vec<String> = raw(&store, &mut zset("hls:leases")).await;
        let queue: Vec<String> = raw(&store, &mut zset("hls:queue")).await;
        assert_eq!(
            (delayed, leases, queue),
            (vec!["b".into()], vec![], vec!["c".into()])
        );
        let bob: Vec<String> = raw(&store, &mut zset("hls:owner:bob")).await;
        assert!(bob.is_empty());
        let exists: i64 = raw(&store, redis::cmd("EXISTS").arg("hls:job:bob1")).await;
        assert_eq!(exists, 0);
    }

    fn published(duration: f64) -> Published {
        Published {
            duration,
            encoder: "h264_nvenc".into(),
            rungs: vec![PublishedRung {
                name: "1080p".into(),
                width: 1920,
                height: 1080,
                bandwidth: u64::MAX,
                average_bandwidth: 4_500_000,
                segments: 17,
            }],
        }
    }

    #[tokio::test]
    async fn every_field_round_trips_exactly() {
        let server = RedisServer::start(false);
        let store = store(&server).await;
        let job = Job {
            video: id("round-trip_1"),
            owner: "ünïcødé \"owner\"\n/\\".into(),
            title: Some("Title with \"quotes\", \\ backslash, \u{1F3AC} and \u{0} nul".into()),
            state: JobState::Processing,
            stage: Stage::Encode,
            progress: 0.1 + 0.2,
            error: Some("{\"not\": \"json\"}".into()),
            attempts: 7,
            profile: Profile::Passthrough,
            encoder: EncoderPreference::Gpu,
            checkpoints: vec!["360p".into(), "720p".into()],
            lease: Some(Lease {
                worker: "host-1-0".into(),
                expires_at: 1_700_000_030,
            }),
            not_before: 1_699_999_999,
            thumbnail_ready: true,
            result: Some(published(12.345678901234567)),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_001,
        };
        store.create(job.clone()).await.expect("create");
        assert_eq!(
            store.get(&job.video).await.expect("get").as_ref(),
            Some(&job)
        );
        assert_eq!(
            store.list(&job.owner, 0, 10).await.expect("list"),
            std::slice::from_ref(&job)
        );

        // Values the scripts write keep their exact bits too.
        let now = 1_700_000_010;
        let percent = 66.666_666_666_666_67;
        store
            .progress(&job.video, "host-1-0", Stage::Publish, percent, false, now)
            .await
            .expect("progress");
        store
            .checkpoint(&job.video, "host-1-0", "1080p \"hi\"", now)
            .await
            .expect("checkpoint");
        let got = store.get(&job.video).await.expect("get").expect("exists");
        assert_eq!(got.progress.to_bits(), percent.to_bits());
        assert_eq!(got.checkpoints, ["360p", "720p", "1080p \"hi\""]);
        // Clamped like the embedded store; NaN and -inf leave the progress alone.
        for p in [f64::NAN, f64::NEG_INFINITY, 1.0] {
            store
                .progress(&job.video, "host-1-0", Stage::Publish, p, false, now)
                .await
                .expect("progress");
        }
        let got = store.get(&job.video).await.expect("get").expect("exists");
        assert_eq!(got.progress.to_bits(), percent.to_bits());
        store
            .progress(
                &job.video,
                "host-1-0",
                Stage::Publish,
                f64::INFINITY,
                false,
                now,
            )
            .await
            .expect("progress");
        let got = store.get(&job.video).await.expect("get").expect("exists");
        assert_eq!(got.progress, 100.0);
        let result = published(1.0 / 3.0);
        store
            .complete(&job.video, "host-1-0", result.clone(), now)
            .await
            .expect("complete");
        let got = store.get(&job.video).await.expect("get").expect("exists");
        assert_eq!(got.result, Some(result));

        // Delete finds the owner index from the stored (JSON) owner.
        store.delete(&job.video).await.expect("delete");
        assert!(store
            .list(&job.owner, 0, 10)
            .await
            .expect("list")
            .is_empty());
        let indexed: i64 = raw(&store, redis::cmd("ZCARD").arg(owner_key(&job.owner))).await;
        assert_eq!(indexed, 0);
        assert!(store.counts().await.expect("counts").is_empty());
    }

    /// A deterministic generator for the differential test.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    /// Same operations, same answers as the embedded store, including claim order among
    /// retried and new jobs, equal creation times, and callers whose clocks disagree.
    #[tokio::test]
    async fn behaves_like_the_embedded_store() {
        let server = RedisServer::start(false);
        let redis = store(&server).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = EmbeddedStore::open(dir.path()).expect("open");
        let videos: Vec<VideoId> = (0..10).map(|n| id(&format!("v{n}"))).collect();
        let owners = ["alice", "bob"];
        let workers = ["w0", "w1", "w2"];
        let stages = [
            Stage::Probe,
            Stage::Thumbnail,
            Stage::Encode,
            Stage::Publish,
        ];
        let rungs = ["360p", "720p", "1080p"];
        let mut rng = Lcg(0x5eed);
        let mut now: i64 = 1_000;
        let mut claims = 0;
        for step in 0..1500 {
            now += rng.below(6) as i64;
            if rng.below(8) == 0 {
                now -= rng.below(12) as i64; // another caller's clock is behind
            }
            let v = rng.pick(&videos).clone();
            // Mostly the real lease holder, so leased writes get through.
            let holder = embedded
                .get(&v)
                .await
                .expect("get")
                .and_then(|j| j.lease)
                .map(|l| l.worker);
            let w = match holder {
                Some(h) if rng.below(4) != 0 => h,
                _ => (*rng.pick(&workers)).to_owned(),
            };
            let op = rng.below(14);
            // Arguments are evaluated once per store: no `rng` calls inside.
            macro_rules! both {
                ($call:ident($($arg:expr),*)) => {{
                    let a = format!("{:?}", embedded.$call($($arg),*).await);
                    let b = format!("{:?}", redis.$call($($arg),*).await);
                    assert_eq!(a, b, "step {step}: {}", stringify!($call));
                    a
                }};
            }
            match op {
                0..=2 => {
                    let owner = *rng.pick(&owners);
                    let mut job = Job::new(v.clone(), owner, None, Profile::Ladder, now);
                    if rng.below(5) == 0 {
                        job.state = JobState::Registered;
                    }
                    both!(create(job.clone()));
                }
                3..=4 => {
                    let lease = 5 + rng.below(20) as i64;
                    let a = both!(claim(w.as_str(), lease, now));
                    claims += usize::from(a.starts_with("Ok(Some"));
                }
                5 => {
                    let lease = 5 + rng.below(20) as i64;
                    both!(heartbeat(&v, w.as_str(), lease, now));
                }
                6 => {
                    let percent = match rng.below(10) {
                        0 => f64::NAN,
                        1 => 150.0,
                        n => n as f64 * 11.111_111_111_111_1,
                    };
                    let stage = *rng.pick(&stages);
                    let thumbnail = rng.below(3) == 0;
                    both!(progress(&v, w.as_str(), stage, percent, thumbnail, now));
                }
                7 => {
                    let rung = *rng.pick(&rungs);
                    both!(checkpoint(&v, w.as_str(), rung, now));
                }
                8 => {
                    both!(complete(&v, w.as_str(), published(now as f64 / 7.0), now));
                }
                9 => {
                    let failure = if rng.below(3) == 0 {
                        Failure::Final
                    } else {
                        Failure::RetryAt(now + rng.below(25) as i64)
                    };
                    both!(fail(&v, w.as_str(), "boom", failure.clone(), now));
                }
                10 => {
                    both!(requeue(&v, now));
                }
                11 if rng.below(3) == 0 => {
                    both!(delete(&v));
                }
                12 => {
                    let owner = *rng.pick(&owners);
                    let (offset, limit) = (rng.below(4) as usize, rng.below(6) as usize);
                    both!(list(owner, offset, limit));
                }
                _ => {
                    both!(get(&v));
                }
            }
            if step % 25 == 0 {
                let sorted = |c: Vec<(JobState, usize)>| {
                    let mut c: Vec<String> = c.iter().map(|x| format!("{x:?}")).collect();
                    c.sort();
                    c
                };
                assert_eq!(
                    sorted(embedded.counts().await.expect("counts")),
                    sorted(redis.counts().await.expect("counts")),
                    "step {step}: counts"
                );
            }
        }
        assert!(claims > 100, "the sequence exercised claims ({claims})");
    }

    /// Polls `store` until Redis answers again; every failure meanwhile must be `Unavailable`.
    async fn wait_until_back(store: &RedisStore) -> Duration {
        let started = Instant::now();
        loop {
            match store.get(&id("probe")).await {
                Ok(_) => return started.elapsed(),
                Err(StoreError::Unavailable(_)) => {}
                Err(e) => panic!("expected Unavailable while reconnecting, got {e:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the store did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_restart_with_aof_loses_no_queued_job() {
        let mut server = RedisServer::start(true);
        let store = store(&server).await;
        let t0 = 1_000;
        for n in 0..5 {
            let job = Job::new(id(&format!("j{n}")), "alice", None, Profile::Ladder, t0 + n);
            store.create(job).await.expect("create");
        }
        let held = store
            .claim("w1", 30, t0 + 10)
            .await
            .expect("claim")
            .expect("j0");
        assert_eq!(held.video.as_str(), "j0");
        let mut events = store.subscribe_events().await.expect("subscribe");

        server.restart(); // SIGKILL, then the same port and directory
        let took = wait_until_back(&store).await;
        eprintln!("store answered again {took:?} after the restart");

        // Every queued job is still there, in order, and the running one keeps its lease.
        let mut claimed = Vec::new();
        while let Some(job) = store.claim("w2", 30, t0 + 11).await.expect("claim") {
            claimed.push(job.video.to_string());
        }
        assert_eq!(claimed, ["j1", "j2", "j3", "j4"]);
        store
            .heartbeat(&id("j0"), "w1", 30, t0 + 12)
            .await
            .expect("w1 still holds j0");
        let taken = store
            .claim("w3", 30, t0 + 100)
            .await
            .expect("claim")
            .expect("j0 after its lease ran out");
        assert_eq!((taken.video.as_str(), taken.attempts), ("j0", 2));

        // The event subscription came back by itself.
        let event = JobEvent::Ready { video: id("j1") };
        let received = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                store.publish_event(&event).await.expect("publish");
                if let Ok(Some(e)) =
                    tokio::time::timeout(Duration::from_millis(200), events.next()).await
                {
                    return e;
                }
            }
        })
        .await
        .expect("events flow again after the restart");
        assert_eq!(received, event);
    }

    #[tokio::test]
    async fn an_outage_is_unavailable_quickly_and_heals() {
        let mut server = RedisServer::start(true);
        let options = RedisOptions::default();
        let bound = options.op_timeout + Duration::from_millis(500);
        let store = RedisStore::connect_with(&server.url(), options.clone())
            .await
            .expect("connect");
        store
            .create(Job::new(id("kept"), "alice", None, Profile::Ladder, 1))
            .await
            .expect("create");

        // Down: refused connections.
        server.crash();
        for round in 0..3 {
            let started = Instant::now();
            let results = [
                store.get(&id("kept")).await.map(drop),
                store.claim("w", 30, 10).await.map(drop),
                store
                    .create(Job::new(id("new"), "alice", None, Profile::Ladder, 2))
                    .await,
                store.counts().await.map(drop),
                store.list("alice", 0, 10).await.map(drop),
                store.requeue(&id("kept"), 10).await,
            ];
            for r in &results {
                assert!(
                    matches!(r, Err(StoreError::Unavailable(_))),
                    "round {round}: {r:?}"
                );
            }
            let took = started.elapsed();
            eprintln!("round {round}: six calls failed in {took:?}");
            assert!(took < bound, "round {round} took {took:?}");
        }
        assert!(matches!(
            store.subscribe_events().await.map(drop),
            Err(StoreError::Unavailable(_))
        ));
        let started = Instant::now();
        let fresh = RedisStore::connect_with(&server.url(), options.clone()).await;
        assert!(
            matches!(fresh, Err(StoreError::Unavailable(_))),
            "{:?}",
            fresh.as_ref().map(drop)
        );
        assert!(
            started.elapsed() < bound,
            "connect took {:?}",
            started.elapsed()
        );

        // Back: the same store recovers, data intact.
        server.restart();
        let took = wait_until_back(&store).await;
        eprintln!("recovered {took:?} after the restart");
        assert!(store.get(&id("kept")).await.expect("get").is_some());

        // Frozen: connections stay open but nothing answers; calls still end in time.
        server.pause();
        let started = Instant::now();
        let r = store.get(&id("kept")).await;
        let took = started.elapsed();
        eprintln!("a call to a frozen redis failed in {took:?}");
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(took < bound, "{took:?}");
        server.resume();
        wait_until_back(&store).await;
        assert!(store.get(&id("kept")).await.expect("get").is_some());
    }

    /// Claims are atomic: workers racing on several connections never get the same job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_workers_claim_each_job_once() {
        let server = RedisServer::start(false);
        let store = store(&server).await;
        for n in 0..200 {
            let job = Job::new(id(&format!("r{n:03}")), "alice", None, Profile::Ladder, n);
            store.create(job).await.expect("create");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let store = RedisStore::connect(&server.url()).await.expect("connect");
            tasks.spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store
                    .claim(&format!("w{w}"), 30, 1_000)
                    .await
                    .expect("claim")
                {
                    mine.push(job.video.to_string());
                }
                mine
            });
        }
        let mut all = Vec::new();
        while let Some(mine) = tasks.join_next().await {
            all.extend(mine.expect("task"));
        }
        all.sort();
        let expected: Vec<String> = (0..200).map(|n| format!("r{n:03}")).collect();
        assert_eq!(all, expected);
        assert_eq!(
            store.counts().await.expect("counts"),
            [(JobState::Processing, 200)]
        );
    }

    fn every_event() -> Vec<JobEvent> {
        let video = id("ev");
        let events = vec![
            JobEvent::Stage {
                video: video.clone(),
                stage: Stage::Encode,
            },
            JobEvent::Progress {
                video: video.clone(),
                percent: 42.123_456_789,
                stage: Stage::Encode,
            },
            JobEvent::ThumbnailReady {
                video: video.clone(),
            },
            JobEvent::Ready {
                video: video.clone(),
            },
            JobEvent::Failed {
                video,
                error: "ffmpeg \"crashed\"".into(),
                retrying: true,
            },
        ];
        // Fails to compile when JobEvent gains a variant: add it above.
        for e in &events {
            match e {
                JobEvent::Stage { .. }
                | JobEvent::Progress { .. }
                | JobEvent::ThumbnailReady { .. }
                | JobEvent::Ready { .. }
                | JobEvent::Failed { .. } => {}
            }
        }
        events
    }

    #[test]
    fn job_events_round_trip_through_json() {
        for event in every_event() {
            let text = serde_json::to_string(&event).expect("serialize");
            let back: JobEvent = serde_json::from_str(&text).expect("deserialize");
            assert_eq!(back, event, "{text}");
        }
    }

    #[tokio::test]
    async fn events_reach_subscribers_in_other_processes() {
        let server = RedisServer::start(false);
        let (publisher, subscriber) = (store(&server).await, store(&server).await);
        let mut first = subscriber.subscribe_events().await.expect("subscribe");
        let mut second = subscriber.subscribe_events().await.expect("subscribe");
        // Not an event: skipped, the stream goes on.
        let _: i64 = raw(
            &publisher,
            redis::cmd("PUBLISH")
                .arg(EVENTS_CHANNEL)
                .arg("{\"event\":\"nope\"}"),
        )
        .await;
        for event in every_event() {
            publisher.publish_event(&event).await.expect("publish");
        }
        for stream in [&mut first, &mut second] {
            let mut got = Vec::new();
            while got.len() < 5 {
                let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
                    .await
                    .expect("an event in time")
                    .expect("stream open");
                got.push(next);
            }
            assert_eq!(got, every_event());
        }
    }
}
