# shellcheck shell=bash
# Shared helpers for bench/edge-vs-nginx.sh, bench/edge-memory.sh and bench/viewers.sh. Source it; don't run it.
#
# Everything here is bounded: each wait has a deadline, each external command a `timeout`, and
# the servers we start are killed by PID on exit (never by name: other nginx or edge processes
# on the machine are not ours).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
# The workspace shares one target dir; respect an override like cargo does.
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# EDGE_BIN overrides the binary under test (e.g. an older build to compare against); the
# default one is rebuilt first.
EDGE_BIN=${EDGE_BIN:-$TARGET_DIR/release/edge}
BENCH_BIN=$TARGET_DIR/release/bench

# Same secret as the nginx compatibility spec; it is embedded in nginx.conf, so keep it simple.
SECRET=${SECRET:-anchor-test-secret}
PREFIX=/hls/
WORKERS=${WORKERS:-1}
# Log level for the edge. It must let the `listening` lines (info) through.
EDGE_LOG=${EDGE_LOG:-info}

STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The project's helpers: ensure_packages (apt-get what is missing) and ensure_rust.
# shellcheck source=../scripts/lib.sh
source "$REPO_DIR/scripts/lib.sh"

# require_tools [nginx]: what the scripts run, installed when missing.
require_tools() {
    local pkgs=(curl wrk python3 taskset:util-linux timeout:coreutils)
    # nginx-light includes the secure_link module (Debian builds it into every flavour).
    if [[ " $* " == *" nginx "* ]]; then pkgs+=(nginx:nginx-light); fi
    ensure_rust || die "no Rust toolchain and none could be installed"
    timeout 900 bash -c "source '$REPO_DIR/scripts/lib.sh' && ensure_packages ${pkgs[*]}" ||
        die "could not install: ${pkgs[*]}"
}

# duration_secs 10s|2m|15 -> seconds (wrk's own syntax, needed to size `timeout`).
duration_secs() {
    local d=$1
    case $d in
        *s) echo "${d%s}" ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *) echo "$d" ;;
    esac
}

# A free loopback port for nginx, which cannot report an ephemeral port back to us the way the
# edge logs it. The tiny window between close and nginx's bind is acceptable for a bench.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Many keep-alive connections need many descriptors, in wrk and in the servers.
raise_nofile() {
    local want=$1 hard
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited && $hard -lt $want ]]; then
        want=$hard
    fi
    ulimit -Sn "$want" || die "cannot raise the open-files limit to $want"
}

# CPU pinning. Two cores are shared by the load generator and the server under test; without
# pinning the scheduler moves them around and the run-to-run noise dominates the comparison.
# With one worker (the default) the server gets core 1 and wrk core 0, identically for nginx
# (master and worker) and the edge (every thread: tokio workers and blocking pool alike). With
# more workers than that leaves room for, nothing is pinned. PIN=0 disables it; SERVER_CPUS /
# CLIENT_CPUS (taskset lists) override the choice.
setup_pinning() {
    local cpus
    cpus=$(nproc)
    SERVER_CPUS=${SERVER_CPUS:-}
    CLIENT_CPUS=${CLIENT_CPUS:-}
    if [[ ${PIN:-1} == 1 && -z $SERVER_CPUS && -z $CLIENT_CPUS && $cpus -ge $((WORKERS + 1)) ]]; then
        CLIENT_CPUS=0
        SERVER_CPUS=1-$WORKERS
    fi
    # Command prefixes, not functions: `prefix server &` must leave the server's own PID in $!
    # (taskset execs it), so cleanup can stop exactly that process.
    SERVER_PIN=() CLIENT_PIN=()
    if [[ -n $SERVER_CPUS ]]; then SERVER_PIN=(taskset -c "$SERVER_CPUS"); fi
    if [[ -n $CLIENT_CPUS ]]; then CLIENT_PIN=(taskset -c "$CLIENT_CPUS"); fi
    log "pinning: server cpus=${SERVER_CPUS:-any} client cpus=${CLIENT_CPUS:-any} (of $cpus)"
}

# machine_busy_pct: share of all CPUs busy over one second. Anything else running (a cargo
# build...) competes with the servers and wrk on two cores and skews the comparison.
machine_busy_pct() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f\n", 100 * busy / (busy + idle + 0.001) }'
}

# warn_if_busy: wait up to QUIET_WAIT seconds (default 60) for the machine to be quiet, then
# say so if it still is not.
warn_if_busy() {
    local busy deadline=$((SECONDS + ${QUIET_WAIT:-60}))
    busy=$(machine_busy_pct)
    while [[ $busy -gt 10 && $SECONDS -lt $deadline ]]; do
        log "machine ${busy}% busy, waiting for it to calm down (QUIET_WAIT=${QUIET_WAIT:-60}s)"
        sleep 4
        busy=$(machine_busy_pct)
    done
    if [[ $busy -gt 10 ]]; then
        log "WARNING: the machine is already ${busy}% busy (another build or test?): results will be noisy"
        ps -eo pcpu,pid,comm --sort=-pcpu | head -4 >&2
    fi
    MACHINE_BUSY_PCT=$busy
}

# make_workdir: a private temp prefix for content, configs, logs and pid files.
make_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX")
    mkdir -p "$WORK/root" "$WORK/lists" "$WORK/nginx/logs" "$WORK/nginx/temp"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # Give graceful shutdown 10 s, then make sure.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n ${WORK:-} && -d $WORK ]]; then
        if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
    fi
}

build_bench_tool() {
    log "building bench helper (release)"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release --quiet -p bench) ||
        die "cargo build -p bench failed"
}

build_edge() {
    if [[ $EDGE_BIN != "$TARGET_DIR/release/edge" ]]; then
        log "using EDGE_BIN=$EDGE_BIN as is (not building)"
        return 0
    fi
    log "building edge (release)"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release --quiet -p edge) ||
        die "cargo build --release -p edge failed (is the edge compiling yet? try ONLY=nginx)"
}

# make_content: the content tree plus signed URL lists in $WORK/lists:
# hot.urls, large.urls, 4mb.urls, 9mb.urls, distinct.urls (valid) and forbidden.urls
# (tampered signature).
make_content() {
    "$BENCH_BIN" content --root "$WORK/root" --lists "$WORK/lists" --prefix "$PREFIX"
    # A day is far longer than any run; a link expiring mid-run would turn 200s into 410s.
    local expires=$(( $(date +%s) + 86400 )) name
    for name in hot large 4mb 9mb distinct; do
        HLS_SIGNING_SECRET=$SECRET "$BENCH_BIN" sign --expires "$expires" \
            <"$WORK/lists/$name.uris" >"$WORK/lists/$name.urls"
    done
    # The 403 scenario asks for the hot segment, so only the signature differs from `hot`.
    HLS_SIGNING_SECRET=$SECRET "$BENCH_BIN" sign --expires "$expires" --tamper \
        <"$WORK/lists/hot.uris" >"$WORK/lists/forbidden.urls"
    log "content: $(du -sh "$WORK/root" | cut -f1) in $WORK/root, $(wc -l <"$WORK/lists/distinct.urls") distinct segments"
}

# TLS=1: both servers listen with TLS only (HTTP/1.1 and HTTP/2 by ALPN) on the same
# self-signed P-256 certificate; clients skip verification (curl -k; wrk and h2load never
# verify).
TLS=${TLS:-0}
CURL_TLS=()
SCHEME=http

# make_cert: a self-signed P-256 certificate for localhost in $WORK/tls (both servers use it).
make_cert() {
    mkdir -p "$WORK/tls"
    timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>"$WORK/tls/openssl.log" ||
        die "openssl could not make a certificate: $(tail -3 "$WORK/tls/openssl.log")"
}

# setup_tls: with TLS=1, a certificate and clients that speak TLS to the servers.
setup_tls() {
    if [[ $TLS == 1 ]]; then
        make_cert
        CURL_TLS=(-k)
        SCHEME=https
    fi
}

# start_nginx: the location block is the one of the compatibility spec
# (docs/nginx-secure-link.md), only `alias` points at our tree and the secret is $SECRET.
# With TLS=1 the listener is `ssl http2` (nginx 1.22's syntax, still accepted later) with
# nginx's default ciphers and NGINX_TLS_PROTOCOLS [TLSv1.2 TLSv1.3]: nginx 1.22's default leaves
# TLS 1.3 out (it joined the default in 1.23.4, and Debian's own nginx.conf turns it on), so
# without it clients would speak TLS 1.2 to nginx and TLS 1.3 to the edge.
start_nginx() {
    [[ $SECRET =~ ^[A-Za-z0-9._-]+$ ]] || die "SECRET must match [A-Za-z0-9._-]+ (it is pasted into nginx.conf)"
    local protocols=${NGINX_TLS_PROTOCOLS:-TLSv1.2 TLSv1.3}
    [[ $protocols =~ ^[A-Za-z0-9.\ ]+$ ]] ||
        die "NGINX_TLS_PROTOCOLS must be protocol names such as \"TLSv1.2 TLSv1.3\" (it is pasted into nginx.conf)"
    local port user_line="" dir=$WORK/nginx listen_extra=""
    port=$(free_port)
    if [[ $TLS == 1 ]]; then
        listen_extra=" ssl http2;
        ssl_protocols $protocols;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem"
    fi
    # Debian's nginx drops workers to www-data; mktemp dirs are 0700 root, so stay root.
    if [[ $(id -u) -eq 0 ]]; then user_line="user root;"; fi
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes $WORKERS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    # wrk keeps its connections for the whole run; never make it reconnect.
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $dir/temp/client_body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    server {
        listen 127.0.0.1:$port$listen_extra;
        location /hls/ {
            secure_link \$arg_md5,\$arg_expires;
            secure_link_md5 "\$secure_link_expires\${uri}$SECRET";
            if (\$secure_link = "") { return 403; }
            if (\$secure_link = "0") { return 410; }
            alias $WORK/root/;
            sendfile on; tcp_nopush on;
            open_file_cache max=10000 inactive=60s;
        }
        location / { return 404; }
    }
}
EOF
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" ||
        die "nginx -t failed: $(tail -5 "$dir/logs/error.log")"
    "${SERVER_PIN[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >"$dir/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    STARTED_PIDS+=("$NGINX_PID")
    NGINX_URL=$SCHEME://127.0.0.1:$port
    wait_http "$NGINX_URL/" 404 "$NGINX_PID" "$dir/logs/error.log"
    log "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') pid $NGINX_PID on $NGINX_URL ($WORKERS worker(s))"
}

# listener_addr LOG NAME: the address of the edge's listener NAME from its `listening` line,
# e.g. `INFO edge: listening listener="public" addr=127.0.0.1:PORT`.
listener_addr() {
    # Strip ANSI escapes anyway, in case the edge colours its log regardless of NO_COLOR.
    # `addr=` must start a field, so `peer_addr=` does not match.
    sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'listening' | grep -E "listener=\"?$2\"?([[:space:]]|$)" |
        grep -oE '(^|[[:space:]])addr="?127\.0\.0\.1:[0-9]+' | head -1 | grep -oE '[0-9.]+:[0-9]+$' || true
}

# start_edge [CONFIG_FILE]: binds port 0 and reads the chosen address from its log. It serves
# EDGE_ROOT when set (an origin's <data>/hls), else the generated content tree.
start_edge() {
    local config_args=() log_file=$WORK/edge.log addr="" listener=public listen_args
    if [[ -n ${1:-} ]]; then config_args=(--config "$1"); fi
    listen_args=(--listen 127.0.0.1:0)
    if [[ $TLS == 1 ]]; then
        listener=tls
        listen_args+=(--tls-listen 127.0.0.1:0 --tls-cert "$WORK/tls/cert.pem"
            --tls-key "$WORK/tls/key.pem")
    fi
    [[ -x $EDGE_BIN ]] || die "$EDGE_BIN not found"
    # NO_COLOR: tracing's ANSI colours would split `addr=` from its value in the log.
    HLS_SIGNING_SECRET=$SECRET NO_COLOR=1 RUST_LOG=$EDGE_LOG "${SERVER_PIN[@]}" "$EDGE_BIN" \
        "${listen_args[@]}" --admin-listen 127.0.0.1:0 --root "${EDGE_ROOT:-$WORK/root}" --prefix "$PREFIX" \
        --workers "$WORKERS" --log-format text "${config_args[@]}" \
        >"$WORK/edge.stdout" 2>"$log_file" &
    EDGE_PID=$!
    STARTED_PIDS+=("$EDGE_PID")
    for _ in $(seq 150); do
        kill -0 "$EDGE_PID" 2>/dev/null ||
            die "edge exited during start-up; log tail:"$'\n'"$(tail -20 "$log_file")"
        addr=$(listener_addr "$log_file" "$listener")
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || die "edge did not log its $listener listener within 15 s; log tail:"$'\n'"$(tail -20 "$log_file")"
    EDGE_URL=$SCHEME://$addr
    # The admin listener (metrics) is optional for the benchmarks: empty if not logged.
    EDGE_ADMIN_URL=$(listener_addr "$log_file" admin)
    EDGE_ADMIN_URL=${EDGE_ADMIN_URL:+http://$EDGE_ADMIN_URL}
    wait_http "$EDGE_URL/" 404 "$EDGE_PID" "$log_file"
    log "edge pid $EDGE_PID on $EDGE_URL ($WORKERS worker(s))"
}

# wait_http URL STATUS PID LOG: wait up to ~10 s for URL to answer STATUS, or fail.
wait_http() {
    local url=$1 want=$2 pid=$3 log_file=$4 code
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "server $pid died; log tail:"$'\n'"$(tail -20 "$log_file")"
        code=$(curl -s "${CURL_TLS[@]}" -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        if [[ $code == "$want" ]]; then return 0; fi
        sleep 0.1
    done
    die "$url answered '$code', expected $want; log tail:"$'\n'"$(tail -20 "$log_file")"
}

# check_urls BASE LIST STATUS [SIZE]: every URL of LIST answers STATUS (and SIZE body bytes).
# One curl process with keep-alive, so checking 200 URLs takes well under a second.
check_urls() {
    local base=$1 list=$2 want=$3 size=${4:-} cfg=$WORK/curl.cfg out bad
    sed -e "s|^|url = \"$base|" -e 's|$|"\noutput = "/dev/null"|' "$list" >"$cfg"
    out=$(timeout 120 curl -s "${CURL_TLS[@]}" --max-time 10 -w '%{http_code} %{size_download}\n' -K "$cfg") ||
        die "curl failed checking $list against $base"
    bad=$(awk -v want="$want" -v size="$size" \
        '$1 != want || (size != "" && $2 != size)' <<<"$out" | sort | uniq -c)
    [[ $(wc -l <<<"$out") -eq $(wc -l <"$list") ]] || die "checking $list: expected $(wc -l <"$list") answers"
    [[ -z $bad ]] || die "$base: $list: expected $want ${size:+($size bytes)}, got (count status bytes):"$'\n'"$bad"
}

# file_size PATH
file_size() { stat -c %s "$1"; }

# server_pids PID: the process and its children (nginx's workers; the edge has none).
# shellcheck disable=SC2046 # the children file is a space-separated PID list: split it
server_pids() { echo "$1" $(cat "/proc/$1/task/"*/children 2>/dev/null); }

# machine_cpu_seconds: user+nice+system time of all cores since boot. Minus what the server
# and wrk used, it shows how much else ran during a run: the usual cause of an outlier on a
# shared box. (irq/softirq time is left out: loopback traffic of our own lands there.)
machine_cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4) / hz }' /proc/stat
}

# children_cpu_seconds FILE: user+system time of this shell's finished children (wrk, through
# `timeout`) from FILE, the output of the `times` builtin. `times` must run in the main shell
# (`times >FILE`), not in a $(...) subshell, whose counters start at zero.
children_cpu_seconds() {
    awk 'NR == 2 { total = 0
        for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); total += t[1] * 60 + t[2] }
        printf "%.2f\n", total }' "$1"
}

# cpu_seconds PID: user+system CPU time used so far by the server and its children. Read
# around each run it tells how busy the server was and what a request cost it, which still
# compares the servers when the load generator, not the server, is the bottleneck.
cpu_seconds() {
    local ticks=0 pid t
    for pid in $(server_pids "$1"); do
        # Fields after the `(comm)`: state is $1, so utime (field 14) is $12, stime $13.
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)
        ticks=$((ticks + ${t:-0}))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f\n", t / hz }'
}
