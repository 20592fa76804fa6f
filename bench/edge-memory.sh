#!/usr/bin/env bash
# Memory bound of the edge under many connections: with a configured cache budget, 1,000
# concurrent keep-alive connections cycle through 200 distinct 600 KB segments (120 MB, about
# twice a 64 MiB budget, so the cache is full and evicting the whole time). The edge's VmRSS is
# sampled every 0.5 s; the peak must stay under budget + 50 MiB (the headroom for the runtime,
# per-connection buffers and in-flight bodies). All sizes are MiB (the budget is bytes, 64 MiB).
#
# Environment (defaults in brackets):
#   CACHE_MAX_BYTES [67108864]  HEADROOM_MB [50, MiB]  CONNECTIONS [1000]  DURATION [15s]
#   WORKERS [1]  OUT [bench/results/latest-memory]  PIN [1]  EDGE_LOG [info]  KEEP_WORK [0]
#   SERVER [edge | nginx]  nginx (master + workers) gives a reference figure and lets the
#   script be exercised before the edge exists; the PASS/FAIL line is meant for the edge.
#   TLS [0]  1: the same load over HTTPS (HTTP/1.1, every connection with its own TLS session).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE_MAX_BYTES=${CACHE_MAX_BYTES:-67108864}
HEADROOM_MB=${HEADROOM_MB:-50}
CONNECTIONS=${CONNECTIONS:-1000}
DURATION=${DURATION:-15s}
SERVER=${SERVER:-edge}
OUT=${OUT:-$BENCH_DIR/results/latest-memory}
MIB=$((1 << 20))

[[ $SERVER == edge || $SERVER == nginx ]] || die "SERVER must be edge or nginx"
require_tools "$SERVER"
if [[ $TLS == 1 ]]; then
    timeout 900 bash -c "source '$REPO_DIR/scripts/lib.sh' && ensure_packages openssl" ||
        die "could not install openssl"
fi
# wrk and the server each hold one descriptor per connection, the edge one more per open file.
raise_nofile 16384
setup_pinning
make_workdir
setup_tls
build_bench_tool
if [[ $SERVER == edge ]]; then build_edge; fi
make_content

if [[ $SERVER == edge ]]; then
    cat >"$WORK/edge.toml" <<EOF
[cache]
max_bytes = $CACHE_MAX_BYTES
EOF
    start_edge "$WORK/edge.toml"
    PID=$EDGE_PID BASE=$EDGE_URL SERVER_LOG=$WORK/edge.log
else
    start_nginx
    PID=$NGINX_PID BASE=$NGINX_URL SERVER_LOG=$WORK/nginx/logs/error.log
fi
check_urls "$BASE" "$WORK/lists/distinct.urls" 200 "$(file_size "$WORK/root/distinct/480p/segment_000.ts")"

# rss_kb: VmRSS summed over the server's process and its children (nginx's workers; the edge
# is one process). A process may exit between listing and reading: count it as 0.
rss_kb() {
    local total=0 pid kb
    for pid in $(server_pids "$PID"); do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

warn_if_busy
mkdir -p "$OUT"
SAMPLES=$OUT/rss-samples.tsv
# "Idle" is after the URL check above, which fetched every segment once: the cache is full.
idle_mb=$(( $(rss_kb) / 1024 ))
log "idle RSS $idle_mb MiB; loading with $CONNECTIONS connections for $DURATION"

# edge_gauges: the edge's own view, to tell a cache over budget from memory held elsewhere
# (in-flight bodies, allocator). Empty for nginx or without an admin listener.
edge_gauges() {
    [[ -n ${EDGE_ADMIN_URL:-} ]] || { printf '\t'; return; }
    curl -s --max-time 0.4 "$EDGE_ADMIN_URL/metrics" |
        awk '$1 == "edge_cache_bytes" { c = $2 } $1 == "edge_open_connections" { o = $2 }
             END { printf "%d\t%s", c / 1048576, o }' || printf '\t'
}

# Sampler: every 0.5 s until killed (by its PID, right after wrk ends).
# Columns: unix time, RSS KiB, edge cache MiB, edge open connections.
( while true; do
    printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$(rss_kb)" "$(edge_gauges)"
    sleep 0.5
done ) >"$SAMPLES" &
SAMPLER_PID=$!
STARTED_PIDS+=("$SAMPLER_PID")

secs=$(duration_secs "$DURATION")
wrk_status=0
"${CLIENT_PIN[@]}" timeout $((secs + 30)) wrk -t 1 -c "$CONNECTIONS" -d "$DURATION" --timeout 10s --latency \
    -s "$BENCH_DIR/cycle-urls.lua" "$BASE/" -- "$WORK/lists/distinct.urls" >"$OUT/wrk.txt" 2>&1 ||
    wrk_status=$?
sleep 1 # one more sample after the load, while the connections drain
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true

alive=yes
kill -0 "$PID" 2>/dev/null || alive=no
[[ $wrk_status -eq 0 ]] || log "wrk exited with $wrk_status:"$'\n'"$(cat "$OUT/wrk.txt")"
[[ $alive == yes ]] || log "$SERVER DIED under load; log tail:"$'\n'"$(tail -30 "$SERVER_LOG")"

peak_kb=$(awk -F'\t' '$2 > max { max = $2 } END { print max + 0 }' "$SAMPLES")
cache_peak_mib=$(awk -F'\t' '$3 > max { max = $3 } END { print max + 0 }' "$SAMPLES")
samples=$(wc -l <"$SAMPLES")
# The last sample is 1 s after the load: what the edge keeps once the responses are gone.
after_mb=$(( $(tail -1 "$SAMPLES" | cut -f2) / 1024 ))
# The kernel's own high-water mark catches a spike between two samples (edge only: for nginx
# it would be one worker's).
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PID/status" 2>/dev/null || echo 0)
[[ $alive == yes ]] && check_urls "$BASE" "$WORK/lists/distinct.urls" 200 "$(file_size "$WORK/root/distinct/480p/segment_000.ts")"
cp "$SERVER_LOG" "$OUT/$SERVER.log" 2>/dev/null || true
# Cache hits, misses and evictions explain where the memory went.
if [[ $alive == yes && -n ${EDGE_ADMIN_URL:-} ]]; then
    curl -s --max-time 5 "$EDGE_ADMIN_URL/metrics" >"$OUT/edge-metrics.txt" || true
fi

budget_mb=$((CACHE_MAX_BYTES / MIB))
limit_mb=$((budget_mb + HEADROOM_MB))
peak_mb=$((peak_kb / 1024))
hwm_mb=$((hwm_kb / 1024))
verdict=PASS
if [[ $alive != yes || $wrk_status -ne 0 || $peak_mb -gt $limit_mb ]]; then verdict=FAIL; fi

log "wrk: $(python3 "$BENCH_DIR/wrk_report.py" line "$OUT/wrk.txt" 2>&1)"
python3 - "$OUT/memory.json" <<EOF
import json, sys
result = {
    "server": "$SERVER", "connections": $CONNECTIONS, "duration": "$DURATION",
    "workers": $WORKERS, "cache_max_bytes": $CACHE_MAX_BYTES, "samples": $samples,
    "peak_rss_mib": $peak_mb, "vm_hwm_mib": $hwm_mb, "idle_rss_mib": $idle_mb,
    "after_load_rss_mib": $after_mb, "cache_bytes_peak_mib": $cache_peak_mib,
    "budget_mib": $budget_mb, "limit_mib": $limit_mb, "alive_after": "$alive" == "yes",
    "wrk_exit": $wrk_status, "verdict": "$verdict",
}
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=2)
EOF
hwm_note="VmHWM $hwm_mb MiB, idle $idle_mb MiB, after load $after_mb MiB, edge_cache_bytes peak $cache_peak_mib MiB"
[[ $SERVER == edge ]] || hwm_note="summed over master and workers, idle $idle_mb MiB, after load $after_mb MiB"
echo "$SERVER: peak RSS $peak_mb MiB ($samples samples, $hwm_note), budget $budget_mb MiB, limit budget+$HEADROOM_MB MiB = $limit_mb MiB: $verdict"
if [[ $SERVER == edge && $hwm_mb -gt $limit_mb && $verdict == PASS ]]; then
    log "WARN: VmHWM $hwm_mb MiB exceeds the limit between samples"
fi
[[ $verdict == PASS ]]
