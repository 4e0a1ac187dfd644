// Incidents: a live list (new ones appear over the WebSocket), filters, one-click
// acknowledgement, and the incident page with its evidence, clips, workflow and audit trail.

import { api, live, mediaUrl, query, session, signedUrl } from './api.js';
import { h, fill, field, toast, badge, time, fromLocal } from './dom.js';

const STATUSES = ['active', 'investigating', 'escalated', 'resolved', 'false_positive'];
const SEVERITIES = ['low', 'medium', 'high', 'critical'];
const KINDS = ['crowd', 'intrusion', 'loitering', 'unauthorised', 'person_of_interest', 'sleep', 'fall', 'theft', 'external'];
const NEXT = {
  active: ['investigating', 'escalated', 'resolved', 'false_positive'],
  investigating: ['escalated', 'resolved', 'false_positive'],
  escalated: ['investigating', 'resolved', 'false_positive'],
  resolved: [],
  false_positive: [],
};

function select(name, values, any = 'any') {
  return h('select', { name }, h('option', { value: '' }, any), values.map((v) => h('option', { value: v }, v.replace('_', ' '))));
}

/** A picture from the media store, fetched with the key; with the evidence's boxes drawn. */
export function picture(path, alt, boxes = []) {
  const img = h('img', { alt, class: 'evidence-img' });
  const frame = h('div', { class: 'evidence-frame' }, img);
  mediaUrl(path).then((url) => { img.src = url; }, (err) => {
    frame.replaceChildren(h('p', { class: 'no-picture' }, `Picture unavailable: ${err.message}`));
  });
  for (const b of boxes) {
    frame.append(h('div', {
      class: b.involved ? 'box involved' : 'box',
      title: b.track_id ? `track ${b.track_id}` : 'person',
      style: { left: `${b.x1 * 100}%`, top: `${b.y1 * 100}%`, width: `${(b.x2 - b.x1) * 100}%`, height: `${(b.y2 - b.y1) * 100}%` },
    }));
  }
  return frame;
}

export async function incidentsView(view) {
  const canWrite = session.can('write:incidents');
  const filters = {
    status: select('status', STATUSES),
    severity: select('severity', SEVERITIES),
    kind: select('kind', KINDS),
    camera_id: h('input', { name: 'camera_id', pattern: '[A-Za-z0-9_-]{1,64}' }),
    from: h('input', { name: 'from', type: 'datetime-local' }),
    to: h('input', { name: 'to', type: 'datetime-local' }),
  };
  const liveState = h('span', { class: 'live-state', role: 'status' }, 'connecting…');
  const rows = h('tbody', { id: 'incident-rows' });
  const more = h('button', { type: 'button', hidden: true }, 'Older incidents');
  const form = h('form', { class: 'filters', 'aria-label': 'Incident filters' },
    field('Status', filters.status), field('Severity', filters.severity), field('Kind', filters.kind),
    field('Camera', filters.camera_id), field('From', filters.from), field('To', filters.to),
    h('button', { type: 'submit' }, 'Apply filters'));
  fill(view,
    h('div', { class: 'title-row' }, h('h1', {}, 'Incidents'), liveState),
    form,
    h('table', { class: 'list' },
      h('caption', { class: 'sr-only' }, 'Incidents, newest first'),
      h('thead', {}, h('tr', {},
        ['Evidence', 'Opened', 'Camera', 'Kind', 'Severity', 'Status', 'Reasoning', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
      rows),
    more);

  const shown = new Map();
  let cursor = null;

  function params() {
    return {
      status: filters.status.value, severity: filters.severity.value, kind: filters.kind.value,
      camera_id: filters.camera_id.value.trim(), from: fromLocal(filters.from.value), to: fromLocal(filters.to.value),
    };
  }

  function matches(incident) {
    const p = params();
    return (!p.status || incident.status === p.status)
      && (!p.severity || incident.severity === p.severity)
      && (!p.kind || incident.kind === p.kind)
      && (!p.camera_id || incident.camera_id === p.camera_id);
  }

  function row(incident) {
    const first = incident.evidence?.[0];
    const ack = canWrite && !incident.is_read && NEXT[incident.status].length
      ? h('button', { type: 'button', onclick: () => acknowledge(incident) }, 'Acknowledge') : null;
    const tr = h('tr', { dataset: { incident: incident.id, status: incident.status } },
      h('td', {}, first ? picture(first.url, `Evidence of the ${incident.kind} incident`) : '—'),
      h('td', {}, time(incident.opened_at)),
      h('td', {}, incident.camera_id),
      h('td', {}, h('a', { href: `#/incidents/${incident.id}` }, incident.kind.replace('_', ' '))),
      h('td', {}, badge(incident.severity)),
      h('td', { class: 'status-cell' }, badge(incident.status)),
      h('td', { class: 'reasoning' }, incident.reasoning),
      h('td', {}, ack));
    return tr;
  }

  function put(incident, { top = false } = {}) {
    const old = shown.get(incident.id);
    const tr = row(incident);
    shown.set(incident.id, tr);
    if (old) old.replaceWith(tr);
    else if (top) rows.prepend(tr);
    else rows.append(tr);
  }

  async function acknowledge(incident) {
    const patch = { is_read: true };
    if (incident.status === 'active') patch.status = 'investigating';
    const updated = await api(`/api/v1/incidents/${incident.id}`, { method: 'PATCH', json: patch });
    put(updated);
    toast(`Incident acknowledged (${updated.status})`);
  }

  async function load(reset) {
    if (reset) {
      rows.replaceChildren();
      shown.clear();
      cursor = null;
    }
    const page = await api(`/api/v1/incidents${query({ ...params(), limit: 25, cursor })}`);
    page.items.forEach((i) => put(i));
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    if (!shown.size) rows.append(h('tr', { class: 'empty' }, h('td', { colspan: 8 }, 'No incidents match.')));
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); load(true); });
  more.addEventListener('click', () => load(false));
  await load(true);

  const connection = live(['incidents'], async (event) => {
    const id = event.payload?.incident_id;
    if (!id || !event.event_type.startsWith('incident.')) return;
    if (event.event_type === 'incident.deleted') {
      shown.get(id)?.remove();
      shown.delete(id);
      return;
    }
    try {
      const detail = await api(`/api/v1/incidents/${id}`);
      if (!matches(detail.incident)) return;
      rows.querySelector('tr.empty')?.remove();
      put(detail.incident, { top: event.event_type === 'incident.opened' });
    } catch {
      // Not visible to this key, or already gone.
    }
  }, { onState: (s) => { liveState.textContent = s; } });
  return () => connection.close();
}

/** The incident page; it redraws itself when the incident's stream changes (another
 * operator's move, new evidence, a finished clip), keeping a note being written. The live
 * event can come before the read model has applied it: the page reads again until the
 * incident's history holds as many events as it has heard of (at most 5 s). */
export async function incidentView(view, id) {
  const notes = h('textarea', { name: 'notes', rows: 3 });
  let known = 0;
  let expected = 0;
  let drawing = null;
  let again = false;
  async function load() {
    for (let attempt = 0; ; attempt += 1) {
      const detail = await api(`/api/v1/incidents/${encodeURIComponent(id)}`);
      if (detail.history.length >= expected || attempt >= 20) return detail;
      await new Promise((resolve) => { setTimeout(resolve, 250); });
    }
  }
  function refresh() {
    if (drawing) {
      again = true;
      return drawing;
    }
    drawing = load()
      .then((detail) => {
        known = Math.max(known, detail.history.length);
        return drawIncident(view, detail, notes, patch);
      })
      .finally(() => {
        drawing = null;
        if (again) {
          again = false;
          refresh().catch(() => {});
        }
      });
    return drawing;
  }
  async function patch(body, done) {
    await api(`/api/v1/incidents/${encodeURIComponent(id)}`, { method: 'PATCH', json: body });
    notes.value = '';
    toast(done);
    await refresh();
  }
  await refresh();
  const connection = live(['incidents'], (event) => {
    const payload = event.payload || {};
    if (event.stream === `incident-${id}`) {
      expected = Math.max(expected, known) + 1;
      refresh().catch(() => {});
    } else if ((payload.incident_ids || []).includes(id)) {
      refresh().catch(() => {});
    }
  });
  return () => connection.close();
}

async function drawIncident(view, detail, notes, patch) {
  const canWrite = session.can('write:incidents');
  const incident = detail.incident;
  const audit = h('section', { id: 'audit', 'aria-labelledby': 'audit-title' });

  const evidence = evidenceWithBoxes(incident);
  fill(view,
    h('p', {}, h('a', { href: '#/incidents' }, '← All incidents')),
    h('h1', {}, `${incident.kind.replace('_', ' ')} on ${incident.camera_id}`),
    h('p', { class: 'meta' }, badge(incident.severity), ' ', badge(incident.status, incident.status),
      ' opened ', time(incident.opened_at), ', last seen ', time(incident.last_seen_at),
      incident.zone ? ` in zone ${incident.zone}` : ''),
    h('p', { class: 'reasoning' }, incident.reasoning),
    canWrite ? h('section', { class: 'card', 'aria-labelledby': 'workflow-title' },
      h('h2', { id: 'workflow-title' }, 'Workflow'),
      h('div', { class: 'actions' },
        !incident.is_read && NEXT[incident.status].length
          ? h('button', { type: 'button', onclick: () => patch(incident.status === 'active' ? { is_read: true, status: 'investigating' } : { is_read: true }, 'Acknowledged') }, 'Acknowledge')
          : null,
        NEXT[incident.status].map((s) => h('button', {
          type: 'button',
          onclick: () => patch({ status: s, notes: notes.value.trim() || undefined }, `Status: ${s}`),
        }, `Mark ${s.replace('_', ' ')}`))),
      field('Note (with a status change: the reason)', notes),
      h('button', { type: 'button', onclick: () => notes.value.trim() && patch({ notes: notes.value.trim() }, 'Note added') }, 'Add note'),
      incident.notes ? h('p', {}, 'Notes: ', incident.notes) : null) : null,
    h('section', { 'aria-labelledby': 'evidence-title' },
      h('h2', { id: 'evidence-title' }, `Evidence (${incident.evidence_count})`),
      h('div', { class: 'evidence' }, evidence.map((e) => h('figure', {},
        picture(e.url, `Evidence frame ${e.frame_number} of the incident`, e.boxes),
        h('figcaption', {}, time(e.at), ` · frame ${e.frame_number}`,
          e.boxes.length ? ` · ${e.boxes.length} person(s), the incident's outlined in red` : ''))))),
    h('section', { 'aria-labelledby': 'clips-title' },
      h('h2', { id: 'clips-title' }, 'Clips'),
      detail.clips.length ? detail.clips.map(clipPlayer) : h('p', {}, 'No clip for this incident.')),
    h('section', { 'aria-labelledby': 'history-title' },
      h('h2', { id: 'history-title' }, 'History'),
      h('ol', { class: 'history' }, detail.history.map((e) => h('li', {},
        time(e.at), ' ', h('strong', {}, e.type), ' by ', e.actor || 'system',
        e.detail ? h('span', { class: 'detail' }, ` ${summary(e.detail)}` ) : null)))),
    audit);

  if (session.can('read:audit')) {
    const page = await api(`/api/v1/audit/streams/${encodeURIComponent(`incident-${incident.id}`)}`);
    fill(audit,
      h('h2', { id: 'audit-title' }, 'Audit stream'),
      h('table', { class: 'list audit' },
        h('thead', {}, h('tr', {}, ['Version', 'Event', 'Actor', 'Recorded', 'Change'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, page.events.map((e) => h('tr', {},
          h('td', {}, e.stream_version), h('td', {}, e.event_type), h('td', {}, e.actor),
          h('td', {}, time(e.recorded_at)),
          h('td', {}, e.event_type === 'incident.status_changed' ? `${e.payload.from} → ${e.payload.to}` : summary(e.payload)))))));
  }
}

/** The incident's evidence frames with the persons seen in each; those of the incident's
 * tracks are marked as involved. */
function evidenceWithBoxes(incident) {
  const tracks = new Set(incident.subjects?.track_ids || []);
  return (incident.evidence || []).map((e) => ({
    ...e,
    boxes: (e.persons || []).map((p) => ({ ...p, involved: p.track_id && tracks.has(p.track_id) })),
  }));
}

/** What an event changed, in a line: its plain fields, less ids and what the page shows. */
function summary(value) {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'object') return String(value);
  const skip = new Set(['incident_id', 'camera_id', 'dedup_key', 'reasoning', 'observed_at']);
  return Object.entries(value)
    .filter(([k, v]) => !skip.has(k) && v !== null && v !== '' && typeof v !== 'object')
    .map(([k, v]) => `${k}: ${v}`).join(', ');
}

/** A `<video>` for a clip, on a signed URL so the browser can fetch ranges itself. */
export function clipPlayer(clip) {
  const video = h('video', { controls: true, preload: 'metadata', class: 'clip', 'aria-label': `Clip from ${clip.started_at}` });
  signedUrl(clip.media).then((url) => { video.src = url; }, (err) => toast(`Clip: ${err.message}`, 'error'));
  return h('figure', { class: 'clip-figure' }, video,
    h('figcaption', {}, time(clip.started_at), ` · ${clip.duration_seconds.toFixed(1)} s · ${clip.codec} ${clip.width}×${clip.height}`));
}
