#!/usr/bin/env bash
# Origin manifest latency over HTTP, and the origin's memory while it streams a huge upload.
#
# 1. Builds edge and origin in release mode, starts both on ephemeral loopback ports (read back
#    from their logs) sharing one data directory, uploads a tiny generated clip, and waits for
#    `ready` on the video's event stream.
# 2. Runs wrk against the signed master (?token=<user JWT>) and one signed variant
#    (?pt=<playback credential>) and prints p50/p99 for each. Target: p50 < 2 ms.
# 3. Streams a ~1 GB file of random bytes to POST /api/videos while sampling the origin's
#    /proc/<pid>/status; the upload is refused as not-a-video only AFTER it was streamed to
#    disk and probed, which is exactly the path whose memory must stay flat. Prints
#    `upload 1024 MB, origin peak RSS X MB`.
#
# Usage:  bench/manifest-http.sh
# Knobs:  DURATION=10s CONNECTIONS=4 THREADS=1 UPLOAD_MB=1024 PIN=1 KEEP=0 BUILD=1
#
# Everything is bounded (`timeout` on every external command, deadlines on every wait), and
# only the processes started here are stopped, by PID, on exit. PIN=1 (default on 2+ cores)
# puts wrk on CPU 0 and the origin on CPU 1 so the load generator does not steal the server's
# core. KEEP=1 keeps the temp dir (logs, data) for inspection. BUILD=0 uses the release
# binaries already in the target dir instead of building them first.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-4}
THREADS=${THREADS:-1}
UPLOAD_MB=${UPLOAD_MB:-1024}
KEEP=${KEEP:-0}
BUILD=${BUILD:-1}
if [[ $(nproc) -ge 2 ]]; then PIN=${PIN:-1}; else PIN=0; fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_cmd() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    log "$1 not found, installing $2"
    [[ $(id -u) -eq 0 ]] || die "$1 is missing and we are not root: apt-get install $2"
    timeout 300 apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "installing $2 did not provide $1"
}
need_cmd wrk wrk
need_cmd curl curl
need_cmd ffmpeg ffmpeg
need_cmd taskset util-linux
need_cmd timeout coreutils

TMP=$(mktemp -d "${TMPDIR:-/tmp}/manifest-http.XXXXXX")
STARTED_PIDS=()
cleanup() {
    local status=$?
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 || $status -ne 0 ]]; then
        log "logs and data kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

# wait_listening LOG NAME -> prints host:port of `listening listener="NAME" addr=...` (20 s).
wait_listening() {
    local file=$1 name=$2 addr
    for _ in $(seq 200); do
        addr=$(grep -o "listener=\"$name\" addr=[0-9.:]*" "$file" 2>/dev/null | head -1 | sed 's/.*addr=//')
        if [[ -n $addr ]]; then echo "$addr"; return 0; fi
        sleep 0.1
    done
    cat "$file" >&2
    die "no listening line for $name in $file within 20 s"
}

# to_ms 512.00us|1.23ms|1.01s -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# ---- build ---------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    log "building edge and origin (release)"
    (source "$REPO_DIR/scripts/lib.sh" && ensure_web_vendor) ||
        die "could not install hls.js (npm ci --prefix web)"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release --quiet --bin edge --bin origin)
fi
EDGE_BIN=$TARGET_DIR/release/edge
ORIGIN_BIN=$TARGET_DIR/release/origin
[[ -x $EDGE_BIN && -x $ORIGIN_BIN ]] || die "no release binaries in $TARGET_DIR/release (run with BUILD=1)"

# ---- start -----------------------------------------------------------------------------------
rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
export HLS_SIGNING_SECRET JWT_SECRET EDGE_PURGE_TOKEN RUST_LOG=info NO_COLOR=1
HLS_SIGNING_SECRET=$(rand)
JWT_SECRET=$(rand)
EDGE_PURGE_TOKEN=$(rand)
DATA=$TMP/data
mkdir -p "$DATA/hls"
cat >"$TMP/origin.toml" <<EOF
[transcode]
workers = 1
segment_secs = 1
x264_preset = "ultrafast"
nvenc = "off"
EOF

ORIGIN_CPU=()
WRK_CPU=()
if [[ $PIN == 1 ]]; then
    ORIGIN_CPU=(taskset -c 1)
    WRK_CPU=(taskset -c 0)
fi

"$EDGE_BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --root "$DATA/hls" \
    >"$TMP/edge.log" 2>&1 &
STARTED_PIDS+=($!)
EDGE_ADDR=$(wait_listening "$TMP/edge.log" public)
EDGE_ADMIN=$(wait_listening "$TMP/edge.log" admin)

"${ORIGIN_CPU[@]}" "$ORIGIN_BIN" --config "$TMP/origin.toml" --data "$DATA" serve \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --edge-base-url "http://$EDGE_ADDR" --edge-admin-url "http://$EDGE_ADMIN" \
    >"$TMP/origin.log" 2>&1 &
ORIGIN_PID=$!
STARTED_PIDS+=("$ORIGIN_PID")
API=$(wait_listening "$TMP/origin.log" api)
log "edge http://$EDGE_ADDR, origin http://$API (pid $ORIGIN_PID)"

TOKEN=$(timeout 20 "$ORIGIN_BIN" token --user bench --ttl 2h 2>/dev/null)

# ---- a tiny video, ready ---------------------------------------------------------------------
timeout 60 ffmpeg -hide_banner -v error -f lavfi -i testsrc2=s=640x360:r=25:d=4 \
    -f lavfi -i sine=d=4 -c:v libx264 -preset ultrafast -c:a aac -shortest -y "$TMP/clip.mp4"
UPLOAD=$(timeout 60 curl -sS --fail-with-body -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: video/mp4' --data-binary "@$TMP/clip.mp4" "http://$API/api/videos")
ID=$(grep -o '"id":"[^"]*"' <<<"$UPLOAD" | head -1 | cut -d'"' -f4)
[[ -n $ID ]] || die "upload refused: $UPLOAD"
log "uploaded $ID, waiting for ready (SSE, at most 120 s)"
# The stream ends after `ready` (or after a snapshot that already says ready).
EVENTS=$(timeout 120 curl -sSN "http://$API/api/videos/$ID/events?token=$TOKEN" || true)
grep -qE '^event: ready|"status":"ready"' <<<"$EVENTS" || {
    tail -5 <<<"$EVENTS" >&2
    die "video $ID not ready within 120 s"
}

MASTER_URL="http://$API/api/videos/$ID/hls/master.m3u8?token=$TOKEN"
MASTER=$(timeout 10 curl -sS --fail "$MASTER_URL")
VARIANT_URI=$(grep -v '^#' <<<"$MASTER" | head -1)
VARIANT_URL="http://$API/api/videos/$ID/hls/$VARIANT_URI"
VARIANT=$(timeout 10 curl -sS --fail "$VARIANT_URL")
SEGMENTS=$(grep -c '^http' <<<"$VARIANT")
log "master $(wc -c <<<"$MASTER") bytes; variant ${VARIANT_URI%%\?*}: $SEGMENTS signed segments"

# ---- wrk ------------------------------------------------------------------------------------
secs=${DURATION%s}
run_wrk() { # NAME URL
    local name=$1 url=$2 out
    out=$("${WRK_CPU[@]}" timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
        --latency "$url")
    printf '%s\n' "$out" >"$TMP/wrk-$name.txt"
    local p50 p99 rps non2xx
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
    [[ -z $non2xx ]] || die "$name: $non2xx non-2xx responses\n$out"
    local verdict=FAIL
    awk -v p="$(to_ms "$p50")" 'BEGIN { exit !(p < 2) }' && verdict=PASS
    printf '%-8s p50 %7.3f ms   p99 %7.3f ms   %9.0f req/s   (p50 < 2 ms: %s)\n' \
        "$name" "$(to_ms "$p50")" "$(to_ms "$p99")" "$rps" "$verdict"
}
log "wrk: $THREADS thread(s), $CONNECTIONS connections, $DURATION each (pinned: $PIN)"
echo "== manifest latency (origin release build, $CONNECTIONS connections, $DURATION) =="
run_wrk master "$MASTER_URL"
run_wrk variant "$VARIANT_URL"

# ---- memory while streaming a huge upload ----------------------------------------------------
log "generating ${UPLOAD_MB} MB of random bytes"
timeout 300 head -c "${UPLOAD_MB}M" /dev/urandom >"$TMP/big.bin"
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$ORIGIN_PID/status"; }
BASE_RSS=$(status_kb VmRSS)
# Reset the high-water mark (Linux >= 4.0) so VmHWM is the peak during the upload only.
echo 5 >"/proc/$ORIGIN_PID/clear_refs" 2>/dev/null || log "cannot reset VmHWM; the peak includes earlier load"
(
    max=0
    while kill -0 "$ORIGIN_PID" 2>/dev/null; do
        rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$ORIGIN_PID/status" 2>/dev/null || echo 0)
        ((rss > max)) && max=$rss && echo "$max" >"$TMP/rss-max"
        sleep 0.05
    done
) &
SAMPLER=$!
STARTED_PIDS+=("$SAMPLER")
started=$(date +%s.%N)
CODE=$(timeout 600 curl -sS -o "$TMP/upload-response.json" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' \
    -T "$TMP/big.bin" "http://$API/api/videos" || echo "curl-failed")
ended=$(date +%s.%N)
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
HWM=$(status_kb VmHWM)
SAMPLED=$(cat "$TMP/rss-max" 2>/dev/null || echo 0)
# The refused upload must leave nothing (the ready clip's own source stays, of course).
LEFT=$(find "$DATA/tmp" "$DATA/sources" -type f ! -name "$ID" | wc -l)
echo "== upload =="
printf 'POST %s MB -> HTTP %s %s in %.1f s (%.0f MB/s); files left in tmp/ and sources/: %s\n' \
    "$UPLOAD_MB" "$CODE" "$(head -c 120 "$TMP/upload-response.json" 2>/dev/null)" \
    "$(awk -v a="$started" -v b="$ended" 'BEGIN { print b - a }')" \
    "$(awk -v a="$started" -v b="$ended" -v m="$UPLOAD_MB" 'BEGIN { print m / (b - a) }')" "$LEFT"
printf 'origin RSS before %.1f MB, max sampled during upload %.1f MB\n' \
    "$(awk -v k="$BASE_RSS" 'BEGIN { print k / 1024 }')" "$(awk -v k="$SAMPLED" 'BEGIN { print k / 1024 }')"
printf 'upload %s MB, origin peak RSS %.1f MB\n' "$UPLOAD_MB" "$(awk -v k="$HWM" 'BEGIN { print k / 1024 }')"
