//! Publishing while encoding, with real ffmpeg: what is visible while the ladder encodes is
//! always whole (every listed segment is there and decrypts with its published key and its IV),
//! and the finished video is published exactly as the all-at-once path publishes it.

mod support;

use std::path::Path;
use std::sync::Mutex;

use origin::transcode::encoder::EncoderPreference;
use origin::transcode::encrypt::{decrypt_segment, ContentKey};
use origin::transcode::ffmpeg::MASTER;
use origin::transcode::input::Source;
use origin::transcode::pipeline::{Events, Job, Profile};
use origin::transcode::playlist;
use origin::transcode::progress::Stage;
use shared::media::{Layout, VideoId};
use support::TestEnv;

/// Checks the published tree of `video` each time a growing playlist may have changed (every
/// progress report), and records what it saw.
struct Watcher {
    layout: Layout,
    video: VideoId,
    seen: Mutex<Seen>,
}

#[derive(Default, Debug)]
struct Seen {
    playable: bool,
    /// (rung, segments listed) of every EVENT playlist looked at.
    event_playlists: Vec<(String, usize)>,
    problems: Vec<String>,
}

impl Watcher {
    fn check(&self) {
        let dir = self.layout.video_dir(&self.video);
        let Ok(master) = std::fs::read_to_string(dir.join(MASTER)) else {
            return;
        };
        let mut seen = self.seen.lock().expect("lock");
        for uri in master
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let rung = uri.split('/').next().unwrap_or_default().to_owned();
            let Ok(text) = std::fs::read_to_string(dir.join(uri)) else {
                seen.problems
                    .push(format!("the master lists {uri}, which is missing"));
                continue;
            };
            if !playlist::is_complete(&text) {
                seen.event_playlists
                    .push((rung.clone(), playlist::segments(&text).len()));
            }
            let Ok(raw) = std::fs::read(self.layout.key_file(&self.video, &rung)) else {
                seen.problems
                    .push(format!("{rung}: segments published before the key"));
                continue;
            };
            let key = ContentKey(raw.try_into().expect("16-byte key"));
            for (i, seg) in playlist::segments(&text).iter().enumerate() {
                let whole = std::fs::read(dir.join(&rung).join(&seg.uri))
                    .ok()
                    .and_then(|c| decrypt_segment(&key, i as u64, &c))
                    .is_some_and(|plain| {
                        plain.len() % support::TS_PACKET == 0
                            && support::opens_with_valid_psi(&plain)
                    });
                if !whole {
                    seen.problems
                        .push(format!("{rung}/{}: listed but not whole", seg.uri));
                }
            }
        }
    }
}

impl Events for Watcher {
    fn stage(&self, _: Stage) {}
    fn progress(&self, _: f64) {
        self.check();
    }
    fn thumbnail_ready(&self) {}
    fn playable(&self) {
        self.seen.lock().expect("lock").playable = true;
        self.check();
    }
}

fn job<'a>(video: &'a VideoId, source: &'a Path) -> Job<'a> {
    Job {
        video,
        source: Source::File(source),
        profile: Profile::Ladder,
        encoder: EncoderPreference::Cpu,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_playlists_only_ever_show_whole_segments() {
    let env = TestEnv::new();
    let video = VideoId::random();
    let source = support::clips().long.clone();
    let watcher = Watcher {
        layout: env.layout.clone(),
        video: video.clone(),
        seen: Mutex::default(),
    };
    let (_tx, mut cancel) = shared::shutdown::channel();
    let published = env
        .run(&job(&video, &source), &watcher, &mut cancel)
        .await
        .expect("published");
    let seen = watcher.seen.into_inner().expect("lock");
    assert!(seen.playable, "never reported playable");
    assert!(seen.problems.is_empty(), "{:#?}", seen.problems);
    let partial = seen
        .event_playlists
        .iter()
        .filter(|(rung, n)| {
            let total = published
                .rungs
                .iter()
                .find(|r| &r.name == rung)
                .map(|r| r.segments);
            Some(*n) < total
        })
        .count();
    assert!(
        partial > 0,
        "the encode was never seen growing: {:?}",
        seen.event_playlists
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finished_video_is_published_as_the_all_at_once_path_publishes_it() {
    let source = support::clips().long.clone();
    let (growing, all_at_once) = (TestEnv::new(), TestEnv::all_at_once());
    let video = VideoId::random();
    let (_a, mut cancel_a) = shared::shutdown::channel();
    let (_b, mut cancel_b) = shared::shutdown::channel();
    let a = growing
        .run(
            &job(&video, &source),
            &support::Recorder::default(),
            &mut cancel_a,
        )
        .await
        .expect("published while encoding");
    let b = all_at_once
        .run(
            &job(&video, &source),
            &support::Recorder::default(),
            &mut cancel_b,
        )
        .await
        .expect("published at once");
    let names = |p: &origin::transcode::pipeline::Published| {
        p.rungs
            .iter()
            .map(|r| (r.name.clone(), r.segments))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    for env in [&growing, &all_at_once] {
        assert!(
            std::fs::read_dir(env.layout.tmp_root())
                .expect("tmp")
                .next()
                .is_none(),
            "work directories cleaned up"
        );
    }
    let (da, db) = (
        growing.layout.video_dir(&video),
        all_at_once.layout.video_dir(&video),
    );
    for rung in &a.rungs {
        let read = |dir: &Path| {
            std::fs::read_to_string(dir.join(&rung.name).join("index.m3u8")).expect("playlist")
        };
        let (pa, pb) = (read(&da), read(&db));
        // Same segment boundaries and durations, same key URI, same IV rule (sequence 0..).
        assert_eq!(pa, pb, "{}: the playlists differ", rung.name);
        assert!(pa.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && pa.ends_with("#EXT-X-ENDLIST\n"));
        for (env, dir) in [(&growing, &da), (&all_at_once, &db)] {
            let raw = std::fs::read(env.layout.key_file(&video, &rung.name)).expect("key");
            let key = ContentKey(raw.try_into().expect("16 bytes"));
            for (i, seg) in playlist::segments(&pa).iter().enumerate() {
                let cipher = std::fs::read(dir.join(&rung.name).join(&seg.uri)).expect("segment");
                let plain = decrypt_segment(&key, i as u64, &cipher).expect("IV = sequence");
                assert!(
                    support::opens_with_valid_psi(&plain),
                    "{}: segment {i} with IV {i}",
                    rung.name
                );
                // CBC with a neighbour's IV garbles the first block, which holds that table.
                let wrong = decrypt_segment(&key, i as u64 + 1, &cipher);
                assert!(
                    wrong.is_none_or(|w| !support::opens_with_valid_psi(&w)),
                    "{}: segment {i} also opens with IV {}",
                    rung.name,
                    i + 1
                );
            }
        }
    }
    let master = |dir: &Path| std::fs::read_to_string(dir.join("master.m3u8")).expect("master");
    let strip = |m: String| -> Vec<String> {
        // Measured bandwidths depend on the bytes x264 wrote; the rest must match.
        m.lines()
            .map(|l| {
                l.split(',')
                    .filter(|f| !f.contains("BANDWIDTH="))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    assert_eq!(strip(master(&da)), strip(master(&db)));
}
