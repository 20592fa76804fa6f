#!/usr/bin/env bash
# Quick start: install what is missing, build, and start the edge on a generated example
# content tree with a fresh random signing secret; prints a signed example URL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
ensure_packages curl:curl openssl:openssl
cargo build --release --bin edge

data=${DATA_DIR:-$PWD/var/example}
video=00000000-0000-4000-8000-000000000001
mkdir -p "$data/$video/720p"
if [ ! -f "$data/$video/720p/segment_000.ts" ]; then
    head -c 1355480 /dev/urandom >"$data/$video/720p/segment_000.ts"
    printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nsegment_000.ts\n#EXT-X-ENDLIST\n' \
        >"$data/$video/720p/index.m3u8"
fi

# No built-in secret: use the operator's, or make one for this run.
export HLS_SIGNING_SECRET=${HLS_SIGNING_SECRET:-$(openssl rand -hex 16)}
listen=${EDGE_LISTEN:-127.0.0.1:8080}
url=$(./target/release/edge sign --ttl 3600 "/hls/$video/720p/segment_000.ts")

cat <<MSG
edge: serving $data under /hls/ on http://$listen (metrics on http://127.0.0.1:9090/metrics)
signing secret for this run: $HLS_SIGNING_SECRET
signed example (valid 1 h):
  curl -o /dev/null -w '%{http_code} %{size_download}\\n' 'http://$listen$url'
a tampered signature answers 403, an expired one 410. Ctrl-C stops the edge.
MSG
exec ./target/release/edge --listen "$listen" --root "$data"
