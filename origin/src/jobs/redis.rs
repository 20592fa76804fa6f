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
//! | `hls:announce` | sorted set | videos whose record holds an outcome to announce (`announce`), score = when a taker may have it: after the hold for its worker, then after each taker's lease ([`crate::jobs::announcer`]). |
//! | `hls:events` | pub/sub channel | [`JobEvent`]s as JSON, across processes. |
//! | `hls:slots:<kind>:<user>` | sorted set | the user's uploads in progress or open event streams across API processes, score = expiry in Redis' clock ([`slots`]). |
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
//!   `hls:queue`, re-checks it against its record ([`Job::claimable`]; an entry may have been
//!   promoted by a later `now`) and either
//!   claims it (state processing, new lease, attempts + 1, into `hls:leases`) or refiles it and
//!   looks at the next one.
//! - `heartbeat`, `progress`, `checkpoint`, `complete`, `fail`: refuse with `LeaseLost` unless
//!   the caller holds a live lease ([`Job::leased_by`]), then change the record; `fail` with
//!   `RetryAt` files the job into `hls:delayed` at the retry time, `Final` out of every queue.
//! - `create` (refuses an existing video), `requeue`, `delete`, `list`.
//! - With outcomes announced ([`super::store::JobStore::announce_outcomes`]), `claim` (for the jobs it
//!   fails), `complete` and a final `fail` also write the job's `announce` field and file it
//!   into `hls:announce`, due once the hold for its worker ends; `requeue` and `delete` take it
//!   out. `take_announcements` re-scores what it takes to the end of the taker's lease, and
//!   `announced` clears the field and the entry only if the field still holds the
//!   announcement delivered.
//!
//! Every `now`, lease expiry and retry time a script compares is in Redis' clock: callers pass
//! their own machine's time, and the store moves it by the difference it measures with `TIME`
//! once a minute (`clock`), so machines whose clocks disagree still agree on whose lease is live.
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

use futures_util::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Client, ErrorKind, RedisError, Script};
use serde::Serialize;
use shared::media::VideoId;
use tokio::sync::mpsc;

use super::model::{Announcement, Ending, Job, JobState};
use super::store::StoreError;
use super::worker::JobEvent;

mod clock;
mod events;
mod operations;
mod scripts;
pub mod slots;

use clock::Clock;
use events::forward_events;
use scripts::{scripts, Scripts};

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
    clock: std::sync::Arc<Clock>,
    /// Seconds an outcome's announcement is held for its worker; negative: not announced.
    hold: std::sync::Arc<std::sync::atomic::AtomicI64>,
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
        .map_err(|_| {
            let shown = crate::config::settings::redis_url_shown(url);
            StoreError::Unavailable(format!("no answer from {shown}"))
        })?
        .map_err(redis_error)?;
        Ok(Self {
            client,
            conn,
            options,
            scripts: scripts(),
            clock: std::sync::Arc::new(Clock::new(clock::system_secs)),
            hold: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1)),
        })
    }

    /// The script arguments of an outcome ending so at `now` (Redis' clock): its announcement
    /// JSON and when it is due, or two empty strings when outcomes are not announced.
    fn announce(&self, ending: Ending, now: i64) -> Result<[String; 2], StoreError> {
        let hold = self.hold.load(std::sync::atomic::Ordering::Relaxed);
        if hold < 0 {
            return Ok([String::new(), String::new()]);
        }
        let announcement = Announcement::new(ending, now);
        Ok([json(&announcement)?, now.saturating_add(hold).to_string()])
    }

    /// The same store, as seen by a machine whose clock reads `local` (tests).
    #[cfg(test)]
    fn with_local_clock(mut self, local: fn() -> f64) -> Self {
        self.clock = std::sync::Arc::new(Clock::new(local));
        self
    }

    /// `at`, a unix time read from this machine's clock, in Redis' clock: the one every
    /// lease and retry time in the store is written and compared in.
    async fn in_redis_time(&self, at: i64) -> i64 {
        at.saturating_add(self.clock_offset().await)
    }

    /// Redis' clock minus this machine's, in seconds, measured again once a minute. If `TIME`
    /// fails, the last measure stands (none: the clocks are taken to agree); the operation that
    /// asked fails on its own if Redis is down.
    async fn clock_offset(&self) -> i64 {
        if let Some(offset) = self.clock.offset() {
            return offset;
        }
        let before = self.clock.local();
        let time: Result<(i64, i64), _> = self
            .call(|mut conn| async move { redis::cmd("TIME").query_async(&mut conn).await })
            .await;
        let after = self.clock.local();
        match time {
            Ok((secs, micros)) => {
                let redis = secs as f64 + micros as f64 / 1e6;
                self.clock.record(redis, before, after)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read Redis' clock; job times keep the last measure");
                self.clock.last()
            }
        }
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

#[cfg(test)]
mod tests;
