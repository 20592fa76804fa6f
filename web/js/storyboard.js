// Storyboard previews: a WebVTT track whose cues name a region of a sprite sheet
// (`storyboard/storyboard_01.jpg?pt=...#xywh=160,0,160,90`).

function seconds(stamp) {
  const parts = stamp.trim().split(':').map(Number);
  if (parts.some((n) => !Number.isFinite(n))) return NaN;
  return parts.reduce((total, n) => total * 60 + n, 0);
}

/** Cues `{start, end, url, x, y, w, h}`; sheet URLs are resolved against `base` (the VTT's URL). */
export function parseStoryboard(text, base) {
  const cues = [];
  for (const block of text.replace(/\r/g, '').split(/\n{2,}/)) {
    const lines = block.split('\n').map((l) => l.trim()).filter(Boolean);
    const at = lines.findIndex((l) => l.includes('-->'));
    if (at < 0 || !lines[at + 1]) continue;
    const [from, to] = lines[at].split('-->');
    const payload = lines[at + 1];
    const hash = payload.lastIndexOf('#xywh=');
    if (hash < 0) continue;
    const [x, y, w, h] = payload.slice(hash + 6).split(',').map(Number);
    const start = seconds(from);
    const end = seconds(to.trim().split(/\s+/)[0]);
    if (![start, end, x, y, w, h].every(Number.isFinite)) continue;
    cues.push({ start, end, url: new URL(payload.slice(0, hash), base).href, x, y, w, h });
  }
  return cues;
}

/** The cue covering `t` (the last one past the end). */
export function cueAt(cues, t) {
  if (!cues.length) return null;
  return cues.find((c) => t >= c.start && t < c.end) || (t >= cues[cues.length - 1].end ? cues[cues.length - 1] : cues[0]);
}
