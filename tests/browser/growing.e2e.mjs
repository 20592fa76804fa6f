// Browser test of watching while a video transcodes, driven by tests/web_browser.rs, which
// starts the edge and the origin, uploads a clip and passes, once the clip is playable but
// still encoding:
//
//   WEB_E2E_BASE_URL  the origin (serves the page)   WEB_E2E_TOKEN  the owner's token
//   WEB_E2E_VIDEO     the video's id                 WEB_E2E_CLIP_SECS  its duration
//   WEB_E2E_CHROMIUM  the browser                    WEB_E2E_ARTIFACTS  screenshot directory
//
// Chromium opens the player with hls.js: it must start at 0 while the job still runs, say that
// processing continues, extend its seek bar as the playlists grow, and play to the end without
// a reload and without a stall longer than 2 s. Prints one line per check and `N passed, N
// failed`; exits non-zero on the first failure, after a screenshot.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: this script is run by tests/web_browser.rs (cargo test)`);
    process.exit(2);
  }
  return value;
};
const BASE = env('WEB_E2E_BASE_URL');
const TOKEN = env('WEB_E2E_TOKEN');
const VIDEO = env('WEB_E2E_VIDEO');
const CLIP_SECS = Number(env('WEB_E2E_CLIP_SECS'));
const CHROMIUM = process.env.WEB_E2E_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.WEB_E2E_ARTIFACTS || 'target/test-artifacts/web';
const MAX_STALL_MS = 2000;

const started = Date.now();
const log = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
let passed = 0;
class CheckFailed extends Error {}
function check(name, ok, detail = '') {
  if (!ok) throw new CheckFailed(`${name}${detail ? `: ${detail}` : ''}`);
  passed += 1;
  log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'web-e2e-growing-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1100, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const page = context.pages()[0] || await context.newPage();
let masterLoads = 0;
page.on('request', (r) => {
  if (r.url().includes('/master.m3u8')) masterLoads += 1;
});
let exitCode = 0;
try {
  await page.goto(`${BASE}/#/`);
  await page.evaluate((t) => localStorage.setItem('hls-edge.token', t), TOKEN);
  await page.goto(`${BASE}/?engine=hlsjs#/watch/${VIDEO}`);
  // Ready, and the playlists loaded: the player can say it is ready before the video element
  // knows its duration, which the checks below compare against.
  await page.waitForFunction(() => ['playing', 'ready'].includes(document.querySelector('#player')?.dataset.state)
    && Number.isFinite(document.querySelector('#video')?.duration),
    null, { timeout: 20_000, polling: 100 });
  // Sampled in the page so the numbers are the player's own.
  const first = await page.evaluate(() => {
    const v = document.querySelector('#video');
    const root = document.querySelector('#player');
    return { growing: root.dataset.growing, t: v.currentTime, duration: v.duration,
      processing: document.querySelector('#processing').textContent,
      hidden: document.querySelector('#processing').hidden };
  });
  check('the player opens while the video is still processing', first.growing === 'true', JSON.stringify(first));
  check('it says that processing continues', !first.hidden && /processing/i.test(first.processing), first.processing);
  check('playback starts at the beginning', first.t < 1.5, `currentTime ${first.t}`);
  const availableAtStart = first.duration;
  await page.evaluate(() => document.querySelector('#video').play());
  // Watch it play: the longest time the playhead stood still while not paused, the largest
  // duration the seek bar reached, and whether it ended.
  const result = await page.evaluate(async ({ secs, maxWaitMs }) => {
    const v = document.querySelector('#video');
    const root = document.querySelector('#player');
    let last = v.currentTime;
    let stillSince = performance.now();
    let longestStill = 0;
    const durations = [];
    let sawComplete = false;
    const deadline = performance.now() + maxWaitMs;
    while (!v.ended && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      if (Number.isFinite(v.duration)) durations.push(v.duration);
      if (root.dataset.growing === 'false') sawComplete = true;
      if (v.currentTime !== last || v.paused) {
        last = v.currentTime;
        stillSince = performance.now();
      } else {
        longestStill = Math.max(longestStill, performance.now() - stillSince);
      }
    }
    return { ended: v.ended, t: v.currentTime, longestStill, maxDuration: Math.max(...durations),
      sawComplete, state: root.dataset.state, error: document.querySelector('#diag-error')?.textContent };
  }, { secs: CLIP_SECS, maxWaitMs: (CLIP_SECS + 40) * 1000 });
  check('it played to the end', result.ended && result.t > CLIP_SECS - 1, JSON.stringify(result));
  check('past what was available when it started, without a reload',
    result.t > availableAtStart + 2 && masterLoads === 1, `started with ${availableAtStart.toFixed(1)} s, master loaded ${masterLoads} time(s)`);
  check('the seek bar extended as the playlists grew', result.maxDuration > availableAtStart + 2,
    `${availableAtStart.toFixed(1)} s -> ${result.maxDuration.toFixed(1)} s`);
  check(`no stall longer than ${MAX_STALL_MS} ms`, result.longestStill <= MAX_STALL_MS, `${Math.round(result.longestStill)} ms`);
  check('the player noticed processing had completed', result.sawComplete);
} catch (e) {
  exitCode = 1;
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] FAILED: ${e.message}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'growing-failure.png') }).catch(() => {});
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${exitCode} failed`);
process.exit(exitCode);
