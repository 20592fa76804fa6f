// Small DOM helpers: elements are built with properties and text, never from HTML strings, so
// titles and error messages from the API can contain anything.

/**
 * Creates an element. `props`: `class`, `dataset` (object), `on*` (listeners), `hidden`,
 * anything else as a property (or an attribute when it is not one). Children: nodes, strings,
 * or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key in el) el[key] = value;
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** `m:ss` (or `h:mm:ss`) for a number of seconds. */
export function clock(secs) {
  if (!Number.isFinite(secs) || secs < 0) return '0:00';
  const s = Math.floor(secs % 60);
  const m = Math.floor(secs / 60) % 60;
  const hours = Math.floor(secs / 3600);
  const mm = hours ? String(m).padStart(2, '0') : String(m);
  return `${hours ? `${hours}:` : ''}${mm}:${String(s).padStart(2, '0')}`;
}

/** A labelled progress bar: `<progress>` plus a percentage the tests and people can read. */
export function progressBar(id, label) {
  const bar = h('progress', { id, max: 100, value: 0 });
  const text = h('span', { class: 'pct', id: `${id}-text` }, '0%');
  const root = h('div', { class: 'progress', dataset: { percent: '0' } },
    h('span', { class: 'progress-label' }, label), bar, text);
  return {
    root,
    set(percent, note) {
      const p = Math.max(0, Math.min(100, Number(percent) || 0));
      bar.value = p;
      root.dataset.percent = String(Math.round(p * 10) / 10);
      text.textContent = `${Math.floor(p)}%${note ? ` · ${note}` : ''}`;
    },
  };
}
