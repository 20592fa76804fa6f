// The web app's pure functions, under Node's test runner (`node --test`), run by
// tests/web_browser.rs. The modules are loaded from their source as the page loads them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const load = (name) => {
  const source = readFileSync(new URL(`../../web/js/${name}`, import.meta.url), 'utf8');
  return import(`data:text/javascript,${encodeURIComponent(source)}`);
};
const refresh = await load('refresh.js');
const api = await load('api.js');

/** An EventSource the test drives: `emit(name, data)`, `refuse()` (an answer but 200). */
class FakeEventSource {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    FakeEventSource.opened.push(this);
  }
  addEventListener(name, fn) {
    (this.listeners[name] ||= []).push(fn);
  }
  close() {
    this.readyState = 2;
  }
  emit(name, data) {
    for (const fn of this.listeners[name] || []) fn({ data: JSON.stringify(data) });
  }
  refuse() {
    this.readyState = 2;
    for (const fn of this.listeners.error || []) fn({});
  }
}

const tick = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

test('a URI is read outside other quoted attributes', () => {
  const line = '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="xURI=",LANGUAGE="en",'
    + 'DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="subs_u1/index.m3u8?pt=T"';
  assert.equal(refresh.uriAttribute(line), 'subs_u1/index.m3u8?pt=T');
  const tricky = '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="a,URI=\\"x",URI="audio_1/index.m3u8"';
  assert.equal(refresh.uriAttribute(tricky), 'audio_1/index.m3u8');
  assert.equal(refresh.uriAttribute('#EXT-X-KEY:METHOD=AES-128,URI="key?pt=T",IV=0x01'), 'key?pt=T');
  assert.equal(refresh.uriAttribute('#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="avc1.4d401f,mp4a.40.2"'), null);
  assert.equal(refresh.uriAttribute('#EXTINF:2.5,'), null);
  assert.equal(refresh.uriAttribute('#EXT-X-ENDLIST'), null);
});

test('every URI of a master is found, each once', () => {
  const base = 'https://origin.test/api/videos/v/hls/master.m3u8?pt=T';
  const master = [
    '#EXTM3U',
    '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="xURI=",DEFAULT=NO,URI="subs_u1/index.m3u8?pt=T"',
    '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2",SUBTITLES="subs"',
    '360p/index.m3u8?pt=T',
    '',
  ].join('\n');
  assert.deepEqual(refresh.playlistUris(master, base), [
    'https://origin.test/api/videos/v/hls/subs_u1/index.m3u8?pt=T',
    'https://origin.test/api/videos/v/hls/360p/index.m3u8?pt=T',
  ]);
});

test('an event stream refused once its link expired is opened again with a fresh one', async () => {
  FakeEventSource.opened = [];
  const seen = [];
  let renewed = 0;
  const renew = async () => {
    renewed += 1;
    return `/api/videos/v/events?pt=fresh${renewed}`;
  };
  const handlers = { progress: (d) => seen.push(d.percent), ready: () => seen.push('ready') };
  const options = { renew, retryMs: 5, EventSourceImpl: FakeEventSource };
  const close = api.followEvents('/api/videos/v/events?pt=old', handlers, options);
  const [first] = FakeEventSource.opened;
  first.emit('progress', { percent: 40 });
  first.refuse();
  await tick(50);
  assert.equal(FakeEventSource.opened.length, 2, 'opened again');
  const second = FakeEventSource.opened[1];
  assert.equal(second.url, '/api/videos/v/events?pt=fresh1');
  second.emit('progress', { percent: 70 });
  second.emit('ready', {});
  assert.equal(second.readyState, 2, 'closed at the end');
  second.refuse();
  await tick(50);
  close();
  assert.equal(FakeEventSource.opened.length, 2, 'nothing opened after the end');
  assert.deepEqual(seen, [40, 70, 'ready']);
});

test('a closed event stream is not opened again', async () => {
  FakeEventSource.opened = [];
  const renew = async () => '/api/videos/v/events?pt=fresh';
  const options = { renew, retryMs: 5, EventSourceImpl: FakeEventSource };
  const close = api.followEvents('/api/videos/v/events?pt=old', {}, options);
  FakeEventSource.opened[0].refuse();
  close();
  await tick(50);
  assert.equal(FakeEventSource.opened.length, 1);
});

test('an event stream is given up when its video is gone', async () => {
  FakeEventSource.opened = [];
  let asked = 0;
  const renew = async () => {
    asked += 1;
    throw new api.ApiError(404, 'not found', null);
  };
  const options = { renew, retryMs: 5, EventSourceImpl: FakeEventSource };
  const gaveUp = [];
  const handlers = { gaveUp: (e) => gaveUp.push(e.status) };
  const close = api.followEvents('/api/videos/v/events?pt=old', handlers, options);
  FakeEventSource.opened[0].refuse();
  await tick(80);
  close();
  assert.equal(asked, 1, 'asked once');
  assert.equal(FakeEventSource.opened.length, 1);
  assert.deepEqual(gaveUp, [404], 'the page is told');
});

test('a stream reconnecting by itself is left to the browser', async () => {
  FakeEventSource.opened = [];
  let asked = 0;
  const renew = async () => {
    asked += 1;
    return '/api/videos/v/events?pt=fresh';
  };
  const options = { renew, retryMs: 5, EventSourceImpl: FakeEventSource };
  const close = api.followEvents('/api/videos/v/events?pt=old', {}, options);
  const [first] = FakeEventSource.opened;
  for (const fn of first.listeners.error) fn({}); // readyState 0: CONNECTING
  await tick(30);
  close();
  assert.equal(asked, 0);
  assert.equal(FakeEventSource.opened.length, 1);
});
