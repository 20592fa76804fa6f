//! Migration (seed 001): a directory of existing files is imported in the background; videos
//! are registered (processing deferred to first play, or queued at once), bad files are
//! reported without stopping the run, and a second run imports nothing twice.

mod support;

use std::sync::Arc;

use origin::jobs::embedded::EmbeddedStore;
use origin::jobs::model::JobState;
use origin::jobs::store::JobStore;
use origin::migration::{imported_id, Migration};
use support::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_a_directory_once_and_reports_bad_files() {
    let env = TestEnv::new();
    let import = env.scratch().join("import");
    std::fs::create_dir_all(&import).expect("mkdir");
    let clips = support::clips();
    std::fs::copy(&clips.landscape, import.join("holiday.mp4")).expect("copy");
    std::fs::copy(&clips.h264_aac, import.join("talk.MOV")).expect("copy");
    std::fs::write(import.join("notes.mkv"), b"not a video at all").expect("write");
    std::fs::write(import.join("readme.txt"), b"ignored: not a video extension").expect("write");
    let store = Arc::new(EmbeddedStore::open(&env.layout.store_dir()).expect("store"));

    let deferred = Migration::new(&import, "admin", false);
    assert!(deferred.begin());
    assert!(!deferred.begin(), "one run at a time");
    deferred
        .run(store.as_ref(), &env.layout, &env.pipeline)
        .await;
    let status = deferred.status();
    assert!(!status.is_running);
    assert_eq!((status.total, status.completed), (3, 3), "{status:?}");
    assert!(status.errors.is_empty(), "{status:?}");
    assert_eq!(status.refused.len(), 1, "{status:?}");
    assert_eq!(status.refused[0].file, "notes.mkv", "{status:?}");

    for name in ["holiday.mp4", "talk.MOV"] {
        let id = imported_id(name);
        let job = store.get(&id).await.expect("get").expect("imported");
        assert_eq!(
            (job.state, job.owner.as_str(), job.title.as_deref()),
            (JobState::Registered, "admin", Some(name))
        );
        assert!(env.layout.source_file(&id).is_file(), "source copied in");
    }
    assert!(
        import.join("holiday.mp4").is_file(),
        "the import directory is left untouched"
    );

    // A second run finds everything imported already.
    let again = Migration::new(&import, "admin", true);
    assert!(again.begin());
    again.run(store.as_ref(), &env.layout, &env.pipeline).await;
    assert_eq!(
        store.list("admin", 0, 10).await.expect("list").len(),
        2,
        "nothing imported twice"
    );
    assert!(
        store
            .claim("w", 30, 3, i64::MAX / 2)
            .await
            .expect("claim")
            .job
            .is_none(),
        "registered videos wait for a first play"
    );
}
