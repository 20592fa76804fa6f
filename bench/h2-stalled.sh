#!/usr/bin/env bash
# HTTP/2 viewers while other connections never read. STALLED connections each open 128
# streams for the 4 MB segment with a stream window of one byte (h2load -w 1), so every stream
# holds a chunk the client never takes: together they ask for more than the edge-wide budget
# of unsent bytes (256 MiB). Meanwhile an honest h2load fetches the same segment for MEASURE
# seconds; the report is what it got done. The stalled connections are dropped at the edge's
# send timeout (60 s), so the measurement ends well before that.
#
# Environment (defaults in brackets): STALLED [320]  SETTLE [8, seconds for the stalled
# connections to fill]  MEASURE [10]  H2_CONNECTIONS [2]  H2_STREAMS [4]  EDGE_BIN (lib.sh)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TLS=1
STALLED=${STALLED:-320}
SETTLE=${SETTLE:-8}
MEASURE=${MEASURE:-10}
H2_CONNECTIONS=${H2_CONNECTIONS:-2}
H2_STREAMS=${H2_STREAMS:-4}

require_tools edge
timeout 900 bash -c "source '$REPO_DIR/scripts/lib.sh' && ensure_packages openssl h2load:nghttp2-client" ||
    die "could not install openssl and h2load"
raise_nofile 16384
setup_pinning
make_workdir
setup_tls
build_bench_tool
build_edge
make_content
start_edge ""
url=$EDGE_URL$(head -1 "$WORK/lists/4mb.urls")

log "opening $STALLED connections x 128 streams that never read"
"${CLIENT_PIN[@]}" timeout $((SETTLE + MEASURE + 5)) h2load -t 1 -c "$STALLED" -m 128 \
    -n $((STALLED * 128)) -w 1 "$url" >"$WORK/stalled.out" 2>&1 &
stalled=$!
sleep "$SETTLE"
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$EDGE_PID/status")
log "edge RSS with the stalled connections: $((rss_kib / 1024)) MiB"

"${CLIENT_PIN[@]}" timeout $((MEASURE + 10)) h2load -t 1 -c "$H2_CONNECTIONS" -m "$H2_STREAMS" \
    -D "$MEASURE" "$url" >"$WORK/honest.out" 2>&1 || true
wait "$stalled" 2>/dev/null || true
done_line=$(grep -E '^requests:' "$WORK/honest.out" || echo "requests: (no report)")
log "honest client over $MEASURE s: $done_line"
grep -E '^finished in|^time for request' "$WORK/honest.out" >&2 || true
