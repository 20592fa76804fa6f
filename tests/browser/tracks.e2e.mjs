// Browser test of audio and subtitle renditions, driven by tests/tracks.rs with a published
// video of three audio languages and two subtitle tracks:
//
//   WEB_E2E_BASE_URL  the origin    WEB_E2E_TOKEN  the owner's token    WEB_E2E_VIDEO  its id
//   WEB_E2E_CUE_AT    when the first English cue starts (seconds)
//   WEB_E2E_CHROMIUM  the browser (default /usr/bin/chromium; never downloaded)
//
// hls.js must offer the three audio tracks and the two subtitle tracks, switch to the second
// audio track and keep playing, and show the English cue within 100 ms of its time. Prints
// one line per check and `N passed, N failed`.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: this script is run by tests/tracks.rs (cargo test)`);
    process.exit(2);
  }
  return value;
};
const BASE = env('WEB_E2E_BASE_URL');
const TOKEN = env('WEB_E2E_TOKEN');
const VIDEO = env('WEB_E2E_VIDEO');
const CUE_AT = Number(env('WEB_E2E_CUE_AT'));
const CHROMIUM = process.env.WEB_E2E_CHROMIUM || '/usr/bin/chromium';

const started = Date.now();
const log = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
let passed = 0;
function check(name, ok, detail = '') {
  if (!ok) throw new Error(`${name}${detail ? `: ${detail}` : ''}`);
  passed += 1;
  log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'web-e2e-tracks-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const page = context.pages()[0] || await context.newPage();
let failed = 0;
try {
  await page.goto(`${BASE}/#/`);
  await page.evaluate((t) => localStorage.setItem('hls-edge.token', t), TOKEN);
  await page.goto(`${BASE}/?engine=hlsjs#/watch/${VIDEO}`);
  await page.waitForFunction(() => {
    const d = document.querySelector('#player')?.dataset;
    return d && d.audioTracks === '3' && d.subtitleTracks === '2';
  }, null, { timeout: 20_000, polling: 100 });
  const menus = await page.evaluate(() => ({
    audio: [...document.querySelectorAll('#audio option')].map((o) => o.textContent),
    subtitles: [...document.querySelectorAll('#subtitles option')].map((o) => o.textContent),
    audioHidden: document.querySelector('#audio').hidden,
  }));
  check('the audio menu offers the three languages', menus.audio.length === 3 && !menus.audioHidden
    && menus.audio[1].startsWith('Fran'), JSON.stringify(menus.audio));
  check('the subtitles menu offers off and the two tracks', menus.subtitles.length === 3, JSON.stringify(menus.subtitles));

  await page.selectOption('#audio', '1');
  await page.waitForFunction(() => document.querySelector('#player').dataset.audioTrack === '1',
    null, { timeout: 15_000, polling: 100 });
  const before = await page.evaluate(() => document.querySelector('#video').currentTime);
  await page.evaluate(() => document.querySelector('#video').play());
  await page.waitForFunction((t) => document.querySelector('#video').currentTime > t + 1, before,
    { timeout: 15_000, polling: 100 });
  check('switched to the second audio track and kept playing', true);

  // English subtitles from a little before the cue: note the video time when it shows.
  await page.selectOption('#subtitles', '0');
  const shown = await page.evaluate(async (cueAt) => {
    const v = document.querySelector('#video');
    v.pause();
    v.currentTime = Math.max(0, cueAt - 1.5);
    await new Promise((r) => v.addEventListener('seeked', r, { once: true }));
    await v.play();
    const deadline = performance.now() + 15_000;
    while (performance.now() < deadline) {
      for (const track of v.textTracks) {
        if (track.mode !== 'showing' || !track.activeCues) continue;
        for (const cue of track.activeCues) {
          if (cue.text.includes('Hello there')) return { at: v.currentTime, cueStart: cue.startTime };
        }
      }
      await new Promise((r) => requestAnimationFrame(r));
    }
    return null;
  }, CUE_AT);
  check('the English cue is shown', shown !== null);
  check('at its time, within 100 ms', Math.abs(shown.at - CUE_AT) <= 0.1,
    `shown at ${shown.at.toFixed(3)} s, cue starts at ${shown.cueStart.toFixed(3)} s, expected ${CUE_AT} s`);
} catch (e) {
  failed = 1;
  log(`FAILED: ${e.message}`);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed);
