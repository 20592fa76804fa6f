// The web app's pure functions, under Node's test runner (`node --test`), run by
// tests/web_browser.rs. The modules are loaded from their source as the page loads them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const source = readFileSync(new URL('../../web/js/refresh.js', import.meta.url), 'utf8');
const refresh = await import(`data:text/javascript,${encodeURIComponent(source)}`);

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
