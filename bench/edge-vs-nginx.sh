#!/usr/bin/env bash
# Throughput and tail latency of the edge against real nginx running the secure_link
# location it replaces, on the same content, the same secret and the same CPU budget.
#
# Scenarios (keep-alive; SCENARIOS picks a subset, in this order):
#   hot        one 1.3 MB segment: the edge serves it from its in-memory cache
#   large      one 2.2 MB segment: above the cache's object limit, the edge uses sendfile
#   4mb        one 4 MB segment (6 s of 1080p at 5 Mb/s)            (default with TLS=1)
#   9mb        one 9 MB segment (6 s of 4K)                          (default with TLS=1)
#   distinct   200 different 600 KB segments, cycled through (wrk Lua script, h2load -i)
#   forbidden  the hot segment with a tampered signature: the 403 path, no body I/O
# Protocols: plain HTTP/1.1 with wrk (TLS=0, the default); with TLS=1 both servers listen with
# TLS only and every scenario runs over HTTP/1.1 (wrk, `h1`) and HTTP/2 (h2load from Debian's
# nghttp2-client, `h2`, H2_CONNECTIONS connections x H2_STREAMS concurrent streams).
# Each round runs every scenario against nginx then the edge (A B A B ...); the table shows
# medians over rounds.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10s]  WARMUP [3s, unrecorded, per scenario and server]
#   CONNECTIONS [64, wrk]  WORKERS [1] (nginx worker_processes = edge --workers)
#   TLS [0]  PROTOCOLS ["h1" plain, "h1 h2" with TLS]  H2_CONNECTIONS [16]  H2_STREAMS [4]
#   SCENARIOS ["hot large distinct forbidden" plain, "hot large 4mb 9mb distinct forbidden" TLS]
#   ONLY [both | nginx | edge]
#   OUT [bench/results/latest, latest-tls with TLS=1]  PIN [1]  SERVER_CPUS / CLIENT_CPUS (lib.sh)
#   QUIET_WAIT [60, seconds to wait for an idle machine]  SECRET [anchor-test-secret]
#   EDGE_CONFIG [none: built-in defaults, 256 MiB cache]  EDGE_BIN  EDGE_LOG [info]  KEEP_WORK [0]
#   NGINX_TLS_PROTOCOLS [TLSv1.2 TLSv1.3] (lib.sh: nginx 1.22 alone would leave TLS 1.3 out)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
H2_CONNECTIONS=${H2_CONNECTIONS:-16}
H2_STREAMS=${H2_STREAMS:-4}
if [[ $TLS == 1 ]]; then
    SCENARIOS=${SCENARIOS:-hot large 4mb 9mb distinct forbidden}
    PROTOCOLS=${PROTOCOLS:-h1 h2}
    OUT=${OUT:-$BENCH_DIR/results/latest-tls}
else
    SCENARIOS=${SCENARIOS:-hot large distinct forbidden}
    PROTOCOLS=${PROTOCOLS:-h1}
    OUT=${OUT:-$BENCH_DIR/results/latest}
fi
ONLY=${ONLY:-both}
[[ $TLS == 1 || $PROTOCOLS == h1 ]] || die "HTTP/2 (PROTOCOLS=h2) needs TLS=1"
EDGE_CONFIG=${EDGE_CONFIG:-}
SETTLE=${SETTLE:-1}

case $ONLY in
    both) SERVER_LIST=(nginx edge) ;;
    nginx | edge) SERVER_LIST=("$ONLY") ;;
    *) die "ONLY must be both, nginx or edge" ;;
esac

require_tools "${SERVER_LIST[@]}"
if [[ $TLS == 1 ]]; then
    extra=(openssl)
    if [[ " $PROTOCOLS " == *" h2 "* ]]; then extra+=(h2load:nghttp2-client); fi
    timeout 900 bash -c "source '$REPO_DIR/scripts/lib.sh' && ensure_packages ${extra[*]}" ||
        die "could not install: ${extra[*]}"
fi
raise_nofile 16384
setup_pinning
make_workdir
setup_tls
build_bench_tool
if [[ " ${SERVER_LIST[*]} " == *" edge "* ]]; then build_edge; fi
make_content

# url_of SERVER: base URL of a started server.
url_of() { if [[ $1 == nginx ]]; then echo "$NGINX_URL"; else echo "$EDGE_URL"; fi; }
pid_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PID"; else echo "$EDGE_PID"; fi; }
log_of() { if [[ $1 == nginx ]]; then echo "$WORK/nginx/logs/error.log"; else echo "$WORK/edge.log"; fi; }

# expect_of SCENARIO: what the client should see: all 2xx (ok) or all refused (rejected).
expect_of() { if [[ $1 == forbidden ]]; then echo rejected; else echo ok; fi; }

# body_size SCENARIO: bytes of the scenario's (first) segment.
body_size() {
    local rel
    rel=$(head -1 "$WORK/lists/$1.uris")
    file_size "$WORK/root/${rel#"$PREFIX"}"
}

# Each server must answer every URL correctly before we measure it: a fast wrong answer
# (a 404 from a path mix-up, a short body) would otherwise look like a win. Over TLS curl
# asks for HTTP/2 (ALPN), and wrk's HTTP/1.1 runs fail on any unexpected status anyway.
verify_server() {
    local server=$1 base scenario count=0
    base=$(url_of "$server")
    for scenario in $SCENARIOS; do
        if [[ $scenario == forbidden ]]; then
            check_urls "$base" "$WORK/lists/forbidden.urls" 403
        else
            check_urls "$base" "$WORK/lists/$scenario.urls" 200 "$(body_size "$scenario")"
        fi
        count=$((count + $(wc -l <"$WORK/lists/$scenario.urls")))
    done
    log "$server answers all $count URLs as expected"
}

# load_command PROTOCOL SERVER SCENARIO DURATION OUTFILE: the load generator's command line.
# h1: wrk, 1 thread, CONNECTIONS connections. h2: h2load, 1 thread, H2_CONNECTIONS x
# H2_STREAMS, with one line per request in OUTFILE.log (its latency, for the percentiles).
load_command() {
    local protocol=$1 server=$2 scenario=$3 duration=$4 out=$5 base list secs
    base=$(url_of "$server")
    list=$WORK/lists/$scenario.urls
    secs=$(duration_secs "$duration")
    if [[ $protocol == h2 ]]; then
        LOAD=(h2load -t 1 -c "$H2_CONNECTIONS" -m "$H2_STREAMS" -D "$secs" --log-file "$out.log")
        if [[ $scenario == distinct ]]; then
            sed "s|^|$base|" "$list" >"$WORK/lists/$scenario.$server.full"
            LOAD+=(-i "$WORK/lists/$scenario.$server.full")
        else
            LOAD+=("$base$(head -1 "$list")")
        fi
        return
    fi
    LOAD=(wrk -t 1 -c "$CONNECTIONS" -d "$duration" --timeout 5s --latency)
    if [[ $scenario == distinct ]]; then
        LOAD+=(-s "$BENCH_DIR/cycle-urls.lua" "$base/" -- "$list")
    else
        LOAD+=("$base$(head -1 "$list")")
    fi
}

# run_load PROTOCOL SERVER SCENARIO DURATION OUTFILE: the load generator's output to OUTFILE;
# to OUTFILE.cpu the CPU seconds used during the run by the server, by the load generator and
# by the whole machine.
run_load() {
    local protocol=$1 server=$2 scenario=$3 duration=$4 out=$5 secs
    local server0 client0 machine0
    secs=$(duration_secs "$duration")
    load_command "$@"
    server0=$(cpu_seconds "$(pid_of "$server")")
    times >"$WORK/times"
    client0=$(children_cpu_seconds "$WORK/times")
    machine0=$(machine_cpu_seconds)
    # Both stop themselves after `duration`; the timeout only guards against a hang.
    if ! "${CLIENT_PIN[@]}" timeout $((secs + 30)) "${LOAD[@]}" >"$out" 2>&1; then
        die "${LOAD[0]} failed against $server ($scenario):"$'\n'"$(tail -20 "$out")"
    fi
    times >"$WORK/times"
    printf '%s %s %s\n' \
        "$(awk -v a="$server0" -v b="$(cpu_seconds "$(pid_of "$server")")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$client0" -v b="$(children_cpu_seconds "$WORK/times")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$machine0" -v b="$(machine_cpu_seconds)" 'BEGIN { print b - a }')" >"$out.cpu"
    kill -0 "$(pid_of "$server")" 2>/dev/null ||
        die "$server died during $scenario; log tail:"$'\n'"$(tail -30 "$(log_of "$server")")"
}

# label PROTOCOL SCENARIO: the scenario's name in the tables ("hot", or "h2 hot" with TLS).
label() { if [[ $TLS == 1 ]]; then echo "$1 $2"; else echo "$2"; fi; }

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
for protocol in $PROTOCOLS; do
    for scenario in $SCENARIOS; do
        for server in "${SERVER_LIST[@]}"; do
            log "warm-up $(label "$protocol" "$scenario") $server ($WARMUP)"
            run_load "$protocol" "$server" "$scenario" "$WARMUP" \
                "$OUT/raw/warmup.$protocol.$scenario.$server.txt"
        done
    done
done

for round in $(seq "$ROUNDS"); do
    for protocol in $PROTOCOLS; do
        for scenario in $SCENARIOS; do
            for server in "${SERVER_LIST[@]}"; do
                sleep "$SETTLE"
                raw=$OUT/raw/$protocol.$scenario.$server.$round.txt
                run_load "$protocol" "$server" "$scenario" "$DURATION" "$raw"
                printf '%s\t%s\t%s\t%s\t%s\n' "$(label "$protocol" "$scenario")" "$server" "$round" \
                    "$(expect_of "$scenario")" "$raw" >>"$RUNS"
                log "round $round/$ROUNDS $(label "$protocol" "$scenario") $server: $(python3 "$BENCH_DIR/wrk_report.py" line "$raw")"
            done
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
    "wrk_threads=1" "tls=$TLS" "protocols=$PROTOCOLS" "h2load=${H2_CONNECTIONS}x$H2_STREAMS" \
    "duration=$DURATION" "rounds=$ROUNDS" "cpus=$(nproc)" \
    "server_cpus=${SERVER_CPUS:-any}" "client_cpus=${CLIENT_CPUS:-any}" "kernel=$(uname -r)" \
    "machine_busy_before_pct=$MACHINE_BUSY_PCT" || status=$?
log "raw load generator output, results.json and table.md in $OUT"
exit "$status"
