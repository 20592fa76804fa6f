//! End-to-end tests of the origin's remaining surface with real processes: concurrent and
//! interrupted uploads, retry rules, poster, storyboard and sprite sheets, the progressive
//! fallback with Range, and the migration endpoints with on-demand processing (seed 004:
//! the first stream-info request queues a registered video).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use e2e::http::Request;
use e2e::origin::{generate_clip, json, mint_token, JWT_SECRET};
use e2e::{wait_until, Origin, OriginOptions};
use tempfile::TempDir;

const READY: Duration = Duration::from_secs(120);

fn config(extra: &str) -> String {
    format!(
        "[transcode]\nworkers = 1\nsegment_secs = 1\nx264_preset = \"ultrafast\"\nnvenc = \"off\"\n{extra}"
    )
}

fn start(dir: &Path, extra: &str) -> Origin {
    let data = dir.join("data");
    Origin::start(OriginOptions::new(&data, "http://127.0.0.1:9").config(&config(extra)))
}

/// Polls the video record until `status` is `want` (or a terminal state), bounded.
fn wait_status(origin: &Origin, token: &str, id: &str, want: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let reached = wait_until(READY, || {
        last = json(&origin.get_as(token, &format!("/api/videos/{id}")));
        last["status"] == want || last["status"] == "failed"
    });
    assert!(
        reached && last["status"] == want,
        "video {id} never became {want}: {last}\n{}",
        origin.diagnostics()
    );
    last
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn uploads_media_and_retry() {
    let dir = TempDir::new().expect("tmp");
    let origin = start(dir.path(), "");
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let clip_path = dir.path().join("clip.mp4");
    generate_clip(&clip_path, 2, 320, 240);
    let clip = std::fs::read(&clip_path).expect("clip");

    // Two uploads at once.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    json(&origin.upload(&alice, &clip, "video/mp4"))["id"]
                        .as_str()
                        .map(str::to_owned)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("an id"))
            .collect()
    });
    assert_ne!(ids[0], ids[1]);

    // An upload cut off half way leaves nothing behind.
    let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
    let head = format!(
        "POST /api/videos HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {alice}\r\nContent-Length: {}\r\n\r\n",
        origin.api_addr,
        clip.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream
        .write_all(&clip[..clip.len() / 2])
        .expect("half the body");
    drop(stream);
    let data = dir.path().join("data");
    assert!(
        wait_until(Duration::from_secs(10), || !files_in(&data.join("tmp"))
            .iter()
            .any(|f| f.starts_with("upload-"))),
        "interrupted upload left {:?}",
        files_in(&data.join("tmp"))
    );

    for id in &ids {
        let video = wait_status(&origin, &alice, id, "ready");
        assert_eq!(video["rungs"][0]["resolution"], "320x240", "{video}");
    }
    let id = &ids[0];
    assert_eq!(
        files_in(&data.join("sources")).len(),
        2,
        "exactly the two accepted sources"
    );

    // Retry only makes sense for failed videos.
    let retry = origin.request(
        Request::get(format!("/api/videos/{id}/retry"))
            .method("POST")
            .header("Authorization", format!("Bearer {alice}")),
    );
    assert_eq!(retry.status, 409, "{}", retry.text());

    // Poster, storyboard track and its sheets.
    let poster = origin.get_as(&alice, &format!("/api/videos/{id}/thumbnail.jpg"));
    assert_eq!(
        (poster.status, poster.header("content-type")),
        (200, Some("image/jpeg"))
    );
    assert_eq!(&poster.body[..2], &[0xFF, 0xD8], "a JPEG");
    let vtt = origin.get(&format!("/api/videos/{id}/storyboard.vtt?token={alice}"));
    assert_eq!(vtt.status, 200, "{}", vtt.text());
    let text = vtt.text();
    assert!(text.starts_with("WEBVTT"), "{text}");
    let cue = text.lines().find(|l| l.contains("#xywh=")).expect("a cue");
    let (sheet, _) = cue.split_once('#').expect("fragment");
    // A credential for this video, never the caller's token: sheet URLs end up in caches.
    assert!(
        sheet.starts_with("storyboard/storyboard_01.jpg?pt="),
        "{cue}"
    );
    assert!(!text.contains(&alice), "{text}");
    let sprite = origin.get(&format!("/api/videos/{id}/{sheet}"));
    assert_eq!((sprite.status, &sprite.body[..2]), (200, &[0xFF, 0xD8][..]));
    let traversal = origin.get_as(
        &alice,
        &format!("/api/videos/{id}/storyboard/..%2Fposter.jpg"),
    );
    assert_eq!(traversal.status, 404);

    // The progressive fallback, whole and ranged.
    let whole = origin.get_as(&alice, &format!("/api/videos/{id}/stream"));
    assert_eq!((whole.status, whole.body.len()), (200, clip.len()));
    assert_eq!(whole.body, clip);
    let range = origin.request(
        Request::get(format!("/api/videos/{id}/stream"))
            .header("Authorization", format!("Bearer {alice}"))
            .header("Range", "bytes=100-199"),
    );
    assert_eq!(range.status, 206);
    assert_eq!(
        range.header("content-range"),
        Some(format!("bytes 100-199/{}", clip.len()).as_str())
    );
    assert_eq!(range.body, clip[100..200]);
    let beyond = origin.request(
        Request::get(format!("/api/videos/{id}/stream"))
            .header("Authorization", format!("Bearer {alice}"))
            .header("Range", format!("bytes={}-", clip.len() + 10)),
    );
    assert_eq!(beyond.status, 416);

    // Someone else sees none of it.
    let bob = mint_token(JWT_SECRET, "bob", false, "1h");
    for path in ["thumbnail.jpg", "storyboard.vtt", "stream", "stream-info"] {
        assert_eq!(
            origin
                .get_as(&bob, &format!("/api/videos/{id}/{path}"))
                .status,
            404,
            "{path}"
        );
    }
}

#[test]
fn migration_registers_and_first_play_processes() {
    let dir = TempDir::new().expect("tmp");
    let import = dir.path().join("import");
    std::fs::create_dir_all(&import).expect("mkdir");
    generate_clip(&import.join("old-talk.mp4"), 2, 320, 240);
    std::fs::write(import.join("broken.mov"), b"definitely not a movie").expect("write");
    let extra = format!(
        "[migration]\nimport_dir = \"{}\"\nowner = \"alice\"\nprocess_now = false\n",
        import.display()
    );
    let origin = start(dir.path(), &extra);
    let admin = mint_token(JWT_SECRET, "ops", true, "1h");
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");

    // The run started with the server; wait for it to finish.
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            status = json(&origin.get_as(&admin, "/api/admin/migration"));
            status["is_running"] == false && status["completed"] == 2
        }),
        "migration did not finish: {status}"
    );
    assert_eq!(status["total"], 2, "{status}");
    assert_eq!(
        status["errors"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    assert_eq!(status["refused"][0]["file"], "broken.mov", "{status}");
    assert_eq!(
        origin.get_as(&alice, "/api/admin/migration").status,
        403,
        "admins only"
    );

    let list = json(&origin.get_as(&alice, "/api/videos"));
    let videos = list["videos"].as_array().expect("videos");
    assert_eq!(videos.len(), 1, "{list}");
    assert_eq!(videos[0]["status"], "registered");
    assert_eq!(videos[0]["title"], "old-talk.mp4");
    let id = videos[0]["id"].as_str().expect("id").to_owned();

    // First play: 202 with retry_after, processing starts, then ready.
    let info = origin.get_as(&alice, &format!("/api/videos/{id}/stream-info"));
    assert_eq!(info.status, 202, "{}", info.text());
    assert!(json(&info)["retry_after"].as_u64().is_some());
    wait_status(&origin, &alice, &id, "ready");
    let info = json(&origin.get_as(&alice, &format!("/api/videos/{id}/stream-info")));
    assert_eq!(
        (info["ready"].as_bool(), info["format"].as_str()),
        (Some(true), Some("hls")),
        "{info}"
    );

    // A second run imports nothing twice.
    let again = origin.request(
        Request::get("/api/admin/migration")
            .method("POST")
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert_eq!(again.status, 202, "{}", again.text());
    assert!(wait_until(Duration::from_secs(30), || json(
        &origin.get_as(&admin, "/api/admin/migration")
    )["is_running"]
        == false));
    assert_eq!(
        json(&origin.get_as(&alice, "/api/videos"))["videos"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
