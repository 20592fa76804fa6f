// The upload panel: pick a file, watch the bytes go up (XMLHttpRequest upload progress), then
// watch the processing (Server-Sent Events), with the thumbnail as soon as it exists.

import { api, followEvents, uploadVideo } from './api.js';
import { h, progressBar } from './ui.js';

const STAGES = {
  queued: 'queued',
  probe: 'checking the file',
  thumbnail: 'thumbnail',
  encode: 'encoding',
  publish: 'publishing',
  done: 'done',
};

export class UploadPanel {
  /** `onChange()` is called when a video was accepted, is ready or failed (refresh the library). */
  constructor(onChange) {
    this.onChange = onChange;
    this.file = h('input', { id: 'file', type: 'file', accept: 'video/*,.mp4,.mov,.mkv,.webm' });
    this.title = h('input', { id: 'title', type: 'text', placeholder: 'Title (optional)', maxLength: 200 });
    this.button = h('button', { id: 'upload-start', type: 'button', onclick: () => this.start() }, 'Upload');
    this.uploadBar = progressBar('upload-bar', 'Upload');
    this.processBar = progressBar('processing-bar', 'Processing');
    this.status = h('p', { id: 'upload-status', class: 'status-line' });
    this.thumb = h('img', { id: 'upload-thumb', class: 'thumb', alt: 'thumbnail', hidden: true });
    this.watch = h('a', { id: 'upload-watch', class: 'button', hidden: true }, 'Watch');
    this.uploadBar.root.hidden = true;
    this.processBar.root.hidden = true;
    this.root = h('section', { id: 'upload', class: 'panel' },
      h('h2', {}, 'Upload a video'),
      h('div', { class: 'row' }, this.file, this.title, this.button),
      this.uploadBar.root,
      this.processBar.root,
      h('div', { class: 'row' }, this.thumb, h('div', {}, this.status, this.watch)));
    this.closeEvents = null;
    this.upload = null;
  }

  setStatus(text, kind = '') {
    this.status.textContent = text;
    this.status.className = `status-line ${kind}`;
    this.root.dataset.state = kind || 'busy';
  }

  async start() {
    const file = this.file.files[0];
    if (!file) {
      this.setStatus('Choose a video file first.', 'error');
      return;
    }
    this.destroy();
    this.button.disabled = true;
    this.thumb.hidden = true;
    this.watch.hidden = true;
    this.uploadBar.root.hidden = false;
    this.processBar.root.hidden = true;
    this.uploadBar.set(0);
    this.processBar.set(0);
    this.setStatus(`Uploading ${file.name}…`);
    const title = this.title.value.trim() || file.name.replace(/\.[^.]+$/, '');
    this.upload = uploadVideo(file, title, (loaded, total) => {
      const pct = total ? (loaded / total) * 100 : 0;
      this.uploadBar.set(pct, `${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`);
      if (loaded >= total) this.setStatus('Uploaded; checking the file…');
    });
    let accepted;
    try {
      accepted = await this.upload.promise;
    } catch (e) {
      this.button.disabled = false;
      this.setStatus(`Upload refused (${e.status || 'network'}): ${e.message}`, 'error');
      return;
    } finally {
      this.upload = null;
    }
    this.uploadBar.set(100, 'done');
    this.button.disabled = false;
    this.file.value = '';
    this.title.value = '';
    this.follow(accepted);
    this.onChange();
  }

  /** Follows an accepted upload: `{id, events_url, thumbnail_url}` as the API answered it. */
  follow({ id, events_url: eventsUrl, thumbnail_url: thumbnailUrl }) {
    this.root.dataset.video = id;
    this.processBar.root.hidden = false;
    this.setStatus('Queued for processing…');
    const showThumb = () => {
      if (!this.thumb.hidden) return;
      this.thumb.src = thumbnailUrl;
      this.thumb.hidden = false;
    };
    const stage = (s) => STAGES[s] || s || '';
    // A fresh events URL, from the video's record, for a stream refused once its link expired.
    const renew = async () => (await api(`/api/videos/${encodeURIComponent(id)}`)).data?.events_url;
    this.closeEvents = followEvents(eventsUrl, {
      status: (v) => {
        this.processBar.set(v.progress, stage(v.stage));
        if (v.thumbnail_url) showThumb();
        if (v.status === 'ready') this.ready(id);
        else if (v.status === 'failed') this.failed(v.error);
        else this.setStatus(`Processing: ${stage(v.stage) || v.status}…`);
      },
      stage: (e) => this.setStatus(`Processing: ${stage(e.stage)}…`),
      progress: (e) => this.processBar.set(e.percent, stage(e.stage)),
      thumbnail_ready: () => showThumb(),
      ready: () => this.ready(id),
      failed: (e) => {
        if (e.retrying) this.setStatus(`An attempt failed (${e.error}); retrying…`, 'warn');
        else this.failed(e.error);
      },
      gaveUp: (e) => this.setStatus(`Progress is no longer shown here (${e.message}).`, 'warn'),
    }, { renew });
  }

  ready(id) {
    this.processBar.set(100, 'ready');
    this.setStatus('Ready to watch.', 'ready');
    this.watch.href = `#/watch/${id}`;
    this.watch.hidden = false;
    this.onChange();
  }

  failed(error) {
    this.setStatus(`Processing failed: ${error || 'unknown error'}`, 'error');
    this.onChange();
  }

  destroy() {
    this.closeEvents?.();
    this.closeEvents = null;
    this.upload?.abort();
    this.upload = null;
  }
}
