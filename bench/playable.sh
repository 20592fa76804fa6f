#!/usr/bin/env bash
# Time to first playable and time to complete: a release `origin serve` (embedded store, one
# in-process worker, publishing while it encodes) takes a generated 1080p clip by upload; the
# clock starts when the upload has been accepted and stream-info is polled every 200 ms until
# it answers 200 (playable: every rung's first segment and the master are published) and until
# it says complete. With BOTH=1 the same clip is then processed with
# `publish_while_encoding = false` for comparison (playable = complete).
#
#   bench/playable.sh                      # 10-minute 1080p clip, 6 s segments, veryfast
#   CLIP_SECS=60 BOTH=1 bench/playable.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust
ensure_packages ffmpeg:ffmpeg curl:curl python3:python3 openssl:openssl

CLIP_SECS=${CLIP_SECS:-600}
SEG=${SEG:-6}
PRESET=${PRESET:-veryfast}
BOTH=${BOTH:-0}
work=$(mktemp -d /tmp/playable-bench.XXXXXX)
origin_pid=
cleanup() {
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null && wait "$origin_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ensure_web_vendor
cargo build --release -q -p origin
origin=${CARGO_TARGET_DIR:-$PWD/target}/release/origin

echo "generating a ${CLIP_SECS} s 1920x1080 30 fps clip with audio" >&2
timeout 3600 ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=1920x1080:r=30:d=$CLIP_SECS" \
    -f lavfi -i "sine=f=440:d=$CLIP_SECS" -c:v libx264 -preset ultrafast -crf 23 -c:a aac \
    -shortest -y "$work/clip.mp4"

export JWT_SECRET HLS_SIGNING_SECRET
JWT_SECRET=$(openssl rand -hex 24)
HLS_SIGNING_SECRET=$(openssl rand -hex 24)
token=$("$origin" token --user bench --ttl 4h)

# One run: start the origin, upload, poll; sets RESULT to "playable_s complete_s". Runs in
# this shell (not a subshell), so the exit trap always knows the origin to stop.
RESULT=
run() {
    local growing=$1
    rm -rf "$work/data" && mkdir -p "$work/data"
    printf '[transcode]\nsegment_secs = %s\nx264_preset = "%s"\nnvenc = "off"\npublish_while_encoding = %s\n[uploads]\nmin_free_bytes = 0\n[server]\nmax_upload_bytes = 68719476736\n' \
        "$SEG" "$PRESET" "$growing" >"$work/origin.toml"
    NO_COLOR=1 RUST_LOG=info "$origin" --config "$work/origin.toml" --data "$work/data" serve \
        --listen 127.0.0.1:0 --admin-listen "" --edge-base-url http://127.0.0.1:9 \
        2>"$work/origin.log" &
    origin_pid=$!
    local addr=
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/.*listening listener="api" addr=\([0-9.:]*\).*/\1/p' "$work/origin.log" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$work/origin.log" >&2; return 1; }
    local id
    # --upload-file streams the clip (--data-binary would read all of it into memory first).
    id=$(curl -sf --max-time 1800 -X POST -H "Authorization: Bearer $token" -H 'Content-Type: video/mp4' \
        --upload-file "$work/clip.mp4" "http://$addr/api/videos" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    [ -n "$id" ] || { echo "the upload failed" >&2; tail -5 "$work/origin.log" >&2; return 1; }
    RESULT=$(python3 - "$addr" "$id" "$token" <<'PY'
import json, sys, time, urllib.request, urllib.error
addr, vid, token = sys.argv[1:4]
start = time.monotonic()
playable = complete = None
while complete is None and time.monotonic() - start < 7200:
    req = urllib.request.Request(f"http://{addr}/api/videos/{vid}/stream-info",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.load(r)
            status = r.status
    except urllib.error.HTTPError as e:
        sys.exit(f"stream-info answered {e.code}: {e.read().decode()[:300]}")
    now = time.monotonic() - start
    if status == 200 and playable is None:
        playable = now
    if status == 200 and body.get("complete", body.get("ready")):
        complete = now
    time.sleep(0.2)
if complete is None:
    sys.exit(f"not complete after {time.monotonic() - start:.0f} s")
print(f"{playable:.1f} {complete:.1f}")
PY
    ) || { tail -5 "$work/origin.log" >&2; return 1; }
    kill "$origin_pid" && wait "$origin_pid" 2>/dev/null || true
    origin_pid=
}

echo "publish while encoding: uploading and waiting (this takes about as long as the encode)" >&2
run true
read -r p1 c1 <<<"$RESULT"
printf '%-26s %10s %12s\n' "mode" "playable_s" "complete_s"
printf '%-26s %10s %12s\n' "publish_while_encoding" "$p1" "$c1"
if [ "$BOTH" = 1 ]; then
    run false
    read -r p2 c2 <<<"$RESULT"
    printf '%-26s %10s %12s\n' "all at once" "$p2" "$c2"
fi
echo "clip ${CLIP_SECS} s 1080p30, segments ${SEG} s, x264 ${PRESET}; goal: playable within $((SEG + 5)) s" >&2
