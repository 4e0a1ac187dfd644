// Cameras: a grid of live snapshots with status and counters; add, edit (zones and motion
// masks drawn on the snapshot), start, stop, test, remove.

import { api, freshUrl, session } from './api.js';
import { h, fill, field, toast, badge, when, confirmDialog } from './dom.js';

const FEATURES = ['crowd', 'intrusion', 'loitering', 'sleep', 'theft', 'critical', 'authorised', 'clip_appearances'];
const REFRESH_MS = 5000;

export async function camerasView(view) {
  const canWrite = session.can('write:cameras');
  const grid = h('div', { class: 'grid', id: 'camera-grid' });
  const editor = h('section', { id: 'camera-editor', 'aria-label': 'Camera editor' });
  const cards = new Map();
  fill(view,
    h('div', { class: 'title-row' },
      h('h1', {}, 'Cameras'),
      canWrite ? h('button', { type: 'button', id: 'add-camera', onclick: () => edit(editor, null, refresh) }, 'Add camera') : null),
    editor,
    grid);

  let stopped = false;
  const objectUrls = new Map();
  // Snapshots are fetched for the cards on screen only, and not while the tab is hidden, so a
  // large grid does not spend the key's media allowance on pictures nobody sees.
  const onScreen = new Set();
  const watcher = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const id = entry.target.dataset.camera;
      if (entry.isIntersecting) {
        const first = !onScreen.has(id);
        onScreen.add(id);
        if (first) cards.get(id)?.snapshot();
      } else {
        onScreen.delete(id);
      }
    }
  });

  async function refresh() {
    const page = await api('/api/v1/cameras?limit=200');
    const seen = new Set();
    for (const camera of page.items) {
      seen.add(camera.id);
      let card = cards.get(camera.id);
      if (!card) {
        card = cardFor(camera);
        cards.set(camera.id, card);
        grid.append(card.root);
        watcher.observe(card.root);
      }
      card.update(camera);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        watcher.unobserve(card.root);
        onScreen.delete(id);
        card.root.remove();
        cards.delete(id);
      }
    }
    if (!page.items.length) fill(grid, h('p', { class: 'empty' }, 'No cameras yet.'));
    else grid.querySelector('.empty')?.remove();
  }

  function cardFor(camera) {
    const img = h('img', { alt: `Latest snapshot of ${camera.name}`, class: 'snapshot', width: 320, height: 180 });
    const noPicture = h('p', { class: 'no-picture' }, 'No picture yet');
    const status = h('p', { class: 'status' });
    const stats = h('dl', { class: 'stats' });
    const buttons = h('div', { class: 'actions' });
    const title = h('h2', {}, camera.name);
    const root = h('article', { class: 'card camera', dataset: { camera: camera.id }, 'aria-label': `Camera ${camera.name}` },
      title, h('div', { class: 'picture' }, img, noPicture), status, stats, buttons);
    async function snapshot() {
      try {
        const url = await freshUrl(`/api/v1/cameras/${encodeURIComponent(camera.id)}/snapshot`);
        const old = objectUrls.get(camera.id);
        img.src = url;
        objectUrls.set(camera.id, url);
        if (old) URL.revokeObjectURL(old);
        noPicture.hidden = true;
        img.hidden = false;
      } catch {
        img.hidden = true;
        noPicture.hidden = false;
      }
    }
    // Frame rates measured between two refreshes of the list.
    let previous = null;
    const rate = (now, key) => {
      if (!previous) return '—';
      const seconds = (now.t - previous.t) / 1000;
      const frames = (now[key] ?? 0) - (previous[key] ?? 0);
      return seconds > 0 && frames >= 0 ? `${(frames / seconds).toFixed(1)} fps` : '—';
    };
    return {
      root,
      snapshot,
      update(cam) {
        camera = cam;
        const now = { t: Date.now(), frames_in: cam.ingest?.frames_in, analysed: cam.ingest?.analysed };
        title.textContent = `${cam.name} (${cam.id})`;
        fill(status, badge(cam.status), ' ', cam.status_reason || '');
        const ingest = cam.ingest || {};
        fill(stats,
          h('dt', {}, 'Sampling'), h('dd', {}, `${cam.sample_fps} fps`),
          h('dt', {}, 'Receiving'), h('dd', { class: 'fps-in' }, rate(now, 'frames_in')),
          h('dt', {}, 'Analysing'), h('dd', {}, rate(now, 'analysed')),
          h('dt', {}, 'Frames in'), h('dd', {}, ingest.frames_in ?? 0),
          h('dt', {}, 'Analysed'), h('dd', {}, ingest.analysed ?? 0),
          h('dt', {}, 'Dropped'), h('dd', {}, ingest.dropped ?? 0),
          h('dt', {}, 'Last frame'), h('dd', {}, when(ingest.last_frame_at)));
        previous = now;
        if (canWrite) {
          fill(buttons,
            cam.enabled
              ? h('button', { type: 'button', onclick: () => act(cam, 'stop') }, `Stop ${cam.name}`)
              : h('button', { type: 'button', onclick: () => act(cam, 'start') }, `Start ${cam.name}`),
            h('button', { type: 'button', onclick: () => edit(editor, cam, refresh) }, `Edit ${cam.name}`));
        }
        if (onScreen.has(cam.id)) snapshot();
      },
    };
  }

  async function act(camera, what) {
    await api(`/api/v1/cameras/${encodeURIComponent(camera.id)}/${what}`, { method: 'POST' });
    toast(`${camera.name}: ${what === 'stop' ? 'stopped' : 'started'}`);
    refresh();
  }

  await refresh();
  const timer = setInterval(() => {
    if (!stopped && !document.hidden) refresh().catch(() => {});
  }, REFRESH_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
    watcher.disconnect();
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
  };
}

/** The add/edit form for `camera` (null: a new one). */
async function edit(editor, camera, done) {
  const isNew = camera === null;
  const cam = camera || { id: '', name: '', source: '', sample_fps: 2, enabled: true, features: {}, zones: [] };
  const canMask = session.can('admin');
  let masks = [];
  if (!isNew && canMask) {
    const calibration = await api('/api/v1/calibration');
    masks = (calibration.cameras?.[cam.id]?.motion_masks || []).map((z) => ({ ...z }));
  }
  const zones = (cam.zones || []).map((z) => ({ ...z }));
  const id = h('input', { name: 'id', required: true, pattern: '[A-Za-z0-9_-]{1,64}', value: cam.id, disabled: !isNew });
  const name = h('input', { name: 'name', required: true, value: cam.name });
  const source = h('input', { name: 'source', required: true, value: cam.source, placeholder: 'rtsp://…, http://….mjpg, file:///…, push' });
  const fps = h('input', { name: 'sample_fps', type: 'number', min: '0.1', max: '30', step: '0.1', value: cam.sample_fps });
  const enabled = h('input', { name: 'enabled', type: 'checkbox', checked: cam.enabled });
  const features = FEATURES.map((f) => {
    const box = h('input', { type: 'checkbox', name: `feature-${f}`, checked: Boolean(cam.features?.[f]) });
    return { f, box, label: h('label', { class: 'check' }, box, ` ${f.replace('_', ' ')}`) };
  });
  const testResult = h('p', { class: 'test-result', role: 'status' });
  const drawing = shapeEditor(cam, zones, masks, canMask);
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card editor', 'aria-labelledby': 'editor-title' },
    h('h2', { id: 'editor-title' }, isNew ? 'Add a camera' : `Edit ${cam.name}`),
    h('div', { class: 'row' },
      field('Camera id', id, 'letters, digits, - and _'),
      field('Name', name),
      field('Sample rate (fps)', fps)),
    field('Source URL', source),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: testSource }, 'Test source'),
      testResult),
    h('label', { class: 'check' }, enabled, ' Enabled (analysed)'),
    h('fieldset', {}, h('legend', {}, 'Rules'), features.map((x) => x.label)),
    drawing.root,
    error,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Save camera'),
      !isNew ? h('button', { type: 'button', class: 'danger', onclick: remove }, `Remove ${cam.name}`) : null,
      h('button', { type: 'button', onclick: () => fill(editor) }, 'Cancel')));

  async function testSource() {
    testResult.textContent = 'Testing…';
    try {
      const r = await api('/api/v1/cameras/test', { method: 'POST', json: { url: source.value.trim() } });
      testResult.textContent = `OK: ${r.kind}${r.codec ? ` ${r.codec}` : ''}${r.width ? ` ${r.width}×${r.height}` : ''} in ${Math.round(r.latency_ms)} ms`;
    } catch (err) {
      testResult.textContent = `Failed: ${err.message}`;
    }
  }

  async function remove() {
    if (!(await confirmDialog(`Remove ${cam.name}?`, 'The camera stops and leaves the registry; its incidents stay.', 'Remove'))) return;
    await api(`/api/v1/cameras/${encodeURIComponent(cam.id)}`, { method: 'DELETE' });
    toast(`${cam.name} removed`);
    fill(editor);
    done();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const body = {
      name: name.value.trim(),
      source: source.value.trim(),
      sample_fps: Number(fps.value),
      enabled: enabled.checked,
      features: Object.fromEntries(features.map((x) => [x.f, x.box.checked])),
      zones,
    };
    try {
      if (isNew) {
        await api('/api/v1/cameras', { method: 'POST', json: { id: id.value.trim(), ...body } });
      } else {
        await api(`/api/v1/cameras/${encodeURIComponent(cam.id)}`, {
          method: 'PATCH', json: body, headers: { 'If-Match': `"${cam.version}"` },
        });
        if (canMask && drawing.masksChanged()) {
          await api('/api/v1/calibration', { method: 'PATCH', json: { cameras: { [cam.id]: { motion_masks: masks } } } });
        }
      }
      toast(`${body.name} saved`);
      fill(editor);
      done();
    } catch (err) {
      const fieldName = err.details?.field ? ` (${err.details.field})` : '';
      error.textContent = `${err.message}${fieldName}`;
    }
  });
  fill(editor, form);
  (isNew ? id : name).focus();
}

/** Zones (and, for admins, motion masks) as polygons drawn by clicking on the snapshot. */
function shapeEditor(cam, zones, masks, canMask) {
  const NS = 'http://www.w3.org/2000/svg';
  let draft = [];
  let masksChanged = false;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 1 1');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'shapes');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Zones and motion masks over the snapshot; click to add a point');
  const img = h('img', { alt: cam.id ? `Snapshot of ${cam.name} for drawing` : 'No snapshot for a new camera' });
  if (cam.id) {
    freshUrl(`/api/v1/cameras/${encodeURIComponent(cam.id)}/snapshot`).then((url) => { img.src = url; }, () => {});
  }
  const layer = h('select', { name: 'layer' },
    h('option', { value: 'zone' }, 'Zone'),
    canMask ? h('option', { value: 'mask' }, 'Motion mask') : null);
  const shapeName = h('input', { name: 'shape-name', placeholder: 'walkway' });
  const list = h('ul', { class: 'shapes-list' });
  const points = h('span', { class: 'hint', 'aria-live': 'polite' });

  svg.addEventListener('click', (e) => {
    const r = svg.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    draft.push({ x: Math.round(x * 1000) / 1000, y: Math.round(y * 1000) / 1000 });
    draw();
  });

  function poly(shape, cls) {
    const p = document.createElementNS(NS, 'polygon');
    p.setAttribute('points', shape.polygon.map((q) => `${q.x},${q.y}`).join(' '));
    p.setAttribute('class', cls);
    return p;
  }

  function draw() {
    svg.replaceChildren(...zones.map((z) => poly(z, 'zone')), ...masks.map((m) => poly(m, 'mask')));
    if (draft.length) {
      const line = document.createElementNS(NS, 'polyline');
      line.setAttribute('points', draft.map((q) => `${q.x},${q.y}`).join(' '));
      line.setAttribute('class', 'draft');
      svg.append(line);
    }
    points.textContent = draft.length ? `${draft.length} point(s) placed` : '';
    fill(list,
      zones.map((z, i) => h('li', {}, `Zone ${z.name} (${z.polygon.length} points) `,
        h('button', { type: 'button', onclick: () => { zones.splice(i, 1); draw(); } }, `Remove zone ${z.name}`))),
      masks.map((m, i) => h('li', {}, `Motion mask ${m.name} (${m.polygon.length} points) `,
        h('button', { type: 'button', onclick: () => { masks.splice(i, 1); masksChanged = true; draw(); } }, `Remove mask ${m.name}`))));
  }

  function finish() {
    if (draft.length < 3) return toast('A shape needs at least three points', 'error');
    const shape = { name: shapeName.value.trim() || `${layer.value}-${zones.length + masks.length + 1}`, polygon: draft };
    if (layer.value === 'mask') {
      masks.push(shape);
      masksChanged = true;
    } else {
      zones.push(shape);
    }
    draft = [];
    shapeName.value = '';
    draw();
  }

  draw();
  return {
    root: h('fieldset', { class: 'drawing' },
      h('legend', {}, canMask ? 'Zones and motion masks' : 'Zones'),
      h('div', { class: 'canvas' }, img, svg),
      h('div', { class: 'row' },
        field('Draw', layer),
        field('Shape name', shapeName),
        h('button', { type: 'button', onclick: finish }, 'Finish shape'),
        h('button', { type: 'button', onclick: () => { draft.pop(); draw(); } }, 'Undo point'),
        points),
      list),
    masksChanged: () => masksChanged,
  };
}
