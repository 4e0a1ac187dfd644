// System: readiness (store, models, projections), the model backend, projection lag and the
// dead-letter queue of response actions with requeue.

import { api, session } from './api.js';
import { h, fill, toast, badge, time } from './dom.js';

export async function systemView(view) {
  const ready = await fetch('/health/ready', { cache: 'no-store' }).then((r) => r.json());
  const sections = [
    h('h1', {}, 'System'),
    h('section', { class: 'card', 'aria-labelledby': 'health-title' },
      h('h2', { id: 'health-title' }, 'Health'),
      h('dl', { class: 'stats' },
        h('dt', {}, 'Status'), h('dd', {}, badge(ready.status)),
        h('dt', {}, 'Event store'), h('dd', {}, ready.store ? 'reachable' : 'unreachable'),
        h('dt', {}, 'Models'), h('dd', {}, `${ready.models?.state || '—'}${ready.models?.error ? `: ${ready.models.error}` : ''}`),
        h('dt', {}, 'Model workers'), h('dd', {}, ready.models?.workers_loaded ?? '—'))),
  ];
  if (session.can('admin')) {
    const [gpu, projections, dlq] = await Promise.all([
      api('/api/v1/system/gpu'),
      api('/api/v1/system/projections'),
      api('/api/v1/dlq?limit=50'),
    ]);
    sections.push(
      h('section', { class: 'card', 'aria-labelledby': 'backend-title' },
        h('h2', { id: 'backend-title' }, 'Model backend'),
        h('p', {}, `${gpu.backend}${gpu.adapter ? ` on ${gpu.adapter}` : ''} (asked for ${gpu.preference}${gpu.physical ? ', physical device' : ''})`)),
      h('section', { 'aria-labelledby': 'projections-title' },
        h('h2', { id: 'projections-title' }, 'Projections and relays'),
        h('table', { class: 'list' },
          h('thead', {}, h('tr', {}, ['Name', 'Checkpoint', 'Head', 'Lag', 'Last error'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, projections.map((p) => h('tr', {},
            h('td', {}, p.name), h('td', {}, p.checkpoint), h('td', {}, p.head),
            h('td', {}, p.lag), h('td', {}, p.last_error || '')))))),
      dlqSection(dlq, () => systemView(view)));
  } else {
    sections.push(h('p', {}, 'Projections, the model backend and the dead-letter queue need an admin key.'));
  }
  fill(view, ...sections);
}

function dlqSection(dlq, reload) {
  return h('section', { 'aria-labelledby': 'dlq-title' },
    h('h2', { id: 'dlq-title' }, 'Dead-letter queue'),
    dlq.items.length ? h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['Action', 'Target', 'Incident', 'Attempts', 'Last error', 'Dead since', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, dlq.items.map((d) => h('tr', {},
        h('td', {}, d.action), h('td', {}, d.target || ''), h('td', {}, d.incident_id ? h('a', { href: `#/incidents/${d.incident_id}` }, d.incident_id) : ''),
        h('td', {}, d.attempts), h('td', {}, d.last_error), h('td', {}, time(d.dead_at)),
        h('td', {}, h('button', {
          type: 'button',
          onclick: async () => { await api(`/api/v1/dlq/${d.id}/requeue`, { method: 'POST' }); toast('Requeued'); reload(); },
        }, `Requeue ${d.action}`))))))
      : h('p', {}, 'Empty: every response action was delivered or is still being tried.'));
}
