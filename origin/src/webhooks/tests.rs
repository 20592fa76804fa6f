//! The dispatcher against real receivers on loopback: retries with the same id, signatures,
//! https with a CA of the test's own, giving up, and the bounded drain at shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use ring::hmac;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, RootCertStore};

use super::client;
use super::event::Event;
use super::settings::{WebhookSettings, WebhooksConfig};
use super::Outcome;
use super::{start_with, Dispatcher, Webhooks};
use crate::http_client::Client;
use crate::jobs::model::{Announcement, Ending, Job};
use crate::metrics::Metrics;
use crate::transcode::pipeline::Profile;
use shared::secret::SecretString;

const SECRET: &str = "unit-test-webhook-secret";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.head
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Answers the n-th request with `statuses[n]` (the last one from then on).
async fn receiver(tls: Option<tokio_rustls::TlsAcceptor>, statuses: Vec<u16>) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = seen.lock().expect("lock").len();
            let status = statuses[n.min(statuses.len() - 1)];
            let seen = seen.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            answer(s, status, &seen).await;
                        }
                    }
                    None => answer(tcp, status, &seen).await,
                }
            });
        }
    });
    (port, log)
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, status: u16, log: &Log) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head: Vec<(String, String)> = String::from_utf8_lossy(&buf[..head_end])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = head
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    log.lock().expect("lock").push(Seen { head, body });
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn settings(url: &str, max_attempts: u32, grace_ms: u64) -> WebhookSettings {
    let mut c = WebhooksConfig {
        url: url.into(),
        max_attempts,
        backoff_initial_ms: 20,
        backoff_max_ms: 40,
        ..WebhooksConfig::default()
    };
    c.secret = SecretString::new(SECRET);
    let mut errors = Vec::new();
    let mut s = c.validate(&mut errors).expect("valid settings");
    s.shutdown_grace = Duration::from_millis(grace_ms);
    s
}

fn started(s: &WebhookSettings, client: Client) -> (Webhooks, Dispatcher, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let (w, d) = start_with(s, client, Some(metrics.clone()));
    (w, d, metrics)
}

/// The event of an outcome of one video: `Some(error)` a failure.
fn event(error: Option<&str>, at: i64) -> Event {
    let mut job = Job::new(
        "vid-7".parse().expect("id"),
        "alice",
        Some("Clip".into()),
        Profile::Ladder,
        1,
    );
    job.error = error.map(str::to_owned);
    let ending = match error {
        Some(_) => Ending::Failed,
        None => Ending::Ready,
    };
    job.announce = Some(Announcement::new(ending, at));
    Event::announcing(&job).expect("an event")
}

fn count(m: &Metrics, event: &str, outcome: &str) -> u64 {
    m.webhook_deliveries
        .with_label_values(&[event, outcome])
        .get()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let happened =
        e2e::wait_until_async(Duration::from_secs(5), || std::future::ready(done())).await;
    assert!(happened, "{what} did not happen within 5 s");
}

fn verify(seen: &Seen) {
    let ts = seen.header("x-webhook-timestamp");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&seen.body);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()),
        &signed,
    );
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(seen.header("x-webhook-signature"), format!("sha256={hex}"));
}

#[tokio::test]
async fn retries_with_the_same_id_until_2xx() {
    let (port, log) = receiver(None, vec![500, 204]).await;
    let s = settings(&format!("http://127.0.0.1:{port}/hooks?x=1"), 3, 1000);
    let client = client(&s).expect("client");
    let (webhooks, dispatcher, metrics) = started(&s, client);
    let event = event(None, 42);
    let delivery = webhooks.notify(event.clone());
    assert!(delivery.started.await.is_ok());
    assert_eq!(delivery.ended.await.ok(), Some(Outcome::Delivered));
    assert_eq!(count(&metrics, "video.ready", "delivered"), 1);
    let seen = log.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "one failure, one success");
    for s in &seen {
        verify(s);
        assert_eq!(s.header("x-webhook-id"), event.id);
        assert_eq!(s.header("content-type"), "application/json");
        assert_eq!(s.header("host"), format!("127.0.0.1:{port}"));
        let body: serde_json::Value = serde_json::from_slice(&s.body).expect("json");
        assert_eq!(body["id"], event.id.as_str());
        assert_eq!(body["video_id"], "vid-7");
        assert_eq!(body["occurred_at"], 42);
    }
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn https_with_a_verified_certificate() {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let (port, log) = receiver(Some(acceptor), vec![200]).await;
    let s = settings(&format!("https://127.0.0.1:{port}/"), 1, 1000);
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("trust the CA");
    let (webhooks, dispatcher, metrics) = started(
        &s,
        Client::with_roots(&s.target, s.connect_timeout, s.timeout, roots).expect("client"),
    );
    webhooks.notify(event(Some("bad input"), 7));
    eventually("delivery", || {
        count(&metrics, "video.failed", "delivered") == 1
    })
    .await;
    let seen = log.lock().expect("lock").clone();
    verify(&seen[0]);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("json");
    assert_eq!(body["error"], "bad input");

    // The public roots do not know this CA: the handshake fails and the event is given up.
    let (webhooks, dispatcher2, metrics) = started(&s, client(&s).expect("client"));
    let ended = webhooks.notify(event(None, 8)).ended;
    assert_eq!(ended.await.ok(), Some(Outcome::Failed));
    assert_eq!(count(&metrics, "video.ready", "failed"), 1);
    assert_eq!(
        log.lock().expect("lock").len(),
        1,
        "nothing reached the receiver"
    );
    dispatcher.shutdown().await;
    dispatcher2.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let (port, log) = receiver(None, vec![503]).await;
    let s = settings(&format!("http://127.0.0.1:{port}/"), 3, 1000);
    let (webhooks, dispatcher, metrics) = started(&s, client(&s).expect("client"));
    let ended = webhooks.notify(event(Some("x"), 1)).ended;
    assert_eq!(ended.await.ok(), Some(Outcome::Failed));
    assert_eq!(count(&metrics, "video.failed", "failed"), 1);
    assert_eq!(log.lock().expect("lock").len(), 3);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_bounded_and_abandons_the_rest() {
    let (port, log) = receiver(None, vec![500]).await;
    let mut s = settings(&format!("http://127.0.0.1:{port}/"), 5, 200);
    // Long waits between attempts, one slot: the first event sits in backoff, the second in
    // the queue, when the process stops.
    s.backoff.initial = Duration::from_secs(60);
    s.backoff.max = Duration::from_secs(60);
    s.concurrency = 1;
    let (webhooks, dispatcher, metrics) = started(&s, client(&s).expect("client"));
    let first = webhooks.notify(event(None, 1));
    let second = webhooks.notify(event(Some("x"), 1));
    eventually("first attempt", || !log.lock().expect("lock").is_empty()).await;
    let t0 = std::time::Instant::now();
    dispatcher.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(count(&metrics, "video.ready", "abandoned"), 1);
    assert_eq!(count(&metrics, "video.failed", "abandoned"), 1);
    assert!(first.started.await.is_ok(), "the first one started");
    assert!(second.started.await.is_err(), "the second one never did");
    assert_eq!(
        first.ended.await.ok(),
        Some(Outcome::Abandoned),
        "in backoff"
    );
    assert_eq!(second.ended.await.ok(), Some(Outcome::Abandoned), "queued");
    let late = webhooks.notify(event(None, 2));
    assert!(late.ended.await.is_err(), "not queued: no outcome");
    assert_eq!(
        count(&metrics, "video.ready", "dropped"),
        1,
        "closed after shutdown"
    );
}
