//! Webhooks end to end: `origin serve` configured with `[webhooks]` and `WEBHOOK_SECRET`
//! posts to a receiver run by the test, which answers 500 to the first delivery and 200 after.
//!
//! A generated clip becomes `video.ready`; a truncated copy (accepted by ffprobe, impossible
//! to transcode, `max_attempts = 1`) becomes `video.failed`; a text file renamed `.mp4` is
//! refused at upload and sends nothing. Every delivery's signature verifies with the secret,
//! and the delivery that got the 500 is retried with the same event id. Other tests start the
//! origin without `[webhooks]`, which sends nothing.
//!
//! An origin killed while its receiver keeps failing loses no event: started again on the same
//! data, it delivers the outcome with the same event id.

use std::collections::HashMap;
use std::time::Duration;

use e2e::origin::{generate_clip, json, mint_token, truncated_clip, Part, JWT_SECRET};
use e2e::webhook::{expected_signature, Delivery, Receiver};
use e2e::{metrics, unix_now, Origin, OriginOptions};
use tempfile::TempDir;

const SECRET: &str = "e2e-webhook-secret-0123456789";

/// Two jobs on 2 s clips, one after the other, on a loaded 2-core machine.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(120);

fn config(url: &str) -> String {
    format!(
        "[transcode]\nworkers = 1\nsegment_secs = 1\nx264_preset = \"ultrafast\"\nnvenc = \"off\"\n\
         max_attempts = 1\n\n\
         [webhooks]\nurl = \"{url}\"\nmax_attempts = 4\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n"
    )
}

/// Accepted deliveries (answered 2xx) by event id.
fn delivered(deliveries: &[Delivery]) -> HashMap<String, &Delivery> {
    deliveries
        .iter()
        .filter(|d| (200..300).contains(&d.answered))
        .map(|d| (d.header("x-webhook-id").to_owned(), d))
        .collect()
}

#[test]
fn ready_and_failed_are_signed_and_retried() {
    let dir = TempDir::new().expect("tmp");
    let receiver = Receiver::start(&[500, 200]);
    let clip = dir.path().join("clip.mp4");
    generate_clip(&clip, 2, 320, 240);
    let broken = dir.path().join("broken.mp4");
    truncated_clip(&clip, &broken);
    let origin = Origin::start(
        OriginOptions::new(&dir.path().join("data"), "http://127.0.0.1:9")
            .config(&config(&receiver.url("/hooks/video?src=origin")))
            .env("WEBHOOK_SECRET", SECRET),
    );
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");

    let upload = |body: &[u8], title: &str| {
        origin.upload_multipart(
            &alice,
            &[
                Part::text("title", title),
                Part::file("file", "clip.mp4", "video/mp4", body),
            ],
        )
    };
    let text = upload(b"just some text, not a video\n", "not a video");
    assert!(
        matches!(text.status, 415 | 422),
        "a text file is refused: {} {}",
        text.status,
        text.text()
    );
    let accepted = |r: e2e::RawResponse| -> String {
        assert_eq!(r.status, 202, "{}\n{}", r.text(), origin.diagnostics());
        json(&r)["id"].as_str().expect("id").to_owned()
    };
    let good = accepted(upload(&std::fs::read(&clip).expect("clip"), "Good clip"));
    let bad = accepted(upload(
        &std::fs::read(&broken).expect("broken"),
        "Broken clip",
    ));

    let deliveries = receiver.wait_for(EVENTS_TIMEOUT, |d| delivered(d).len() >= 2);
    let context = || format!("deliveries: {deliveries:#?}\n{}", origin.diagnostics());
    let ok = delivered(&deliveries);
    assert_eq!(ok.len(), 2, "one event per video\n{}", context());

    let by_video: HashMap<String, serde_json::Value> = ok
        .values()
        .map(|d| {
            let body = d.json();
            (
                body["video_id"].as_str().unwrap_or_default().to_owned(),
                body,
            )
        })
        .collect();
    let ready = &by_video[&good];
    assert_eq!(ready["event"], "video.ready", "{}", context());
    assert_eq!(
        (ready["owner"].as_str(), ready["title"].as_str()),
        (Some("alice"), Some("Good clip"))
    );
    assert!(ready.get("error").is_none(), "{ready}");
    let failed = &by_video[&bad];
    assert_eq!(failed["event"], "video.failed", "{}", context());
    assert_eq!(failed["title"], "Broken clip");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );

    for d in &deliveries {
        assert_eq!(
            (d.method.as_str(), d.target.as_str()),
            ("POST", "/hooks/video?src=origin")
        );
        assert_eq!(d.header("content-type"), "application/json");
        let ts = d.header("x-webhook-timestamp");
        let t: i64 = ts.parse().unwrap_or_else(|_| panic!("timestamp {ts:?}"));
        assert!((t - unix_now()).abs() < 600, "timestamp {t} is now");
        assert_eq!(
            d.header("x-webhook-signature"),
            expected_signature(SECRET, ts, &d.body),
            "signature of {}",
            String::from_utf8_lossy(&d.body)
        );
        assert_eq!(
            d.json()["id"],
            d.header("x-webhook-id"),
            "body and header agree"
        );
        assert_ne!(
            d.header("x-webhook-signature"),
            expected_signature("some-other-secret-0123", ts, &d.body)
        );
    }

    // The first delivery got 500 and came again with the same id (and its own signature).
    let first = &deliveries[0];
    assert_eq!(first.answered, 500, "{}", context());
    let again: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| d.header("x-webhook-id") == first.header("x-webhook-id"))
        .collect();
    assert_eq!(again.len(), 2, "retried once\n{}", context());
    assert_eq!(again[0].body, again[1].body, "same event");

    let text = origin.metrics();
    for event in ["video.ready", "video.failed"] {
        assert_eq!(
            metrics::value(
                &text,
                "origin_webhook_deliveries_total",
                &[("event", event), ("outcome", "delivered")]
            ),
            Some(1.0),
            "{event}\n{text}"
        );
    }
}

/// The receiver answers 500 until the origin is killed (SIGKILL, in the middle of a delivery's
/// retries); the origin started again on the same data delivers `video.ready` to the receiver
/// now configured, with the event id of the attempts the first one made.
#[test]
fn an_outcome_is_delivered_after_a_crash_in_the_middle_of_its_delivery() {
    let dir = TempDir::new().expect("tmp");
    let failing = Receiver::start(&[500]);
    let clip = dir.path().join("clip.mp4");
    generate_clip(&clip, 2, 320, 240);
    let data = dir.path().join("data");
    let start = |receiver: &Receiver| {
        // Retries a second apart, for long enough to be killed among them.
        let config = format!(
            "[transcode]\nworkers = 1\nsegment_secs = 1\nx264_preset = \"ultrafast\"\n\
             nvenc = \"off\"\n\n\
             [webhooks]\nurl = \"{}\"\nmax_attempts = 20\nbackoff_initial_ms = 1000\n\
             backoff_max_ms = 1000\n",
            receiver.url("/hooks")
        );
        Origin::start(
            OriginOptions::new(&data, "http://127.0.0.1:9")
                .config(&config)
                .env("WEBHOOK_SECRET", SECRET),
        )
    };
    let mut first = start(&failing);
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let upload = first.upload_multipart(
        &alice,
        &[
            Part::text("title", "Crash"),
            Part::file(
                "file",
                "clip.mp4",
                "video/mp4",
                &std::fs::read(&clip).expect("clip"),
            ),
        ],
    );
    assert_eq!(upload.status, 202, "{}", upload.text());
    let video = json(&upload)["id"].as_str().expect("id").to_owned();
    let tried = failing.wait_for(EVENTS_TIMEOUT, |d| d.len() >= 2);
    assert!(
        tried.len() >= 2,
        "two attempts before the crash: {tried:#?}\n{}",
        first.diagnostics()
    );
    first.kill9();
    let id = tried[0].header("x-webhook-id").to_owned();
    assert_eq!(tried[0].json()["video_id"], video.as_str());

    let working = Receiver::start(&[200]);
    let second = start(&working);
    let delivered = working.wait_for(Duration::from_secs(60), |d| !d.is_empty());
    let context = || format!("deliveries: {delivered:#?}\n{}", second.diagnostics());
    let delivery = delivered.first().unwrap_or_else(|| panic!("{}", context()));
    assert_eq!(delivery.header("x-webhook-id"), id, "{}", context());
    let body = delivery.json();
    assert_eq!(
        (body["event"].as_str(), body["video_id"].as_str()),
        (Some("video.ready"), Some(video.as_str()))
    );
    assert_eq!(
        delivery.header("x-webhook-signature"),
        expected_signature(
            SECRET,
            delivery.header("x-webhook-timestamp"),
            &delivery.body
        )
    );
}
