#!/usr/bin/env bash
# Throughput and tail latency of the edge against real nginx running the secure_link
# location it replaces, on the same content, the same secret and the same CPU budget.
#
# Scenarios (wrk, keep-alive, CONNECTIONS connections, 1 thread):
#   hot        one 1.3 MB segment: the edge serves it from its in-memory cache
#   large      one 2.2 MB segment: above the cache's object limit, the edge uses sendfile
#   distinct   200 different 600 KB segments, cycled through (wrk Lua script)
#   forbidden  the hot segment with a tampered signature: the 403 path, no body I/O
# Each round runs every scenario against nginx then the edge (A B A B ...); the table shows
# medians over rounds.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10s]  WARMUP [3s, unrecorded, per scenario and server]
#   CONNECTIONS [64]  WORKERS [1] (nginx worker_processes = edge --workers)
#   SCENARIOS ["hot large distinct forbidden"]  ONLY [both | nginx | edge]
#   OUT [bench/results/latest]  PIN [1]  SERVER_CPUS / CLIENT_CPUS (see lib.sh)
#   QUIET_WAIT [60, seconds to wait for an idle machine]  SECRET [anchor-test-secret]
#   EDGE_CONFIG [none: built-in defaults, 256 MiB cache]  EDGE_BIN  EDGE_LOG [info]  KEEP_WORK [0]
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
SCENARIOS=${SCENARIOS:-hot large distinct forbidden}
ONLY=${ONLY:-both}
OUT=${OUT:-$BENCH_DIR/results/latest}
EDGE_CONFIG=${EDGE_CONFIG:-}
SETTLE=${SETTLE:-1}

case $ONLY in
    both) SERVER_LIST=(nginx edge) ;;
    nginx | edge) SERVER_LIST=("$ONLY") ;;
    *) die "ONLY must be both, nginx or edge" ;;
esac

require_tools "${SERVER_LIST[@]}"
raise_nofile 16384
setup_pinning
make_workdir
build_bench_tool
if [[ " ${SERVER_LIST[*]} " == *" edge "* ]]; then build_edge; fi
make_content

# url_of SERVER: base URL of a started server.
url_of() { if [[ $1 == nginx ]]; then echo "$NGINX_URL"; else echo "$EDGE_URL"; fi; }
pid_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PID"; else echo "$EDGE_PID"; fi; }
log_of() { if [[ $1 == nginx ]]; then echo "$WORK/nginx/logs/error.log"; else echo "$WORK/edge.log"; fi; }

# expect_of SCENARIO: what wrk should see: all 2xx (ok) or all refused (rejected).
expect_of() { if [[ $1 == forbidden ]]; then echo rejected; else echo ok; fi; }

# Each server must answer every URL correctly before we measure it: a fast wrong answer
# (a 404 from a path mix-up, a short body) would otherwise look like a win.
verify_server() {
    local server=$1 base
    base=$(url_of "$server")
    check_urls "$base" "$WORK/lists/hot.urls" 200 "$(file_size "$WORK/root/hot/720p/segment_000.ts")"
    check_urls "$base" "$WORK/lists/large.urls" 200 "$(file_size "$WORK/root/large/1080p/segment_000.ts")"
    check_urls "$base" "$WORK/lists/distinct.urls" 200 "$(file_size "$WORK/root/distinct/480p/segment_000.ts")"
    check_urls "$base" "$WORK/lists/forbidden.urls" 403
    log "$server answers all $(cat "$WORK"/lists/*.urls | wc -l) URLs as expected"
}

# run_wrk SERVER SCENARIO DURATION OUTFILE: wrk's output to OUTFILE; to OUTFILE.cpu the CPU
# seconds used during the run by the server, by wrk and by the whole machine.
run_wrk() {
    local server=$1 scenario=$2 duration=$3 out=$4 base secs list target
    local server0 client0 machine0
    base=$(url_of "$server")
    secs=$(duration_secs "$duration")
    list=$WORK/lists/$scenario.urls
    local args=(-t 1 -c "$CONNECTIONS" -d "$duration" --timeout 5s --latency)
    if [[ $scenario == distinct ]]; then
        args+=(-s "$BENCH_DIR/cycle-urls.lua" "$base/" -- "$list")
    else
        target=$(head -1 "$list")
        args+=("$base$target")
    fi
    server0=$(cpu_seconds "$(pid_of "$server")")
    times >"$WORK/times"
    client0=$(children_cpu_seconds "$WORK/times")
    machine0=$(machine_cpu_seconds)
    # wrk stops itself after `duration`; the timeout only guards against a hang.
    if ! "${CLIENT_PIN[@]}" timeout $((secs + 30)) wrk "${args[@]}" >"$out" 2>&1; then
        die "wrk failed against $server ($scenario):"$'\n'"$(cat "$out")"
    fi
    times >"$WORK/times"
    printf '%s %s %s\n' \
        "$(awk -v a="$server0" -v b="$(cpu_seconds "$(pid_of "$server")")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$client0" -v b="$(children_cpu_seconds "$WORK/times")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$machine0" -v b="$(machine_cpu_seconds)" 'BEGIN { print b - a }')" >"$out.cpu"
    kill -0 "$(pid_of "$server")" 2>/dev/null ||
        die "$server died during $scenario; log tail:"$'\n'"$(tail -30 "$(log_of "$server")")"
}

for server in "${SERVER_LIST[@]}"; do
    if [[ $server == nginx ]]; then start_nginx; else start_edge "$EDGE_CONFIG"; fi
    verify_server "$server"
done

warn_if_busy
rm -rf "$OUT"
mkdir -p "$OUT/raw"
RUNS=$OUT/runs.tsv
: >"$RUNS"

# Warm-up: page cache, nginx's open_file_cache and the edge's memory cache all start cold.
for scenario in $SCENARIOS; do
    for server in "${SERVER_LIST[@]}"; do
        log "warm-up $scenario $server ($WARMUP)"
        run_wrk "$server" "$scenario" "$WARMUP" "$OUT/raw/warmup.$scenario.$server.txt"
    done
done

for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for server in "${SERVER_LIST[@]}"; do
            sleep "$SETTLE"
            raw=$OUT/raw/$scenario.$server.$round.txt
            run_wrk "$server" "$scenario" "$DURATION" "$raw"
            printf '%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$round" "$(expect_of "$scenario")" \
                "$raw" >>"$RUNS"
            log "round $round/$ROUNDS $scenario $server: $(python3 "$BENCH_DIR/wrk_report.py" line "$raw")"
        done
    done
done

# The servers must still answer correctly after the load, not only have survived it.
for server in "${SERVER_LIST[@]}"; do verify_server "$server"; done

cp "$WORK/nginx/logs/error.log" "$OUT/nginx-error.log" 2>/dev/null || true
cp "$WORK/edge.log" "$OUT/edge.log" 2>/dev/null || true
if [[ -f $OUT/edge.log ]]; then
    # The edge logs at EDGE_LOG level; anything at WARN or above during a benchmark is a finding.
    problems=$(grep -cE 'WARN|ERROR|panicked' "$OUT/edge.log" || true)
    log "edge log: $(wc -l <"$OUT/edge.log") lines, $problems WARN/ERROR/panic lines (see $OUT/edge.log)"
fi

status=0
python3 "$BENCH_DIR/wrk_report.py" table "$RUNS" "$OUT" \
    "date=$(date -u +%FT%TZ)" "commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')" "workers=$WORKERS" "connections=$CONNECTIONS" \
    "wrk_threads=1" "duration=$DURATION" "rounds=$ROUNDS" "cpus=$(nproc)" \
    "server_cpus=${SERVER_CPUS:-any}" "client_cpus=${CLIENT_CPUS:-any}" "kernel=$(uname -r)" \
    "machine_busy_before_pct=$MACHINE_BUSY_PCT" || status=$?
log "raw wrk output, results.json and table.md in $OUT"
exit "$status"
