#!/usr/bin/env bash
# Transcode benchmark: the pipeline (`origin transcode`), the bare ffmpeg command it runs, and
# the seeds' approach (one ffmpeg per rung), alternately on the same generated 1080p clip, plus
# decoding the clip alone (the work one pass saves). Prints wall seconds per round, the ratios
# of the medians and the best ratio one pass could reach over the loop on this machine.
#
#   bench/transcode.sh                 # 60 s clip, 2 rounds
#   CLIP_SECS=20 ROUNDS=3 bench/transcode.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_rust
ensure_packages ffmpeg:ffmpeg python3:python3

CLIP_SECS=${CLIP_SECS:-60}
ROUNDS=${ROUNDS:-2}
PRESET=${PRESET:-veryfast}
SEG=${SEG:-6}
work=$(mktemp -d /tmp/transcode-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

ensure_web_vendor
cargo build --release -q -p origin
origin=${CARGO_TARGET_DIR:-$PWD/target}/release/origin

echo "generating a ${CLIP_SECS}s 1920x1080 30 fps clip with audio" >&2
ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=s=1920x1080:r=30:d=$CLIP_SECS" \
    -f lavfi -i "sine=f=440:d=$CLIP_SECS" -c:v libx264 -preset ultrafast -crf 18 -c:a aac -shortest \
    -y "$work/clip.mp4"

now() { date +%s.%N; }

printf '[transcode]\nsegment_secs = %s\nx264_preset = "%s"\n' "$SEG" "$PRESET" >"$work/origin.toml"

run_pipeline() {
    rm -rf "$work/data"
    "$origin" --config "$work/origin.toml" --data "$work/data" \
        transcode --encoder cpu "$work/clip.mp4" >/dev/null 2>"$work/pipeline.err" ||
        { tail -20 "$work/pipeline.err" >&2; return 1; }
}

run_bare() {
    rm -rf "$work/bare"
    mkdir -p "$work/bare"
    ffmpeg "${bare_args[@]}" >/dev/null
}

# The seeds' loop: decode the source once per rung, scale, encode, segment.
run_per_rung() {
    rm -rf "$work/loop"
    local name w h v a
    while read -r name w h v a; do
        mkdir -p "$work/loop/$name"
        ffmpeg -hide_banner -nostdin -y -loglevel error -i "$work/clip.mp4" \
            -vf "scale=$w:$h,format=yuv420p" -c:v libx264 -preset "$PRESET" -profile:v high \
            -b:v "${v}k" -maxrate "$((v * 11 / 10))k" -bufsize "$((v * 2))k" \
            -g $((30 * SEG)) -keyint_min $((30 * SEG)) -sc_threshold 0 \
            -c:a aac -ac 2 -b:a "${a}k" \
            -f hls -hls_time "$SEG" -hls_playlist_type vod \
            -hls_segment_filename "$work/loop/$name/segment_%03d.ts" "$work/loop/$name/index.m3u8"
    done <<RUNGS
1080p 1920 1080 5000 128
720p 1280 720 3000 96
480p 852 480 1500 96
360p 640 360 800 64
240p 426 240 400 64
RUNGS
}

# Decoding the source alone: what the per-rung loop repeats once per extra rung, so it bounds
# how much one pass can save (see the summary).
run_decode() {
    ffmpeg -hide_banner -nostdin -loglevel error -i "$work/clip.mp4" -map 0:v -f null - >/dev/null
}

mapfile -t bare_args < <("$origin" --config "$work/origin.toml" --data "$work/probe" \
    transcode --encoder cpu --print-ffmpeg "$work/bare" "$work/clip.mp4" 2>/dev/null)

results=$work/results.txt
for round in $(seq "$ROUNDS"); do
    for kind in pipeline bare per_rung decode; do
        start=$(now)
        "run_$kind"
        end=$(now)
        secs=$(python3 -c "print(f'{$end - $start:.2f}')")
        echo "round $round $kind ${secs}s" >&2
        echo "$kind $secs" >>"$results"
    done
done

python3 - "$results" "$CLIP_SECS" "$PRESET" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
kinds = ("pipeline", "bare", "per_rung", "decode")
med = {k: statistics.median(float(s) for kk, s in rows if kk == k) for k in kinds}
print(f"clip {sys.argv[2]} s 1080p, libx264 {sys.argv[3]}, medians over {len(rows)//len(kinds)} rounds")
for k, v in med.items():
    print(f"  {k:9s} {v:7.2f} s")
print(f"pipeline / bare     = {med['pipeline'] / med['bare']:.3f}  (target <= 1.05)")
print(f"per_rung / pipeline = {med['per_rung'] / med['pipeline']:.3f}  (target >= 1.5)")
# The loop decodes the source once per rung, the pipeline once; everything else (scaling,
# encoding) is the same work. With R rungs the best one pass can do is
# (R * decode + rest) / (decode + rest), where rest = bare - decode.
rungs, d = 5, med["decode"]
rest = med["bare"] - d
print(f"decode alone {d:.2f} s = {100 * d / med['bare']:.1f} % of the bare command: "
      f"one pass can save at most (5 x decode + rest) / (decode + rest) = {(rungs * d + rest) / med['bare']:.3f}")
PY
