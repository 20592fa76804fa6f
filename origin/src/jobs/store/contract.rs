//! The behaviour every backend must show; run by each backend's tests.

use super::*;
use crate::jobs::model::{Announcement, Ending, Job};
use crate::transcode::pipeline::Profile;

fn id(s: &str) -> VideoId {
    s.parse().expect("valid id")
}

fn published() -> Published {
    Published {
        duration: 1.0,
        encoder: "libx264".into(),
        audio: Vec::new(),
        subtitles: Vec::new(),
        skipped_subtitles: Vec::new(),
        rungs: Vec::new(),
    }
}

pub async fn run(store: &impl JobStore) {
    let t0 = 1_000;
    for (n, v) in ["a", "b", "c"].into_iter().enumerate() {
        let job = Job::new(id(v), "alice", None, Profile::Ladder, t0 + n as i64);
        store.create(job).await.expect("create");
    }
    assert!(matches!(
        store
            .create(Job::new(id("a"), "alice", None, Profile::Ladder, t0))
            .await,
        Err(StoreError::Exists(_))
    ));
    store
        .create(Job::new(id("bob1"), "bob", None, Profile::Ladder, t0 + 10))
        .await
        .expect("create");
    let listed = store.list("alice", 0, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|j| j.video.as_str()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    assert_eq!(store.list("alice", 1, 1).await.expect("page").len(), 1);

    // Oldest first, one worker per job.
    let j = store
        .claim("w1", 30, 3, t0 + 20)
        .await
        .expect("claim")
        .job
        .expect("a job");
    assert_eq!(
        (j.video.as_str(), j.attempts, j.state),
        ("a", 1, JobState::Processing)
    );
    let k = store
        .claim("w2", 30, 3, t0 + 20)
        .await
        .expect("claim")
        .job
        .expect("a job");
    assert_eq!(k.video.as_str(), "b");

    // Progress and checkpoints only from the lease holder.
    store
        .progress(&id("a"), "w1", Stage::Encode, 40.0, true, t0 + 21)
        .await
        .expect("progress");
    store
        .checkpoint(&id("a"), "w1", "720p", t0 + 21)
        .await
        .expect("checkpoint");
    assert!(matches!(
        store
            .progress(&id("a"), "w2", Stage::Encode, 50.0, false, t0 + 21)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    let a = store.get(&id("a")).await.expect("get").expect("exists");
    assert_eq!(
        (a.progress, a.thumbnail_ready, a.checkpoints.clone()),
        (40.0, true, vec!["720p".to_owned()])
    );

    // A dead worker's lease runs out and another worker takes over; the old one is locked out.
    store
        .heartbeat(&id("b"), "w2", 30, t0 + 40)
        .await
        .expect("heartbeat");
    let taken = store
        .claim("w3", 30, 3, t0 + 60)
        .await
        .expect("claim")
        .job
        .expect("expired lease");
    assert_eq!((taken.video.as_str(), taken.attempts), ("a", 2));
    assert_eq!(
        taken.checkpoints,
        ["720p"],
        "checkpoints survive the takeover"
    );
    assert!(matches!(
        store.complete(&id("a"), "w1", published(), t0 + 61).await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .complete(&id("a"), "w3", published(), t0 + 61)
        .await
        .expect("complete");
    assert_eq!(
        store
            .get(&id("a"))
            .await
            .expect("get")
            .expect("exists")
            .state,
        JobState::Ready
    );

    // Retry with backoff, then a final failure.
    store
        .fail(
            &id("b"),
            "w2",
            "ffmpeg crashed",
            Failure::RetryAt(t0 + 100),
            t0 + 62,
        )
        .await
        .expect("fail");
    let next = store
        .claim("w2", 30, 3, t0 + 63)
        .await
        .expect("claim")
        .job
        .expect("c is due");
    assert_eq!(next.video.as_str(), "c");
    let bob = store
        .claim("w2", 30, 3, t0 + 63)
        .await
        .expect("claim")
        .job
        .expect("bob1");
    assert_eq!(bob.video.as_str(), "bob1");
    assert!(
        store
            .claim("w2", 30, 3, t0 + 64)
            .await
            .expect("claim")
            .job
            .is_none(),
        "b waits for its backoff"
    );
    let b = store
        .claim("w2", 30, 3, t0 + 100)
        .await
        .expect("claim")
        .job
        .expect("b is due");
    assert_eq!(
        (b.video.as_str(), b.attempts, b.error.as_deref()),
        ("b", 2, Some("ffmpeg crashed"))
    );
    // Watchable while it encodes; only the lease holder may say so.
    assert!(!b.is_playable());
    assert!(matches!(
        store.playable(&id("b"), "w9", true, t0 + 100).await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .playable(&id("b"), "w2", true, t0 + 100)
        .await
        .expect("playable");
    let b = store.get(&id("b")).await.expect("get").expect("exists");
    assert!(b.playable && b.is_playable());
    // An attempt that starts over withdraws the publish, and says so first.
    store
        .playable(&id("b"), "w2", false, t0 + 100)
        .await
        .expect("not playable");
    let b = store.get(&id("b")).await.expect("get").expect("exists");
    assert!(!b.playable && !b.is_playable());
    store
        .playable(&id("b"), "w2", true, t0 + 100)
        .await
        .expect("playable again");
    store
        .fail(&id("b"), "w2", "still broken", Failure::Final, t0 + 101)
        .await
        .expect("fail");
    let b = store.get(&id("b")).await.expect("get").expect("exists");
    assert_eq!(
        (b.state, b.error.as_deref(), b.playable),
        (JobState::Failed, Some("still broken"), false),
        "a failure takes the growing publish back"
    );

    // A revision changes the job's version and nothing else.
    let before = store.get(&id("a")).await.expect("get").expect("exists");
    store.revise(&id("a")).await.expect("revise");
    let after = store.get(&id("a")).await.expect("get").expect("exists");
    assert_eq!(after.revision, before.revision + 1);
    assert_ne!(after.version(), before.version());
    assert_eq!(
        Job {
            revision: before.revision,
            ..after
        },
        before,
        "a revision changes nothing else"
    );

    // Subtitle changes, one holder at a time, and not part of the job's version.
    let before = store.get(&id("a")).await.expect("get").expect("exists");
    let a = &id("a");
    let lease = |holder, step, at| async move {
        let done = store.edit_lease(a, holder, step, at).await;
        done.expect("edit lease")
    };
    let (take, renew) = (LeaseStep::Take(60), LeaseStep::Renew(60));
    assert!(lease("api1", take, t0 + 150).await);
    assert!(!lease("api2", take, t0 + 150).await);
    assert!(lease("api1", take, t0 + 151).await, "the holder renews");
    lease("api2", LeaseStep::GiveBack, t0).await;
    assert!(
        !lease("api2", take, t0 + 152).await,
        "only the holder gives it back"
    );
    let locked = store.get(&id("a")).await.expect("get").expect("exists");
    assert_eq!(
        locked
            .editor
            .as_ref()
            .map(|l| (l.worker.as_str(), l.expires_at)),
        Some(("api1", t0 + 211))
    );
    assert_eq!(locked.version(), before.version());
    assert!(
        lease("api2", take, t0 + 212).await,
        "a holder that died loses it when its lease runs out"
    );
    assert!(lease("api2", renew, t0 + 212).await);
    assert!(!lease("api1", renew, t0 + 212).await);
    lease("api2", LeaseStep::GiveBack, t0).await;
    assert!(
        !lease("api2", renew, t0 + 213).await,
        "a renewal after the lease was given back takes nothing"
    );
    assert!(lease("api1", take, t0 + 213).await);
    lease("api1", LeaseStep::GiveBack, t0).await;
    assert_eq!(
        store.get(&id("a")).await.expect("get").as_ref(),
        Some(&before),
        "given back, nothing of it is left"
    );
    assert!(matches!(
        store
            .edit_lease(&id("nobody"), "api1", LeaseStep::Take(60), t0)
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .edit_lease(&id("nobody"), "api1", LeaseStep::GiveBack, t0)
        .await
        .expect("nothing to give back");
    assert!(store.get(&id("nobody")).await.expect("get").is_none());

    // Retry from scratch (a revision too), delete.
    let failed = store.get(&id("b")).await.expect("get").expect("exists");
    assert!(matches!(
        store
            .requeue(&id("b"), JobState::Registered, t0 + 200)
            .await,
        Err(StoreError::Changed(_))
    ));
    assert_eq!(
        store.get(&id("b")).await.expect("get").as_ref(),
        Some(&failed),
        "a requeue from another state changes nothing"
    );
    store
        .requeue(&id("b"), JobState::Failed, t0 + 200)
        .await
        .expect("requeue");
    let b = store.get(&id("b")).await.expect("get").expect("exists");
    assert_eq!((b.state, b.attempts, b.error), (JobState::Queued, 0, None));
    assert_eq!(b.revision, failed.revision + 1);
    // A retry that saw a job failed, once a worker has it, leaves it be.
    let processing = store.get(&id("c")).await.expect("get").expect("exists");
    assert_eq!(processing.state, JobState::Processing);
    assert!(matches!(
        store.requeue(&id("c"), JobState::Failed, t0 + 202).await,
        Err(StoreError::Changed(_))
    ));
    assert_eq!(
        store.get(&id("c")).await.expect("get"),
        Some(processing),
        "the worker's job was not reset"
    );
    store.delete(&id("bob1")).await.expect("delete");
    assert!(store.get(&id("bob1")).await.expect("get").is_none());
    assert!(matches!(
        store.requeue(&id("bob1"), JobState::Failed, t0).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(
            store.revise(&id("bob1")).await,
            Err(StoreError::NotFound(_))
        ),
        "revising a job that is gone does not create one"
    );
    assert!(store.get(&id("bob1")).await.expect("get").is_none());
}

/// On a store of its own: final outcomes are announced once each, by whoever takes them
/// first, again once a taker's lease runs out, and never after they were announced.
pub async fn announcements(store: &impl JobStore) {
    let t0 = 9_000;
    let due = |at| async move {
        let jobs = store.take_announcements(Pending::Due(10), at, 30).await;
        let jobs = jobs.expect("take");
        jobs.into_iter()
            .map(|j| (j.video.to_string(), j.announce.map(|a| (a.ending, a.at))))
            .collect::<Vec<_>>()
    };
    let claim = |at| async move {
        let claim = store.claim("w", 5, 2, at).await.expect("claim");
        claim.job.expect("a job").video
    };
    // Off: an outcome records no announcement.
    store.announce_outcomes(None);
    store
        .create(Job::new(id("quiet"), "alice", None, Profile::Ladder, t0))
        .await
        .expect("create");
    let quiet = claim(t0).await;
    store
        .complete(&quiet, "w", published(), t0 + 1)
        .await
        .expect("complete");
    assert_eq!(due(t0 + 1000).await, []);

    store.announce_outcomes(Some(60));
    for (n, v) in ["ok", "bad", "doomed", "retried"].into_iter().enumerate() {
        let job = Job::new(id(v), "alice", None, Profile::Ladder, t0 + 1 + n as i64);
        store.create(job).await.expect("create");
    }
    let ok = claim(t0 + 10).await;
    store
        .complete(&ok, "w", published(), t0 + 11)
        .await
        .expect("complete");
    let ready = store.get(&ok).await.expect("get").expect("kept");
    let announced = ready.announce.expect("announced");
    assert_eq!((announced.ending, announced.at), (Ending::Ready, t0 + 11));
    assert_eq!(due(t0 + 70).await, [], "held for its worker");
    // Its worker takes it at once; nobody else gets it while that lease lasts.
    let own = store
        .take_announcements(Pending::Held(&ok), t0 + 12, 30)
        .await
        .expect("take");
    assert_eq!(own.len(), 1);
    assert_eq!(due(t0 + 41).await, []);
    let again = store
        .take_announcements(Pending::Held(&ok), t0 + 13, 30)
        .await;
    assert!(
        again.expect("take").is_empty(),
        "taken, not even by its worker until the lease ends"
    );
    // Its taker starts delivering it 20 s later: the lease runs from then, if the record still
    // holds that announcement.
    let other = Announcement {
        nonce: announced.nonce.wrapping_add(1),
        ..announced
    };
    let renewed = store.take_announcements(Pending::Taken(&ok, &other), t0 + 32, 30);
    assert!(
        renewed.await.expect("renew").is_empty(),
        "another outcome's"
    );
    let renewed = store.take_announcements(Pending::Taken(&ok, &announced), t0 + 32, 30);
    assert_eq!(renewed.await.expect("renew").len(), 1);
    assert_eq!(due(t0 + 61).await, []);
    // Its worker died with it: due again once the lease ran out, to anyone.
    assert_eq!(
        due(t0 + 63).await,
        [("ok".to_owned(), Some((Ending::Ready, t0 + 11)))]
    );
    // That taker's delivery is cut short: given back (a lease of 0), due at once.
    let given = store.take_announcements(Pending::Taken(&ok, &announced), t0 + 64, 0);
    assert_eq!(given.await.expect("give back").len(), 1);
    assert_eq!(
        due(t0 + 64).await,
        [("ok".to_owned(), Some((Ending::Ready, t0 + 11)))]
    );
    // A final failure; a retried one is no outcome yet.
    let bad = claim(t0 + 50).await;
    store
        .fail(&bad, "w", "broken", Failure::Final, t0 + 51)
        .await
        .expect("fail");
    // Its workers die twice: failed by a claim, and announced all the same.
    let doomed = claim(t0 + 52).await;
    assert_eq!(doomed.as_str(), "doomed");
    assert_eq!(claim(t0 + 58).await, doomed);
    let retried = claim(t0 + 64).await;
    assert_eq!(retried.as_str(), "retried");
    store
        .fail(&retried, "w", "again", Failure::RetryAt(t0 + 70), t0 + 65)
        .await
        .expect("fail");
    let mut taken = due(t0 + 200).await;
    taken.sort();
    assert_eq!(
        taken,
        [
            ("bad".to_owned(), Some((Ending::Failed, t0 + 51))),
            ("doomed".to_owned(), Some((Ending::Failed, t0 + 64))),
            ("ok".to_owned(), Some((Ending::Ready, t0 + 11))),
        ]
    );
    // Announced: gone for good. A stale announcement clears nothing newer.
    store.announced(&ok, &announced).await.expect("announced");
    let stale = Announcement {
        at: t0,
        ..announced
    };
    store.announced(&bad, &stale).await.expect("stale");
    let mut taken = due(t0 + 400).await;
    taken.sort();
    assert_eq!(
        taken.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
        ["bad", "doomed"]
    );
    assert_eq!(
        store.get(&ok).await.expect("get").expect("kept").announce,
        None
    );
    // Requeued or deleted: nothing left to announce.
    store
        .requeue(&bad, JobState::Failed, t0 + 401)
        .await
        .expect("requeue");
    store.delete(&doomed).await.expect("delete");
    store.announced(&doomed, &announced).await.expect("gone");
    assert_eq!(due(t0 + 1000).await, []);
    assert!(store
        .take_announcements(Pending::Taken(&ok, &announced), t0 + 1000, 30)
        .await
        .expect("take")
        .is_empty());
}

/// On a store of its own: a job whose workers all died running it ends failed once its
/// attempts are spent, and the next job is claimed in its place.
pub async fn workers_that_die_every_time(store: &impl JobStore) {
    let t0 = 5_000;
    for (n, v) in ["doomed", "next"].into_iter().enumerate() {
        let job = Job::new(id(v), "alice", None, Profile::Ladder, t0 + n as i64);
        store.create(job).await.expect("create");
    }
    for attempt in 1..=2 {
        let at = t0 + 10 * attempt;
        let job = store
            .claim("w", 5, 2, at)
            .await
            .expect("claim")
            .job
            .expect("a job");
        assert_eq!(
            (job.video.as_str(), job.attempts),
            ("doomed", attempt as u32)
        );
    }
    // Its second lease ran out too: no third attempt, and the claimer is told.
    let claim = store.claim("w", 5, 2, t0 + 40).await.expect("claim");
    let next = claim.job.expect("a job");
    assert_eq!((next.video.as_str(), next.attempts), ("next", 1));
    let told: Vec<_> = claim
        .worn_out
        .iter()
        .map(|j| (j.video.as_str(), j.state))
        .collect();
    assert_eq!(told, [("doomed", JobState::Failed)]);
    let doomed = store.get(&id("doomed")).await.expect("get").expect("kept");
    assert_eq!(
        (doomed.state, doomed.attempts, doomed.error.as_deref()),
        (JobState::Failed, 2, Some(crate::jobs::model::WORKERS_DIED))
    );
    assert!(doomed.lease.is_none());
    assert!(store
        .claim("w", 5, 2, t0 + 41)
        .await
        .expect("claim")
        .job
        .is_none());
}
