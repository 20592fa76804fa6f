// The signed-in user's videos: thumbnail, title, status, duration; watch, retry, delete.

import { api } from './api.js';
import { clock, h } from './ui.js';

export class Library {
  /** `onAuthError(error)` is called when the token is refused. */
  constructor(onAuthError) {
    this.onAuthError = onAuthError;
    this.list = h('ul', { id: 'library-list', class: 'cards' });
    this.message = h('p', { id: 'library-message', class: 'status-line' });
    this.root = h('section', { id: 'library', class: 'panel' },
      h('div', { class: 'row spread' },
        h('h2', {}, 'Your videos'),
        h('button', { type: 'button', id: 'library-reload', onclick: () => this.reload() }, 'Reload')),
      this.message, this.list);
    this.timer = null;
    this.generation = 0;
  }

  async reload() {
    clearTimeout(this.timer);
    const generation = ++this.generation;
    let videos;
    try {
      videos = (await api('/api/videos?limit=100')).data.videos;
    } catch (e) {
      if (e.status === 401) {
        this.onAuthError(e);
        return;
      }
      this.message.textContent = `Could not load your videos: ${e.message}`;
      this.message.className = 'status-line error';
      return;
    }
    if (generation !== this.generation) return;
    this.message.className = 'status-line';
    this.message.textContent = videos.length ? '' : 'No videos yet: upload one above.';
    this.list.replaceChildren(...videos.map((v) => this.card(v)));
    this.root.dataset.count = String(videos.length);
    // Keep statuses moving while anything is in the works.
    if (videos.some((v) => v.status === 'queued' || v.status === 'processing')) {
      this.timer = setTimeout(() => this.reload(), 2000);
    }
  }

  card(v) {
    const title = v.title || v.id;
    const thumb = v.thumbnail_url
      ? h('img', { class: 'thumb', alt: '', loading: 'lazy', src: v.thumbnail_url })
      : h('div', { class: 'thumb placeholder' }, v.status === 'failed' ? '!' : '…');
    const progress = (v.status === 'queued' || v.status === 'processing')
      ? h('progress', { max: 100, value: v.progress || 0 })
      : null;
    const error = h('p', { class: 'error small', hidden: !v.error || v.status !== 'failed' }, v.error || '');
    const actions = h('div', { class: 'actions' });
    if (v.status === 'ready') {
      actions.append(h('a', { class: 'button watch', href: `#/watch/${v.id}` }, 'Watch'));
    }
    if (v.status === 'failed') {
      actions.append(h('button', {
        type: 'button',
        class: 'retry',
        onclick: (e) => this.act(e.currentTarget, () => api(`/api/videos/${v.id}/retry`, { method: 'POST' })),
      }, 'Retry'));
    }
    const del = h('button', { type: 'button', class: 'delete danger' }, 'Delete');
    del.addEventListener('click', () => {
      // Two clicks, no modal dialog: the first one asks.
      if (del.dataset.armed !== 'true') {
        del.dataset.armed = 'true';
        del.textContent = 'Really delete?';
        setTimeout(() => {
          del.dataset.armed = 'false';
          del.textContent = 'Delete';
        }, 4000);
        return;
      }
      this.act(del, () => api(`/api/videos/${v.id}`, { method: 'DELETE' }));
    });
    actions.append(del);
    return h('li', { class: `card ${v.status}`, dataset: { id: v.id, status: v.status } },
      thumb,
      h('div', { class: 'meta' },
        h('strong', { class: 'title' }, title),
        h('span', { class: `badge ${v.status}` }, v.status),
        h('span', { class: 'duration' }, v.duration ? clock(v.duration) : ''),
        progress,
        error),
      actions);
  }

  async act(button, call) {
    button.disabled = true;
    try {
      await call();
    } catch (e) {
      if (e.status === 401) {
        this.onAuthError(e);
        return;
      }
      this.message.textContent = e.message;
      this.message.className = 'status-line error';
    }
    this.reload();
  }

  destroy() {
    clearTimeout(this.timer);
    this.generation++;
  }
}
