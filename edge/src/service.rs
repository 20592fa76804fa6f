//! The request handler: an ordered list of checks, each of which may answer early, in the
//! order nginx applies them to the secure_link location.
//!
//! request line and Host (400), route (`/healthz`, prefix, else 404), CORS preflight (only
//! when configured), signature (403 / 410), method (405), resolve the file (404 / 403 / 301),
//! hot cache or open file, conditionals (304 / 412), range (206 / 416), then 200.
//!
//! With an upstream, a path the disk cache does not hold (fresh) is pulled after the signature
//! check ([`crate::upstream`]): 404 when the upstream has no such object, 502 when it fails,
//! 504 when it does not answer in time; a stale copy on disk is served while it fails or is
//! slow ([`pull`]).

mod pull;
mod represent;
mod validate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use shared::secure_link::{parse_expires, query_arg, LinkRequest};

use represent::Representation;
use validate::{valid_host, valid_method};

use crate::cache::HotCache;
use crate::cache_control::CacheControl;
use crate::config::Settings;
use crate::cors::Cors;
use crate::metrics::{Metrics, Route, SendPath};
use crate::open_files::{OpenFile, OpenFiles};
use crate::refusal::Refusal;
use crate::reply::{Body, Reply, Value};
use crate::request::{RequestHead, Version};
use crate::resolve::{ResolveError, Resolved, Root};
use crate::upstream::Upstream;
use crate::{mime, target};

/// Everything a request needs, shared by all connections.
pub struct Edge {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub cache: HotCache,
    pub open_files: OpenFiles,
    /// Where misses are pulled from; `None`: the root is the content.
    pub upstream: Option<Upstream>,
    root: Root,
    cors: Cors,
    cache_control_media: Option<CacheControl>,
    cache_control_playlists: Option<CacheControl>,
    requests_seen: AtomicU64,
    /// Set at SIGTERM: `/readyz` answers 503 while the listeners still serve.
    pub draining: std::sync::atomic::AtomicBool,
    /// Bytes HTTP/2 bodies may hold read but unsent, every connection together
    /// ([`crate::server::h2::body::EDGE_BUDGET`]).
    pub h2_budget: Arc<tokio::sync::Semaphore>,
}

impl Edge {
    /// Opens the content root and builds the caches (with an upstream: the disk cache,
    /// rescanned).
    pub fn new(
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::run::StartupError> {
        use crate::run::StartupError;
        let root = Root::open(&settings.root).map_err(StartupError::Root)?;
        let upstream = match &settings.upstream {
            Some(u) => Some(
                Upstream::new(u, &settings.root, metrics.clone())
                    .map_err(|e| StartupError::Upstream(e.to_string()))?,
            ),
            None => None,
        };
        let cache = HotCache::new(
            settings.cache_max_bytes,
            settings.cache_max_object,
            metrics.clone(),
        );
        let cache_control = |v: &Option<String>| v.as_deref().and_then(CacheControl::parse);
        let open_files = OpenFiles::new(settings.open_files_max, settings.open_files_idle);
        Ok(Self {
            cors: Cors::new(&settings.cors_origins),
            cache_control_media: cache_control(&settings.cache_control_media),
            cache_control_playlists: cache_control(&settings.cache_control_playlists),
            settings,
            metrics,
            cache,
            open_files,
            upstream,
            root,
            requests_seen: AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            h2_budget: Arc::new(tokio::sync::Semaphore::new(
                crate::server::h2::body::EDGE_BUDGET,
            )),
        })
    }

    /// Answers one request and records it in the metrics (and the sampled access log).
    pub async fn handle(&self, req: &RequestHead<'_>) -> Reply {
        let started = Instant::now();
        let (route, mut reply) = self.decide(req).await;
        if req.is_head() {
            reply.strip_body();
        }
        self.vary(&mut reply);
        self.metrics
            .request(route, reply.status, started.elapsed().as_secs_f64());
        let every = self.settings.access_log_every;
        if every > 0
            && self
                .requests_seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
        {
            // Named here as well as by the connection's span (which has the port): a log line
            // read on its own says whose request it was.
            tracing::info!(
                client.addr = %req.peer,
                http.version = ?req.version,
                http.method = %String::from_utf8_lossy(req.method),
                http.target = %String::from_utf8_lossy(req.target),
                http.status = reply.status,
                "access"
            );
        }
        reply
    }

    /// A CORS-enabled edge answers differently by `Origin`, so every answer says so: a shared
    /// cache must not hand one origin's response (or error) to another (Fetch §3.2.5).
    pub fn vary(&self, reply: &mut Reply) {
        if self.cors.enabled() {
            reply.header("Vary", Value::Static("Origin"));
        }
    }

    /// An answer the connection gives on its own, before a request exists to handle (a head
    /// that is too large, too slow or malformed).
    pub fn refuse(&self, refusal: Refusal) -> Reply {
        let mut r = refusal.reply();
        self.vary(&mut r);
        r
    }

    async fn decide(&self, req: &RequestHead<'_>) -> (Route, Reply) {
        let refused = |refusal: Refusal| (Route::Other, refusal.reply());
        if !valid_method(req.method) {
            return refused(Refusal::BadRequest("malformed method"));
        }
        let Ok(target) = target::parse(req.target) else {
            return refused(Refusal::BadRequest("malformed request target"));
        };
        let h = &req.headers;
        if (req.version == Version::Http11 && h.host_count == 0) || h.host_count > 1 {
            return refused(Refusal::BadRequest("exactly one Host header is required"));
        }
        if h.repeated {
            return refused(Refusal::BadRequest(
                "a header that may appear once came twice",
            ));
        }
        if h.host.is_some_and(|host| !valid_host(host)) {
            return refused(Refusal::BadRequest("invalid Host header"));
        }
        if h.bad_length {
            return refused(Refusal::BadRequest("malformed Content-Length"));
        }
        // nginx refuses TRACE for every location, before anything else looks at the request.
        if req.method == b"TRACE" {
            return refused(Refusal::MethodNotAllowed);
        }
        if h.has_body {
            return refused(Refusal::BadRequest("request bodies are not accepted"));
        }
        let uri = target.uri.as_slice();
        let Some(rel) = uri.strip_prefix(self.settings.prefix.as_bytes()) else {
            if uri == b"/healthz" && req.is_get_or_head() {
                return (Route::Health, text_reply(200, "ok\n"));
            }
            return refused(Refusal::NotFound);
        };
        let mut reply = self.content(req, uri, rel, target.args(req.target)).await;
        self.cors.decorate(h.origin, &mut reply);
        (Route::Content, reply)
    }

    async fn content(&self, req: &RequestHead<'_>, uri: &[u8], rel: &[u8], args: &[u8]) -> Reply {
        let h = &req.headers;
        if req.method == b"OPTIONS"
            && self.cors.enabled()
            && h.access_control_request_method.is_some()
        {
            // Preflights carry no credentials; answering them before the signature check lets
            // the browser reach the real 403/410 instead of reporting a CORS failure.
            if let Some(r) = self.cors.preflight(h.origin) {
                return r;
            }
        }
        // Only a template that binds the client address pays for formatting it. An IPv4
        // client of a dual-stack `[::]` listener arrives as `::ffff:a.b.c.d`; nginx's `[::]`
        // listens to IPv6 alone, and its IPv4 listener names the client `a.b.c.d`, which is
        // what every link bound to that client was signed for.
        let peer = match self.settings.link.binds_remote_addr() {
            true => req.peer.to_canonical().to_string(),
            false => String::new(),
        };
        let link = LinkRequest {
            uri,
            args,
            remote_addr: &peer,
        };
        let now = unix_now();
        if let Err(e) = self.settings.link.verify(&link, now) {
            self.metrics.signature_failure(e.reason());
            return Refusal::link(e).reply();
        }
        if req.method == b"POST" {
            return self.post(req, uri, rel);
        }
        if !req.is_get_or_head() {
            return Refusal::MethodNotAllowed.reply();
        }
        let lifetime = self.link_lifetime(args, now);
        if let Some(upstream) = &self.upstream {
            // Boxed: a pull's state is large, and every request's future (a 403's too) would
            // otherwise carry room for it, moved several times before its first poll.
            if !upstream.fresh(rel, mime::is_playlist(uri)) {
                return Box::pin(self.pull(upstream, req, uri, rel, args, lifetime)).await;
            }
            let reply = self.serve_file(req, uri, rel, lifetime).await;
            if reply.status == 404 {
                // Evicted (or deleted by hand) since the index said fresh: pull it again.
                upstream.forget(rel);
                return Box::pin(self.pull(upstream, req, uri, rel, args, lifetime)).await;
            }
            return reply;
        }
        self.serve_file(req, uri, rel, lifetime).await
    }

    /// Seconds the verified link in `args` stays valid (0 when it expires this second).
    fn link_lifetime(&self, args: &[u8], now: i64) -> u64 {
        let name = self.settings.link.expires_arg().as_bytes();
        query_arg(args, name)
            .and_then(parse_expires)
            .map_or(0, |expires| u64::try_from(expires - now).unwrap_or(0))
    }

    /// nginx's static handler lets POST through its first method check and refuses it only once
    /// the file is found: a missing file is 404, a directory 301/403, a file 405.
    /// With an upstream, the cache's own files (its marker, fills in progress) are not
    /// content: they are 404 to every method, or a 405 would tell that a fill is under way.
    fn post(&self, req: &RequestHead<'_>, uri: &[u8], rel: &[u8]) -> Reply {
        if self.upstream.is_some() && crate::upstream::valid_rel(rel).is_none() {
            return Refusal::NotFound.reply();
        }
        match self.root.open_path(rel) {
            Ok(Resolved::File(..)) => Refusal::MethodNotAllowed.reply(),
            Ok(Resolved::Directory) => self.directory(req, uri),
            Err(e) => resolve_error(e, rel),
        }
    }

    async fn serve_file(
        &self,
        req: &RequestHead<'_>,
        uri: &[u8],
        rel: &[u8],
        lifetime: u64,
    ) -> Reply {
        // Plain HTTP/1.1 (and HTTP/1.1 over kTLS) sends large bodies with sendfile from an
        // open descriptor: cheaper than copying them out of memory. Memory serves small files
        // and userspace TLS/HTTP/2, which cannot use sendfile.
        // There, bodies too large for memory are read from a kept descriptor too, which saves
        // an open and a close per request.
        let zero_copy = req.sendfile;
        let kept = |size: u64| match zero_copy {
            true => size >= self.settings.sendfile_min_bytes,
            false => !self.cache.admits(size),
        };
        // A descriptor kept for the other kind of listener (plain HTTP keeps smaller files
        // than TLS does) is passed over without a stat.
        if let Some(open) = self.open_files.get(uri).filter(|o| kept(o.meta.size)) {
            if self.root.stat(rel) == Some(open.meta) {
                self.metrics.open_file_hits.inc();
                return self.represent(req, uri, Representation::File(open), lifetime);
            }
            self.open_files.invalidate(uri);
        }
        if let Some(entry) = self.cache.get(uri).await {
            if self.root.stat(rel) == Some(entry.meta) {
                self.metrics.cache_hits.inc();
                return self.represent(req, uri, Representation::Cached(entry), lifetime);
            }
            Box::pin(self.cache.invalidate(uri)).await;
        }
        let (file, meta) = match self.root.open_path(rel) {
            Ok(Resolved::File(file, meta)) => (file, meta),
            Ok(Resolved::Directory) => return self.directory(req, uri),
            Err(e) => return resolve_error(e, rel),
        };
        if kept(meta.size) {
            let open = Arc::new(OpenFile::new(file, meta));
            self.open_files.insert(uri, open.clone());
            return self.represent(req, uri, Representation::File(open), lifetime);
        }
        let room = match self.cache.admits(meta.size) {
            true => {
                self.metrics.cache_misses.inc();
                self.cache.reserve(meta.size)
            }
            false => None,
        };
        if let Some(room) = room {
            // Boxed, as a pull is: a miss pays for its own room.
            match Box::pin(self.cache.fill(uri, file, meta, room, &self.metrics)).await {
                Ok(entry) => {
                    return self.represent(req, uri, Representation::Cached(entry), lifetime)
                }
                Err(error) => {
                    tracing::warn!(%error, path = %String::from_utf8_lossy(rel), "cache fill failed");
                    return Refusal::Internal("file changed while being read").reply();
                }
            }
        }
        self.represent(
            req,
            uri,
            Representation::File(Arc::new(OpenFile::new(file, meta))),
            lifetime,
        )
    }

    /// nginx: a directory with a trailing slash has no index here (403); without one it is
    /// redirected to the slash form, query kept. Unlike nginx the Location is relative (RFC
    /// 9110 §10.2.2): a Host header chosen by the client never ends up in it.
    fn directory(&self, req: &RequestHead<'_>, uri: &[u8]) -> Reply {
        if uri.ends_with(b"/") {
            return Refusal::Forbidden("directory listing is not allowed").reply();
        }
        let query = match req.target.iter().position(|&b| b == b'?') {
            // The raw query holds no control bytes or spaces: target::parse refused those.
            Some(q) => String::from_utf8_lossy(&req.target[q..]),
            None => "".into(),
        };
        // The path is decoded ($uri): re-encoded, no byte of it can end the header or turn
        // it into a scheme-relative `//host` reference.
        let mut location = String::with_capacity(uri.len() + query.len() + 8);
        push_encoded_path(uri, &mut location);
        location.push('/');
        location.push_str(&query);
        let mut r = Reply::error(301, "moved permanently");
        r.header("Location", Value::Owned(location));
        r
    }
}

/// Appends `path` with every byte but unreserved ones and `/` percent-encoded (RFC 3986 §2).
pub(crate) fn push_encoded_path(path: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in path {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn resolve_error(e: ResolveError, rel: &[u8]) -> Reply {
    let refusal = match e {
        ResolveError::NotFound => Refusal::NotFound,
        ResolveError::Forbidden => Refusal::Forbidden("forbidden"),
        ResolveError::Io(error) => {
            tracing::error!(%error, path = %String::from_utf8_lossy(rel), "open failed");
            Refusal::Internal("internal error")
        }
    };
    refusal.reply()
}

fn text_reply(status: u16, text: &'static str) -> Reply {
    let body = bytes::Bytes::from_static(text.as_bytes());
    let mut r = Reply::new(
        status,
        Body::Bytes(body, SendPath::Buffered),
        Some(text.len() as u64),
    );
    r.header("Content-Type", Value::Static("text/plain"));
    r
}

/// Unix time in whole seconds, as nginx's `ngx_time()`.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::{push_encoded_path, unix_now, Edge};
    use crate::request::RequestHead;

    /// HTTP/2 moves every request's future a few times before its first poll, whole: a 403
    /// pays for the room the largest path needs unless the rare paths (pull, fill) are boxed.
    #[test]
    fn a_requests_future_leaves_the_rare_paths_state_outside() {
        fn future_size<T>(_: fn(&'static Edge, &'static RequestHead<'static>) -> T) -> usize {
            std::mem::size_of::<T>()
        }
        // 2,464 bytes with the pull and the fill inline, 1,376 without (Rust 1.95, test
        // profile); the bound leaves room for compiler changes and catches their return.
        let size = future_size(Edge::handle);
        assert!(size <= 2048, "Edge::handle's future is {size} bytes");
    }

    /// A link bound to an IPv4 client verifies when that client reaches a dual-stack
    /// listener, which gives its address in IPv6's mapped form.
    #[tokio::test]
    async fn a_link_bound_to_an_ipv4_client_verifies_through_a_dual_stack_listener() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("v")).expect("mkdir");
        std::fs::write(root.path().join("v/segment_000.ts"), b"ts").expect("write");
        let mut config = crate::config::EdgeConfig::default();
        config.content.root = root.path().into();
        config.signing.secrets = vec!["0123456789abcdef-current".into()];
        config.signing.template = "$secure_link_expires$uri$remote_addr $secret".into();
        let settings = config.validate().expect("valid");
        let signed =
            settings
                .link
                .signed_url("/hls/v/segment_000.ts", unix_now() + 600, "203.0.113.7");
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().expect("metrics"));
        let edge = Edge::new(settings, metrics).expect("edge");
        let mut headers = crate::request::Headers::default();
        headers.add(b"host", b"edge.test");
        let status = |peer: &str| {
            let head = RequestHead {
                method: b"GET",
                target: signed.as_bytes(),
                version: crate::request::Version::Http11,
                headers,
                peer: peer.parse().expect("address"),
                sendfile: false,
            };
            let edge = &edge;
            async move { edge.handle(&head).await.status }
        };
        assert_eq!(status("203.0.113.7").await, 200);
        assert_eq!(status("::ffff:203.0.113.7").await, 200);
        assert_eq!(status("203.0.113.8").await, 403);
        assert_eq!(status("::ffff:203.0.113.8").await, 403);
    }

    #[test]
    fn redirect_paths_are_encoded() {
        let mut out = String::new();
        push_encoded_path(b"/hls/a b/\\\\evil\r\n/\xff", &mut out);
        assert_eq!(out, "/hls/a%20b/%5C%5Cevil%0D%0A/%FF");
    }
}
