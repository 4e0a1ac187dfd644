// People: the face library (subjects, their faces, category), enrolment by upload, recent
// alerts, and erasure with a confirmation.

import { api, mediaUrl, query, session } from './api.js';
import { h, fill, field, toast, badge, time, confirmDialog } from './dom.js';
import { picture } from './incidents.js';

export async function peopleView(view) {
  const canWrite = session.can('write:subjects');
  const list = h('div', { class: 'grid', id: 'subjects' });
  const alerts = h('tbody', { id: 'alert-rows' });
  const category = h('select', { name: 'category-filter' },
    h('option', { value: '' }, 'all'), h('option', { value: 'watchlist' }, 'watch list'), h('option', { value: 'authorised' }, 'authorised'));
  category.addEventListener('change', () => load());
  fill(view,
    h('h1', {}, 'People'),
    canWrite ? enrolForm(() => load()) : null,
    h('section', { 'aria-labelledby': 'library-title' },
      h('div', { class: 'title-row' }, h('h2', { id: 'library-title' }, 'Face library'), field('Category', category)),
      list),
    session.can('read:incidents') ? h('section', { 'aria-labelledby': 'alerts-title' },
      h('h2', { id: 'alerts-title' }, 'Recent alerts'),
      h('table', { class: 'list' },
        h('thead', {}, h('tr', {}, ['Face', 'Subject', 'Camera', 'Seen', 'Similarity', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
        alerts)) : null);

  async function load() {
    const page = await api(`/api/v1/subjects${query({ category: category.value, limit: 200, order: 'desc' })}`);
    fill(list, page.items.length ? page.items.map((s) => subjectCard(s, canWrite, load)) : h('p', { class: 'empty' }, 'No one enrolled yet.'));
  }

  async function loadAlerts() {
    const page = await api('/api/v1/alerts?limit=20&order=desc');
    fill(alerts, page.items.length ? page.items.map((a) => h('tr', { dataset: { alert: a.id } },
      h('td', {}, a.crop_url ? picture(a.crop_url, `Face of ${a.subject_name} seen on ${a.camera_id}`) : '—'),
      h('td', {}, a.subject_name, ' ', badge(a.category)),
      h('td', {}, a.camera_id),
      h('td', {}, time(a.at)),
      h('td', {}, `${Math.round(a.similarity * 100)} %`),
      h('td', {}, a.acknowledged ? 'acknowledged'
        : session.can('write:incidents') ? h('button', {
          type: 'button',
          onclick: async () => { await api(`/api/v1/alerts/${a.id}/ack`, { method: 'POST' }); toast('Alert acknowledged'); loadAlerts(); },
        }, 'Acknowledge alert') : '')))
      : h('tr', {}, h('td', { colspan: 6 }, 'No alerts.')));
  }

  await load();
  if (session.can('read:incidents')) await loadAlerts();
}

function subjectCard(subject, canWrite, reload) {
  const faces = h('div', { class: 'faces' }, subject.faces.map((f) => {
    const img = h('img', { alt: `Enrolled face of ${subject.name}`, class: 'face' });
    mediaUrl(f.crop_url).then((url) => { img.src = url; }, () => {});
    return img;
  }));
  const more = h('input', { type: 'file', accept: 'image/jpeg,image/png', multiple: true, name: `more-${subject.id}` });
  return h('article', { class: 'card subject', dataset: { subject: subject.id }, 'aria-label': `Subject ${subject.name}` },
    h('h3', {}, subject.name),
    h('p', {}, badge(subject.category), subject.severity ? [' ', badge(subject.severity)] : null, ` · ${subject.face_count} face(s)`),
    subject.notes ? h('p', {}, subject.notes) : null,
    faces,
    canWrite ? h('div', { class: 'actions' },
      field(`Add faces to ${subject.name}`, more),
      h('button', {
        type: 'button',
        onclick: async () => {
          if (!more.files.length) return toast('Choose 1–5 pictures first', 'error');
          const form = new FormData();
          [...more.files].forEach((f) => form.append('files', f));
          await api(`/api/v1/subjects/${subject.id}/faces`, { method: 'POST', form });
          toast(`Faces added to ${subject.name}`);
          reload();
        },
      }, 'Upload faces'),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          const sure = await confirmDialog(`Erase ${subject.name}?`,
            'Their faces, descriptors, alerts and clips of their matches are deleted. The erasure itself stays in the audit log. This cannot be undone.', 'Erase');
          if (!sure) return;
          await api(`/api/v1/subjects/${subject.id}`, { method: 'DELETE' });
          toast(`${subject.name} erased`);
          reload();
        },
      }, `Erase ${subject.name}`)) : null);
}

/** Enrolment by upload: a name, a category, 1–5 pictures with one face each. */
function enrolForm(done) {
  const name = h('input', { name: 'name', required: true, maxlength: 200 });
  const category = h('select', { name: 'category' },
    h('option', { value: 'watchlist' }, 'watch list'), h('option', { value: 'authorised' }, 'authorised'));
  const severity = h('select', { name: 'severity' }, ['high', 'critical', 'medium', 'low'].map((s) => h('option', { value: s }, s)));
  const notes = h('input', { name: 'notes' });
  const files = h('input', { type: 'file', name: 'files', accept: 'image/jpeg,image/png', multiple: true, required: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', id: 'enrol-form', 'aria-labelledby': 'enrol-title' },
    h('h2', { id: 'enrol-title' }, 'Enrol a person'),
    h('div', { class: 'row' }, field('Name', name), field('Category', category), field('Severity (watch list)', severity), field('Notes', notes)),
    field('Pictures (1–5, one face each)', files),
    error,
    h('button', { type: 'submit' }, 'Enrol'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const body = new FormData();
    body.append('name', name.value.trim());
    body.append('category', category.value);
    if (category.value === 'watchlist') body.append('severity', severity.value);
    if (notes.value.trim()) body.append('notes', notes.value.trim());
    [...files.files].forEach((f) => body.append('files', f));
    try {
      const subject = await api('/api/v1/subjects', { method: 'POST', form: body });
      toast(`${subject.name} enrolled`);
      form.reset();
      done();
    } catch (err) {
      error.textContent = `${err.message}${err.details?.file ? ` (${err.details.file})` : ''}`;
    }
  });
  return form;
}

/** Enrols the face crop at `cropUrl` (a track's clearest face) as a new subject named
 * `name`, or as another face of subject `subjectId`. */
export async function enrolCrop(cropUrl, { name, subjectId }) {
  const blob = await api(cropUrl);
  const form = new FormData();
  form.append('files', blob, 'face.jpg');
  if (subjectId) return api(`/api/v1/subjects/${subjectId}/faces`, { method: 'POST', form });
  form.append('name', name);
  form.append('category', 'watchlist');
  return api('/api/v1/subjects', { method: 'POST', form });
}
