// Signed links expire (seed 001): segment URLs at the edge answer 410 once their `expires` has
// passed, and the playback credential (`pt=`) on variant playlists and keys stops being
// accepted (401). A viewer who pauses, or simply watches long enough, must not notice.
//
// hls.js requests go through `refreshingLoader`: when a request is refused as expired, it
// fetches a fresh master (a new URL with a fresh credential), the fresh variant playlists behind
// it, and retries the same request once with the freshly signed URL of the same path. hls.js
// only sees a request that took a little longer, so playback continues from the same position
// without a flush or a seek. Later requests go straight to the fresh URLs. Anything else (a 403
// for a tampered link, a second failure after a refresh) reaches hls.js unchanged and is shown
// as an error: nothing is retried in a loop.

/** `origin + path`: what stays the same when a link is re-signed. */
export function pathKey(url) {
  const u = new URL(url, location.href);
  return u.origin + u.pathname;
}

/** Every URI of a playlist (media lines and `URI="..."` attributes), absolute. */
export function playlistUris(text, base) {
  const out = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const uri = uriAttribute(line);
      if (uri) out.push(new URL(uri, base).href);
    } else {
      out.push(new URL(line, base).href);
    }
  }
  return out;
}

/**
 * The quoted `URI` attribute of a tag line, read one attribute at a time so that a quoted value
 * is never searched: a track named `xURI=` holds what a plain search takes for the URI.
 */
export function uriAttribute(line) {
  const attribute = /([A-Z0-9-]+)=("[^"]*"|[^,]*)(?:,|$)/y;
  attribute.lastIndex = line.indexOf(':') + 1;
  if (attribute.lastIndex === 0) return null;
  for (let m = attribute.exec(line); m !== null; m = attribute.exec(line)) {
    if (m[1] === 'URI' && m[2].startsWith('"')) return m[2].slice(1, -1) || null;
  }
  return null;
}

async function getText(url) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) {
    const err = new Error(`HTTP ${res.status} refreshing ${new URL(url).pathname}`);
    err.status = res.status;
    throw err;
  }
  return res.text();
}

/** The freshest signed URL of every path, re-fetched from a new master on demand. */
export class LinkRefresher {
  /** `masterUrl()` returns (or resolves to) a new master URL with a fresh credential. */
  constructor(masterUrl) {
    this.masterUrl = masterUrl;
    this.fresh = new Map();
    this.pending = null;
    this.lastAt = -Infinity;
    this.count = 0;
  }

  /** The freshest known URL for `url`'s path (`url` itself if it was never refreshed). */
  current(url) {
    return this.fresh.get(pathKey(url)) || url;
  }

  /** Refreshes every link once (concurrent callers share one refresh). */
  refresh() {
    if (this.pending) return this.pending;
    // Just refreshed: the links are as fresh as they get.
    if (performance.now() - this.lastAt < 1000) return Promise.resolve();
    this.pending = this.load().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  async load() {
    const master = new URL(await this.masterUrl(), location.href).href;
    const variants = playlistUris(await getText(master), master);
    const fresh = new Map();
    await Promise.all(variants.map(async (variant) => {
      fresh.set(pathKey(variant), variant);
      for (const uri of playlistUris(await getText(variant), variant)) fresh.set(pathKey(uri), uri);
    }));
    this.fresh = fresh;
    this.lastAt = performance.now();
    this.count += 1;
  }
}

/** A refusal that a fresh signature cures: 410 (edge: link expired), 401 on a credential. */
export function isExpiry(code, url) {
  if (code === 410) return true;
  return code === 401 && /[?&]pt=/.test(url) && new URL(url, location.href).origin === location.origin;
}

/** `url` with its edge signature altered (the `?tamper=1` negative control): the edge says 403. */
export function tamperUrl(url) {
  const u = new URL(url, location.href);
  const md5 = u.searchParams.get('md5');
  if (u.origin === location.origin || !md5) return url;
  u.searchParams.set('md5', (md5[0] === 'A' ? 'B' : 'A') + md5.slice(1));
  return u.href;
}

/**
 * An hls.js loader class (extending `Base`, hls.js's XhrLoader) that sends every request to the
 * freshest URL of its path and retries once after a refresh when the request was refused as
 * expired. `hooks.onExpired(code, url)` tells the page; `hooks.tamper` alters edge signatures.
 * The request's `context.url` is never changed (hls.js keys its key cache by it); the URL is
 * chosen when the XMLHttpRequest is opened.
 */
export function refreshingLoader(Base, refresher, hooks = {}) {
  const supported = typeof Base.prototype.loadInternal === 'function'
    && typeof Base.prototype.resetInternalLoader === 'function';
  if (!supported) {
    console.warn('hls.js loader internals changed: expired links will not be refreshed');
  }
  return class RefreshingLoader extends Base {
    constructor(config) {
      super(config);
      this.target = null;
      this.gone = false;
      this.xhrSetup = (xhr, url) => {
        let target = refresher.current(url);
        if (hooks.tamper) target = tamperUrl(target);
        this.target = target;
        xhr.open('GET', target, true);
        return config.xhrSetup?.(xhr, target);
      };
    }

    load(context, config, callbacks) {
      let retried = false;
      const onError = (error, ctx, details, stats) => {
        const failed = this.target || ctx.url;
        if (!supported || retried || !isExpiry(error.code, failed)) {
          callbacks.onError(error, ctx, details, stats);
          return;
        }
        retried = true;
        hooks.onExpired?.(error.code, failed);
        refresher.refresh().then(() => {
          if (this.gone) return;
          const next = refresher.current(ctx.url);
          if (next === failed || (hooks.tamper && tamperUrl(next) === failed)) {
            callbacks.onError(error, ctx, details, stats);
            return;
          }
          hooks.onRetry?.(next);
          this.abortInternal();
          this.resetInternalLoader();
          this.loadInternal();
        }, (why) => {
          if (this.gone) return;
          hooks.onRefreshFailed?.(why);
          callbacks.onError(error, ctx, details, stats);
        });
      };
      super.load(context, config, { ...callbacks, onError });
    }

    abort() {
      this.gone = true;
      super.abort();
    }

    destroy() {
      this.gone = true;
      super.destroy();
    }
  };
}
