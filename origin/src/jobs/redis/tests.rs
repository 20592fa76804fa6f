//! Redis store tests against a real redis-server of the test's own (the workspace test kit's,
//! `e2e::RedisServer`): exact round trips, random operations compared with the embedded store,
//! restarts, outages, racing claims.

use std::time::Instant;

use e2e::redis::Persistence;
use e2e::{wait_until_async, RedisServer};
use futures_util::StreamExt;

use super::*;
use crate::jobs::embedded::EmbeddedStore;
use crate::jobs::model::{Lease, LeaseStep};
use crate::jobs::store::{Failure, JobStore};
use crate::transcode::encoder::EncoderPreference;
use crate::transcode::pipeline::{Profile, Published, PublishedRung};
use crate::transcode::progress::Stage;

/// The test kit's redis-server, without persistence: these tests never restart it.
fn redis() -> RedisServer {
    RedisServer::start_with(Persistence::None)
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
    let server = redis();
    let store = store(&server).await;
    super::super::store::contract::run(&store).await;
    let other = redis();
    let fresh = RedisStore::connect(&other.url()).await.expect("connect");
    super::super::store::contract::workers_that_die_every_time(&fresh).await;
    let third = redis();
    let announcing = RedisStore::connect(&third.url()).await.expect("connect");
    super::super::store::contract::announcements(&announcing).await;

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
        audio: Vec::new(),
        subtitles: Vec::new(),
        skipped_subtitles: Vec::new(),
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
    let server = redis();
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
        playable: true,
        result: Some(published(12.345678901234567)),
        created_at: 1_700_000_000,
        updated_at: 1_700_000_001,
        revision: 3,
        editor: Some(Lease {
            worker: "api-host-\"2\"-edit-9".into(),
            expires_at: 1_700_000_120,
        }),
        announce: Some(Announcement {
            ending: Ending::Failed,
            at: 1_700_000_002,
            nonce: u32::MAX,
        }),
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
    let server = redis();
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
    let states = [JobState::Failed, JobState::Registered, JobState::Queued];
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
        let op = rng.below(16);
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
                // Few attempts: jobs whose leases run out are failed by a claim too.
                let a = both!(claim(w.as_str(), lease, 3, now));
                claims += usize::from(a.contains("job: Some"));
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
                let from = *rng.pick(&states);
                both!(requeue(&v, from, now));
            }
            11 if rng.below(3) == 0 => {
                both!(delete(&v));
            }
            12 => {
                let owner = *rng.pick(&owners);
                let (offset, limit) = (rng.below(4) as usize, rng.below(6) as usize);
                both!(list(owner, offset, limit));
            }
            13 => {
                both!(revise(&v));
            }
            14 => {
                let secs = 5 + rng.below(20) as i64;
                let step = *rng.pick(&[
                    LeaseStep::Take(secs),
                    LeaseStep::Renew(secs),
                    LeaseStep::GiveBack,
                ]);
                both!(edit_lease(&v, w.as_str(), step, now));
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
    let mut worn_out = 0;
    for owner in owners {
        for job in embedded.list(owner, 0, 1_000).await.expect("list") {
            worn_out += usize::from(job.error.as_deref() == Some(crate::jobs::model::WORKERS_DIED));
        }
    }
    assert!(
        worn_out > 0,
        "the sequence failed no job whose workers died"
    );
}

/// Polls `store` until Redis answers again; every failure meanwhile must be `Unavailable`.
async fn wait_until_back(store: &RedisStore) -> Duration {
    let started = Instant::now();
    let back = wait_until_async(Duration::from_secs(20), || async {
        match store.get(&id("probe")).await {
            Ok(_) => true,
            Err(StoreError::Unavailable(_)) => false,
            Err(e) => panic!("expected Unavailable while reconnecting, got {e:?}"),
        }
    })
    .await;
    assert!(back, "the store did not reconnect");
    started.elapsed()
}

#[tokio::test]
async fn a_restart_with_aof_loses_no_queued_job() {
    let mut server = RedisServer::start();
    let store = store(&server).await;
    let t0 = 1_000;
    for n in 0..5 {
        let job = Job::new(id(&format!("j{n}")), "alice", None, Profile::Ladder, t0 + n);
        store.create(job).await.expect("create");
    }
    let held = store
        .claim("w1", 30, 3, t0 + 10)
        .await
        .expect("claim")
        .job
        .expect("j0");
    assert_eq!(held.video.as_str(), "j0");
    let mut events = store.subscribe_events().await.expect("subscribe");

    server.restart(); // SIGKILL, then the same port and directory
    let took = wait_until_back(&store).await;
    eprintln!("store answered again {took:?} after the restart");

    // Every queued job is still there, in order, and the running one keeps its lease.
    let mut claimed = Vec::new();
    while let Some(job) = store.claim("w2", 30, 3, t0 + 11).await.expect("claim").job {
        claimed.push(job.video.to_string());
    }
    assert_eq!(claimed, ["j1", "j2", "j3", "j4"]);
    store
        .heartbeat(&id("j0"), "w1", 30, t0 + 12)
        .await
        .expect("w1 still holds j0");
    let taken = store
        .claim("w3", 30, 3, t0 + 100)
        .await
        .expect("claim")
        .job
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
    let mut server = RedisServer::start();
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
            store.claim("w", 30, 3, 10).await.map(drop),
            store
                .create(Job::new(id("new"), "alice", None, Profile::Ladder, 2))
                .await,
            store.counts().await.map(drop),
            store.list("alice", 0, 10).await.map(drop),
            store.requeue(&id("kept"), JobState::Failed, 10).await,
            store.revise(&id("kept")).await,
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
    let server = redis();
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
                .claim(&format!("w{w}"), 30, 3, 1_000)
                .await
                .expect("claim")
                .job
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
        JobEvent::Playable {
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
            | JobEvent::Playable { .. }
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
    let server = redis();
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
        while got.len() < every_event().len() {
            let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("an event in time")
                .expect("stream open");
            got.push(next);
        }
        assert_eq!(got, every_event());
    }
}

/// Lease and retry times follow Redis' clock: a worker whose own clock runs two minutes ahead
/// takes over no live lease, and its own lease and backoff are what Redis' clock says.
#[tokio::test]
async fn a_worker_whose_clock_runs_ahead_takes_over_no_live_lease() {
    let server = redis();
    let honest = store(&server).await;
    let ahead = store(&server)
        .await
        .with_local_clock(|| clock::system_secs() + 120.0);
    let now = crate::jobs::model::unix_now();
    for v in ["live", "next"] {
        let job = Job::new(id(v), "alice", None, Profile::Ladder, now - 10);
        honest.create(job).await.expect("create");
    }
    let held = honest.claim("w1", 30, 3, now).await.expect("claim").job;
    assert_eq!(held.map(|j| j.video), Some(id("live")));

    // Its clock says the 30 s lease ran out 90 s ago; Redis' says it has 30 s to go.
    let claim = ahead.claim("w2", 30, 3, now + 120).await.expect("claim");
    let taken = claim.job.expect("the queued job");
    assert_eq!(taken.video, id("next"), "the live lease was taken over");
    let expires = taken.lease.expect("a lease").expires_at;
    assert!(
        (now + 29..=now + 32).contains(&expires),
        "lease until {expires}, now {now}"
    );
    honest
        .heartbeat(&id("live"), "w1", 30, now + 1)
        .await
        .expect("w1 still holds its lease");

    // A retry 10 s from now by its clock is 10 s from now by Redis'.
    let retry = Failure::RetryAt(now + 130);
    ahead
        .fail(&id("next"), "w2", "boom", retry, now + 121)
        .await
        .expect("fail");
    let next = honest.get(&id("next")).await.expect("get").expect("kept");
    assert!(
        (now + 9..=now + 12).contains(&next.not_before),
        "retry at {}",
        next.not_before
    );
}
