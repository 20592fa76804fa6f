//! A webhook receiver on loopback: it records every request and answers from a script (e.g.
//! 500 first, 200 afterwards), so a test sees the origin's retries; plus the signature a
//! receiver computes to verify a delivery.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::wait_until;

/// How long the receiver waits for one request's bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request the receiver got, and how it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub method: String,
    pub target: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered with.
    pub answered: u16,
}

impl Delivery {
    /// The first value of header `name` (lower-case), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "webhook body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// The receiver; stops on drop.
pub struct Receiver {
    pub addr: SocketAddr,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0` and answers the n-th request with `statuses[n]` (the last
    /// status for every request after that).
    pub fn start(statuses: &[u16]) -> Self {
        assert!(!statuses.is_empty(), "at least one status to answer with");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping, statuses) = (deliveries.clone(), stop.clone(), statuses.to_vec());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = log.lock().unwrap_or_else(|p| p.into_inner()).len();
                let status = statuses[n.min(statuses.len() - 1)];
                if let Some(delivery) = serve(stream, status) {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(delivery);
                }
            }
        });
        Self {
            addr,
            deliveries,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits at most `timeout` until `done` holds for the requests so far; returns them.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        wait_until(timeout, || done(&self.deliveries()));
        self.deliveries()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request off `stream` and answers `status` with an empty body.
fn serve(mut stream: TcpStream, status: u16) -> Option<Delivery> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = request.parse(&buf) {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let (method, target) = (
                request.method.unwrap_or_default().to_owned(),
                request.path.unwrap_or_default().to_owned(),
            );
            while buf.len() < head_len + length {
                match stream.read(&mut chunk) {
                    Ok(0) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
            let reply = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                if (200..300).contains(&status) {
                    "OK"
                } else {
                    "Error"
                }
            );
            let _ = stream.write_all(reply.as_bytes());
            return Some(Delivery {
                method,
                target,
                headers,
                body: buf[head_len..head_len + length].to_vec(),
                answered: status,
            });
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// What a receiver expects in `X-Webhook-Signature` for `body` sent at `timestamp`:
/// `sha256=` + hex(HMAC-SHA256(secret, "<timestamp>.<body>")).
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_openssl() {
        // printf '%s' '1700000000.{"event":"video.ready","video_id":"abc"}' \
        //   | openssl dgst -sha256 -hmac 'test-webhook-secret-0123456789'
        assert_eq!(
            super::expected_signature(
                "test-webhook-secret-0123456789",
                "1700000000",
                br#"{"event":"video.ready","video_id":"abc"}"#
            ),
            "sha256=928de6f2a9fadd96ba8203b148879eed910aa718617eaf91a2e968efa22842c8"
        );
    }
}
