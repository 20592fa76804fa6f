//! The worker pool with the embedded store and real ffmpeg: a queued job becomes ready, a job
//! abandoned by a dead worker is taken over once its lease expires and finishes, and subtitle
//! files added while a job publishes all reach its final master.

use std::sync::Arc;
use std::time::Duration;

use e2e::clips::generate_clip;
use e2e::seaweed::ADMIN;
use e2e::SeaweedFs;
use origin::jobs::embedded::EmbeddedStore;
use origin::jobs::model::{unix_now, Job, JobState};
use origin::jobs::store::JobStore;
use origin::jobs::subtitle_files::EditLease;
use origin::jobs::worker::{JobEvent, WorkerPool, WorkerSettings};
use origin::storage::MediaStore;
use origin::transcode::encoder::EncoderSelector;
use origin::transcode::ladder::default_ladder;
use origin::transcode::pipeline::{Pipeline, Profile, Settings};
use origin::transcode::subtitles::{self, tracks};
use shared::media::{Layout, VideoId};

fn pool(
    layout: &Layout,
    store: Arc<EmbeddedStore>,
    lease_secs: i64,
    publish_while_encoding: bool,
    media: Option<MediaStore>,
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

/// Adds subtitle files to `video` the way the API does (under the edit lease, through
/// `media`: the bucket's copy pulled first, the files pushed after), leaving the master to the
/// encode while the video cannot be watched, until the job is ready. The numbers it added.
async fn add_until_ready(store: Arc<EmbeddedStore>, media: MediaStore, video: VideoId) -> Vec<u32> {
    let cues = subtitles::parse(b"WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nHi\n").expect("cues");
    let (layout, dir) = (media.layout().clone(), format!("subtitles/{video}"));
    let mut added = Vec::new();
    // Bounded: the encode of a 2 s clip takes a few seconds.
    for n in 0..400 {
        let lease = EditLease::take(&store, &video)
            .await
            .expect("store")
            .expect("the lease within its wait");
        let job = store.get(&video).await.expect("get").expect("job");
        if job.state == JobState::Ready {
            return added;
        }
        media.pull_dir(&dir, |_| true).await.expect("pull");
        let file =
            tracks::add_sidecar(&layout, &video, &cues, "eng", &format!("n{n}")).expect("add");
        let sent = [
            format!("{dir}/u{}.vtt", file.id),
            format!("{dir}/u{}.json", file.id),
        ];
        media.push_files(&sent).await.expect("push");
        added.push(file.id);
        drop(lease);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the job was not ready after 400 files");
}

/// Subtitle files added all through an encode by an API on another machine (`bucket`) or on
/// this one are all kept and named in the final master: also those that came after the encode
/// read the files and before the job was recorded.
async fn subtitle_files_race_the_publish(bucket: Option<shared::objects::Objects>) {
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
    // Not watchable before it is ready, so no add touches the master: the encode must.
    let pool = pool(
        &worker_layout,
        store.clone(),
        5,
        false,
        Some(media(&worker_layout)),
    );
    let mut events = pool.subscribe();
    let (stop_tx, stop) = shared::shutdown::channel();
    let mut workers = pool.start(stop);
    let adder = tokio::spawn(add_until_ready(
        store.clone(),
        media(&api_layout),
        video.clone(),
    ));
    wait_ready(&mut events, &video).await;
    let added = adder.await.expect("the adder");
    stop_tx.fire();
    while workers.join_next().await.is_some() {}

    // What players and the next change find: the bucket's copy, or the data directory.
    let check = media(&check_layout);
    let layout = check.layout().clone();
    check
        .pull_dir(&format!("hls/{video}"), |name| name.ends_with(".m3u8"))
        .await
        .expect("pull");
    check
        .pull_dir(&format!("subtitles/{video}"), |_| true)
        .await
        .expect("pull");
    let master =
        std::fs::read_to_string(layout.video_dir(&video).join("master.m3u8")).expect("master");
    let kept: Vec<u32> = tracks::sidecars(&layout, &video)
        .iter()
        .map(|s| s.id)
        .collect();
    let lost: Vec<&u32> = added.iter().filter(|id| !kept.contains(id)).collect();
    let unnamed: Vec<&u32> = added
        .iter()
        .filter(|id| !master.contains(&format!("URI=\"subs_u{id}/index.m3u8\"")))
        .collect();
    assert!(added.len() > 3, "only {} files were added", added.len());
    assert!(
        lost.is_empty(),
        "{} of {} files are gone: {lost:?}",
        lost.len(),
        added.len()
    );
    assert!(
        unnamed.is_empty(),
        "{} of {} files are not in the master: {unnamed:?}\n{master}",
        unnamed.len(),
        added.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitle_files_added_while_it_publishes_all_reach_the_final_master() {
    subtitle_files_race_the_publish(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitle_files_added_on_another_machine_while_it_publishes_stay_in_the_bucket() {
    let weed = tokio::task::spawn_blocking(|| {
        let weed = SeaweedFs::start();
        weed.create_bucket("media");
        weed
    })
    .await
    .expect("SeaweedFS");
    subtitle_files_race_the_publish(Some(weed.objects("media", "prod", ADMIN))).await;
}
