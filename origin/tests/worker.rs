//! The worker pool with the embedded store and real ffmpeg: a queued job becomes ready, a job
//! abandoned by a dead worker is taken over once its lease expires and finishes, and subtitle
//! files added and deleted while a job encodes and publishes (on this machine, or on another
//! through a bucket while the video grows) are all kept or gone, and named in its master or not.

use std::sync::Arc;
use std::time::Duration;

use e2e::clips::generate_clip;
use e2e::seaweed::ADMIN;
use e2e::SeaweedFs;
use origin::jobs::announcer::{Announcer, Timing};
use origin::jobs::embedded::EmbeddedStore;
use origin::jobs::model::{unix_now, Announcement, Job, JobState, LeaseStep};
use origin::jobs::store::{Claim, Failure, JobStore, Pending, StoreError};
use origin::jobs::subtitle_files::EditLease;
use origin::jobs::worker::{JobEvent, WorkerPool, WorkerSettings};
use origin::storage::MediaStore;
use origin::transcode::encoder::EncoderSelector;
use origin::transcode::ladder::default_ladder;
use origin::transcode::pipeline::{Pipeline, Profile, Published, Settings};
use origin::transcode::progress::Stage;
use origin::transcode::subtitles::{self, tracks};
use shared::media::{Layout, VideoId};

fn pool<S: JobStore>(
    layout: &Layout,
    store: Arc<S>,
    lease_secs: i64,
    publish_while_encoding: bool,
    media: Option<MediaStore>,
) -> Arc<WorkerPool<S>> {
    pool_with(
        layout,
        store,
        lease_secs,
        publish_while_encoding,
        media,
        "ffmpeg",
    )
}

fn pool_with<S: JobStore>(
    layout: &Layout,
    store: Arc<S>,
    lease_secs: i64,
    publish_while_encoding: bool,
    media: Option<MediaStore>,
    ffmpeg: &str,
) -> Arc<WorkerPool<S>> {
    let (pipeline, worker) = parts(layout, lease_secs, publish_while_encoding, media, ffmpeg);
    WorkerPool::new(store, pipeline, layout.clone(), worker)
}

/// The pipeline and worker settings every pool here runs with.
fn parts(
    layout: &Layout,
    lease_secs: i64,
    publish_while_encoding: bool,
    media: Option<MediaStore>,
    ffmpeg: &str,
) -> (Pipeline, WorkerSettings) {
    let settings = Settings {
        ffmpeg: ffmpeg.into(),
        ffprobe: "ffprobe".into(),
        ladder: default_ladder(),
        segment_secs: 1,
        stall_timeout: Duration::from_secs(60),
        poster_width: 320,
        storyboard_tiles: 10,
        limits: Default::default(),
        publish_while_encoding,
        source_rung: origin::transcode::ladder::SourceRung::Auto { margin: 0.1 },
        audio_layout: Default::default(),
    };
    let mut pipeline = Pipeline::new(
        settings,
        layout.clone(),
        EncoderSelector::new(false, 1, "ultrafast", "p4"),
    );
    if let Some(media) = media {
        pipeline = pipeline.with_media(media);
    }
    let worker = WorkerSettings {
        concurrency: 1,
        lease_secs,
        poll_interval: Duration::from_millis(100),
        max_attempts: 3,
        name: "test".into(),
    };
    (pipeline, worker)
}

/// A data directory (kept until the returned guard drops) with its embedded job store.
fn one_machine() -> (tempfile::TempDir, Layout, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let store = Arc::new(EmbeddedStore::open(&layout.store_dir()).expect("store"));
    (dir, layout, store)
}

async fn wait_ready(events: &mut tokio::sync::broadcast::Receiver<JobEvent>, video: &VideoId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("job became ready in time")
            .expect("event channel open");
        match event {
            JobEvent::Ready { video: v } if &v == video => return,
            JobEvent::Failed {
                video: v, error, ..
            } if &v == video => panic!("job failed: {error}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_becomes_ready_and_an_abandoned_one_is_taken_over() {
    let (_dir, layout, store) = one_machine();

    let first: VideoId = "first".parse().expect("id");
    let second: VideoId = "second".parse().expect("id");
    generate_clip(&layout.source_file(&first), 2, 320, 240);
    std::fs::copy(layout.source_file(&first), layout.source_file(&second)).expect("copy");
    let now = unix_now();
    store
        .create(Job::new(
            first.clone(),
            "alice",
            None,
            Profile::Ladder,
            now - 10,
        ))
        .await
        .expect("create");
    store
        .create(Job::new(
            second.clone(),
            "alice",
            None,
            Profile::Ladder,
            now - 5,
        ))
        .await
        .expect("create");
    // A worker claims `first` and dies without a heartbeat: its 2 s lease will run out.
    let dead = store
        .claim("dead-worker", 2, 3, now)
        .await
        .expect("claim")
        .job
        .expect("job");
    assert_eq!(dead.video, first);

    let pool = pool(&layout, store.clone(), 5, true, None);
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    wait_ready(&mut events, &second).await;
    wait_ready(&mut events, &first).await;
    stop_tx.fire();
    while workers.join_next().await.is_some() {}

    for (video, attempts) in [(&first, 2), (&second, 1)] {
        let job = store.get(video).await.expect("get").expect("exists");
        assert_eq!(
            (job.state, job.attempts, job.progress),
            (JobState::Ready, attempts, 100.0),
            "{video}"
        );
        assert!(job.thumbnail_ready);
        let result = job.result.expect("result recorded");
        assert_eq!(result.rungs.len(), 1, "a 320x240 source gets one 240p rung");
        assert!(layout.video_dir(video).join("master.m3u8").is_file());
    }
    assert_eq!(
        std::fs::read_dir(layout.tmp_root()).expect("tmp").count(),
        0,
        "no work directory left"
    );
}

/// A webhook receiver on loopback: the JSON bodies of the requests it answered 200.
async fn webhook_receiver() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf);
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break serde_json::from_str(body).ok();
                }
            };
            if let Some(body) = body {
                seen.lock().expect("lock").push(body);
            }
            let reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = tcp.write_all(reply.as_bytes()).await;
        }
    });
    (url, bodies)
}

/// The first body [`webhook_receiver`] answered, waited for at most `limit`.
async fn first_body(
    bodies: &std::sync::Mutex<Vec<serde_json::Value>>,
    limit: Duration,
) -> Result<serde_json::Value, tokio::time::error::Elapsed> {
    tokio::time::timeout(limit, async {
        loop {
            if let Some(b) = bodies.lock().expect("lock").first().cloned() {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A job whose workers died on every attempt is failed by the next claim, and that claimer
/// announces it as any final failure is announced: `video.failed` to the webhook, a `Failed`
/// event, and what its last attempt published while growing withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_workers_all_died_is_announced_failed() {
    let (_dir, layout, store) = one_machine();
    let video: VideoId = "doomed".parse().expect("id");
    let now = unix_now();
    let job = Job::new(
        video.clone(),
        "alice",
        Some("Doomed".into()),
        Profile::Ladder,
        now - 100,
    );
    store.create(job).await.expect("create");
    // Three workers took it and died; the last lease ran out 8 s ago.
    for attempt in 0..3 {
        let at = now - 30 + 10 * attempt;
        let claimed = store.claim("dead-worker", 2, 3, at).await.expect("claim");
        assert_eq!(claimed.job.map(|j| j.video), Some(video.clone()));
    }
    // What its last attempt published while growing.
    let master = layout.video_dir(&video).join("master.m3u8");
    std::fs::create_dir_all(layout.video_dir(&video)).expect("dir");
    std::fs::write(&master, "#EXTM3U\n").expect("master");

    let (url, bodies) = webhook_receiver().await;
    let (webhooks, dispatcher) =
        origin::webhooks::start(&webhook_settings(url), None).expect("webhooks");
    let (pipeline, worker) = parts(&layout, 30, true, None, "ffmpeg");
    let pool = WorkerPool::with_reporting(
        store.clone(),
        pipeline,
        layout.clone(),
        worker,
        None,
        Some(webhooks),
    );
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(JobEvent::Failed {
                    video: v,
                    error,
                    retrying,
                }) if v == video => break (error, retrying),
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("no Failed event for the worn-out job");
    assert_eq!(event, (origin::jobs::model::WORKERS_DIED.to_owned(), false));
    let delivered = first_body(&bodies, Duration::from_secs(10))
        .await
        .expect("no webhook for the worn-out job");
    assert_eq!(
        (
            &delivered["event"],
            &delivered["video_id"],
            &delivered["title"]
        ),
        (&"video.failed".into(), &"doomed".into(), &"Doomed".into()),
        "{delivered}"
    );
    assert!(
        !master.exists(),
        "what it published while growing is withdrawn"
    );
    let job = store.get(&video).await.expect("get").expect("kept");
    assert_eq!((job.state, job.attempts), (JobState::Failed, 3));
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
    dispatcher.shutdown().await;
}

/// Webhook settings for `url`, with short retries.
fn webhook_settings(url: String) -> origin::webhooks::settings::WebhookSettings {
    let mut config = origin::webhooks::settings::WebhooksConfig {
        url,
        backoff_initial_ms: 100,
        backoff_max_ms: 200,
        ..Default::default()
    };
    config.secret = shared::secret::SecretString::new("worker-test-webhook-secret");
    config.validate(&mut Vec::new()).expect("webhook settings")
}

/// A claim fails a job whose workers all died, and its reply is lost: the claimer never hears
/// of the job, but the failure was recorded with its announcement, and the sweep delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_by_a_claim_whose_reply_was_lost_is_announced_all_the_same() {
    let (dir, layout, _) = one_machine();
    let faults = Faults {
        claim_reply: true,
        ..Faults::default()
    };
    let store = Arc::new(Faulty::open(&dir.path().join("lost-claim-store"), faults));
    let video: VideoId = "doomed-quietly".parse().expect("id");
    let now = unix_now();
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, now - 100);
    store.create(job).await.expect("create");
    for attempt in 0..3 {
        let at = now - 30 + 10 * attempt;
        let claimed = store.inner.claim("dead-worker", 2, 3, at).await;
        assert_eq!(
            claimed.expect("claim").job.map(|j| j.video),
            Some(video.clone())
        );
    }

    let (url, bodies) = webhook_receiver().await;
    let (webhooks, dispatcher) =
        origin::webhooks::start(&webhook_settings(url), None).expect("webhooks");
    let timing = Timing {
        hold: Duration::from_secs(1),
        sweep: Duration::from_millis(200),
        lease: Duration::from_secs(30),
    };
    let announcer = Announcer::new(store.clone(), webhooks, timing);
    let (pipeline, worker) = parts(&layout, 30, true, None, "ffmpeg");
    let pool = WorkerPool::with_announcer(
        store.clone(),
        pipeline,
        layout.clone(),
        worker,
        None,
        Some(announcer),
    );
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let delivered = first_body(&bodies, Duration::from_secs(15))
        .await
        .expect("no webhook for the job the lost claim failed");
    assert_eq!(
        (&delivered["event"], &delivered["video_id"]),
        (&"video.failed".into(), &"doomed-quietly".into()),
        "{delivered}"
    );
    let job = store.get(&video).await.expect("get").expect("kept");
    assert_eq!(job.state, JobState::Failed);
    // Delivered: its announcement is cleared, and nothing is sent twice.
    let cleared = e2e::wait_until_async(Duration::from_secs(5), || async {
        let job = store.get(&video).await.expect("get").expect("kept");
        job.announce.is_none()
    })
    .await;
    assert!(cleared, "the delivered announcement stayed");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(bodies.lock().expect("lock").len(), 1, "delivered once");
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
    dispatcher.shutdown().await;
}

/// A job cancelled (its video deleted) before its encode starts, while it waits for the lease
/// on its subtitle files (a change holds it), stops at once, not when the wait (30 s) ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_while_it_waits_to_start_stops_at_once() {
    let (_dir, layout, store) = one_machine();
    let video: VideoId = "waiting".parse().expect("id");
    let now = unix_now();
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, now);
    store.create(job).await.expect("create");
    let step = LeaseStep::Take(600);
    let held = store.edit_lease(&video, "a change", step, now).await;
    assert!(held.expect("lease"), "the change holds the lease");

    let pool = pool(&layout, store.clone(), 30, false, None);
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let claimed = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pool.cancel(&video) {
        assert!(tokio::time::Instant::now() < claimed, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = std::time::Instant::now();
    pool.cancel_and_wait(&video, Duration::from_secs(20)).await;
    let took = cancelled.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the job ran {took:?} after its cancel"
    );
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
    let job = store.get(&video).await.expect("get").expect("exists");
    assert_ne!(job.state, JobState::Ready);
}

/// Changes `video`'s subtitle files the way the API does, through `media` (the bucket's copy
/// pulled first, the files pushed after) under the edit lease, until the job is ready: mostly
/// adds, every fourth a delete of the oldest file it added. The numbers it added and those it
/// deleted.
async fn change_until_ready(
    store: Arc<EmbeddedStore>,
    media: MediaStore,
    video: VideoId,
) -> (Vec<u32>, Vec<u32>) {
    let cues = subtitles::parse(b"WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nHi\n").expect("cues");
    let (layout, dir) = (media.layout().clone(), format!("subtitles/{video}"));
    let (mut added, mut deleted) = (Vec::new(), Vec::new());
    // Bounded by time: an encode of a 2 s clip takes a few seconds even on a busy machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for n in 0.. {
        assert!(tokio::time::Instant::now() < deadline, "not ready in time");
        let lease = EditLease::take(&store, &video)
            .await
            .expect("store")
            .expect("the lease within its wait");
        let job = store.get(&video).await.expect("get").expect("job");
        if job.state == JobState::Ready {
            return (added, deleted);
        }
        media.pull_dir(&dir, |_| true).await.expect("pull");
        let oldest = added.iter().find(|id| !deleted.contains(*id)).copied();
        match oldest.filter(|_| n % 4 == 3) {
            Some(id) => {
                assert!(tracks::remove_sidecar(&layout, &video, id).expect("remove"));
                let gone = format!("{dir}/{}", tracks::tombstone(id));
                media.push_files(&[gone]).await.expect("push");
                let files = [format!("{dir}/u{id}.json"), format!("{dir}/u{id}.vtt")];
                media.remove_files(&files).await.expect("remove");
                deleted.push(id);
            }
            None => {
                let file = tracks::add_sidecar(&layout, &video, &cues, "eng", &format!("n{n}"))
                    .expect("add");
                let sent = [
                    format!("{dir}/u{}.vtt", file.id),
                    format!("{dir}/u{}.json", file.id),
                ];
                media.push_files(&sent).await.expect("push");
                added.push(file.id);
            }
        }
        // A video still encoding, even one that can be watched, is left to the encode.
        drop(lease);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    unreachable!("the loop returns or fails at its deadline")
}

/// Subtitle files changed all through an encode by an API on another machine (`bucket`) or on
/// this one are all kept (and the deleted ones gone), and the final master names exactly
/// them: also those changed after the encode read the files and before the job was recorded.
async fn subtitle_files_race_the_publish(
    bucket: Option<shared::objects::Objects>,
    publish_while_encoding: bool,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (worker_layout, api_layout, check_layout) = (
        Layout::new(dir.path().join("worker")),
        Layout::new(dir.path().join("api")),
        Layout::new(dir.path().join("check")),
    );
    for layout in [&worker_layout, &api_layout, &check_layout] {
        layout.ensure().expect("layout");
    }
    let media = |layout: &Layout| match &bucket {
        Some(objects) => MediaStore::bucket(layout.clone(), objects.clone(), Default::default()),
        None => MediaStore::local(worker_layout.clone()),
    };
    let store = Arc::new(EmbeddedStore::open(&worker_layout.store_dir()).expect("store"));
    let video: VideoId = "subtitled".parse().expect("id");
    generate_clip(&worker_layout.source_file(&video), 2, 320, 240);
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, unix_now());
    store.create(job).await.expect("create");
    let worker_media = Some(media(&worker_layout));
    let pool = pool(
        &worker_layout,
        store.clone(),
        5,
        publish_while_encoding,
        worker_media,
    );
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let changes = change_until_ready(store.clone(), media(&api_layout), video.clone());
    let changes = tokio::spawn(changes);
    wait_ready(&mut events, &video).await;
    let (added, deleted) = changes.await.expect("the changes");
    stop_tx.fire();
    while workers.join_next().await.is_some() {}

    // What players and the next change find: the bucket's copy, or the data directory.
    let check = media(&check_layout);
    let layout = check.layout().clone();
    let hls = format!("hls/{video}");
    (check.pull_dir(&hls, |name| name.ends_with(".m3u8")).await).expect("pull");
    let subs = format!("subtitles/{video}");
    check.pull_dir(&subs, |_| true).await.expect("pull");
    let master =
        std::fs::read_to_string(layout.video_dir(&video).join("master.m3u8")).expect("master");
    let kept: Vec<u32> = tracks::sidecars(&layout, &video)
        .iter()
        .map(|s| s.id)
        .collect();
    let named = |id: &u32| master.contains(&format!("URI=\"subs_u{id}/index.m3u8\""));
    let live: Vec<u32> = added
        .iter()
        .copied()
        .filter(|id| !deleted.contains(id))
        .collect();
    assert!(
        added.len() > 3 && !deleted.is_empty(),
        "{added:?} {deleted:?}"
    );
    assert_eq!(
        kept, live,
        "the files kept are not those added and not deleted"
    );
    let unnamed: Vec<&u32> = live.iter().filter(|id| !named(id)).collect();
    let hls = layout.video_dir(&video);
    let missing: Vec<&u32> = (live.iter())
        .filter(|id| !hls.join(format!("subs_u{id}/index.m3u8")).is_file())
        .collect();
    assert!(missing.is_empty(), "renditions missing: {missing:?}");
    // A file deleted after a growing encode wrote its rendition at its start: gone too.
    let left: Vec<&u32> = (deleted.iter())
        .filter(|id| hls.join(format!("subs_u{id}/index.m3u8")).exists())
        .collect();
    assert!(
        left.is_empty(),
        "deleted renditions still published: {left:?}"
    );
    let stale: Vec<&u32> = deleted.iter().filter(|id| named(id)).collect();
    assert!(
        unnamed.is_empty() && stale.is_empty(),
        "of {} files, {unnamed:?} are not in the master and {stale:?} deleted are\n{master}",
        added.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitle_files_changed_while_it_publishes_are_all_in_the_final_master() {
    subtitle_files_race_the_publish(None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitle_files_changed_on_another_machine_while_it_grows_stay_in_the_bucket() {
    let weed = tokio::task::spawn_blocking(|| {
        let weed = SeaweedFs::start();
        weed.create_bucket("media");
        weed
    })
    .await
    .expect("SeaweedFS");
    subtitle_files_race_the_publish(Some(weed.objects("media", "prod", ADMIN)), true).await;
}

/// What goes wrong in a [`Faulty`] store.
#[derive(Default)]
struct Faults {
    /// Heartbeats fail, as with a store cut off.
    heartbeats: bool,
    /// The job is deleted just before a failure is recorded.
    deleted_at_fail: bool,
    /// A completion is recorded but its reply is lost.
    complete_reply: bool,
    /// Every claim is made but its reply is lost.
    claim_reply: bool,
}

/// The embedded store, with [`Faults`].
struct Faulty {
    inner: EmbeddedStore,
    faults: Faults,
}

impl Faulty {
    fn open(path: &std::path::Path, faults: Faults) -> Self {
        let inner = EmbeddedStore::open(path).expect("store");
        Self { inner, faults }
    }
}

impl JobStore for Faulty {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        self.inner.create(job).await
    }
    async fn get(&self, video: &VideoId) -> Result<Option<Job>, StoreError> {
        self.inner.get(video).await
    }
    async fn list(&self, owner: &str, offset: usize, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.inner.list(owner, offset, limit).await
    }
    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        max_attempts: u32,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let claim = self
            .inner
            .claim(worker, lease_secs, max_attempts, now)
            .await?;
        match self.faults.claim_reply {
            true => Err(StoreError::Unavailable("the reply was lost".into())),
            false => Ok(claim),
        }
    }
    async fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.faults.heartbeats {
            return Err(StoreError::Unavailable("cut off".into()));
        }
        self.inner.heartbeat(video, worker, lease_secs, now).await
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
        self.inner
            .progress(video, worker, stage, percent, thumbnail_ready, now)
            .await
    }
    async fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.checkpoint(video, worker, rung, now).await
    }
    async fn playable(
        &self,
        video: &VideoId,
        worker: &str,
        playable: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.playable(video, worker, playable, now).await
    }
    async fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.complete(video, worker, result, now).await?;
        match self.faults.complete_reply {
            true => Err(StoreError::Unavailable("the reply was lost".into())),
            false => Ok(()),
        }
    }
    async fn fail(
        &self,
        video: &VideoId,
        worker: &str,
        error: &str,
        failure: Failure,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.faults.deleted_at_fail {
            self.inner.delete(video).await?;
        }
        self.inner.fail(video, worker, error, failure, now).await
    }
    async fn revise(&self, video: &VideoId) -> Result<(), StoreError> {
        self.inner.revise(video).await
    }
    async fn requeue(&self, video: &VideoId, from: JobState, now: i64) -> Result<(), StoreError> {
        self.inner.requeue(video, from, now).await
    }
    async fn edit_lease(
        &self,
        video: &VideoId,
        holder: &str,
        step: LeaseStep,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.edit_lease(video, holder, step, now).await
    }
    fn announce_outcomes(&self, hold_secs: Option<i64>) {
        self.inner.announce_outcomes(hold_secs)
    }
    async fn take_announcements(
        &self,
        pending: Pending<'_>,
        now: i64,
        lease_secs: i64,
    ) -> Result<Vec<Job>, StoreError> {
        self.inner
            .take_announcements(pending, now, lease_secs)
            .await
    }
    async fn announced(
        &self,
        video: &VideoId,
        announcement: &Announcement,
    ) -> Result<(), StoreError> {
        self.inner.announced(video, announcement).await
    }
    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        self.inner.delete(video).await
    }
    async fn counts(&self) -> Result<Vec<(JobState, usize)>, StoreError> {
        self.inner.counts().await
    }
}

/// A worker cut off from the store keeps encoding while its lease lasts, then stops without
/// publishing: another worker may have claimed the job by then, and two attempts must never
/// publish one video at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_its_lease_stops_before_it_runs_out() {
    let (dir, layout, _) = one_machine();
    let faults = Faults {
        heartbeats: true,
        ..Faults::default()
    };
    let store = Arc::new(Faulty::open(&dir.path().join("cut-off-store"), faults));
    let video: VideoId = "cut-off".parse().expect("id");
    generate_clip(&layout.source_file(&video), 2, 320, 240);
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, unix_now());
    store.create(job).await.expect("create");
    // Every ffmpeg run takes 10 s more: the encode outlasts the 3 s lease by far.
    let slow = dir.path().join("slow-ffmpeg");
    std::fs::write(&slow, "#!/bin/sh\nsleep 10\nexec ffmpeg \"$@\"\n").expect("script");
    let chmod = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&slow)
        .status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let pool = pool_with(
        &layout,
        store.clone(),
        3,
        true,
        None,
        &slow.to_string_lossy(),
    );
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    // Past the lease: a worker that keeps its job would still be in its first ffmpeg run.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let job = store.get(&video).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Processing, "claimed");
    let stopping = std::time::Instant::now();
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
    // A stop lets running jobs finish: the join is quick only if the attempt had ended.
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "the attempt ran on for {:?} after its lease ran out",
        stopping.elapsed()
    );
    assert!(!layout.video_dir(&video).join("master.m3u8").exists());
}

/// A video deleted as its attempt fails (the delete lands just before the failure is
/// recorded, on another machine: nothing cancels the attempt) keeps none of its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_deleted_as_its_attempt_fails_keeps_no_files() {
    let (dir, layout, _) = one_machine();
    let faults = Faults {
        deleted_at_fail: true,
        ..Faults::default()
    };
    let store = Arc::new(Faulty::open(&dir.path().join("deleting-store"), faults));
    let video: VideoId = "deleted".parse().expect("id");
    // A source that fails its probe at job time, and a poster the attempt wrote.
    std::fs::write(layout.source_file(&video), b"not a video").expect("source");
    let poster = layout.thumbs_dir(&video).join("poster.jpg");
    std::fs::create_dir_all(layout.thumbs_dir(&video)).expect("thumbs");
    std::fs::write(&poster, b"jpeg").expect("poster");
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, unix_now());
    store.create(job).await.expect("create");

    let pool = pool(&layout, store.clone(), 30, false, None);
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while poster.exists() || layout.source_file(&video).exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted video's files stayed after its attempt failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.get(&video).await.expect("get").is_none());
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
}

/// A completion the store recorded but whose reply was lost (Redis ran the script, the
/// connection dropped) is found in the store and announced: the video is ready, and its
/// owner must hear so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_reply_was_lost_is_announced() {
    let (dir, layout, _) = one_machine();
    let faults = Faults {
        complete_reply: true,
        ..Faults::default()
    };
    let store = Arc::new(Faulty::open(&dir.path().join("lossy-store"), faults));
    let video: VideoId = "lossy".parse().expect("id");
    generate_clip(&layout.source_file(&video), 1, 320, 240);
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, unix_now());
    store.create(job).await.expect("create");
    let pool = pool(&layout, store.clone(), 30, false, None);
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    wait_ready(&mut events, &video).await;
    stop_tx.fire();
    while workers.join_next().await.is_some() {}
    let job = store.get(&video).await.expect("get").expect("kept");
    assert_eq!((job.state, job.attempts), (JobState::Ready, 1));
    assert!(layout.video_dir(&video).join("master.m3u8").is_file());
}
