//! Several machines sharing nothing but Redis and a bucket: `origin serve` (the API only) and
//! `origin worker` processes on different data directories, SeaweedFS as the media store
//! (`[storage] backend = "s3"`), an edge with an empty disk cache pulling from the bucket with
//! read-only credentials, and a second edge using the first as its shield.
//!
//! 1. A video uploaded to the API is encoded by a worker on another disk (ffmpeg reading the
//!    upload through a presigned URL), published into the
//!    bucket (keys under `private/`, never under the edge's `hls/` prefix; the marker last;
//!    the resume checkpoints gone), and ffmpeg plays every rung through the edge; the shield
//!    serves the same bytes. The API's own disk never held the media. With the bucket stopped,
//!    segments the edge pulled are still served and the others answer 502 until it is back.
//!    A delete leaves no object of the video in the bucket.
//! 2. A worker killed mid-encode is taken over by a worker on a third disk, which resumes from
//!    the segments the dead one saved in the bucket (logged with the segment it resumed at),
//!    keeps what the dead one published unchanged (same ETag and time: nothing published
//!    twice), and the video plays through the edge.
//! 3. Existing files are imported from a bucket prefix; a playlist named `.mp4` is refused.
//! 4. Every audio track and subtitle track of an upload becomes a rendition in the bucket that
//!    ffmpeg decodes in full through the edge; a subtitle file added on the API machine joins
//!    the bucket and the master, and leaves both when deleted; uploaded again, it gets a new
//!    number, so the edge never serves the deleted file's cues; files added and deleted at
//!    once on two API machines each keep their own number and place in the master.
//! 5. A worker stopped while its webhook receiver fails hands the undelivered event, through
//!    Redis, to another worker, which sends it with the same id.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::clips::{multitrack_clip, Tracks};
use e2e::content::world_readable_tempdir;
use e2e::origin::{
    add_subtitles_at_once, data_dir, delete_subtitles_at_once, ffmpeg_audio_seconds, generate_clip,
    json, mint_token, names_subtitles, play_with_ffmpeg, JWT_SECRET,
};
use e2e::process::{self, Signal};
use e2e::seaweed::{self, ADMIN, READER};
use e2e::webhook::Receiver;
use e2e::{
    wait_until, Edge, EdgeOptions, Origin, OriginOptions, OriginWorker, RedisServer, Request,
    SeaweedFs, WorkerOptions,
};
use shared::objects::Objects;

const BUCKET: &str = "media";
const PREFIX: &str = "prod";
const PLAY_TIMEOUT: Duration = Duration::from_secs(120);

fn transcode_config(segment_secs: u32, preset: &str) -> String {
    format!(
        "[transcode]\nworkers = 0\nsegment_secs = {segment_secs}\nx264_preset = \"{preset}\"\n\
         nvenc = \"off\"\nlease_secs = 3\nmax_attempts = 5\n"
    )
}

/// The processes every test here runs.
struct Cluster {
    weed: SeaweedFs,
    redis: RedisServer,
    edge: Edge,
    origin: Origin,
    /// The bucket as the origin sees it.
    objects: Objects,
    /// `[transcode]` of every origin process.
    transcode: String,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start(transcode: String) -> Self {
        let weed = SeaweedFs::start();
        weed.create_bucket(BUCKET);
        let redis = RedisServer::start();
        // The edge's cache: a directory of its own, empty.
        let edge_dir = world_readable_tempdir("machines-edge-");
        let mut edge = EdgeOptions::new(edge_dir.path()).config(
            "[upstream]\nkind = \"s3\"\nconnect_timeout_secs = 2\ntimeout_secs = 10\n\
             playlist_ttl_secs = 1\n",
        );
        // The edge reads only the published tree, with an identity that cannot write.
        for (name, value) in weed.env(BUCKET, &format!("{PREFIX}/hls"), READER) {
            edge = edge.env(&name, &value);
        }
        let edge = Edge::start(edge);
        let (api_dir, api_data) = data_dir("machines-api-");
        let mut options = OriginOptions::new(&api_data, &format!("http://{}", edge.public_addr))
            .config(&transcode);
        for (name, value) in storage_env(&weed, &redis) {
            options = options.env(&name, &value);
        }
        let origin = Origin::start(options);
        Self {
            objects: weed.objects(BUCKET, PREFIX, ADMIN),
            weed,
            redis,
            edge,
            origin,
            transcode,
            _dirs: vec![edge_dir, api_dir],
        }
    }

    /// Another API machine (`origin serve`) on a data directory of its own.
    fn api(&mut self, prefix: &str) -> Origin {
        let (dir, data) = data_dir(prefix);
        let edge = format!("http://{}", self.edge.public_addr);
        let mut options = OriginOptions::new(&data, &edge).config(&self.transcode);
        for (name, value) in storage_env(&self.weed, &self.redis) {
            options = options.env(&name, &value);
        }
        self._dirs.push(dir);
        Origin::start(options)
    }

    /// A worker on a data directory of its own, with `env` on top of the cluster's.
    fn worker(&mut self, prefix: &str, env: &[(&str, &str)]) -> OriginWorker {
        let (dir, data) = data_dir(prefix);
        let mut options = WorkerOptions::new(&data).config(&self.transcode);
        for (name, value) in storage_env(&self.weed, &self.redis) {
            options = options.env(&name, &value);
        }
        for (name, value) in env {
            options = options.env(name, value);
        }
        self._dirs.push(dir);
        OriginWorker::start(options)
    }

    fn list(&self, dir: &str) -> Vec<(String, u64, Option<String>, String)> {
        seaweed::list(&self.objects, dir)
    }

    fn upload(&self, token: &str, clip: &Path) -> String {
        let r = self
            .origin
            .upload(token, &std::fs::read(clip).expect("clip"), "video/mp4");
        assert_eq!(r.status, 202, "{}\n{}", r.text(), self.origin.diagnostics());
        json(&r)["id"].as_str().expect("id").to_owned()
    }

    fn status(&self, token: &str, id: &str) -> String {
        json(&self.origin.get_as(token, &format!("/api/videos/{id}")))["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_ready(&self, token: &str, id: &str, timeout: Duration, workers: &[&OriginWorker]) {
        let ready = wait_until(timeout, || {
            let s = self.status(token, id);
            assert_ne!(s, "failed", "{id} failed\n{}", self.diagnostics(workers));
            s == "ready"
        });
        assert!(ready, "{id} not ready\n{}", self.diagnostics(workers));
    }

    /// The signed master URL of `id` on the origin.
    fn master_url(&self, token: &str, id: &str) -> String {
        let info = self
            .origin
            .get_as(token, &format!("/api/videos/{id}/stream-info"));
        assert_eq!(info.status, 200, "{}", info.text());
        let manifest = json(&info)["manifest_url"]
            .as_str()
            .expect("manifest_url")
            .to_owned();
        format!("{}{manifest}", self.origin.base_url())
    }

    fn diagnostics(&self, workers: &[&OriginWorker]) -> String {
        let mut out = format!("{}\n{}", self.origin.diagnostics(), self.edge.diagnostics());
        for w in workers {
            out.push_str(&format!("\n{}", w.diagnostics()));
        }
        out
    }
}

/// What an origin process needs for the shared job store and the bucket.
fn storage_env(weed: &SeaweedFs, redis: &RedisServer) -> Vec<(String, String)> {
    let mut env = weed.env(BUCKET, PREFIX, ADMIN);
    env.push(("STORAGE_BACKEND".into(), "s3".into()));
    env.push(("REDIS_URL".into(), redis.url()));
    env
}

fn names(listed: &[(String, u64, Option<String>, String)]) -> Vec<&str> {
    listed.iter().map(|(n, ..)| n.as_str()).collect()
}

/// The signed segment URLs of the first variant behind `master_url`, as targets on `edge`.
fn segment_targets(master_url: &str, edge: &Edge) -> Vec<String> {
    let get = |url: &str| {
        let out = process::run_bounded(
            std::process::Command::new("curl").args(["-sf", url]),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "curl {url}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let master = get(master_url);
    let variant = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a variant");
    let base = master_url.split("master.m3u8").next().unwrap_or_default();
    let host = edge.public_addr.to_string();
    let targets: Vec<String> = get(&format!("{base}{variant}"))
        .lines()
        .filter_map(|l| l.split_once(&host).map(|(_, t)| t.to_owned()))
        .collect();
    assert!(targets.len() >= 2, "segments on the edge: {targets:?}");
    targets
}

/// `origin check` with the cluster's environment, `overrides` on top: (success, stdout).
fn origin_check(c: &Cluster, overrides: &[(&str, &str)]) -> (bool, String) {
    let (_dir, data) = data_dir("machines-check-");
    let mut command = std::process::Command::new(e2e::origin::origin_binary());
    command.arg("--data").arg(&data).arg("check");
    for (name, value) in storage_env(&c.weed, &c.redis) {
        command.env(name, value);
    }
    for (name, value) in overrides {
        command.env(name, value);
    }
    let out = process::run_bounded(&mut command, Duration::from_secs(60));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn machines_share_only_the_bucket_and_redis() {
    let mut c = Cluster::start(transcode_config(2, "ultrafast"));
    // `origin check` names what works and exactly what does not.
    let (ok, out) = origin_check(&c, &[]);
    assert!(
        ok && out.contains("ok   media bucket") && out.contains("ok   job store"),
        "{out}"
    );
    let (ok, out) = origin_check(
        &c,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")],
    );
    assert!(!ok && out.contains("FAIL media bucket"), "{out}");
    let (ok, out) = origin_check(&c, &[("S3_BUCKET", "no-such-bucket")]);
    assert!(!ok && out.to_lowercase().contains("bucket"), "{out}");

    // This worker reads the upload through a presigned URL; the one below downloads it.
    let worker = c.worker(
        "machines-worker-",
        &[("STORAGE_SOURCE_ACCESS", "presigned")],
    );
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let clips = tempfile::tempdir().expect("tmp");
    let clip = clips.path().join("clip.mp4");
    generate_clip(&clip, 8, 640, 360);
    let id = c.upload(&alice, &clip);
    c.wait_ready(&alice, &id, Duration::from_secs(180), &[&worker]);

    // Published into the bucket: media under hls/, keys and everything else under private/,
    // the marker, and no checkpoint left.
    let published = c.list(&format!("hls/{id}"));
    let files = names(&published);
    assert!(
        files.contains(&format!("hls/{id}/master.m3u8").as_str()),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("/index.m3u8")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.ends_with(".ts")), "{files:?}");
    assert!(
        !files.iter().any(|f| f.ends_with(".key")),
        "a key in the edge's prefix: {files:?}"
    );
    let keys = c.list(&format!("private/keys/{id}"));
    assert!(
        !keys.is_empty() && keys.iter().all(|(_, size, ..)| *size == 16),
        "{keys:?}"
    );
    assert_eq!(
        names(&c.list("private/published")),
        [format!("private/published/{id}.json").as_str()]
    );
    assert_eq!(
        names(&c.list("private/sources")),
        [format!("private/sources/{id}").as_str()]
    );
    assert!(
        c.list(&format!("private/work/{id}")).is_empty(),
        "checkpoints removed"
    );
    // The worker never held the upload: ffmpeg read it from the bucket.
    assert!(
        worker.wait_for_log(&["reading the upload from the bucket", &id], Duration::ZERO),
        "{}",
        worker.diagnostics()
    );
    // The API's disk never held the media: it reads playlists and keys from the bucket.
    assert!(!c.origin.data.join("hls").join(&id).exists());
    assert!(!c.origin.data.join("sources").join(&id).exists());

    // The bucket goes away: what the edge pulled is still served, the rest is a 502 until the
    // bucket is back.
    let master = c.master_url(&alice, &id);
    let segments = segment_targets(&master, &c.edge);
    let first = c.edge.public(Request::get(segments[0].clone()));
    assert_eq!(first.status, 200, "{}", c.edge.diagnostics());
    c.weed.stop();
    let cached = c.edge.public(Request::get(segments[0].clone()));
    assert!(
        cached.status == 200 && cached.body == first.body,
        "cached: {}",
        cached.status
    );
    let cold = c.edge.public(Request::get(segments[1].clone()));
    assert_eq!(cold.status, 502, "{}", cold.text());
    assert!(cold.text().contains("\"error\""), "{}", cold.text());
    c.weed.start_again();
    let back = wait_until(Duration::from_secs(30), || {
        c.edge.public(Request::get(segments[1].clone())).status == 200
    });
    assert!(back, "the edge did not recover\n{}", c.edge.diagnostics());

    // ffmpeg plays every rung through the edge, which pulled from the bucket.
    let played = play_with_ffmpeg(&master, PLAY_TIMEOUT);
    assert!(
        played.status.success(),
        "ffmpeg: {}\n{}",
        String::from_utf8_lossy(&played.stderr),
        c.diagnostics(&[&worker])
    );
    let pulled =
        e2e::metrics::value(&c.edge.metrics(), "edge_upstream_requests_total", &[]).unwrap_or(0.0);
    assert!(
        pulled > 0.0,
        "the edge pulled nothing\n{}",
        c.edge.diagnostics()
    );

    // A shield: a second edge whose upstream is the first gives the same bytes.
    let shield_dir = world_readable_tempdir("machines-shield-");
    let shield = Edge::start(EdgeOptions::new(shield_dir.path()).config(&format!(
        "[upstream]\nkind = \"http\"\nurl = \"http://{}/hls/\"\n",
        c.edge.public_addr
    )));
    let target = segments[0].clone();
    let direct = c.edge.public(Request::get(target.clone()));
    let shielded = shield.public(Request::get(target));
    assert_eq!(direct.status, 200);
    assert_eq!(shielded.status, 200, "{}", shield.diagnostics());
    assert!(direct.body == shielded.body && !direct.body.is_empty());

    // A delete leaves nothing of the video in the bucket.
    let deleted = c.origin.delete_as(&alice, &format!("/api/videos/{id}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for dir in ["hls", "private"] {
        let left: Vec<String> = c
            .list(dir)
            .into_iter()
            .map(|(n, ..)| n)
            .filter(|n| n.contains(&id))
            .collect();
        assert!(left.is_empty(), "left after delete: {left:?}");
    }
}

#[test]
fn a_worker_on_another_disk_resumes_from_the_bucket() {
    // Slow enough to be caught half-way on any machine.
    let mut c = Cluster::start(transcode_config(1, "slow"));
    let mut first = c.worker("machines-first-", &[]);
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let clips = tempfile::tempdir().expect("tmp");
    let clip = clips.path().join("clip.mp4");
    generate_clip(&clip, 12, 1280, 720);
    let id = c.upload(&alice, &clip);

    // Well into the encode: the video is playable and every rung has saved 2+ segments.
    let work = format!("private/work/{id}");
    let mut saved = 0;
    let into_it = wait_until(Duration::from_secs(120), || {
        let mut per_rung = std::collections::BTreeMap::<String, u32>::new();
        for (name, ..) in c.list(&work) {
            let parts: Vec<&str> = name.split('/').collect();
            // private/work/<id>/<attempt>/hls/<rung>/segment_NNN.ts
            if parts.len() == 7 && parts[6].ends_with(".ts") {
                *per_rung.entry(parts[5].to_owned()).or_default() += 1;
            }
        }
        let master_name = format!("hls/{id}/master.m3u8");
        let master = c
            .list(&format!("hls/{id}"))
            .iter()
            .any(|(n, ..)| *n == master_name);
        saved = per_rung.values().copied().min().unwrap_or(0);
        master && per_rung.len() >= 2 && saved >= 2
    });
    assert!(
        into_it,
        "the encode never got going: saved {:?}\n{}",
        names(&c.list(&work)),
        c.diagnostics(&[&first])
    );
    let before: Vec<_> = c
        .list(&format!("hls/{id}"))
        .into_iter()
        .filter(|(n, ..)| n.ends_with("segment_000.ts"))
        .collect();
    assert!(!before.is_empty());

    // The first machine dies with its ffmpeg; another takes over on its own disk.
    let children = process::children_of(first.pid());
    first.kill9();
    for pid in children {
        process::try_signal(pid, Signal::Kill);
    }
    let second = c.worker("machines-second-", &[]);
    c.wait_ready(&alice, &id, Duration::from_secs(240), &[&second]);
    let started = Instant::now();
    let resumed_at = second
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("resuming the encode after an earlier attempt") && l.contains(&id))
        .find_map(|l| {
            l.split("segment=")
                .nth(1)?
                .split(|ch: char| !ch.is_ascii_digit())
                .next()?
                .parse::<u32>()
                .ok()
        });
    let resumed_at = resumed_at
        .unwrap_or_else(|| panic!("the second worker did not resume\n{}", second.diagnostics()));
    assert!(
        resumed_at >= saved,
        "resumed at segment {resumed_at}, but {saved} were saved before the kill"
    );
    // What the dead worker published stays as it was: nothing published twice.
    let after: Vec<_> = c
        .list(&format!("hls/{id}"))
        .into_iter()
        .filter(|(n, ..)| n.ends_with("segment_000.ts"))
        .collect();
    assert_eq!(before, after, "published segments were replaced");
    assert!(c.list(&work).is_empty(), "checkpoints removed");

    let played = play_with_ffmpeg(&c.master_url(&alice, &id), PLAY_TIMEOUT);
    assert!(
        played.status.success(),
        "ffmpeg: {}\n{}",
        String::from_utf8_lossy(&played.stderr),
        c.diagnostics(&[&second])
    );
    eprintln!(
        "resumed at segment {resumed_at} ({saved} saved when killed); checked in {:?}",
        started.elapsed()
    );
}

#[test]
fn existing_files_are_imported_from_a_bucket_prefix() {
    let config = format!(
        "{}[migration]\nimport_prefix = \"legacy\"\nowner = \"alice\"\n",
        transcode_config(2, "ultrafast")
    );
    let mut c = Cluster::start(config);
    let worker = c.worker("machines-import-", &[]);
    let admin = mint_token(JWT_SECRET, "root", true, "1h");
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let clips = tempfile::tempdir().expect("tmp");
    let clip = clips.path().join("clip.mp4");
    generate_clip(&clip, 4, 320, 240);
    seaweed::upload(
        &c.objects,
        &[
            (
                "legacy/holiday.mp4".to_owned(),
                std::fs::read(&clip).expect("clip"),
            ),
            // A playlist named like a video: refused by the same probe as an upload.
            (
                "legacy/sneaky.mp4".to_owned(),
                b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n".to_vec(),
            ),
        ],
    );
    let status = |c: &Cluster| {
        json(&c.origin.request(
            Request::get("/api/admin/migration").header("Authorization", format!("Bearer {admin}")),
        ))
    };
    // The run at start found nothing yet; this one finds both.
    assert!(wait_until(Duration::from_secs(20), || status(&c)
        ["is_running"]
        == false));
    let started = c.origin.request(
        Request::get("/api/admin/migration")
            .method("POST")
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(started.status, 202, "{}", started.text());
    assert!(wait_until(Duration::from_secs(60), || status(&c)
        ["is_running"]
        == false));
    let done = status(&c);
    assert_eq!(done["total"], 2, "{done}");
    assert_eq!(done["completed"], 2, "{done}");
    let refused = done["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{done}");
    assert_eq!(refused[0]["file"], "legacy/sneaky.mp4", "{done}");
    assert!(
        done["errors"].as_array().is_some_and(Vec::is_empty),
        "{done}"
    );

    // The imported video belongs to alice, is processed by a worker and plays.
    let listed = json(&c.origin.get_as(&alice, "/api/videos"));
    let id = listed
        .as_array()
        .or_else(|| listed["videos"].as_array())
        .and_then(|v| v.first())
        .and_then(|v| v["id"].as_str())
        .unwrap_or_else(|| panic!("no imported video: {listed}"))
        .to_owned();
    c.wait_ready(&alice, &id, Duration::from_secs(120), &[&worker]);
    assert!(play_with_ffmpeg(&c.master_url(&alice, &id), PLAY_TIMEOUT)
        .status
        .success());
    // Copied, not moved: the operator's objects stay.
    assert_eq!(names(&c.list("legacy")).len(), 2);
    assert_eq!(
        names(&c.list("private/sources")),
        [format!("private/sources/{id}").as_str()]
    );
}

#[test]
fn every_track_reaches_players_from_the_bucket() {
    let mut c = Cluster::start(transcode_config(2, "ultrafast"));
    let worker = c.worker("machines-tracks-", &[]);
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let scratch = tempfile::tempdir().expect("tmp");
    let clip = scratch.path().join("film.mkv");
    const SECS: u32 = 4;
    multitrack_clip(
        &clip,
        SECS,
        &Tracks {
            audio: &[("eng", None), ("fra", Some("Fran\u{e7}ais"))],
            subtitles: &[("eng", &[(1.0, 2.0, "Hello")])],
        },
    );
    let r = c.origin.upload(
        &alice,
        &std::fs::read(&clip).expect("clip"),
        "video/x-matroska",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json(&r)["id"].as_str().expect("id").to_owned();
    c.wait_ready(&alice, &id, Duration::from_secs(180), &[&worker]);

    // Each audio track and the subtitle track is a rendition in the bucket, named in the master.
    let master_url = c.master_url(&alice, &id);
    let master = c
        .origin
        .get(master_url.trim_start_matches(&c.origin.base_url()))
        .text();
    let uri = |line: &str| {
        line.split("URI=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|u| u.split('?').next().unwrap_or(u).to_owned())
    };
    let audio: Vec<String> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .filter_map(uri)
        .collect();
    let subtitles: Vec<String> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .filter_map(uri)
        .collect();
    assert_eq!((audio.len(), subtitles.len()), (2, 1), "{master}");
    assert!(master.contains("LANGUAGE=\"fra\""), "{master}");
    let published = c.list(&format!("hls/{id}"));
    let files = names(&published);
    for playlist in audio.iter().chain(&subtitles) {
        let key = format!("hls/{id}/{playlist}");
        assert!(files.contains(&key.as_str()), "{key} not in {files:?}");
    }

    // ffmpeg decodes both audio renditions in full through the edge, which pulls them.
    for n in 0..2 {
        let seconds = ffmpeg_audio_seconds(&master_url, &format!("0:a:{n}"), scratch.path());
        assert!(
            (seconds - f64::from(SECS)).abs() < 0.15,
            "audio {n}: {seconds} s\n{}",
            c.diagnostics(&[&worker])
        );
    }

    // A subtitle file added on the API machine goes into the bucket and the master; deleted,
    // it leaves both.
    let cue = |text: &str| format!("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{text}\n");
    let added = c.origin.add_subtitle(
        &alice,
        &id,
        "lang=deu&name=Deutsch",
        cue("Hallo").as_bytes(),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let sub = json(&added)["id"].as_str().expect("id").to_owned();
    let master_path = master_url
        .trim_start_matches(&c.origin.base_url())
        .to_owned();
    // The master was read before: what is kept of it in memory must not hide the change.
    let revised = c.origin.get(&master_path).text();
    let added_uri = revised
        .lines()
        .find(|l| l.contains("LANGUAGE=\"deu\""))
        .and_then(|l| l.split("URI=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the master does not name the new subtitle:\n{revised}"));
    let hls_dir = master_path
        .split('?')
        .next()
        .and_then(|p| p.rsplit_once('/'))
        .map(|(dir, _)| dir.to_owned())
        .expect("the master's directory");
    let added_playlist = format!("{hls_dir}/{added_uri}");
    for _ in 0..2 {
        let got = c.origin.get(&added_playlist);
        assert_eq!(got.status, 200, "{added_playlist}: {}", got.text());
    }
    // Pulled by the edge, which keeps it on its disk.
    let served = subtitle_through_edge(&c, &master_path, "deu");
    assert!(served.contains("Hallo"), "{served}");
    let in_bucket = |c: &Cluster| {
        c.list(&format!("hls/{id}/{sub}"))
            .iter()
            .any(|(n, ..)| n.ends_with(".vtt") || n.ends_with(".m3u8"))
    };
    assert!(in_bucket(&c), "the subtitle is not in the bucket");
    let deleted = c
        .origin
        .delete_as(&alice, &format!("/api/videos/{id}/subtitles/{sub}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(!c.origin.get(&master_path).text().contains("Deutsch"));
    let gone = c.origin.get(&added_playlist);
    assert_eq!(
        gone.status,
        404,
        "a deleted subtitle's playlist is still served: {}",
        gone.text()
    );
    assert!(
        !in_bucket(&c),
        "the deleted subtitle is still in the bucket"
    );

    // Uploaded again, corrected, it gets a new number: the edge (and browsers, for a day) may
    // still hold the deleted file's segments under the old one.
    let again = c.origin.add_subtitle(
        &alice,
        &id,
        "lang=deu&name=Deutsch",
        cue("Servus").as_bytes(),
    );
    assert_eq!(again.status, 201, "{}", again.text());
    let renumbered = json(&again)["id"].as_str().expect("id").to_owned();
    assert_ne!(renumbered, sub, "a deleted file's number was given again");
    let served = subtitle_through_edge(&c, &master_path, "deu");
    assert!(
        served.contains("Servus") && !served.contains("Hallo"),
        "the edge serves the deleted file's cues: {served}"
    );

    // Two API machines change the video's subtitles at once: each file gets its own number and
    // its place in the master, then all leave it.
    let second = c.api("machines-api2-");
    let apis = [&c.origin, &second];
    const LANGUAGES: [&str; 6] = ["nld", "swe", "pol", "fin", "dan", "ces"];
    let (video, owner, file) = (id.as_str(), alice.as_str(), cue("Hej"));
    let numbers = add_subtitles_at_once(&apis, owner, video, &LANGUAGES, file.as_bytes());
    for api in apis {
        let master = api.get(&master_path).text();
        for lang in LANGUAGES {
            assert!(
                names_subtitles(&master, lang),
                "{lang} is missing:\n{master}"
            );
        }
    }
    delete_subtitles_at_once(&apis, owner, video, &numbers);
    for api in apis {
        let master = api.get(&master_path).text();
        for lang in LANGUAGES {
            assert!(
                !names_subtitles(&master, lang),
                "{lang} is still there:\n{master}"
            );
        }
    }
}

/// The cues of the `lang` subtitle rendition as the edge serves them, found through the master
/// at `master_path` on the origin.
fn subtitle_through_edge(c: &Cluster, master_path: &str, lang: &str) -> String {
    let master = c.origin.get(master_path).text();
    let uri = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .find(|l| l.contains(&format!("LANGUAGE=\"{lang}\"")))
        .and_then(|l| l.split("URI=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {lang} subtitles in:\n{master}"));
    let dir = master_path
        .split('?')
        .next()
        .and_then(|p| p.rsplit_once('/'))
        .map(|(dir, _)| dir)
        .expect("the master's directory");
    let playlist = c.origin.get(&format!("{dir}/{uri}")).text();
    let host = c.edge.public_addr.to_string();
    let segments: Vec<&str> = playlist.lines().filter(|l| l.contains(&host)).collect();
    assert!(
        !segments.is_empty(),
        "no segment on the edge in:\n{playlist}"
    );
    segments
        .iter()
        .map(|url| {
            let out = process::run_bounded(
                std::process::Command::new("curl").args(["-sf", url]),
                Duration::from_secs(20),
            );
            assert!(out.status.success(), "curl {url}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// A worker stopped (SIGTERM) while its receiver keeps failing gives its undelivered
/// `video.ready` back through Redis, and another worker sends it, with the same event id,
/// within its next sweep instead of after the first one's lease.
#[test]
fn a_stopping_worker_hands_its_undelivered_event_to_another() {
    const SECRET: &str = "machines-webhook-secret-0123";
    // Retries a few hundred ms apart, more than the test can outlast; a stop gives them a
    // second, then abandons them.
    let webhooks = "[webhooks]\nmax_attempts = 1000\nbackoff_initial_ms = 200\n\
                    backoff_max_ms = 500\nshutdown_grace_secs = 1\n";
    let mut c = Cluster::start(format!("{}\n{webhooks}", transcode_config(1, "ultrafast")));
    let failing = Receiver::start(&[500]);
    let working = Receiver::start(&[200]);
    let (failing_url, working_url) = (failing.url("/hooks"), working.url("/hooks"));
    let first = c.worker(
        "machines-hooks-first-",
        &[
            ("ORIGIN_WEBHOOK_URL", &failing_url),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let clips = tempfile::tempdir().expect("tmp");
    let clip = clips.path().join("clip.mp4");
    generate_clip(&clip, 2, 320, 240);
    let id = c.upload(&alice, &clip);
    let tried = failing.wait_for(Duration::from_secs(120), |d| !d.is_empty());
    let first_attempt = tried
        .first()
        .unwrap_or_else(|| panic!("no delivery attempt\n{}", c.diagnostics(&[&first])));
    assert_eq!(first_attempt.json()["video_id"], id.as_str());
    let event_id = first_attempt.header("x-webhook-id").to_owned();

    let second = c.worker(
        "machines-hooks-second-",
        &[
            ("ORIGIN_WEBHOOK_URL", &working_url),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    let stopping = Instant::now();
    // SIGTERM, and waits: its delivery is abandoned after the shutdown grace.
    drop(first);
    let delivered = working.wait_for(Duration::from_secs(60), |d| !d.is_empty());
    let delivery = delivered
        .first()
        .unwrap_or_else(|| panic!("not handed over\n{}", c.diagnostics(&[&second])));
    assert_eq!(delivery.header("x-webhook-id"), event_id);
    let body = delivery.json();
    assert_eq!(
        (body["event"].as_str(), body["video_id"].as_str()),
        (Some("video.ready"), Some(id.as_str()))
    );
    eprintln!("handed over {:?} after the stop", stopping.elapsed());
}
