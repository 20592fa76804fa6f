// The origin's API as the page uses it: the token (kept in localStorage), JSON calls, the
// upload with byte-level progress, and Server-Sent Events.

const TOKEN_KEY = 'hls-edge.token';

export const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY) || '';
  },
  set(token) {
    localStorage.setItem(TOKEN_KEY, token.trim());
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
  },
  /** The token's subject, read without verifying (the server verifies). */
  user() {
    try {
      const payload = this.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(payload)).sub || '';
    } catch {
      return '';
    }
  },
};

/** An API refusal: HTTP status and the server's `{"error"}` message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}


async function parse(res) {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/**
 * A JSON API call with `Authorization: Bearer`. Resolves `{status, data, headers}` for 2xx;
 * throws ApiError otherwise.
 */
export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      body,
      cache: 'no-store',
      headers: { ...headers, Authorization: `Bearer ${auth.token}` },
    });
  } catch (e) {
    throw new ApiError(0, `network error: ${e.message}`, null);
  }
  const data = await parse(res);
  if (!res.ok) {
    const message = (data && data.error) || res.statusText || `HTTP ${res.status}`;
    throw new ApiError(res.status, message, data);
  }
  return { status: res.status, data, headers: res.headers };
}

/** Development mode only: a (non-admin) token for `user`. */
export async function mintDevToken(user) {
  const res = await fetch(`/api/dev/token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
  const data = await parse(res);
  if (!res.ok) {
    throw new ApiError(res.status, (data && data.error) || `HTTP ${res.status}`, data);
  }
  return data.token;
}

/**
 * Uploads `file` as the raw request body (`POST /api/videos?title=`) with XMLHttpRequest, so
 * the bytes sent can be reported: `onProgress(loaded, total)`. Resolves with the 202 body
 * (`{id, status, ...}`); `abort()` cancels.
 */
export function uploadVideo(file, title, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const query = title ? `?title=${encodeURIComponent(title)}` : '';
    xhr.open('POST', `/api/videos${query}`);
    xhr.setRequestHeader('Authorization', `Bearer ${auth.token}`);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => {
      onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    });
    xhr.upload.addEventListener('load', () => onProgress(file.size, file.size));
    xhr.addEventListener('load', () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status === 202 || xhr.status === 200 || xhr.status === 201) resolve(data);
      else reject(new ApiError(xhr.status, (data && data.error) || `HTTP ${xhr.status}`, data));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network error during upload', null)));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'upload cancelled', null)));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * Follows `/api/videos/{id}/events`: `handlers[eventName](data)` for status, stage, progress,
 * thumbnail_ready, ready and failed. The stream is closed after `ready` or a final `failed`
 * (the server ends it then; EventSource would otherwise reconnect). Returns `close()`.
 *
 * The URL's credential expires with the video's links. EventSource gives up for good on any
 * answer but 200, so a stream refused once it has expired (after a dropped connection, a
 * restart) is opened again with the URL `renew()` resolves to, `retryMs` later and then ever
 * less often, until the video's end is seen, `renew()` is refused (an `ApiError` 4xx but 408
 * and 429: the video or the token is gone; then `handlers.gaveUp(error)`) or `close()` is
 * called.
 */
export function followEvents(eventsUrl, handlers, { renew, retryMs = 2000, EventSourceImpl } = {}) {
  const Source = EventSourceImpl || globalThis.EventSource;
  const names = ['status', 'stage', 'progress', 'thumbnail_ready', 'ready', 'failed'];
  let source = null;
  let ended = false;
  let timer = null;
  let delay = retryMs;
  const again = () => {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      let url = null;
      try {
        url = await renew();
      } catch (e) {
        // Refused for good (the video deleted, the token expired): nothing to follow any
        // more, and the page says so. Busy (408, 429) or unreachable: later.
        const refused = e instanceof ApiError && e.status >= 400 && e.status < 500
          && e.status !== 408 && e.status !== 429;
        if (refused && !ended) {
          ended = true;
          handlers.gaveUp?.(e);
        }
      }
      if (ended) return;
      if (url) open(url);
      else again();
    }, delay);
    delay = Math.min(delay * 2, 30_000);
  };
  const open = (url) => {
    // The URL the API gave carries a credential for this video alone (EventSource sends no
    // header, and a URL must never hold the user's token).
    const current = new Source(url);
    source = current;
    for (const name of names) {
      current.addEventListener(name, (e) => {
        let data = {};
        try {
          data = JSON.parse(e.data);
        } catch {
          /* keep {} */
        }
        delay = retryMs;
        const final = name === 'ready'
          || (name === 'failed' && !data.retrying)
          || (name === 'status' && (data.status === 'ready' || data.status === 'failed'));
        if (final) {
          ended = true;
          current.close();
        }
        handlers[name]?.(data);
      });
    }
    current.addEventListener('error', () => {
      handlers.error?.(current.readyState);
      // CLOSED (2): refused, not reconnecting by itself.
      if (!ended && current.readyState === 2 && renew && source === current) again();
    });
  };
  open(eventsUrl);
  return () => {
    ended = true;
    clearTimeout(timer);
    source?.close();
  };
}
