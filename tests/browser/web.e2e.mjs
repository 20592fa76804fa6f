// Browser end-to-end test of the web app, driven by tests/web_browser.rs, which starts the edge
// and the origin (development mode, 10 s link lifetime, 1 s segments) and passes:
//
//   WEB_E2E_BASE_URL   the origin (serves the page)        WEB_E2E_EDGE_URL   the edge
//   WEB_E2E_CLIP       the clip to upload (~18 s)          WEB_E2E_ARTIFACTS  screenshot directory
//   WEB_E2E_CHROMIUM   the browser (default /usr/bin/chromium; never downloaded)
//   WEB_E2E_CLIP_SECS  its duration
//   WEB_E2E_BROKEN_CLIP  a clip that probes fine but fails processing (the failed state)
//   WEB_E2E_URL_TTL_SECS  the origin's url_ttl_secs (how long a pause lets every link expire)
//
// A real Chromium signs in, uploads through the file input, watches both progress bars reach
// 100 %, plays with hls.js (quality switch, seeks, shortcuts, storyboard hover) and, in a second
// tab, with the browser's own HLS; both are paused until every link they were given has
// expired and must play on (hls.js: 410 -> refreshed links, no error; native: error -> fresh
// master at the same position). While they wait, a third tab uploads a clip whose processing
// fails: the failed state, and its retry. Finally tampered segment links must stop playback
// with a visible error and no retry loop, and the video is deleted from the library.
// Prints one line per check and `N passed, N failed`; exits non-zero on the first failure,
// after a screenshot of the page as it was.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = required('WEB_E2E_BASE_URL');
const EDGE = required('WEB_E2E_EDGE_URL');
const CLIP = required('WEB_E2E_CLIP');
const ARTIFACTS = process.env.WEB_E2E_ARTIFACTS || 'target/test-artifacts/web';
const CHROMIUM = process.env.WEB_E2E_CHROMIUM || '/usr/bin/chromium';
const URL_TTL_SECS = Number(process.env.WEB_E2E_URL_TTL_SECS || 10);
const CLIP_SECS = Number(process.env.WEB_E2E_CLIP_SECS || 18);
const BROKEN_CLIP = process.env.WEB_E2E_BROKEN_CLIP || '';
// The upload is throttled to take about two seconds, whatever the clip's size.
const UPLOAD_BYTES_PER_SEC = Math.max(64 * 1024, Math.round(fs.statSync(CLIP).size / 2));
const DEADLINE_MS = Number(process.env.WEB_E2E_DEADLINE_MS || 150_000);

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: this script is run by tests/web_browser.rs (cargo test)`);
    process.exit(2);
  }
  return value;
}

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
let passed = 0;
let page = null; // the main tab (sign-in, upload, library, hls.js, tamper)
let tab = null; // the second tab (native HLS)
const consoleLines = [];
/** Every URL a tab asked for: none may carry the user's token (logs and caches keep URLs). */
const requestedUrls = [];
const edge = []; // {tab, status} of every edge response
// What the native tab fetched and what its media pipeline logged, printed when a check fails:
// a native engine reports only a code, and its reasons are in these.
const trace = [];
const mediaLog = [];

function log(text) {
  console.log(`[${elapsed()}] ${text}`);
}

class CheckFailed extends Error {}

function check(name, ok, detail = '') {
  if (!ok) throw new CheckFailed(`${name}${detail ? `: ${detail}` : ''}`);
  passed += 1;
  log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
}

async function shot(name, p = page) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await p.screenshot({ path: file });
  log(`screenshot ${file}`);
}

/** Waits for `fn(arg)` in the page to be truthy and returns it; fails `name` on timeout. */
async function until(name, fn, arg, timeout, p = page) {
  try {
    const handle = await p.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await handle.jsonValue();
  } catch (e) {
    const state = await playerState(p).catch(() => null);
    throw new CheckFailed(`${name}: not within ${timeout} ms (${e.message.split('\n')[0]}); player: ${JSON.stringify(state)}`);
  }
}

function playerState(p = page) {
  return p.evaluate(() => {
    const root = document.querySelector('#player');
    const v = document.querySelector('#video');
    return root && {
      ...root.dataset,
      currentTime: v.currentTime,
      paused: v.paused,
      overlay: document.querySelector('#overlay-message')?.textContent,
      notice: document.querySelector('#notice')?.textContent,
      error: document.querySelector('#diag-error')?.textContent,
    };
  });
}

const video = (p = page) => p.evaluate(() => {
  const v = document.querySelector('#video');
  const ranges = (r) => Array.from({ length: r.length }, (_, i) => `${r.start(i).toFixed(2)}-${r.end(i).toFixed(2)}`).join(',');
  return { t: v.currentTime, paused: v.paused, volume: v.volume, duration: v.duration, seekable: ranges(v.seekable) };
});

const PASSES = (t) => document.querySelector('#video').currentTime > t;
const edgeCount = (status, which = null) => edge.filter((e) => e.status === status && (!which || e.tab === which)).length;

async function openPlayer(id, query, p = page) {
  await p.goto(`${BASE}/?${query}#/watch/${id}`);
  await until(`player attached (${query})`, () => {
    const root = document.querySelector('#player');
    return root && ['ready', 'playing', 'error', 'unsupported', 'failed'].includes(root.dataset.state) && root.dataset.state;
  }, null, 20_000, p);
  return playerState(p);
}

async function play(p = page) {
  if ((await video(p)).paused) await p.click('#play');
  await p.evaluate(() => document.activeElement?.blur());
}

/** Clicks the seek bar at `fraction` of its width. */
async function clickSeek(fraction, p = page) {
  const bar = await p.locator('#seek').boundingBox();
  await p.mouse.click(bar.x + bar.width * fraction, bar.y + bar.height / 2);
  await p.mouse.move(bar.x, bar.y - 300);
}

function watchTab(p, name) {
  p.on('console', (m) => consoleLines.push(`${name} ${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => consoleLines.push(`${name} pageerror: ${e.message}`));
  p.on('request', (r) => requestedUrls.push(r.url()));
  p.on('response', (r) => {
    if (r.url().startsWith(EDGE)) edge.push({ tab: name, status: r.status() });
    if (name === 'native') traceResponse(r);
  });
  p.on('requestfailed', (r) => {
    if (name === 'native') trace.push(`[${elapsed()}] ${shortUrl(r.url())} failed: ${r.failure()?.errorText}`);
  });
}

const shortUrl = (url) => url.replace(/^https?:\/\/[^/]+/, '').replace(/\?.*$/, '');

async function traceResponse(r) {
  const url = shortUrl(r.url());
  if (!url.includes('/hls/')) return;
  const at = elapsed();
  const range = (await r.request().headerValue('range').catch(() => null)) || '-';
  const headers = await r.allHeaders().catch(() => ({}));
  let line = `[${at}] ${r.status()} ${url} range ${range} -> ${headers['content-range'] || '-'} length ${headers['content-length'] || '?'}`;
  if (url.endsWith('.m3u8')) {
    const body = await r.text().catch(() => '');
    // Signed URLs are long and say nothing here: keep the tags and the segment names.
    // Credentials (playback tokens, link signatures) stay out of the output.
    const shown = body.split('\n')
      .map((l) => l.replace(/^https?:.*\/([^/?]+)\?.*$/, '$1'))
      .map((l) => l.replace(/([?&](pt|md5|expires|X-Amz-[\w-]+)=)[^&"\s]*/g, '$1…'));
    line += `\n    ${shown.join('\n    ')}`;
  }
  trace.push(line);
}

/** Collects the media pipeline's log of `p` (what chrome://media-internals shows). */
async function watchMedia(p) {
  const cdp = await p.context().newCDPSession(p);
  cdp.on('Media.playerMessagesLogged', (e) => e.messages.forEach((m) => mediaLog.push(`[${elapsed()}] ${m.level}: ${m.message}`)));
  cdp.on('Media.playerErrorsRaised', (e) => e.errors.forEach((m) => mediaLog.push(`[${elapsed()}] error ${m.errorType} ${m.code}: ${JSON.stringify(m.stack ?? [])} ${JSON.stringify(m.cause ?? [])} ${JSON.stringify(m.data ?? {})}`)));
  cdp.on('Media.playerPropertiesChanged', (e) => e.properties
    .filter((x) => /error|duration/i.test(x.name))
    .forEach((x) => mediaLog.push(`[${elapsed()}] ${x.name} = ${x.value}`)));
  await cdp.send('Media.enable');
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'web-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    page = context.pages()[0] || await context.newPage();
    watchTab(page, 'main');
    log(`chromium ${context.browser()?.version() ?? ''} at ${CHROMIUM}`);
    try {
      await scenario(context);
    } catch (e) {
      await shot('failure').catch(() => {});
      if (tab) await shot('failure-native-tab', tab).catch(() => {});
      throw e;
    }
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function scenario(context) {
  // ----- sign in ------------------------------------------------------------------------------
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#signin');
  check('the page loads hls.js from the origin', await page.evaluate(() => typeof window.Hls === 'function'));
  check('development mode offers a token', await page.isVisible('#dev-mint'));
  await shot('01-sign-in');
  await page.fill('#dev-user', 'web-e2e');
  await page.click('#dev-mint');
  await page.waitForSelector('#upload');
  const token = await page.evaluate(() => localStorage.getItem('hls-edge.token'));
  check('signed in with a minted token kept in localStorage', Boolean(token) && token.split('.').length === 3);
  check('the header names the user', (await page.textContent('#who')).includes('web-e2e'));

  // ----- upload -------------------------------------------------------------------------------
  // Record every value both bars take (a MutationObserver sees each change, however quick).
  await page.evaluate(() => {
    window.__bars = { upload: [], processing: [], thumbAt: null };
    const watch = (id, key) => {
      const root = document.getElementById(id).parentElement;
      new MutationObserver(() => {
        const list = window.__bars[key];
        const value = Number(root.dataset.percent);
        if (list[list.length - 1] !== value) list.push(value);
      }).observe(root, { attributes: true, attributeFilter: ['data-percent'] });
    };
    watch('upload-bar', 'upload');
    watch('processing-bar', 'processing');
    document.getElementById('upload-thumb').addEventListener('load', () => {
      window.__bars.thumbAt = Number(document.getElementById('processing-bar').parentElement.dataset.percent);
    });
  });
  // Slow the upload down (DevTools network emulation) so its progress is seen moving.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_SEC,
  });
  await page.setInputFiles('#file', CLIP);
  await page.fill('#title', 'Browser test clip');
  await page.click('#upload-start');
  await until('the upload bar reaches 100 %', () => document.getElementById('upload-bar').value >= 100, null, 30_000);
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  await cdp.detach();

  // While it is processing, open the player in a second tab (the browser's own HLS): it must
  // show the generating state (stream-info 202, polled after retry_after) and start by itself.
  const id = await until('the upload was accepted', () => document.getElementById('upload').dataset.video, null, 30_000);
  tab = await context.newPage();
  watchTab(tab, 'native');
  await watchMedia(tab).catch((e) => log(`NOTE: no media log for the native tab (${e.message})`));
  await tab.goto(`${BASE}/?engine=native#/watch/${id}`);
  const firstState = await until('the player page shows a state', () => {
    const s = document.querySelector('#player')?.dataset.state;
    return s && s !== 'loading' && s;
  }, null, 20_000, tab);
  if (firstState === 'generating') {
    const message = await tab.textContent('#overlay-message');
    check('a video still processing shows the generating state', message.includes('Preparing') && await tab.isVisible('#generating-bar'), message);
    await shot('02a-generating', tab);
  } else {
    log(`NOTE: processing had finished before the player opened (state ${firstState}); the generating state was not seen`);
  }
  await until('the processing bar reaches 100 %', () => document.getElementById('processing-bar').value >= 100, null, 90_000);
  await until('the thumbnail is shown', () => {
    const img = document.getElementById('upload-thumb');
    return !img.hidden && img.complete && img.naturalWidth > 0;
  }, null, 10_000);
  const bars = await page.evaluate(() => window.__bars);
  check('upload progress moved byte by byte to 100 %',
    bars.upload.filter((p) => p > 0 && p < 100).length >= 2 && bars.upload.at(-1) === 100, `values: ${bars.upload.join(', ')}`);
  const between = bars.processing.filter((p) => p > 0 && p < 100);
  check('processing progress moved through intermediate values to 100 %',
    between.length >= 2 && bars.processing.at(-1) === 100, `values: ${bars.processing.join(', ')}`);
  check('the thumbnail appeared before processing finished (thumbnail_ready)',
    bars.thumbAt !== null && bars.thumbAt < 100, `shown at ${bars.thumbAt} %`);
  await until('the page says the video is ready, with a watch link',
    () => document.getElementById('upload-status').textContent.includes('Ready') && !document.getElementById('upload-watch').hidden,
    null, 10_000);
  check('the page says the video is ready, with a watch link', true);
  await shot('02-uploaded');

  // ----- library ------------------------------------------------------------------------------
  const card = `#library-list li[data-id="${id}"]`;
  await until('the library lists the video as ready', (sel) => document.querySelector(sel)?.dataset.status === 'ready', card, 10_000);
  const duration = (await page.textContent(`${card} .duration`)).trim();
  const [mins, secs] = duration.split(':').map(Number);
  check('the library shows the duration', Math.abs(mins * 60 + secs - CLIP_SECS) <= 1, `${duration} for a ${CLIP_SECS} s clip`);
  check('the library shows the thumbnail', await page.evaluate((sel) => {
    const img = document.querySelector(`${sel} img.thumb`);
    return Boolean(img && img.complete && img.naturalWidth > 0);
  }, card));
  check('the library offers watch and delete', await page.isVisible(`${card} a.watch`) && await page.isVisible(`${card} button.delete`));
  await shot('03-library');

  // ----- native HLS, in a second tab ----------------------------------------------------------
  // Played first and left paused near the start, so its links expire during the hls.js part.
  await until('the player started by itself once the video was ready', () => {
    const s = document.querySelector('#player').dataset.state;
    return ['ready', 'playing', 'error', 'unsupported'].includes(s);
  }, null, 20_000, tab);
  let native = await playerState(tab);
  check('the second tab left the generating state by itself', native.state !== 'error', JSON.stringify(native));
  let nativeLinksAt = Date.now();
  const nativeEngine = native.engine === 'native';
  if (nativeEngine) {
    log(`this Chromium plays HLS natively (canPlayType: ${native.nativeHls === 'true' ? 'yes' : 'no'}); testing the native engine`);
    await play(tab);
    await until('native: currentTime passes 3 s', PASSES, 3, 20_000, tab);
    check('native HLS plays', true, `${(await video(tab)).t.toFixed(2)} s`);
    await shot('04-native-playing', tab);
    // Opened while it encoded, the player re-opens the finished playlists once complete (a
    // native engine keeps a growing playlist as live, with nothing to seek).
    await until('native: the player holds (or re-opens) the finished playlists',
      () => document.querySelector('#player').dataset.playlists === 'finished', null, 40_000, tab);
    await until('native: the whole video is seekable once complete', () => {
      const v = document.querySelector('#video');
      return v.seekable.length > 0 && v.seekable.end(v.seekable.length - 1) > 10 && v.currentTime > 0;
    }, null, 20_000, tab);
    check('native: the whole video is seekable once complete', true, JSON.stringify(await video(tab)));
    // Seek back to the start and pause: the links handed out so far expire while it waits
    // (seeking forward first would let it buffer the whole clip, leaving nothing to refresh).
    await clickSeek(0.02, tab);
    native = await playerState(tab);
    check('native HLS seeks', native.currentTime < 1.5 && native.state !== 'error',
      `-> ${native.currentTime.toFixed(2)} s (${JSON.stringify(await video(tab))}, growing ${native.growing})`);
    await tab.keyboard.press(' ');
    check('native: paused near the start', (await video(tab)).paused, `${(await video(tab)).t.toFixed(2)} s`);
    // The browser fetched its playlists (and so its links) before this moment.
    nativeLinksAt = Date.now();
  } else {
    check('native HLS is unsupported here and the page says so, falling back to hls.js',
      native.fallback === 'native-unsupported' && native.notice.includes('cannot play HLS natively') && native.engine === 'hlsjs',
      JSON.stringify(native));
    log('NOTE: this Chromium has no native HLS; the native engine could not be exercised');
    await shot('04-native-fallback', tab);
    await tab.close();
    tab = null;
  }

  // ----- hls.js playback, quality, seeking, shortcuts, storyboard ------------------------------
  await page.bringToFront();
  let state = await openPlayer(id, 'engine=hlsjs&buffer=2');
  check('hls.js plays (forced)', state.engine === 'hlsjs' && state.state !== 'error', JSON.stringify(state));
  check('the quality menu lists auto and every level', Number(state.levels) >= 2
    && await page.evaluate(() => document.querySelectorAll('#quality option').length) === Number(state.levels) + 1,
  `${state.levels} levels`);
  await play();
  await until('currentTime passes 3 s', PASSES, 3, 20_000);
  check('currentTime passes 3 s', true, `${(await video()).t.toFixed(2)} s`);
  await shot('05-hlsjs-playing');

  await until('the storyboard is loaded', () => Number(document.querySelector('#player').dataset.storyboard) > 0, null, 5_000);
  const bar = await page.locator('#seek').boundingBox();
  await page.mouse.move(bar.x + bar.width * 0.75, bar.y + bar.height / 2);
  const preview = await until('a storyboard preview on hover', () => {
    const p = document.querySelector('#preview');
    const img = p.querySelector('.preview-image');
    return !p.hidden && p.dataset.sheet && getComputedStyle(img).backgroundImage.includes('storyboard')
      && { sheet: p.dataset.sheet, xywh: p.dataset.xywh, time: p.dataset.time };
  }, null, 5_000);
  check('hovering the seek bar shows the storyboard region',
    /storyboard_\d+\.jpg/.test(preview.sheet) && /^\d+,\d+,\d+,\d+$/.test(preview.xywh), `${preview.time} s -> ${preview.xywh}`);
  check('the sprite sheet loads', await page.evaluate(async (url) => (await fetch(url)).ok, preview.sheet));
  await shot('06-storyboard-hover');
  await page.mouse.move(bar.x, bar.y - 300);

  const before = (await playerState()).level;
  const target = before === '0' ? '1' : '0';
  await page.selectOption('#quality', target);
  await page.evaluate(() => document.activeElement?.blur());
  await until(`switched to level ${target}`, (t) => document.querySelector('#player').dataset.level === t, target, 10_000);
  const switchedAt = Date.now();
  check('the quality menu switches level', true, `level ${before} -> ${target} (${(await playerState()).levelHeight}p)`);

  // Seek by clicking the bar, then with the keyboard.
  await clickSeek(0.1);
  const v = await video();
  check('clicking the seek bar seeks', Math.abs(v.t - v.duration * 0.1) < 0.8, `${v.t.toFixed(2)} s`);
  await page.keyboard.press('ArrowRight');
  const right = (await video()).t;
  check('→ seeks forward 5 s', Math.abs(right - v.t - 5) < 0.8, `${v.t.toFixed(2)} -> ${right.toFixed(2)} s`);
  await page.keyboard.press('ArrowLeft');
  const left = (await video()).t;
  check('← seeks back 5 s', Math.abs(right - left - 5) < 0.8, `${right.toFixed(2)} -> ${left.toFixed(2)} s`);
  const volume = (await video()).volume;
  await page.keyboard.press('ArrowDown');
  const down = (await video()).volume;
  await page.keyboard.press('ArrowUp');
  const up = (await video()).volume;
  check('↓/↑ change the volume', down < volume && up > down, `${volume} -> ${down} -> ${up}`);
  await until('playing after the seeks', () => {
    const el = document.querySelector('#video');
    return !el.paused && el.readyState >= 3;
  }, null, 10_000);
  await page.keyboard.press(' ');
  check('space pauses', (await video()).paused);

  // ----- expiry: both tabs wait until every link they were given has expired, then play on ----
  const expiredAt = Math.max(switchedAt, nativeLinksAt) + (URL_TTL_SECS + 1.5) * 1000;
  log(`paused at ${(await video()).t.toFixed(2)} s; waiting ${((expiredAt - Date.now()) / 1000).toFixed(1)} s for the links to expire`);
  // Meanwhile, in a third tab: a video whose processing fails.
  if (BROKEN_CLIP) await failingVideo(context);
  await page.waitForTimeout(Math.max(0, expiredAt - Date.now()));
  const pausedAt = (await video()).t;
  const networkErrorsBefore = Number((await playerState()).networkErrors || 0);
  const main410 = edgeCount(410, 'main');
  const native410 = edgeCount(410, 'native');
  const nativePausedAt = tab ? (await video(tab)).t : 0;
  await page.keyboard.press(' ');
  check('space plays', !(await video()).paused);
  if (tab) {
    await tab.keyboard.press(' ');
    check('native: space plays', !(await video(tab)).paused);
  }

  await until('hls.js: currentTime passes 11 s after the links expired', PASSES, 11, 25_000);
  state = await playerState();
  check('hls.js: the edge answered 410 for an expired segment', edgeCount(410, 'main') > main410, `${edgeCount(410, 'main') - main410} responses with 410`);
  check('hls.js: the page observed the 410 and refreshed the links', Number(state.expired410) >= 1 && Number(state.refreshes) >= 1,
    `expired410=${state.expired410} refreshes=${state.refreshes}`);
  check('hls.js: playback went on from the same position, no error',
    state.state !== 'error' && Number(state.networkErrors || 0) === networkErrorsBefore,
    `${pausedAt.toFixed(2)} s -> ${state.currentTime.toFixed(2)} s; hls.js network errors since: ${Number(state.networkErrors || 0) - networkErrorsBefore}`);
  await shot('07-hlsjs-after-expiry');

  if (tab) {
    const goal = Math.min(14, (await video(tab)).duration - 1);
    await until(`native: currentTime passes ${goal} s after the links expired`, PASSES, goal, 25_000, tab);
    native = await playerState(tab);
    check('native: the edge answered 410 for an expired segment', edgeCount(410, 'native') > native410,
      `${edgeCount(410, 'native') - native410} responses with 410`);
    check('native: the page re-opened a fresh master at the same position and played on',
      native.state !== 'error' && Number(native.refreshes) >= 1 && Number(native.resumedFrom) > nativePausedAt + 2,
      `${nativePausedAt.toFixed(2)} s -> error at ${native.resumedFrom} s (${native.lastError}) -> re-opened there ${native.refreshes}x -> ${native.currentTime.toFixed(2)} s`);
    await shot('08-native-after-expiry', tab);
    await tab.close();
    tab = null;
  }

  // ----- negative control: tampered segment links ---------------------------------------------
  const edge403Before = edgeCount(403);
  await openPlayer(id, 'engine=hlsjs&tamper=1');
  state = await until('tampered links end in a visible error', () => {
    const p = document.querySelector('#player');
    return p.dataset.state === 'error' && { ...p.dataset, message: document.querySelector('#overlay-message').textContent };
  }, null, 20_000);
  const refused = edgeCount(403) - edge403Before;
  check('the edge refused the tampered links (403)', refused >= 1, `${refused} responses with 403`);
  check('the page shows the refusal', state.message.includes('403') && await page.isVisible('#overlay-retry'), state.message);
  check('nothing played', (await video()).t < 0.5);
  await page.waitForTimeout(3000);
  const later = edgeCount(403) - edge403Before;
  check('a 403 is not retried in a loop', later === refused && refused <= 4, `${refused} then ${later} after 3 s`);
  await shot('09-tampered-error');

  // ----- delete from the library --------------------------------------------------------------
  await page.goto(`${BASE}/#/`);
  await page.waitForSelector(card);
  await page.click(`${card} button.delete`);
  check('delete asks before it deletes', (await page.textContent(`${card} button.delete`)).includes('Really'));
  await page.click(`${card} button.delete`);
  await until('the deleted video leaves the library', (sel) => !document.querySelector(sel), card, 10_000);
  check('the deleted video leaves the library', true);

  const withToken = requestedUrls.filter((u) => u.includes(token));
  check('no URL the page asked for carries the user token (posters, events, storyboard use a per-video credential)',
    withToken.length === 0 && requestedUrls.some((u) => u.includes('thumbnail.jpg?pt=')),
    withToken.slice(0, 3).join(' | ') || `${requestedUrls.length} URLs`);

  const problems = consoleLines.filter((l) => /Content Security Policy|pageerror|Uncaught/.test(l));
  check('no script errors and no Content-Security-Policy violations in either tab', problems.length === 0, problems.join(' | '));
}

/** A clip that probes fine but cannot be transcoded whole: the failed state and its retry. */
async function failingVideo(context) {
  const f = await context.newPage();
  watchTab(f, 'failed');
  try {
    await f.goto(`${BASE}/#/`);
    await f.waitForSelector('#upload');
    await f.setInputFiles('#file', BROKEN_CLIP);
    await f.fill('#title', 'Broken clip');
    await f.click('#upload-start');
    const reported = await until('the upload panel reports the processing failure', () => {
      const s = document.getElementById('upload-status');
      return s.classList.contains('error') && s.textContent.includes('Processing failed') && s.textContent;
    }, null, 30_000, f);
    check('a failed processing is reported in the upload panel', true, reported);
    const bid = await f.evaluate(() => document.getElementById('upload').dataset.video);
    const row = `#library-list li[data-id="${bid}"]`;
    await until('the library shows it failed, with a retry button',
      (sel) => document.querySelector(sel)?.dataset.status === 'failed' && Boolean(document.querySelector(`${sel} button.retry`)),
      row, 10_000, f);
    check('the library shows it failed, with a retry button', true);
    await f.goto(`${BASE}/#/watch/${bid}`);
    const failed = await until('the player shows the failure with a retry button', () => {
      const p = document.querySelector('#player');
      return p?.dataset.state === 'failed' && !document.getElementById('overlay-retry').hidden
        && document.getElementById('overlay-message').textContent;
    }, null, 10_000, f);
    check('the player shows the failure with a retry button', failed.includes('Processing failed'), failed);
    await shot('07a-failed', f);
    const record = (vid) => f.evaluate(async (v) => {
      const res = await fetch(`/api/videos/${v}`, { headers: { Authorization: `Bearer ${localStorage.getItem('hls-edge.token')}` } });
      return res.json();
    }, vid);
    const first = await record(bid);
    await f.click('#overlay-retry');
    await until('retry queues it again (generating)', () => document.querySelector('#player').dataset.state === 'generating', null, 10_000, f);
    check('retry queues it again (generating)', true);
    await until('it fails again (the same broken source)', () => document.querySelector('#player').dataset.state === 'failed', null, 30_000, f);
    const second = await record(bid);
    check('the retry really processed it again', second.status === 'failed' && second.updated_at > first.updated_at,
      `failed at ${first.updated_at}, then again at ${second.updated_at}`);
  } finally {
    await f.close();
  }
}

const watchdog = setTimeout(async () => {
  console.error(`[${elapsed()}] FAILED: the scenario did not finish within ${DEADLINE_MS} ms`);
  if (page) await shot('failure-timeout').catch(() => {});
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
}, DEADLINE_MS);

/** The native tab's fetches and media log, the last `n` lines of each. */
function printTrace(print, n) {
  print(`native tab fetches (last ${n}):\n  ${trace.slice(-n).join('\n  ')}`);
  print(`native tab media log (last ${n}):\n  ${mediaLog.slice(-n).join('\n  ')}`);
}

function countBy(list) {
  return list.reduce((acc, e) => ({ ...acc, [`${e.tab}:${e.status}`]: (acc[`${e.tab}:${e.status}`] || 0) + 1 }), {});
}

try {
  await main();
  clearTimeout(watchdog);
  log(`done; edge responses seen: ${JSON.stringify(countBy(edge))}`);
  if (process.env.WEB_E2E_TRACE) printTrace(console.log, Infinity);
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  clearTimeout(watchdog);
  console.error(`[${elapsed()}] FAILED: ${e instanceof CheckFailed ? e.message : e.stack}`);
  console.error(`edge responses seen: ${JSON.stringify(countBy(edge))}`);
  console.error(`page console (last 40 lines):\n  ${consoleLines.slice(-40).join('\n  ')}`);
  printTrace(console.error, 60);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
}
