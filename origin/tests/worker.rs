//! The worker pool with the embedded store and real ffmpeg: a queued job becomes ready, and a
//! job abandoned by a dead worker is taken over once its lease expires and finishes.

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
        publish_while_encoding: true,
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

    let pool = pool(&layout, store.clone(), 5);
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
