//! A miss with an upstream: the object pulled and answered from its fill as it arrives, or a
//! stale copy when the upstream fails or is slow, or the upstream's 404 / 502 / 504.

use std::time::Duration;

use super::represent::Representation;
use super::Edge;
use crate::refusal::Refusal;
use crate::reply::Reply;
use crate::request::RequestHead;
use crate::upstream::source::FetchError;
use crate::upstream::Upstream;

/// How long a request with a stale copy on disk waits for the upstream before it is served
/// that copy (nginx: `proxy_cache_use_stale updating` with a background update).
const STALE_AFTER: Duration = Duration::from_secs(1);

impl Edge {
    /// A miss with an upstream: pull the object and answer from its fill as it arrives. A
    /// copy still on disk (a stale playlist) is served while the upstream fails, and once the
    /// fill has not answered within [`STALE_AFTER`]: a hung bucket must not stall players for
    /// its whole timeout. The fill goes on and refreshes the copy for later requests.
    pub(super) async fn pull(
        &self,
        upstream: &Upstream,
        req: &RequestHead<'_>,
        uri: &[u8],
        rel: &[u8],
        args: &[u8],
        lifetime: u64,
    ) -> Reply {
        let Some(rel_str) = crate::upstream::valid_rel(rel) else {
            return Refusal::NotFound.reply();
        };
        let stale = upstream.holds(rel);
        let pulled = upstream.pull(rel_str, args);
        let result = match stale {
            true => tokio::time::timeout(STALE_AFTER, pulled)
                .await
                .unwrap_or(Err(FetchError::Timeout)),
            false => pulled.await,
        };
        match result {
            Ok(pulled) => self.represent(req, uri, Representation::Pulled(pulled), lifetime),
            Err(FetchError::NotFound) => Refusal::NotFound.reply(),
            Err(_) if stale => {
                self.metrics.upstream_stale_served.inc();
                self.serve_file(req, uri, rel, lifetime).await
            }
            Err(FetchError::Timeout) => Refusal::GatewayTimeout.reply(),
            Err(FetchError::Bad(why)) => Refusal::BadGateway(why).reply(),
        }
    }
}
