//! The worker pool with the embedded store and real ffmpeg: a queued job becomes ready, a job
//! abandoned by a dead worker is taken over once its lease expires and finishes, and subtitle
//! files added while a job publishes all reach its final master.

use std::sync::Arc;
use std::time::Duration;

use e2e::clips::generate_clip;
use origin::jobs::embedded::EmbeddedStore;
use origin::jobs::model::{unix_now, Job, JobState};
use origin::jobs::store::JobStore;
use origin::jobs::worker::{JobEvent, WorkerPool, WorkerSettings};
use origin::transcode::encoder::EncoderSelector;
use origin::transcode::ladder::default_ladder;
use origin::transcode::pipeline::{Pipeline, Profile, Settings};
use shared::media::{Layout, VideoId};

fn pool(
    layout: &Layout,
    store: Arc<EmbeddedStore>,
    lease_secs: i64,
    publish_while_encoding: bool,
) -> Arc<WorkerPool<EmbeddedStore>> {
    let settings = Settings {
        ffmpeg: "ffmpeg".into(),
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
    let pipeline = Pipeline::new(
        settings,
        layout.clone(),
        EncoderSelector::new(false, 1, "ultrafast", "p4"),
    );
    let worker = WorkerSettings {
        concurrency: 1,
        lease_secs,
        poll_interval: Duration::from_millis(100),
        max_attempts: 3,
        name: "test".into(),
    };
    WorkerPool::new(store, pipeline, layout.clone(), worker)
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
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let store = Arc::new(EmbeddedStore::open(&layout.store_dir()).expect("store"));

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
        .claim("dead-worker", 2, now)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(dead.video, first);

    let pool = pool(&layout, store.clone(), 5, true);
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

/// Subtitle files added all through an encode, the way the API adds them (under the edit
/// lease, the master left to the encode while the video cannot be watched), are all named in
/// the final master: also those that came after the encode read the files and before it was
/// recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitle_files_added_while_it_publishes_all_reach_the_final_master() {
    use origin::jobs::subtitle_files::EditLease;
    use origin::transcode::subtitles::{self, tracks};

    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let store = Arc::new(EmbeddedStore::open(&layout.store_dir()).expect("store"));
    let video: VideoId = "subtitled".parse().expect("id");
    generate_clip(&layout.source_file(&video), 2, 320, 240);
    let job = Job::new(video.clone(), "alice", None, Profile::Ladder, unix_now());
    store.create(job).await.expect("create");
    // Not watchable before it is ready, so no add touches the master: the encode must.
    let pool = pool(&layout, store.clone(), 5, false);
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);

    let adder = {
        let (store, layout, video) = (store.clone(), layout.clone(), video.clone());
        tokio::spawn(async move {
            let cues =
                subtitles::parse(b"WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nHi\n").expect("cues");
            // Bounded: the encode of a 2 s clip takes a few seconds.
            for n in 0..400 {
                let lease = EditLease::take(&store, &video)
                    .await
                    .expect("store")
                    .expect("the lease within its wait");
                let job = store.get(&video).await.expect("get").expect("job");
                if job.state == JobState::Ready {
                    return n;
                }
                tracks::add_sidecar(&layout, &video, &cues, "eng", &format!("n{n}")).expect("add");
                drop(lease);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the job was not ready after 400 files");
        })
    };
    wait_ready(&mut events, &video).await;
    let added = adder.await.expect("the adder");
    stop_tx.fire();
    while workers.join_next().await.is_some() {}

    let master =
        std::fs::read_to_string(layout.video_dir(&video).join("master.m3u8")).expect("master");
    let missing: Vec<String> = tracks::sidecars(&layout, &video)
        .iter()
        .map(|s| s.rendition().media().uri)
        .filter(|uri| !master.contains(&format!("URI=\"{uri}\"")))
        .collect();
    assert!(added > 3, "only {added} files were added");
    assert!(
        missing.is_empty(),
        "{} of {added} files are not in the master: {missing:?}\n{master}",
        missing.len()
    );
}
