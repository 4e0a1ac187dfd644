// Search by face: a picture, a time range and cameras; the hits on a timeline with their
// face, entry and exit frames, dwell and clips. A hit's face can be enrolled from here.

import { api, session } from './api.js';
import { h, fill, field, toast, time, fromLocal, toLocal } from './dom.js';
import { picture, clipPlayer } from './incidents.js';
import { enrolCrop } from './people.js';

export async function searchView(view) {
  const image = h('input', { type: 'file', name: 'image', accept: 'image/jpeg,image/png', required: true });
  const now = new Date();
  const start = h('input', { type: 'datetime-local', name: 'start', value: toLocal(new Date(now - 7 * 864e5)) });
  const end = h('input', { type: 'datetime-local', name: 'end', value: toLocal(new Date(now.getTime() + 36e5)) });
  const topK = h('input', { type: 'number', name: 'top_k', min: 1, max: 100, value: 10 });
  const cameras = h('fieldset', { class: 'cameras-pick' }, h('legend', {}, 'Cameras (none ticked: all)'));
  if (session.can('read:cameras')) {
    const page = await api('/api/v1/cameras?limit=200');
    cameras.append(...page.items.map((c) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', name: 'camera', value: c.id }), ` ${c.name} (${c.id})`)));
  }
  const preview = h('img', { alt: 'The picture searched by', class: 'face', hidden: true });
  image.addEventListener('change', () => {
    if (image.files[0]) {
      preview.src = URL.createObjectURL(image.files[0]);
      preview.hidden = false;
    }
  });
  const results = h('section', { id: 'search-results', 'aria-live': 'polite', 'aria-labelledby': 'results-title' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'search-title' },
    h('h1', { id: 'search-title' }, 'Search by face'),
    h('div', { class: 'row' }, field('Picture (one face)', image), preview),
    h('div', { class: 'row' }, field('From', start), field('To', end), field('Most tracks', topK)),
    cameras,
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = new FormData();
    body.append('image', image.files[0]);
    const from = fromLocal(start.value);
    const to = fromLocal(end.value);
    if (from) body.append('start', from);
    if (to) body.append('end', to);
    body.append('top_k', topK.value);
    const picked = [...cameras.querySelectorAll('input:checked')].map((c) => c.value);
    if (picked.length) body.append('camera_ids', picked.join(','));
    fill(results, h('p', {}, 'Searching…'));
    try {
      const found = await api('/api/v1/search/face', { method: 'POST', form: body });
      show(results, found, new Date(from || 0), new Date(to || Date.now()));
    } catch (err) {
      fill(results, h('p', { class: 'error', role: 'alert' }, `${err.message} (${err.code})`));
    }
  });
  fill(view, form, results);
}

function show(results, found, from, to) {
  const hits = found.hits;
  const stats = found.search_stats;
  const span = Math.max(1, to - from);
  const timeline = h('div', { class: 'timeline', role: 'group', 'aria-label': `${hits.length} track(s) on a timeline from ${from.toLocaleString()} to ${to.toLocaleString()}` },
    hits.map((hit, i) => {
      const left = ((new Date(hit.entered_at) - from) / span) * 100;
      const width = Math.max(0.5, ((new Date(hit.exited_at) - new Date(hit.entered_at)) / span) * 100);
      return h('a', {
        href: `#hit-${i}`,
        class: 'mark',
        title: `${hit.camera_id}: ${new Date(hit.entered_at).toLocaleString()}`,
        style: { left: `${Math.min(99.5, Math.max(0, left))}%`, width: `${width}%` },
        onclick: (e) => { e.preventDefault(); document.getElementById(`hit-${i}`)?.scrollIntoView(); },
      }, h('span', { class: 'sr-only' }, `Track on ${hit.camera_id} at ${new Date(hit.entered_at).toLocaleString()}`));
    }));
  fill(results,
    h('h2', { id: 'results-title' }, `${hits.length} track(s)`),
    found.subject ? h('p', { class: 'identified' }, `Identified as ${found.subject.name} (${found.subject.category}), similarity ${Math.round(found.subject.similarity * 100)} %`) : null,
    h('p', { class: 'meta' }, `${stats.stage} search, ${stats.method}, ${stats.vectors_searched} vectors, ${Math.round(stats.latency_ms)} ms`),
    timeline,
    h('div', { class: 'timeline-axis' }, h('span', {}, from.toLocaleString()), h('span', {}, to.toLocaleString())),
    h('ol', { class: 'hits' }, hits.map((hit, i) => hitCard(hit, i))));
}

function hitCard(hit, i) {
  const enrol = session.can('write:subjects') ? enrolFromHit(hit) : null;
  return h('li', { class: 'card hit', id: `hit-${i}`, dataset: { track: hit.track_id, camera: hit.camera_id } },
    h('h3', {}, `${hit.camera_id} · ${Math.round(hit.similarity * 100)} % similar`),
    h('div', { class: 'row' },
      picture(hit.thumbnail_url, `Face seen on ${hit.camera_id}`),
      hit.entry_frame ? h('figure', {}, picture(hit.entry_frame.url, `Entry frame on ${hit.camera_id}`), h('figcaption', {}, 'Entry ', time(hit.entered_at))) : null,
      hit.exit_frame ? h('figure', {}, picture(hit.exit_frame.url, `Exit frame on ${hit.camera_id}`), h('figcaption', {}, 'Exit ', time(hit.exited_at))) : null),
    h('p', {}, `Dwell ${hit.dwell_seconds.toFixed(1)} s over ${hit.frames} frames`,
      hit.zones.length ? ` · zones ${hit.zones.map((z) => z.zone).join(', ')}` : ''),
    hit.clips.map(clipPlayer),
    enrol);
}

/** Turns the hit's face into a new subject, or another face of an existing one. */
function enrolFromHit(hit) {
  const name = h('input', { name: 'new-name', placeholder: 'New person’s name' });
  const existing = h('select', { name: 'existing' }, h('option', { value: '' }, 'a new subject'));
  api('/api/v1/subjects?limit=200').then((page) => existing.append(
    ...page.items.map((s) => h('option', { value: s.id }, s.name))), () => {});
  return h('form', {
    class: 'row enrol-hit',
    'aria-label': `Enrol the face seen on ${hit.camera_id}`,
    onsubmit: async (e) => {
      e.preventDefault();
      if (!existing.value && !name.value.trim()) return toast('Name the new subject, or pick one', 'error');
      try {
        await enrolCrop(hit.thumbnail_url, { name: name.value.trim(), subjectId: existing.value || undefined });
        toast('Face enrolled');
      } catch (err) {
        toast(`${err.message} (${err.code})`, 'error');
      }
    },
  }, field('Add this face to', existing), field('Name', name), h('button', { type: 'submit' }, 'Enrol this face'));
}
