#!/usr/bin/env bash
# Quick start: install what is missing, build, and start the whole system on this machine:
# the origin (API + in-process workers + embedded job store, no Redis) and the edge in front
# of its published tree. Prints a development token, an upload command, and a signed example
# segment URL served by the edge. Ctrl-C stops both.
#
# Environment: DATA_DIR [var/data], EDGE_LISTEN [127.0.0.1:8080], ORIGIN_LISTEN [127.0.0.1:8000],
# EDGE_ADMIN_LISTEN [127.0.0.1:9090], ORIGIN_ADMIN_LISTEN [127.0.0.1:9091], BIN_DIR [unset: build
# release binaries and use them; set: use the edge and origin binaries there as they are].
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages curl:curl openssl:openssl ffmpeg:ffmpeg
if [ -z "${BIN_DIR:-}" ]; then
    ensure_rust
    # The origin's build embeds hls.js from web/node_modules.
    ensure_web_vendor
    cargo build --release --bin edge --bin origin
fi
bin=${BIN_DIR:-./target/release}

data=${DATA_DIR:-$PWD/var/data}
edge_listen=${EDGE_LISTEN:-127.0.0.1:8080}
origin_listen=${ORIGIN_LISTEN:-127.0.0.1:8000}
edge_admin=${EDGE_ADMIN_LISTEN:-127.0.0.1:9090}
origin_admin=${ORIGIN_ADMIN_LISTEN:-127.0.0.1:9091}
mkdir -p "$data/hls"

# No built-in secrets: use the operator's, or make fresh ones for this run.
export HLS_SIGNING_SECRET=${HLS_SIGNING_SECRET:-$(openssl rand -hex 16)}
export JWT_SECRET=${JWT_SECRET:-$(openssl rand -hex 24)}
export EDGE_PURGE_TOKEN=${EDGE_PURGE_TOKEN:-$(openssl rand -hex 16)}

# A small example video tree so the edge has something to serve at once.
video=00000000-0000-4000-8000-000000000001
if [ ! -f "$data/hls/$video/720p/segment_000.ts" ]; then
    mkdir -p "$data/hls/$video/720p"
    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=s=1280x720:r=25:d=6 \
        -c:v libx264 -preset ultrafast -f mpegts -y "$data/hls/$video/720p/segment_000.ts"
fi

# The web page (served by the origin) fetches segments from the edge: allow it by CORS.
printf '[http]\ncors_allowed_origins = ["http://%s", "http://localhost:%s"]\n' \
    "$origin_listen" "${origin_listen##*:}" >"$data/edge-web.toml"
# Whatever ends the script (Ctrl-C, an error) stops what it started; a service that has already
# exited must not keep the other from being waited for.
services=()
trap 'kill "${services[@]}" 2>/dev/null || true; wait' INT TERM EXIT
"$bin/edge" --config "$data/edge-web.toml" --listen "$edge_listen" \
    --admin-listen "$edge_admin" --root "$data/hls" &
services+=($!)
# --dev: the page can mint development tokens (never in production).
"$bin/origin" --data "$data" serve --dev --listen "$origin_listen" \
    --admin-listen "$origin_admin" --edge-base-url "http://$edge_listen" \
    --edge-admin-url "http://$edge_admin" &
services+=($!)

token=$("$bin/origin" token --user dev --admin --ttl 12h)
url=$("$bin/edge" sign --ttl 3600 "/hls/$video/720p/segment_000.ts")
cat <<MSG

web app:     http://$origin_listen/   (sign in with the token below)
origin API:  http://$origin_listen/api   (metrics http://$origin_admin/metrics)
edge:        http://$edge_listen      (metrics http://$edge_admin/metrics)
data:        $data
dev token (12 h, admin):
  $token
upload a video:
  curl -H "Authorization: Bearer \$TOKEN" --data-binary @clip.mp4 http://$origin_listen/api/videos
signed example segment at the edge (valid 1 h; tampered: 403, expired: 410):
  curl -o /dev/null -w '%{http_code} %{size_download}\\n' 'http://$edge_listen$url'
Ctrl-C stops both services.
MSG
wait
