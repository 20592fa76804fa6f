//! Attacks on the origin: hostile media, oversized sources, upload abuse, leaky errors, slow and
//! silent connections and bodies, orphaned encoders, weak or shared secrets and tokens in URLs.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::files::files_under;
use e2e::origin::{
    data_dir, generate_clip, json, mint_token, multipart_body, origin_binary, Part, JWT_SECRET,
};
use e2e::process::{self, Signal};
use e2e::{wait_until, Origin, OriginOptions, Request, TEST_SECRET};

/// An origin on a fresh data directory with `toml` as its configuration.
fn start(prefix: &str, toml: &str) -> (tempfile::TempDir, Origin) {
    let (dir, data) = data_dir(prefix);
    let origin = Origin::start(OriginOptions::new(&data, "http://127.0.0.1:9").config(toml));
    (dir, origin)
}

fn token(user: &str) -> String {
    mint_token(JWT_SECRET, user, false, "1h")
}

fn video_count(origin: &Origin, token: &str) -> usize {
    let list = json(&origin.get_as(token, "/api/videos"));
    list["videos"].as_array().map_or(0, Vec::len)
}

/// A TCP listener that counts the connections it receives (none may come).
fn tripwire() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tripwire");
    let addr = listener.local_addr().expect("tripwire address");
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, hits)
}

/// Every hostile "video": what it is, its bytes, and the container ffprobe detects in it.
fn hostile_files(dir: &Path, tripwire: SocketAddr) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    // A real segment somewhere on the machine: what a playlist would pull into the account.
    let secret = dir.join("other-tenant.ts");
    let made = process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi"])
            .args(["-i", "testsrc2=s=320x240:r=25:d=2", "-c:v", "libx264"])
            .args(["-preset", "ultrafast", "-f", "mpegts", "-y"])
            .arg(&secret),
        Duration::from_secs(30),
    );
    assert!(made.status.success(), "ffmpeg: {made:?}");
    let playlist = |uri: &str| {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:2.0,\n{uri}\n#EXT-X-ENDLIST\n")
            .into_bytes()
    };
    let png = process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi"])
            .args([
                "-i",
                "testsrc2=s=64x64:d=1",
                "-frames:v",
                "1",
                "-f",
                "image2",
            ])
            .args(["-c:v", "png", "-y"])
            .arg(dir.join("frame.png")),
        Duration::from_secs(30),
    );
    assert!(png.status.success(), "ffmpeg: {png:?}");
    vec![
        (
            "an HLS playlist naming an absolute file: path",
            playlist(&format!("file://{}", secret.display())),
            "hls",
        ),
        (
            "an HLS playlist naming a relative ../ path",
            playlist("../../../../../../../../../../../../tmp/other-tenant.ts"),
            "hls",
        ),
        (
            "an HLS playlist naming a URL on the origin's network",
            playlist(&format!("http://{tripwire}/segment.ts")),
            "hls",
        ),
        (
            "an ffconcat file",
            format!("ffconcat version 1.0\nfile '{}'\n", secret.display()).into_bytes(),
            "concat",
        ),
        (
            "an image (image2 demuxers)",
            fs::read(dir.join("frame.png")).expect("png"),
            "png_pipe",
        ),
    ]
}

/// Items 1 and 2: nothing outside the container allow-list becomes a job, by upload (raw or a
/// multipart file named `.mp4`) or by migration import, and nothing is fetched from anywhere.
#[test]
fn hostile_containers_are_refused_at_upload_and_import() {
    let work = tempfile::tempdir().expect("tmp");
    let import = work.path().join("import");
    fs::create_dir_all(&import).expect("import dir");
    let (_dir, origin) = start(
        "e2e-attack-media-",
        &format!(
            "[migration]\nimport_dir = \"{}\"\nprocess_now = true\n",
            import.display()
        ),
    );
    let (wire, hits) = tripwire();
    let alice = token("alice");
    let files = hostile_files(work.path(), wire);
    for (n, (what, body, container)) in files.iter().enumerate() {
        let raw = origin.upload(&alice, body, "video/mp4");
        let disguised = origin.upload_multipart(
            &alice,
            &[Part::file("file", "holiday.mp4", "video/mp4", body)],
        );
        for (how, r) in [("raw", &raw), ("multipart .mp4", &disguised)] {
            assert_eq!(
                r.status,
                415,
                "{what} ({how}): {}\n{}",
                r.text(),
                origin.diagnostics()
            );
            let error = json(r)["error"].as_str().unwrap_or_default().to_owned();
            assert!(
                error.contains(&format!("{container:?}")),
                "{what} ({how}): the message names the detected format: {error}"
            );
        }
        fs::write(import.join(format!("attack-{n}.mp4")), body)
            .expect("drop into the import directory");
    }
    let admin = mint_token(JWT_SECRET, "root", true, "1h");
    let started = origin.request(
        Request::get("/api/admin/migration")
            .method("POST")
            .header("Authorization", format!("Bearer {admin}")),
    );
    assert!(matches!(started.status, 202 | 409), "{}", started.text());
    let mut status = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            status = json(&origin.get_as(&admin, "/api/admin/migration"));
            status["is_running"] == false
                && status["completed"].as_u64() >= Some(files.len() as u64)
        }),
        "migration did not finish: {status}"
    );
    let refused = status["refused"].as_array().expect("refused list");
    assert_eq!(refused.len(), files.len(), "{status}");
    for r in refused {
        assert!(
            r["reason"]
                .as_str()
                .is_some_and(|m| m.contains("is not accepted")),
            "{r}"
        );
    }
    assert_eq!(video_count(&origin, &alice), 0, "no upload became a video");
    assert_eq!(video_count(&origin, &admin), 0, "no import became a video");
    let data = &origin.data;
    for kept in ["sources", "tmp", "hls"] {
        let left: Vec<_> = files_under(&data.join(kept))
            .into_iter()
            .filter(|p| !p.ends_with(".readyz"))
            .collect();
        assert!(left.is_empty(), "{kept} holds {left:?}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the origin connected to a URL named in an upload"
    );
}

/// Item 3: a source larger than a limit is refused at upload with 422 naming the limit, and
/// so is one whose metadata alone would fill memory.
#[test]
fn oversized_sources_are_refused_before_a_job_exists() {
    let work = tempfile::tempdir().expect("tmp");
    let huge = work.path().join("huge.mkv");
    let long = work.path().join("long.mkv");
    let make = |args: &[&str], out: &Path| {
        let o = process::run_bounded(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-v", "error"])
                .args(args)
                .args(["-f", "matroska", "-y"])
                .arg(out),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "ffmpeg: {o:?}");
    };
    make(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=gray:s=16000x16000:d=1:r=1",
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-compression_level",
            "1",
            "-pix_fmt",
            "gray",
        ],
        &huge,
    );
    make(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=black:s=3840x2160:r=1/100:d=36000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &long,
    );
    // A title tag of 2 MB: ffprobe prints every tag, and its JSON is read in memory.
    let wordy = work.path().join("wordy.mkv");
    let metadata = work.path().join("metadata.txt");
    fs::write(
        &metadata,
        format!(";FFMETADATA1\ntitle={}\n", "x".repeat(2_000_000)),
    )
    .expect("metadata");
    let metadata = metadata.to_string_lossy();
    make(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=10:d=1",
            "-i",
            &metadata,
            "-map_metadata",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &wordy,
    );
    let (_dir, origin) = start("e2e-attack-limits-", "");
    let alice = token("alice");
    for (file, limit) in [
        (&huge, "limits.max_width"),
        (&long, "limits.max_duration_secs"),
        (&wordy, "metadata is larger than 1 MiB"),
    ] {
        let r = origin.upload(&alice, &fs::read(file).expect("clip"), "video/x-matroska");
        assert_eq!(r.status, 422, "{}: {}", file.display(), r.text());
        let error = json(&r)["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(limit), "{error}");
    }
    assert_eq!(video_count(&origin, &alice), 0);
    assert!(files_under(&origin.data.join("sources")).is_empty());
}

/// Item 4: the free-space floor (507, nothing kept) and the per-user cap on uploads in
/// progress (429), and a multipart title that never ends is refused before it is read whole.
#[test]
fn upload_guards() {
    let (_dir, full) = start(
        "e2e-attack-disk-",
        "[uploads]\nmin_free_bytes = 4611686018427387904\n",
    );
    let alice = token("alice");
    let r = full.upload(&alice, &[0u8; 4096], "video/mp4");
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(files_under(&full.data.join("tmp")).is_empty());
    drop(full);

    let (_dir, origin) = start(
        "e2e-attack-uploads-",
        "[uploads]\nmax_concurrent_per_user = 1\nmax_title_bytes = 64\n",
    );
    // One upload of alice's in progress: its head and a first part of its body.
    let mut first = TcpStream::connect(origin.api_addr).expect("connect");
    let head = format!(
        "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: video/mp4\r\nContent-Length: 10000000\r\n\r\n"
    );
    first.write_all(head.as_bytes()).expect("head");
    first.write_all(&[0u8; 65536]).expect("first bytes");
    // In progress: its bytes are being written to a temporary file.
    assert!(
        wait_until(Duration::from_secs(5), || !files_under(
            &origin.data.join("tmp")
        )
        .is_empty()),
        "the first upload never started\n{}",
        origin.diagnostics()
    );
    let second = origin.upload(&alice, &[0u8; 1024], "video/mp4");
    assert_eq!(second.status, 429, "{}", second.text());
    let bob = token("bob");
    let others = origin.upload(&bob, &[0u8; 1024], "video/mp4");
    assert_ne!(
        others.status, 429,
        "another user is not limited by alice's uploads"
    );
    drop(first);
    assert!(
        wait_until(Duration::from_secs(10), || {
            origin.upload(&alice, &[0u8; 1024], "video/mp4").status != 429
        }),
        "the slot came back when the first upload was abandoned"
    );

    // A title field that goes on and on: the answer comes before the body ends.
    let boundary = "b0undary";
    let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: 100000000\r\n\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"title\"\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream
        .write_all(&[b'a'; 32 * 1024])
        .expect("part of a title");
    let mut answer = vec![0u8; 4096];
    let n = stream
        .read(&mut answer)
        .expect("an answer before the body ends");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("title"), "{answer}");
}

/// Item 5: a failed video tells its owner a short reason, without server paths or ffmpeg's
/// own output.
#[test]
fn failures_are_told_without_paths_or_ffmpeg_output() {
    let work = tempfile::tempdir().expect("tmp");
    let clip = work.path().join("clip.mp4");
    generate_clip(&clip, 4, 320, 240);
    // The index intact, every sample replaced by noise: it probes, and cannot be decoded.
    let mut bytes = fs::read(&clip).expect("clip");
    let mdat = bytes
        .windows(4)
        .position(|w| w == b"mdat")
        .expect("an mdat box");
    let size = u32::from_be_bytes(bytes[mdat - 4..mdat].try_into().expect("4 bytes")) as usize;
    let end = (mdat - 4 + size).min(bytes.len());
    let mut x: u32 = 0x1234_5678;
    for b in &mut bytes[mdat + 68..end] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let (_dir, origin) = start(
        "e2e-attack-errors-",
        "[transcode]\nmax_attempts = 1\nx264_preset = \"ultrafast\"\n",
    );
    let alice = token("alice");
    let r = origin.upload(&alice, &bytes, "video/mp4");
    assert_eq!(r.status, 202, "{}", r.text());
    let id = json(&r)["id"].as_str().expect("id").to_owned();
    let mut record = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            record = json(&origin.get_as(&alice, &format!("/api/videos/{id}")));
            record["status"] == "failed"
        }),
        "the job did not fail: {record}\n{}",
        origin.diagnostics()
    );
    let error = record["error"].as_str().expect("an error").to_owned();
    eprintln!("the owner is told: {error}");
    let data = origin.data.display().to_string();
    for leak in [
        data.as_str(),
        "/tmp",
        "ffmpeg",
        "@ 0x",
        " | ",
        "NAL",
        "exit status",
    ] {
        assert!(!error.contains(leak), "{leak:?} in {error:?}");
    }
    assert!(error.len() < 200, "{error}");
    let info = json(&origin.get_as(&alice, &format!("/api/videos/{id}/stream-info")));
    assert_eq!(info["error"], record["error"], "{info}");
    assert!(
        origin.wait_for_log(&["job attempt failed", &id], Duration::from_secs(5)),
        "the full detail is logged with the video id"
    );
}

/// Item 11: a client that writes its whole upload before reading gets the refusal, not a
/// reset (nginx's lingering close).
#[test]
fn refused_uploads_are_answered_to_clients_that_write_everything_first() {
    let (_dir, origin) = start(
        "e2e-attack-linger-",
        "[server]\nmax_upload_bytes = 1048576\n",
    );
    let body = vec![7u8; 7 << 20];
    let alice = token("alice");
    for (auth, want) in [
        (String::new(), 401),
        (format!("Authorization: Bearer {alice}\r\n"), 413),
    ] {
        let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let head = format!(
            "POST /api/videos HTTP/1.1\r\nHost: o\r\n{auth}Content-Type: video/mp4\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        // Like Python's urllib: every byte is sent before the response is read.
        stream.write_all(head.as_bytes()).expect("head");
        stream
            .write_all(&body)
            .unwrap_or_else(|e| panic!("the origin reset an upload it refused ({want}): {e}"));
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{want}: {answer}"
        );
    }
}

/// Once its whole body is in, an upload is finished even if the client leaves before the
/// answer (here it closes the connection right after the last byte, while the origin probes
/// the file): the video is queued in the user's library. A body cut short leaves nothing.
#[test]
fn an_upload_whose_client_leaves_before_the_answer_is_still_queued() {
    let (dir, origin) = start("e2e-attack-leave-", "");
    let body = fs::read(&e2e::clips::catalog().tiny).expect("the tiny clip");
    let alice = token("alice");
    let send = |sent: &[u8]| {
        let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
        let head = format!(
            "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: video/mp4\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(sent).expect("body");
        stream
    };
    let tmp = dir.path().join("data/tmp");
    let half = send(&body[..body.len() / 2]);
    let writing = wait_until(Duration::from_secs(10), || !files_under(&tmp).is_empty());
    assert!(writing, "the upload never reached its temporary file");
    drop(half);
    let cleaned = wait_until(Duration::from_secs(10), || files_under(&tmp).is_empty());
    assert!(cleaned, "a cut upload left {:?}", files_under(&tmp));
    assert_eq!(video_count(&origin, &alice), 0);

    drop(send(&body));
    let queued = wait_until(Duration::from_secs(15), || {
        video_count(&origin, &alice) == 1
    });
    assert!(queued, "the upload vanished\n{}", origin.diagnostics());
    assert!(
        files_under(&tmp).is_empty(),
        "left in tmp: {:?}",
        files_under(&tmp)
    );
}

/// Item 8: the API listener's header and idle timeouts, and its connection cap.
#[test]
fn slow_and_silent_connections_are_closed() {
    let (_dir, origin) = start(
        "e2e-attack-slowloris-",
        "[server]\nheader_timeout_secs = 2\nidle_timeout_secs = 3\n",
    );
    // A byte a second never completes a head: closed within the header timeout + 1 s.
    let mut slow = TcpStream::connect(origin.api_addr).expect("connect");
    slow.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let started = Instant::now();
    let mut closed_after = None;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: o\r\nX-Slow: "
        .iter()
        .cycle()
        .take(20)
    {
        if slow.write_all(&[*byte]).is_err() || peer_closed(&mut slow, Duration::from_secs(1)) {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a byte-a-second head was never cut off");
    eprintln!("a byte-a-second head was cut off after {closed_after:?} (header timeout 2 s)");
    assert!(closed_after <= Duration::from_secs(3), "{closed_after:?}");

    // A silent connection: closed by the idle timeout.
    let mut silent = TcpStream::connect(origin.api_addr).expect("connect");
    let started = Instant::now();
    assert!(
        peer_closed(&mut silent, Duration::from_secs(6)),
        "a silent connection stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // 2,000 slowloris connections, each a byte a second: a viewer is served throughout.
    let mut attackers = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = TcpStream::connect_timeout(&origin.api_addr, Duration::from_secs(2)) {
            let _ = s.set_nonblocking(true);
            attackers.push(s);
        }
    }
    assert!(
        attackers.len() >= 1900,
        "only {} connections opened",
        attackers.len()
    );
    let until = Instant::now() + Duration::from_secs(6);
    let mut served = 0;
    while Instant::now() < until {
        for s in attackers.iter_mut() {
            let _ = s.write(b"G");
        }
        let asked = Instant::now();
        let r = origin.request_within(Request::get("/healthz"), Duration::from_secs(3));
        assert_eq!(r.status, 200, "a viewer was refused during the slowloris");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(served >= 8, "{served}");
    drop(attackers);
    drop(origin);

    // The connection cap: a fifth connection waits until one of four closes.
    let (_dir, capped) = start("e2e-attack-cap-", "[server]\nmax_connections = 4\n");
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(capped.api_addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let wire = Request::get("/healthz")
        .host(capped.api_addr.to_string())
        .build();
    let waiting = e2e::http::raw_request_within(capped.api_addr, &wire, Duration::from_secs(1));
    assert!(
        waiting.is_err(),
        "a fifth connection was served: {waiting:?}"
    );
    drop(held);
    let r = capped.request_within(Request::get("/healthz"), Duration::from_secs(5));
    assert_eq!(r.status, 200);
}

/// A request body that goes silent is answered 408 at `uploads.body_timeout_secs`, and its
/// connection closed: a subtitle file (read whole once its video is found to be the user's), a
/// raw upload and a multipart upload stalled between its fields. Before, the subtitle file and the multipart
/// upload held their connection (and the upload its slot) for as long as the client liked: the
/// listener's deadlines end with the head.
#[test]
fn request_bodies_that_go_silent_are_answered_408() {
    let (_dir, origin) = start(
        "e2e-attack-silent-body-",
        "[uploads]\nbody_timeout_secs = 1\n",
    );
    let bearer = format!("Bearer {}", token("alice"));
    // A subtitle file is read only for a video of the user's.
    let work = tempfile::tempdir().expect("tmp");
    let clip = work.path().join("clip.mp4");
    generate_clip(&clip, 1, 160, 120);
    let uploaded = origin.upload(
        &token("alice"),
        &fs::read(&clip).expect("clip"),
        "video/mp4",
    );
    assert_eq!(uploaded.status, 202, "{}", uploaded.text());
    let video = json(&uploaded)["id"].as_str().expect("id").to_owned();
    let boundary = "silent-boundary";
    let cases = [
        (
            "a subtitle file",
            format!(
                "POST /api/videos/{video}/subtitles HTTP/1.1\r\nHost: o\r\n\
                 Authorization: {bearer}\r\nContent-Type: text/vtt\r\n\
                 Content-Length: 1000\r\n\r\nWEBVTT\n\n"
            ),
        ),
        (
            "a raw upload",
            format!(
                "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: {bearer}\r\n\
                 Content-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n\x00\x00\x00\x18"
            ),
        ),
        (
            "a multipart upload between its fields",
            format!(
                "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: {bearer}\r\n\
                 Content-Type: multipart/form-data; boundary={boundary}\r\n\
                 Content-Length: 100000\r\n\r\n--{boundary}\r\n\
                 Content-Disposition: form-data; name=\"title\"\r\n\r\nA title\r\n"
            ),
        ),
    ];
    for (what, wire) in cases {
        let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
        stream.write_all(wire.as_bytes()).expect("write");
        let started = Instant::now();
        let bytes = e2e::http::read_to_close(&mut stream, started + Duration::from_secs(10))
            .unwrap_or_else(|err| {
                panic!(
                    "{what}: neither answered nor closed: {err}\n{}",
                    origin.diagnostics()
                )
            });
        let response = e2e::http::parse_response(&bytes, false).expect("a parsable answer");
        assert_eq!(response.status, 408, "{what}: {}", response.text());
        assert!(
            response.text().contains("sent nothing"),
            "{what}: {}",
            response.text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        video_count(&origin, &token("alice")),
        1,
        "nothing but the clip was queued"
    );
}

/// Whether the peer closed `stream` (EOF or reset) within `timeout`.
fn peer_closed(stream: &mut TcpStream, timeout: Duration) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(timeout));
    let mut byte = [0u8; 512];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => true, // an answer (408) and then the close
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    }
}

/// Item 9: `/readyz` reuses its verdict: a burst of probes runs ffmpeg once.
#[test]
fn readiness_probes_do_not_spawn_a_process_each() {
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("ffmpeg-runs.log");
    let wrapper = work.path().join("ffmpeg");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec ffmpeg \"$@\"\n",
            log.display()
        ),
    )
    .expect("wrapper");
    let chmod = Command::new("chmod").arg("+x").arg(&wrapper).status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let (_dir, origin) = start(
        "e2e-attack-readyz-",
        &format!("[transcode]\nffmpeg = \"{}\"\n", wrapper.display()),
    );
    for _ in 0..30 {
        let r = origin.get("/readyz");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let runs = fs::read_to_string(&log).unwrap_or_default();
    let version_runs = runs.lines().filter(|l| l.trim() == "-version").count();
    assert!(
        version_runs <= 1,
        "30 probes ran `ffmpeg -version` {version_runs} times"
    );
    assert_eq!(version_runs, 1, "the check itself ran");
}

/// Item 10: a worker killed with SIGKILL leaves no encoder running.
#[test]
fn encoders_die_with_their_worker() {
    let work = tempfile::tempdir().expect("tmp");
    let clip = work.path().join("clip.mp4");
    generate_clip(&clip, 60, 1280, 720);
    let (_dir, mut origin) = start(
        "e2e-attack-orphans-",
        "[transcode]\nx264_preset = \"medium\"\nsegment_secs = 2\n",
    );
    let alice = token("alice");
    let r = origin.upload(&alice, &fs::read(&clip).expect("clip"), "video/mp4");
    assert_eq!(r.status, 202, "{}", r.text());
    let pid = origin.pid();
    let mut encoders = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            encoders = process::children_of(pid)
                .into_iter()
                .filter(|c| {
                    process::cmdline(*c)
                        .is_some_and(|args| args.iter().any(|a| a.contains("var_stream_map")))
                })
                .collect();
            !encoders.is_empty()
        }),
        "no ladder encode started\n{}",
        origin.diagnostics()
    );
    process::send_signal(pid, Signal::Kill);
    let gone = wait_until(Duration::from_secs(3), || {
        encoders.iter().all(|e| !process::alive(*e))
    });
    for e in &encoders {
        process::try_signal(*e, Signal::Kill);
    }
    assert!(gone, "ffmpeg {encoders:?} outlived its worker by 3 s");
    let _ = origin.terminate(Duration::from_secs(1));
}

/// A `Command` for `origin [--config CONFIG] serve` on `data` with the test secrets, for
/// starts that must fail.
fn serve_command(data: &Path, config: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(origin_binary());
    if let Some(config) = config {
        c.arg("--config").arg(config);
    }
    let listen = if args.contains(&"--listen") {
        &[][..]
    } else {
        &["--listen", "127.0.0.1:0"][..]
    };
    c.arg("--data")
        .arg(data)
        .args(["serve", "--admin-listen", "127.0.0.1:0"])
        .args(listen)
        .args(["--edge-base-url", "http://127.0.0.1:9"])
        .args(args)
        .env("JWT_SECRET", JWT_SECRET)
        .env("HLS_SIGNING_SECRET", TEST_SECRET)
        .env("NO_COLOR", "1")
        .env_remove("ORIGIN_DEV")
        .env_remove("PLAYBACK_SECRET")
        .env_remove("EDGE_PURGE_TOKEN");
    c
}

fn refused(mut command: Command, needle: &str) {
    let out = process::run_bounded(&mut command, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// Items 12 and 14: weak, placeholder and shared secrets, and development mode off loopback,
/// stop the origin at start with a clear message.
#[test]
fn weak_secrets_and_public_dev_mode_are_refused_at_start() {
    let (_dir, data) = data_dir("e2e-attack-secrets-");
    let mut c = serve_command(&data, None, &[]);
    c.env("HLS_SIGNING_SECRET", "fifteen-bytes!!");
    refused(c, "HLS_SIGNING_SECRET is 15 bytes");
    let mut c = serve_command(&data, None, &[]);
    c.env("HLS_SIGNING_SECRET", "CHANGE-ME-AT-LEAST-16-BYTES");
    refused(c, "placeholder");
    let mut c = serve_command(&data, None, &[]);
    c.env("JWT_SECRET", "CHANGE-ME-AT-LEAST-16-BYTES");
    refused(c, "JWT_SECRET is the placeholder");
    let mut c = serve_command(&data, None, &[]);
    c.env("JWT_SECRET", TEST_SECRET);
    refused(c, "JWT_SECRET must differ from HLS_SIGNING_SECRET");
    refused(
        serve_command(&data, None, &["--dev", "--listen", "0.0.0.0:0"]),
        "loopback",
    );

    // A migrating operator keeps a short nginx secret on purpose, and is warned.
    let origin = Origin::start(
        OriginOptions::new(&data, "http://127.0.0.1:9")
            .env("HLS_SIGNING_SECRET", "fifteen-bytes!!")
            .env("ORIGIN_ALLOW_WEAK_SECRET", "true"),
    );
    assert!(
        origin.wait_for_log(&["WARN", "allow_weak_secret"], Duration::from_secs(5)),
        "{}",
        origin.diagnostics()
    );
}

/// Item 13: with public-key user tokens, playback credentials need their own secret, and one
/// derived from the edge's secret does not open a key. Such tokens must also name this origin
/// (issuer and audience): the provider's key signs tokens for other applications too.
#[test]
fn the_edge_secret_does_not_open_keys() {
    let (_dir, data) = data_dir("e2e-attack-es256-");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let pem = data.join("idp.pub.pem");
    fs::write(&pem, key.public_key_pem()).expect("pem");
    let auth = format!(
        "[auth]\nalgorithm = \"ES256\"\npublic_key_file = \"{}\"\n",
        pem.display()
    );
    let config_path = data.join("es256.toml");
    fs::write(&config_path, &auth).expect("config");
    let mut c = serve_command(&data, Some(&config_path), &[]);
    c.env("PLAYBACK_SECRET", "a-dedicated-playback-secret-0123");
    refused(c, "auth.issuer and auth.audience must be set");
    let config = format!("{auth}issuer = \"https://idp.example\"\naudience = \"hls-origin\"\n");
    fs::write(&config_path, &config).expect("config");
    let c = serve_command(&data, Some(&config_path), &[]);
    refused(c, "PLAYBACK_SECRET must be set");

    let origin = Origin::start(
        OriginOptions::new(&data, "http://127.0.0.1:9")
            .config(&config)
            .env("PLAYBACK_SECRET", "a-dedicated-playback-secret-0123"),
    );
    // What someone holding only the edge's secret computes: the origin's old derivation.
    let forged = playback_credential(&derive_from(TEST_SECRET), "alice", "v1");
    let r = origin.get(&format!("/api/videos/v1/hls/360p/key?pt={forged}"));
    assert_eq!(r.status, 401, "{}", r.text());
}

/// Items 15 and 16: a token in the URL does not change state; audience and not-before are
/// enforced when configured.
#[test]
fn tokens_in_urls_only_read_and_claims_are_checked() {
    let (_dir, origin) = start("e2e-attack-tokens-", "[auth]\naudience = \"hls-origin\"\n");
    let now = e2e::unix_now();
    let good = hs256(&serde_json::json!({"sub": "alice", "exp": now + 600, "aud": "hls-origin"}));
    assert_eq!(origin.get_as(&good, "/api/videos").status, 200);
    let no_aud = hs256(&serde_json::json!({"sub": "alice", "exp": now + 600}));
    assert_eq!(origin.get_as(&no_aud, "/api/videos").status, 401);
    let early = hs256(&serde_json::json!({
        "sub": "alice", "exp": now + 600, "nbf": now + 300, "aud": "hls-origin"}));
    assert_eq!(origin.get_as(&early, "/api/videos").status, 401);
    assert_eq!(
        origin.get(&format!("/api/videos?token={good}")).status,
        200,
        "reads may carry the token in the URL"
    );
    let boundary = "x";
    let body = multipart_body(boundary, &[Part::file("file", "a.mp4", "video/mp4", b"x")]);
    for request in [
        Request::get(format!("/api/videos?token={good}"))
            .method("POST")
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .sized_body(&body),
        Request::get(format!("/api/videos/v1?token={good}")).method("DELETE"),
        Request::get(format!("/api/videos/v1/retry?token={good}")).method("POST"),
    ] {
        let r = origin.request(request);
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains("Authorization"), "{}", r.text());
    }
}

/// An HS256 JWT over `claims` with the test's `JWT_SECRET`.
fn hs256(claims: &serde_json::Value) -> String {
    let head = e2e::origin::base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = e2e::origin::base64url(claims.to_string().as_bytes());
    let input = format!("{head}.{body}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", e2e::origin::base64url(tag.as_ref()))
}

/// The playback key the origin used to derive from `secret` (two MD5 rounds).
fn derive_from(secret: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for round in [b'a', b'b'] {
        let mut input = vec![round];
        input.extend_from_slice(b"playback-credential");
        input.extend_from_slice(secret.as_bytes());
        out.extend_from_slice(&md5(&input));
    }
    out
}

fn md5(input: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(input).into()
}

/// A playback credential signed with `key`.
fn playback_credential(key: &[u8], user: &str, video: &str) -> String {
    let claims = serde_json::json!({"sub": user, "vid": video, "exp": e2e::unix_now() + 600});
    let head = e2e::origin::base64url(br#"{"typ":"JWT","alg":"HS256"}"#);
    let body = e2e::origin::base64url(claims.to_string().as_bytes());
    let input = format!("{head}.{body}");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        input.as_bytes(),
    );
    format!("{input}.{}", e2e::origin::base64url(tag.as_ref()))
}

/// An origin killed with SIGKILL in the middle of an upload leaves its temporary file (no
/// destructor runs); the next start removes it, and leaves alone a file another process holds.
#[test]
fn an_upload_cut_by_a_killed_process_is_removed_at_the_next_start() {
    let (dir, data) = data_dir("e2e-attack-leftover-");
    let options = OriginOptions::new(&data, "http://127.0.0.1:9");
    let origin = Origin::start(options.clone());
    let mut stream = TcpStream::connect(origin.api_addr).expect("connect");
    let head = format!(
        "POST /api/videos HTTP/1.1\r\nHost: o\r\nAuthorization: Bearer {}\r\n\
         Content-Type: video/mp4\r\nContent-Length: 10000000\r\n\r\n",
        token("alice")
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&vec![0u8; 1 << 20]).expect("a first MiB");
    let tmp = data.join("tmp");
    let uploads = || -> Vec<String> {
        e2e::files::entries(&tmp)
            .into_iter()
            .filter(|f| f.starts_with("upload-"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || !uploads().is_empty()),
        "no upload file\n{}",
        origin.diagnostics()
    );
    process::send_signal(origin.pid(), Signal::Kill);
    drop(stream);
    drop(origin);
    assert_eq!(uploads().len(), 1, "a killed process leaves its upload");
    // A file a live process holds (this test, as another role sharing the directory) stays.
    let live = "upload-v1.0123456789abcdef".to_owned();
    let held = fs::File::create(tmp.join(&live)).expect("live");
    held.lock().expect("held");
    // An upload a process killed after moving it into sources/ and before creating its job:
    // no job names it, so it goes too. An upload a live process holds there stays.
    let sources = data.join("sources");
    fs::write(sources.join("0b1e2b6e-0000-4000-8000-00000000dead"), b"x").expect("orphan");
    let admitting =
        fs::File::create(sources.join("0b1e2b6e-0000-4000-8000-0000000000ad")).expect("admitting");
    admitting.lock().expect("held");
    let again = Origin::start(options);
    // Removed as the process starts, which may be just after it listens.
    let swept = wait_until(Duration::from_secs(10), || {
        uploads() == [live.clone()] && e2e::files::entries(&sources).len() == 1
    });
    let left = e2e::files::entries(&sources);
    assert!(swept, "{:?} {left:?}\n{}", uploads(), again.diagnostics());
    assert_eq!(left, ["0b1e2b6e-0000-4000-8000-0000000000ad"]);
    drop((again, held, admitting, dir));
}
