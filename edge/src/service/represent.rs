//! The answer for a file that is found: its validators, the conditionals (304 / 412), the range
//! (206 / 416) and the body, from memory, a kept descriptor or an object being pulled.

use std::sync::Arc;

use shared::range::{self, RangeDecision};

use super::Edge;
use crate::cache::Cached;
use crate::conditional::{self, Conditions, Outcome, Validators};
use crate::metrics::SendPath;
use crate::mime;
use crate::open_files::OpenFile;
use crate::refusal::Refusal;
use crate::reply::{Body, Reply, Streamed, Value};
use crate::request::RequestHead;
use crate::resolve::FileMeta;
use crate::upstream::fill::{self, unix_secs};
use crate::upstream::source::ByteStream;
use crate::upstream::Pulled;

/// Where the body of a found file comes from.
pub(super) enum Representation {
    Cached(Arc<Cached>),
    File(Arc<OpenFile>),
    /// Being pulled from the upstream.
    Pulled(Pulled),
}

impl Edge {
    pub(super) fn represent(
        &self,
        req: &RequestHead<'_>,
        uri: &[u8],
        rep: Representation,
        lifetime: u64,
    ) -> Reply {
        let (etag, last_modified, meta) = match &rep {
            Representation::Pulled(pulled) => {
                let (size, mtime) = match pulled {
                    Pulled::Filling(head, _) => (head.size, head.mtime),
                    Pulled::Direct(f) => (f.size, f.last_modified.map_or(0, unix_secs)),
                };
                // The validators a hit on the cached file will carry (its mtime is set to
                // this), so a client revalidating after the miss gets its 304.
                let meta = FileMeta {
                    dev: 0,
                    ino: 0,
                    size,
                    mtime,
                    mtime_nsec: 0,
                };
                (
                    Value::Owned(meta.etag()),
                    Value::Owned(meta.last_modified()),
                    meta,
                )
            }
            Representation::Cached(c) => (
                Value::Shared(c.etag.clone()),
                Value::Shared(c.last_modified.clone()),
                c.meta,
            ),
            Representation::File(open) => (
                Value::Shared(open.etag.clone()),
                Value::Shared(open.last_modified.clone()),
                open.meta,
            ),
        };
        let h = &req.headers;
        let validators = Validators {
            etag: etag.as_str(),
            mtime: meta.mtime,
        };
        let conditions = Conditions {
            if_match: h.if_match,
            if_none_match: h.if_none_match,
            if_modified_since: h.if_modified_since,
            if_unmodified_since: h.if_unmodified_since,
        };
        let cache_control = if mime::is_playlist(uri) {
            &self.cache_control_playlists
        } else {
            &self.cache_control_media
        };
        let cache_control = cache_control.as_ref().map(|cc| cc.for_link(lifetime));
        match conditional::evaluate(&conditions, &validators) {
            Outcome::PreconditionFailed => return Refusal::PreconditionFailed.reply(),
            Outcome::NotModified => {
                let mut r = Reply::new(304, Body::Empty, None);
                r.header("ETag", etag)
                    .header("Last-Modified", last_modified);
                if let Some(cc) = cache_control {
                    r.header("Cache-Control", cc);
                }
                return r;
            }
            Outcome::Proceed => {}
        }
        let size = meta.size;
        let range_header = match (h.range, h.if_range) {
            (Some(_), Some(ir)) if !conditional::if_range_matches(ir, &validators) => None,
            (range, _) => range,
        };
        let (status, start, end) = match range::decide(range_header, size) {
            RangeDecision::Full => (200, 0, size),
            RangeDecision::Partial { start, end } => (206, start, end),
            RangeDecision::Unsatisfiable => return Refusal::RangeNotSatisfiable { size }.reply(),
        };
        let len = end - start;
        let body = match rep {
            Representation::Cached(c) => {
                Body::Bytes(c.body.slice(start as usize..end as usize), SendPath::Cache)
            }
            Representation::File(open) => Body::File {
                file: open.file.clone(),
                offset: start,
                len,
            },
            Representation::Pulled(Pulled::Filling(head, rx)) => {
                Body::Stream(Streamed(fill::body(head, rx, start, end)))
            }
            Representation::Pulled(Pulled::Direct(fetched)) => {
                let body: ByteStream = fetched.body;
                Body::Stream(Streamed(fill::slice(body, start, end)))
            }
        };
        let mut r = Reply::new(status, body, Some(len));
        r.header("Content-Type", Value::Static(mime::content_type(uri)));
        r.header("Last-Modified", last_modified);
        if status == 206 {
            r.header(
                "Content-Range",
                Value::Owned(format!("bytes {start}-{}/{size}", end - 1)),
            );
        }
        r.header("ETag", etag);
        if status == 200 {
            r.header("Accept-Ranges", Value::Static("bytes"));
        }
        if let Some(cc) = cache_control {
            r.header("Cache-Control", cc);
        }
        r
    }
}
