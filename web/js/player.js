// The player page: stream-info first (loading, generating with retry_after polling, failed with
// a retry button, seed 004), then hls.js where Media Source Extensions exist, the browser's own
// HLS otherwise (`?engine=native|hlsjs` forces one). Quality menu, storyboard previews on the
// seek bar, keyboard shortcuts, and links that survive their expiry (see refresh.js).

import { api, auth } from './api.js';
import { LinkRefresher, refreshingLoader } from './refresh.js';
import { cueAt, parseStoryboard } from './storyboard.js';
import { clock, h, progressBar } from './ui.js';

const HLS_TYPE = 'application/vnd.apple.mpegurl';
/** How many times a native engine may open a growing video again before it has played. */
const LATE_STARTS = 5;

/** Page options from the query string: `engine`, `tamper`, `buffer` (hls.js forward buffer, s). */
export function playerOptions(search = location.search) {
  const q = new URLSearchParams(search);
  const engine = q.get('engine');
  const buffer = Number(q.get('buffer'));
  return {
    engine: engine === 'native' || engine === 'hlsjs' ? engine : null,
    tamper: q.get('tamper') === '1',
    buffer: Number.isFinite(buffer) && buffer > 0 ? buffer : null,
  };
}

export class Player {
  constructor(id, options, onAuthError) {
    this.id = id;
    this.options = options;
    this.onAuthError = onAuthError;
    this.hls = null;
    this.timer = null;
    this.resumeAt = 0;
    this.stats = { expired: 0, expired410: 0, refreshes: 0, nativeRefreshes: 0 };
    this.cues = [];
    this.destroyed = false;
    this.build();
    this.onKey = this.onKey.bind(this);
    this.onKeyUp = this.onKeyUp.bind(this);
    document.addEventListener('keydown', this.onKey);
    document.addEventListener('keyup', this.onKeyUp);
  }

  build() {
    this.video = h('video', { id: 'video', playsInline: true, preload: 'auto' });
    this.message = h('p', { id: 'overlay-message' });
    this.prepBar = progressBar('generating-bar', 'Preparing');
    this.prepBar.root.hidden = true;
    this.retryButton = h('button', { id: 'overlay-retry', type: 'button', hidden: true }, 'Retry');
    this.overlay = h('div', { id: 'overlay', class: 'overlay' }, this.message, this.prepBar.root, this.retryButton);
    this.playButton = h('button', { id: 'play', type: 'button', title: 'Play (space)', onclick: () => this.toggle() }, 'Play');
    this.fill = h('div', { class: 'seek-fill' });
    this.buffered = h('div', { class: 'seek-buffered' });
    this.previewImage = h('div', { class: 'preview-image' });
    this.previewTime = h('span', { class: 'preview-time' });
    this.preview = h('div', { id: 'preview', class: 'preview', hidden: true }, this.previewImage, this.previewTime);
    this.seek = h('div', {
      id: 'seek',
      class: 'seek',
      role: 'slider',
      'aria-label': 'Seek',
      onclick: (e) => this.seekTo(this.timeAt(e)),
      onmousemove: (e) => this.showPreview(e),
      onmouseleave: () => {
        this.preview.hidden = true;
      },
    }, this.buffered, this.fill, this.preview);
    this.time = h('span', { id: 'time', class: 'time' }, '0:00 / 0:00');
    this.volume = h('input', {
      id: 'volume', type: 'range', min: 0, max: 1, step: 0.05, value: 1, title: 'Volume (up/down)',
      oninput: () => {
        this.video.volume = Number(this.volume.value);
      },
    });
    this.quality = h('select', { id: 'quality', title: 'Quality', disabled: true, onchange: () => this.chooseLevel() },
      h('option', { value: '-1' }, 'Auto'));
    // Audio languages and subtitles, from the master's renditions (hls.js; native HLS in
    // Safari offers them in its own controls).
    this.audio = h('select', { id: 'audio', title: 'Audio', hidden: true, onchange: () => this.chooseAudio() });
    this.subtitles = h('select', { id: 'subtitles', title: 'Subtitles', hidden: true, onchange: () => this.chooseSubtitles() });
    this.fullscreen = h('button', {
      type: 'button',
      title: 'Full screen',
      onclick: () => (document.fullscreenElement ? document.exitFullscreen() : this.stage.requestFullscreen()),
    }, 'Full screen');
    this.notice = h('p', { id: 'notice', class: 'notice', hidden: true });
    // While the video is still being encoded it plays as far as it is published; this says so.
    this.processing = h('p', { id: 'processing', class: 'notice', hidden: true });
    this.diag = {
      engine: h('dd', { id: 'diag-engine' }, '-'),
      level: h('dd', { id: 'diag-level' }, '-'),
      expired: h('dd', { id: 'diag-expired' }, '0'),
      error: h('dd', { id: 'diag-error' }, '-'),
    };
    this.stage = h('div', { class: 'stage' }, this.video, this.overlay);
    this.root = h('section', { id: 'player', class: 'player', dataset: { state: 'loading', engine: '' } },
      this.stage,
      h('div', { class: 'controls' }, this.playButton, this.seek, this.time, this.volume, this.quality,
        this.audio, this.subtitles, this.fullscreen),
      this.notice,
      this.processing,
      h('p', { class: 'hint' }, 'Space: play/pause · ←/→: 5 s · ↑/↓: volume · hover the bar for previews'),
      h('details', { class: 'diag' }, h('summary', {}, 'Playback details'),
        h('dl', {},
          h('dt', {}, 'engine'), this.diag.engine,
          h('dt', {}, 'level'), this.diag.level,
          h('dt', {}, 'expired links refreshed'), this.diag.expired,
          h('dt', {}, 'last error'), this.diag.error)));
    const v = this.video;
    v.addEventListener('timeupdate', () => this.tick());
    v.addEventListener('durationchange', () => this.tick());
    v.addEventListener('progress', () => this.tick());
    v.addEventListener('play', () => this.syncPlay());
    v.addEventListener('pause', () => this.syncPlay());
    v.addEventListener('playing', () => {
      if (this.root.dataset.state === 'ready') this.setState('playing');
    });
    v.addEventListener('volumechange', () => {
      this.volume.value = String(v.volume);
    });
    v.addEventListener('click', () => this.toggle());
  }

  // ----- states -------------------------------------------------------------------------------

  setState(state, message = '', { retry = null, progress = null } = {}) {
    this.root.dataset.state = state;
    this.message.textContent = message;
    this.overlay.hidden = !message && progress === null && !retry;
    this.prepBar.root.hidden = progress === null;
    if (progress !== null) this.prepBar.set(progress);
    this.retryButton.hidden = !retry;
    this.retryButton.onclick = retry;
    this.overlay.className = `overlay ${state}`;
  }

  showNotice(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  /** Asks for stream-info until the video can be played. */
  async start() {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    if (this.root.dataset.state !== 'generating') this.setState('loading', 'Loading…');
    let info;
    try {
      info = await api(`/api/videos/${encodeURIComponent(this.id)}/stream-info`);
    } catch (e) {
      if (this.destroyed) return;
      if (e.status === 401) {
        this.onAuthError(e);
      } else if (e.status === 422) {
        this.setState('failed', `Processing failed: ${e.message}`, { retry: () => this.retryProcessing() });
        this.retryButton.textContent = 'Retry processing';
      } else if (e.status === 404) {
        this.setState('error', 'This video does not exist (or is not yours).');
      } else {
        this.setState('error', `Could not load the video: ${e.message}`, { retry: () => this.start() });
        this.retryButton.textContent = 'Try again';
      }
      return;
    }
    if (this.destroyed) return;
    if (info.status === 202) {
      const d = info.data || {};
      const after = Number(d.retry_after) || Number(info.headers.get('retry-after')) || 3;
      const what = d.status === 'queued' ? 'queued' : (d.stage || 'processing');
      this.setState('generating', `Preparing this video (${what})… it will start by itself.`, { progress: d.progress || 0 });
      this.timer = setTimeout(() => this.start(), Math.max(1, Math.min(after, 30)) * 1000);
      return;
    }
    this.attach(info.data.manifest_url);
    // Which playlists the engine holds: growing (EVENT) ones or the finished video's.
    this.root.dataset.playlists = info.data.complete === false ? 'growing' : 'finished';
    if (info.data.complete === false) {
      this.followProcessing(info.data);
    } else {
      this.loadStoryboard();
    }
  }

  /**
   * The video plays while it is still being encoded (its playlists grow; hls.js extends the
   * seek bar as they do): show how far processing is and ask again until it is complete.
   */
  followProcessing(data) {
    this.root.dataset.growing = 'true';
    const percent = Math.floor(Number(data.progress) || 0);
    this.processing.textContent = `Still processing (${percent}%): playback continues as it is encoded.`;
    this.processing.hidden = false;
    const after = Math.max(1, Math.min(Number(data.retry_after) || 3, 30));
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (this.destroyed) return;
      let next;
      try {
        next = await api(`/api/videos/${encodeURIComponent(this.id)}/stream-info`);
      } catch (e) {
        if (e.status === 422 || e.status === 404) {
          // The encode failed (or the video is gone): start() shows which.
          this.stopFollowing();
          this.teardown();
          this.start();
        } else {
          this.followProcessing(data);
        }
        return;
      }
      if (next.status === 200 && next.data && next.data.complete) {
        this.stopFollowing();
        this.loadStoryboard();
        this.reopenFinished();
      } else if (next.status === 200) {
        this.followProcessing(next.data);
      } else {
        // No longer playable (a retried attempt starts over): back to waiting for it.
        this.stopFollowing();
        this.teardown();
        this.start();
      }
    }, after * 1000);
  }

  /**
   * A native engine that opened the growing playlists keeps them as live after they end
   * (Chromium: an infinite or partial duration and nothing seekable): re-open the finished (VOD)
   * playlists where the viewer is. hls.js follows the end of the playlist by itself.
   */
  reopenFinished() {
    const v = this.video;
    if (this.root.dataset.engine !== 'native') {
      this.root.dataset.playlists = 'finished';
      return;
    }
    const at = v.currentTime || this.resumeAt;
    // A late start still pending counts as playing: it is about to.
    const playing = this.playTimer != null || (!v.paused && !this.userPaused);
    this.reopenNative(at, playing).then((opened) => {
      if (opened) this.root.dataset.playlists = 'finished';
    });
  }

  /**
   * Opens a fresh master (the one at hand if none can be had) in the native engine at `at`,
   * unless `still()` says the engine was left meanwhile. `play`: start it (`null`: as the
   * viewer wants once the master is here), `playAfter` ms after loading. Whether it opened.
   */
  async reopenNative(at, play, playAfter = 0, still = () => !this.destroyed) {
    this.reopening = true;
    const url = await this.freshMasterUrl().catch(() => this.masterUrl());
    if (!still()) return false;
    this.openNative(at, play ?? !this.userPaused, url, playAfter);
    return true;
  }

  stopFollowing() {
    clearTimeout(this.timer);
    this.root.dataset.growing = 'false';
    this.processing.hidden = true;
  }

  async retryProcessing() {
    this.retryButton.disabled = true;
    try {
      await api(`/api/videos/${encodeURIComponent(this.id)}/retry`, { method: 'POST' });
      this.setState('generating', 'Queued again…', { progress: 0 });
    } catch (e) {
      this.setState('failed', `Retry refused: ${e.message}`, { retry: () => this.retryProcessing() });
    } finally {
      this.retryButton.disabled = false;
    }
    this.timer = setTimeout(() => this.start(), 1000);
  }

  // ----- engines ------------------------------------------------------------------------------

  pickEngine() {
    const hlsjs = Boolean(window.Hls && window.Hls.isSupported());
    const native = this.video.canPlayType(HLS_TYPE) !== '';
    const wanted = this.options.engine;
    this.root.dataset.engineRequested = wanted || 'auto';
    this.root.dataset.nativeHls = String(native);
    if (wanted === 'native') {
      if (native) return 'native';
      this.root.dataset.fallback = 'native-unsupported';
      this.showNotice(`This browser cannot play HLS natively (canPlayType("${HLS_TYPE}") is empty)${hlsjs ? '; playing with hls.js instead.' : '.'}`);
      return hlsjs ? 'hlsjs' : null;
    }
    if (wanted === 'hlsjs') {
      if (hlsjs) return 'hlsjs';
      this.root.dataset.fallback = 'hlsjs-unsupported';
      this.showNotice(`hls.js is ${window.Hls ? 'not supported here (no Media Source Extensions)' : 'not loaded'}${native ? '; playing natively instead.' : '.'}`);
      return native ? 'native' : null;
    }
    if (hlsjs) return 'hlsjs';
    return native ? 'native' : null;
  }

  masterUrl() {
    // A new URL each time: the browser cache must never hand back a master with old credentials.
    // The manifest URL carries a credential for this video alone (never the user's token).
    return `${this.manifestUrl}${this.manifestUrl.includes('?') ? '&' : '?'}fresh=${Date.now()}`;
  }

  /** A master URL with a fresh credential, from stream-info (sent with the token header). */
  async freshMasterUrl() {
    const info = await api(`/api/videos/${encodeURIComponent(this.id)}/stream-info`);
    if (info.status === 200 && info.data && info.data.manifest_url) this.manifestUrl = info.data.manifest_url;
    return this.masterUrl();
  }

  attach(manifestUrl) {
    this.manifestUrl = manifestUrl;
    const engine = this.pickEngine();
    this.root.dataset.engine = engine || 'none';
    this.diag.engine.textContent = engine || 'none';
    if (!engine) {
      this.setState('unsupported', window.Hls
        ? 'This browser can play HLS neither with Media Source Extensions nor natively.'
        : 'hls.js did not load (is it installed? `npm ci --prefix web`) and this browser has no native HLS.');
      return;
    }
    this.setState('loading', 'Loading…');
    if (engine === 'hlsjs') this.attachHlsJs();
    else this.attachNative();
  }

  attachHlsJs() {
    const Hls = window.Hls;
    const refresher = new LinkRefresher(() => this.freshMasterUrl());
    const Loader = refreshingLoader(Hls.DefaultConfig.loader, refresher, {
      tamper: this.options.tamper,
      onExpired: (code) => {
        this.stats.expired += 1;
        if (code === 410) this.stats.expired410 += 1;
        this.root.dataset.expired = String(this.stats.expired);
        this.root.dataset.expired410 = String(this.stats.expired410);
        this.diag.expired.textContent = `${this.stats.expired} (410: ${this.stats.expired410})`;
      },
      onRetry: () => {
        this.stats.refreshes = refresher.count;
        this.root.dataset.refreshes = String(refresher.count);
      },
      onRefreshFailed: (why) => {
        this.diag.error.textContent = `refresh failed: ${why.message}`;
      },
    });
    const config = { loader: Loader, startPosition: this.resumeAt > 0 ? this.resumeAt : -1 };
    if (this.options.buffer) {
      config.maxBufferLength = this.options.buffer;
      config.maxMaxBufferLength = this.options.buffer;
    }
    const hls = new Hls(config);
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      this.fillQuality(data.levels);
      this.fillTracks();
      this.setState('ready');
      this.autoplay();
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => this.showLevel(data.level));
    // The renditions' lists arrive after the manifest (and change if it does).
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => this.fillTracks());
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => this.fillTracks());
    hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_, data) => {
      this.audio.value = String(data.id);
      this.root.dataset.audioTrack = String(data.id);
    });
    hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, (_, data) => {
      this.subtitles.value = String(data.id);
      this.root.dataset.subtitleTrack = String(data.id);
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      const code = data.response && data.response.code;
      this.diag.error.textContent = `${data.details}${code ? ` (HTTP ${code})` : ''}${data.fatal ? ', fatal' : ''}`;
      this.root.dataset.lastError = `${data.details}${code ? `:${code}` : ''}`;
      // Requests abandoned on purpose (seeking, switching) are not failures.
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR && data.details !== Hls.ErrorDetails.INTERNAL_ABORTED) {
        this.stats.networkErrors = (this.stats.networkErrors || 0) + 1;
        this.root.dataset.networkErrors = String(this.stats.networkErrors);
      }
      // A refused signature (403) is final: another level or another try is refused the same
      // way, so stop at once and say so instead of letting the player hunt for a working level.
      if (data.fatal || (code === 403 && data.type === Hls.ErrorTypes.NETWORK_ERROR)) this.fatal(data);
    });
    hls.loadSource(this.masterUrl());
    hls.attachMedia(this.video);
  }

  fatal(data) {
    const code = data.response && data.response.code;
    // Published while it encodes: a failure of the encode withdraws the playlists (404). Ask
    // stream-info what happened rather than reporting a broken link, a few times at most; a
    // refused link or session is reported as such.
    const withdrawn = code !== 401 && code !== 403 && code !== 410;
    if (this.root.dataset.growing === 'true' && withdrawn && (this.growingRestarts || 0) < 3) {
      this.growingRestarts = (this.growingRestarts || 0) + 1;
      this.resumeAt = this.video.currentTime || this.resumeAt;
      this.stopFollowing();
      this.teardown();
      this.timer = setTimeout(() => this.start(), 1000);
      return;
    }
    let message;
    if (code === 403) message = 'Playback refused: the edge rejected the segment link (403). It was not retried.';
    else if (code === 410) message = 'Playback stopped: the segment links expired and could not be renewed (410).';
    else if (code === 401) message = 'Playback refused: your session is no longer valid (401). Sign in again.';
    else if (code === 404) message = 'Playback failed: part of the video is missing (404).';
    else message = `Playback failed: ${data.details}${code ? ` (HTTP ${code})` : ''}.`;
    this.resumeAt = this.video.currentTime || this.resumeAt;
    this.teardown();
    this.setState('error', message, { retry: () => this.restart() });
    this.retryButton.textContent = 'Try again';
  }

  restart() {
    this.teardown();
    this.start();
  }

  attachNative() {
    const v = this.video;
    // Chrome's own HLS refuses segments from another origin (the edge) unless they are fetched
    // with CORS and allowed for this page (the edge's http.cors_allowed_origins).
    v.crossOrigin = 'anonymous';
    let lastRefreshAt = -Infinity;
    let lateStarts = 0;
    const onError = () => {
      const err = v.error;
      const at = this.lastTime || this.resumeAt || 0;
      this.diag.error.textContent = `MediaError ${err ? err.code : '?'}${err && err.message ? `: ${err.message}` : ''}`;
      this.root.dataset.lastError = `media-error:${err ? err.code : '?'}`;
      const progressed = at - lastRefreshAt >= 1;
      if (progressed) lateStarts = 0;
      // Still this engine's, once a fresh master arrives (not torn down or left meanwhile).
      const attached = () => !this.destroyed && this.nativeError === onError;
      // A native engine plays a growing playlist as a live stream. Chromium's loads its last
      // segments and, once playback starts, asks the playlist for newer ones; it gives up when
      // none has been published in between (short segments, an encoder just starting). Open it
      // again and start a little later each time, so that the encoder gets ahead. Chromium
      // reports a refused link the same way, so on a video still encoding that has not played
      // yet, such an error is shown after these attempts (about 15 s); a network error that
      // says so (Safari) is not retried this way.
      const network = err && err.code === MediaError.MEDIA_ERR_NETWORK;
      if (!progressed && !network && this.root.dataset.growing === 'true' && lateStarts < LATE_STARTS) {
        lateStarts += 1;
        this.root.dataset.lateStarts = String(lateStarts);
        this.reopenNative(at, null, lateStarts * 1000, attached);
        return;
      }
      // An expired link looks like any network error to the page. Renew the master once per
      // stretch of progress (the first error included): a second error before the video has
      // played on (a refused link) is shown instead, once any late starts above are spent.
      if (this.stats.nativeRefreshes < 10 && progressed) {
        lastRefreshAt = at;
        this.stats.nativeRefreshes += 1;
        this.root.dataset.refreshes = String(this.stats.nativeRefreshes);
        this.diag.expired.textContent = `${this.stats.nativeRefreshes} (native: re-opened the master)`;
        this.root.dataset.resumedFrom = String(Math.round(at * 100) / 100);
        this.reopenNative(at, null, 0, attached);
        return;
      }
      this.teardown();
      this.resumeAt = at;
      this.setState('error', `Playback failed (native HLS, MediaError ${err ? err.code : '?'}${err && err.message ? `: ${err.message}` : ''}).`, { retry: () => this.restart() });
      this.retryButton.textContent = 'Try again';
    };
    this.nativeError = onError;
    v.addEventListener('error', this.nativeError);
    this.quality.replaceChildren(h('option', { value: '-1' }, 'Auto (browser)'));
    this.quality.disabled = true;
    this.diag.level.textContent = 'chosen by the browser';
    this.openNative(this.resumeAt, true);
  }

  /** Opens `url` in the native engine at `at`; `play` starts it, `playAfter` ms after loading. */
  openNative(at, play, url = this.masterUrl(), playAfter = 0) {
    const v = this.video;
    // A previous opening that never got its metadata must not restore its (older) position.
    if (this.onNativeMetadata) v.removeEventListener('loadedmetadata', this.onNativeMetadata);
    clearTimeout(this.playTimer);
    this.playTimer = null;
    this.onNativeMetadata = () => {
      this.onNativeMetadata = null;
      if (at > 0) v.currentTime = at;
      if (this.root.dataset.state === 'loading') this.setState('ready');
      this.reopening = false;
      if (play && playAfter > 0) {
        this.playTimer = setTimeout(() => {
          this.playTimer = null;
          this.autoplay();
        }, playAfter);
      }
      else if (play) this.autoplay();
      else this.syncPlay();
    };
    v.addEventListener('loadedmetadata', this.onNativeMetadata, { once: true });
    v.src = url;
    v.load();
  }

  autoplay() {
    this.userPaused = false;
    this.video.play().catch(() => {
      // Autoplay refused (no user gesture yet): wait for the play button.
      this.userPaused = true;
      this.syncPlay();
    });
  }

  teardown() {
    clearTimeout(this.playTimer);
    this.playTimer = null;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.nativeError) {
      this.video.removeEventListener('error', this.nativeError);
      this.nativeError = null;
    }
    if (this.onNativeMetadata) {
      this.video.removeEventListener('loadedmetadata', this.onNativeMetadata);
      this.onNativeMetadata = null;
    }
    this.video.removeAttribute('src');
    this.video.load();
  }

  // ----- quality ------------------------------------------------------------------------------

  fillQuality(levels) {
    const options = [h('option', { value: '-1' }, 'Auto')];
    levels.forEach((level, i) => {
      const kbps = Math.round((level.bitrate || 0) / 1000);
      const name = level.height ? `${level.height}p` : (level.name || `level ${i}`);
      options.push(h('option', { value: String(i) }, `${name} · ${kbps} kbps`));
    });
    this.quality.replaceChildren(...options);
    this.quality.value = '-1';
    this.quality.disabled = levels.length < 2;
    this.root.dataset.levels = String(levels.length);
  }

  chooseLevel() {
    if (!this.hls) return;
    const level = Number(this.quality.value);
    // currentLevel switches at once (flushing the buffer); -1 hands control back to ABR.
    this.hls.currentLevel = level;
    this.root.dataset.chosenLevel = String(level);
  }

  showLevel(index) {
    const level = this.hls && this.hls.levels[index];
    if (!level) return;
    const name = level.height ? `${level.height}p` : `level ${index}`;
    this.root.dataset.level = String(index);
    this.root.dataset.levelHeight = String(level.height || '');
    this.diag.level.textContent = `${name} (${Math.round(level.bitrate / 1000)} kbps)`;
    const auto = this.quality.querySelector('option[value="-1"]');
    if (auto) auto.textContent = this.hls.autoLevelEnabled ? `Auto (${name})` : 'Auto';
  }

  // ----- controls -----------------------------------------------------------------------------

  toggle() {
    const v = this.video;
    if (v.paused) {
      this.userPaused = false;
      v.play().catch((e) => this.showNotice(`Cannot start playback: ${e.message}`));
    } else {
      this.userPaused = true;
      v.pause();
    }
  }

  syncPlay() {
    const playing = !this.video.paused;
    // What the viewer wants, for restoring it after the player is re-opened (native expiry).
    if (!this.reopening) this.userPaused = !playing;
    this.playButton.textContent = playing ? 'Pause' : 'Play';
    this.root.dataset.paused = String(!playing);
  }

  /** The audio and subtitle menus, from hls.js's tracks (hidden when there is no choice). */
  fillTracks() {
    const hls = this.hls;
    const label = (t) => `${t.name}${t.lang && t.lang !== 'und' && t.lang !== t.name ? ` (${t.lang})` : ''}`;
    const audio = hls.audioTracks || [];
    this.audio.replaceChildren(...audio.map((t, i) => h('option', { value: String(i) }, label(t))));
    this.audio.value = String(Math.max(0, hls.audioTrack));
    this.audio.hidden = audio.length < 2;
    this.root.dataset.audioTracks = String(audio.length);
    const subs = hls.subtitleTracks || [];
    this.subtitles.replaceChildren(h('option', { value: '-1' }, 'Subtitles off'),
      ...subs.map((t, i) => h('option', { value: String(i) }, label(t))));
    this.subtitles.value = String(hls.subtitleTrack);
    this.subtitles.hidden = subs.length === 0;
    this.root.dataset.subtitleTracks = String(subs.length);
  }

  chooseAudio() {
    if (this.hls) this.hls.audioTrack = Number(this.audio.value);
    this.video.focus();
  }

  chooseSubtitles() {
    if (!this.hls) return;
    const id = Number(this.subtitles.value);
    this.hls.subtitleDisplay = id >= 0;
    this.hls.subtitleTrack = id;
    this.video.focus();
  }

  seekBy(delta) {
    this.seekTo(this.video.currentTime + delta);
  }

  /**
   * The length the seek bar spans: the duration, or while a growing (EVENT) playlist has no end
   * yet and the engine reports an infinite duration (native HLS does), what can be sought so far.
   */
  span() {
    const v = this.video;
    if (Number.isFinite(v.duration)) return v.duration;
    const s = v.seekable;
    return s && s.length ? s.end(s.length - 1) : 0;
  }

  seekTo(t) {
    const d = this.span();
    if (!Number.isFinite(t)) return;
    this.video.currentTime = Math.max(0, d ? Math.min(t, Math.max(0, d - 0.1)) : t);
    this.tick();
  }

  timeAt(e) {
    const r = this.seek.getBoundingClientRect();
    const fraction = Math.max(0, Math.min(1, (e.clientX - r.left) / r.width));
    return fraction * this.span();
  }

  tick() {
    const v = this.video;
    const d = this.span();
    if (v.currentTime > 0) this.lastTime = v.currentTime;
    this.time.textContent = `${clock(v.currentTime)} / ${clock(d)}`;
    this.fill.style.width = d ? `${(v.currentTime / d) * 100}%` : '0';
    let end = 0;
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.5) end = Math.max(end, v.buffered.end(i));
    }
    this.buffered.style.width = d ? `${(end / d) * 100}%` : '0';
  }

  onKey(e) {
    const t = e.target;
    if (t && t.closest && t.closest('input:not([type=range]), textarea, select')) return;
    switch (e.key) {
      case ' ':
        this.toggle();
        break;
      case 'ArrowLeft':
        this.seekBy(-5);
        break;
      case 'ArrowRight':
        this.seekBy(5);
        break;
      case 'ArrowUp':
        this.video.volume = Math.min(1, Math.round((this.video.volume + 0.1) * 100) / 100);
        break;
      case 'ArrowDown':
        this.video.volume = Math.max(0, Math.round((this.video.volume - 0.1) * 100) / 100);
        break;
      default:
        return;
    }
    e.preventDefault();
  }

  onKeyUp(e) {
    // A focused button would otherwise also "click" on the space bar's release.
    if (e.key === ' ' && e.target && e.target.tagName === 'BUTTON') e.preventDefault();
  }

  // ----- storyboard ---------------------------------------------------------------------------

  async loadStoryboard() {
    const path = `/api/videos/${encodeURIComponent(this.id)}/storyboard.vtt`;
    try {
      // With the header: the sheets' URLs in the answer carry a credential of their own.
      const headers = { Authorization: `Bearer ${auth.token}` };
      const res = await fetch(path, { cache: 'no-store', headers });
      if (!res.ok) return;
      this.cues = parseStoryboard(await res.text(), new URL(path, location.href).href);
      this.root.dataset.storyboard = String(this.cues.length);
      // Warm the sheets so the first hover shows a picture at once.
      for (const url of new Set(this.cues.map((c) => c.url))) new Image().src = url;
    } catch {
      this.cues = [];
    }
  }

  showPreview(e) {
    if (!this.span()) return;
    const t = this.timeAt(e);
    this.previewTime.textContent = clock(t);
    const cue = cueAt(this.cues, t);
    const img = this.previewImage;
    if (cue) {
      img.style.backgroundImage = `url("${cue.url}")`;
      img.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      img.style.width = `${cue.w}px`;
      img.style.height = `${cue.h}px`;
      img.hidden = false;
      this.preview.dataset.xywh = `${cue.x},${cue.y},${cue.w},${cue.h}`;
      this.preview.dataset.sheet = cue.url;
    } else {
      img.hidden = true;
    }
    const r = this.seek.getBoundingClientRect();
    const half = (cue ? cue.w : 60) / 2;
    const x = Math.max(half, Math.min(r.width - half, e.clientX - r.left));
    this.preview.style.left = `${x}px`;
    this.preview.dataset.time = String(Math.round(t * 10) / 10);
    this.preview.hidden = false;
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    document.removeEventListener('keydown', this.onKey);
    document.removeEventListener('keyup', this.onKeyUp);
    this.teardown();
  }
}
