#!/usr/bin/env bash
# Viewer load test of the whole platform: the edge and the origin (embedded store, in-process
# workers) on loopback, real transcoded videos, then `bench viewers` scenarios:
#
#   hot     many viewers on one video (the edge's hot cache)
#   churn   viewers spread over many videos whose segments outgrow the edge cache
#   expiry  URLs that expire while viewers play (origin TTL 10 s): 410s, playlist refreshes
#   flood   forged signatures flat out (403s) while legitimate viewers keep playing
#
# Usage:  bench/viewers.sh [hot] [churn] [expiry] [flood]        (default: all four)
# Knobs:  VIEWERS=500 DURATION=30 PACE=playback VIDEOS=12 CLIP_SECS=40 CACHE_MB=32
#         ATTACKERS=4 MAX_REQUESTS=2000000 MEMORY_CACHE=1 BUILD=1 KEEP_WORK=0
#
# Prints one JSON summary per scenario (also kept as $WORK/<scenario>.json) and a table. Every
# run is bounded by DURATION and MAX_REQUESTS; the servers are stopped by PID on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VIEWERS=${VIEWERS:-500}
DURATION=${DURATION:-30}
PACE=${PACE:-playback}
VIDEOS=${VIDEOS:-12}
CLIP_SECS=${CLIP_SECS:-40}
CACHE_MB=${CACHE_MB:-32}
ATTACKERS=${ATTACKERS:-4}
MAX_REQUESTS=${MAX_REQUESTS:-2000000}
SEG=4
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(hot churn expiry flood)

require_tools
ensure_packages ffmpeg:ffmpeg || die "could not install ffmpeg"
if [[ ${BUILD:-1} == 1 ]]; then
    log "building edge, origin and bench (release)"
    ensure_web_vendor || die "could not install hls.js (npm ci --prefix web)"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release --quiet -p edge -p origin -p bench) ||
        die "release build failed"
fi
ORIGIN_BIN=$TARGET_DIR/release/origin
make_workdir
raise_nofile 65536

rand() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
SECRET=$(rand)
export JWT_SECRET
JWT_SECRET=$(rand)
DATA=$WORK/data
mkdir -p "$DATA/hls"

# MEMORY_CACHE=1 (default): segments go through the memory cache (not sendfile), so its hits
# and churn are what the scenarios measure; CACHE_MB is far below the churn set. MEMORY_CACHE=0
# keeps the edge's defaults: segments above 64 KiB go out by sendfile from the page cache.
if [[ ${MEMORY_CACHE:-1} == 1 ]]; then
    cat >"$WORK/edge.toml" <<EOF
[cache]
max_bytes = $((CACHE_MB * 1024 * 1024))
max_object_bytes = $((8 * 1024 * 1024))
sendfile_min_bytes = $((16 * 1024 * 1024))
EOF
else
    printf '[cache]\nmax_bytes = %d\n' $((CACHE_MB * 1024 * 1024)) >"$WORK/edge.toml"
fi
EDGE_ROOT=$DATA/hls start_edge "$WORK/edge.toml"

# start_origin TTL_SECS BUCKET_SECS: (re)starts the origin; URLs live TTL_SECS.
start_origin() {
    if [[ -n ${ORIGIN_PID:-} ]]; then
        kill -TERM "$ORIGIN_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$ORIGIN_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    cat >"$WORK/origin.toml" <<EOF
[transcode]
workers = 1
segment_secs = $SEG
x264_preset = "veryfast"
nvenc = "off"

[playback]
url_ttl_secs = $1
expiry_bucket_secs = $2
EOF
    : >"$WORK/origin.log"
    HLS_SIGNING_SECRET=$SECRET NO_COLOR=1 RUST_LOG=info "$ORIGIN_BIN" --config "$WORK/origin.toml" \
        --data "$DATA" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --edge-base-url "$EDGE_URL" >"$WORK/origin.stdout" 2>"$WORK/origin.log" &
    ORIGIN_PID=$!
    STARTED_PIDS+=("$ORIGIN_PID")
    local addr=""
    for _ in $(seq 300); do
        addr=$(listener_addr "$WORK/origin.log" api)
        [[ -n $addr ]] && break
        kill -0 "$ORIGIN_PID" 2>/dev/null || die "origin exited: $(tail -20 "$WORK/origin.log")"
        sleep 0.1
    done
    [[ -n $addr ]] || die "origin did not log its API listener"
    ORIGIN_URL=http://$addr
    log "origin pid $ORIGIN_PID on $ORIGIN_URL (URL lifetime ${1}s)"
}
start_origin 43200 300
TOKEN=$(timeout 20 "$ORIGIN_BIN" token --user bench --ttl 4h)

# upload NAME PROFILE WIDTH HEIGHT: a generated clip (keyframes on segment boundaries, so the
# passthrough profile can cut it) -> prints the video id.
upload() {
    local clip=$WORK/$1.mp4
    timeout 300 ffmpeg -hide_banner -v error -f lavfi -i "testsrc2=s=${3}x${4}:r=25:d=$CLIP_SECS" \
        -f lavfi -i "sine=f=$((200 + RANDOM % 800)):d=$CLIP_SECS" -c:v libx264 -preset veryfast \
        -b:v 2500k -force_key_frames "expr:gte(t,n_forced*$SEG)" -pix_fmt yuv420p -c:a aac \
        -shortest -y "$clip"
    local answer
    # -sS without -f: on a refusal the origin's JSON error is what to show.
    answer=$(curl -sS --max-time 120 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: video/mp4' \
        --data-binary "@$clip" "$ORIGIN_URL/api/videos?profile=$2&title=$1") ||
        die "uploading $1: curl failed"
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$answer" 2>/dev/null ||
        die "uploading $1: the origin answered $answer"
}

log "uploading 1 ladder video and $VIDEOS passthrough videos (${CLIP_SECS}s each)"
HOT=$(upload hot ladder 1280 720)
for i in $(seq "$VIDEOS"); do upload "many$i" passthrough 1280 720 >/dev/null; done

deadline=$((SECONDS + 900))
while :; do
    states=$(curl -sf --max-time 10 -H "Authorization: Bearer $TOKEN" \
        "$ORIGIN_URL/api/videos?limit=100" |
        python3 -c 'import json, sys; print(" ".join(v["status"] for v in json.load(sys.stdin)["videos"]))')
    [[ $states != *failed* ]] || die "a video failed: $(tail -20 "$WORK/origin.log")"
    [[ $states =~ (queued|processing|registered) ]] || break
    [[ $SECONDS -lt $deadline ]] || die "videos not ready within 900 s: $states"
    sleep 2
done
log "content: $(du -sh "$DATA/hls" | cut -f1) of segments, edge cache ${CACHE_MB} MiB"

cache_counters() {
    curl -sf --max-time 5 "$EDGE_ADMIN_URL/metrics" |
        awk '/^edge_cache_hits_total/ { h = $2 } /^edge_cache_misses_total/ { m = $2 } END { print h + 0, m + 0 }'
}

# scenario NAME ARGS...: one bounded run of the generator; summary in $WORK/NAME.json.
scenario() {
    local name=$1 before after
    shift
    before=$(cache_counters)
    log "scenario $name: $VIEWERS viewers, ${DURATION}s, pace $PACE"
    timeout $((DURATION + 120)) "$BENCH_BIN" viewers --origin "$ORIGIN_URL" --user bench \
        --viewers "$VIEWERS" --duration "$DURATION" --max-requests "$MAX_REQUESTS" \
        --pace "$PACE" --label "$name" --summary "$WORK/$name.json" --allow-errors "$@" \
        >/dev/null
    after=$(cache_counters)
    python3 - "$WORK/$name.json" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
s = json.load(open(path))
hits, misses = (float(a) - float(b) for a, b in zip(after, before))
s["edge_cache_hit_ratio"] = round(hits / (hits + misses), 3) if hits + misses else None
json.dump(s, open(path, "w"), indent=2)
print(json.dumps(s, indent=2))
PY
}

for name in "${SCENARIOS[@]}"; do
    case $name in
        hot) scenario hot --video "$HOT" ;;
        churn) scenario churn --mode spread ;;
        expiry)
            # The shortest lifetime the origin accepts, in 5 s buckets: viewers that started
            # together see their URLs expire together, the storm a real expiry bucket makes.
            # URLs live 10-15 s, so viewers must still be playing after that.
            [[ $CLIP_SECS -ge 30 && $DURATION -ge 25 ]] ||
                die "the expiry scenario needs CLIP_SECS >= 30 and DURATION >= 25"
            start_origin 10 5
            scenario expiry --video "$HOT" --buffer-secs 8
            start_origin 43200 300
            ;;
        flood) scenario flood --video "$HOT" --attackers "$ATTACKERS" ;;
        *) die "unknown scenario $name (hot, churn, expiry, flood)" ;;
    esac
done

python3 - "$WORK" "${SCENARIOS[@]}" <<'PY'
import json, sys
work, names = sys.argv[1], sys.argv[2:]
print(f"\n{'scenario':9} {'req/s':>8} {'Mbit/s':>8} {'seg p50':>8} {'p99':>8} {'p99.9':>8} "
      f"{'410':>6} {'403':>7} {'refresh':>7} {'stalls':>6} {'unexp':>6} {'cache hit':>9}")
for n in names:
    s = json.load(open(f"{work}/{n}.json"))
    seg = s["kinds"].get("segment", {})
    st = lambda k, c: s["kinds"].get(k, {}).get("statuses", {}).get(c, 0)
    hit = s.get("edge_cache_hit_ratio")
    print(f"{n:9} {s['requests_per_sec']:8.0f} {s['megabits_per_sec']:8.1f} "
          f"{seg.get('p50_ms', 0):8.2f} {seg.get('p99_ms', 0):8.2f} {seg.get('p999_ms', 0):8.2f} "
          f"{st('segment', '410'):6} {st('forged', '403'):7} {s['viewers']['playlist_refreshes']:7} "
          f"{s['viewers']['stalls']:6} {s['unexpected']:6} {'-' if hit is None else hit:>9}")
print("(latencies in ms; machine:", open("/proc/cpuinfo").read().count("processor"), "cpus)")
PY
