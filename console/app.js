// The console's entry: sign-in, the section router and the header.

import { api, ApiError, session } from './api.js';
import { h, fill, field, toast } from './dom.js';
import { camerasView } from './cameras.js';
import { incidentsView, incidentView } from './incidents.js';
import { peopleView } from './people.js';
import { searchView } from './search.js';
import { systemView } from './system.js';

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const whoami = document.getElementById('whoami');
const signOut = document.getElementById('sign-out');

/** Sections, the scope each needs to be shown, and how each is drawn. */
const SECTIONS = {
  cameras: { scope: 'read:cameras', draw: camerasView },
  incidents: { scope: 'read:incidents', draw: incidentsView },
  people: { scope: 'read:subjects', draw: peopleView },
  search: { scope: 'search', draw: searchView },
  system: { scope: null, draw: systemView },
};

/** The cleanup of the section on screen (live connections, timers). */
let leave = () => {};

function signInForm(message) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, id: 'key' });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'card sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in'),
    h('p', {}, 'Enter an API key. It stays in this tab (session storage) until you sign out or close the tab.'),
    field('API key', input),
    error,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    session.save(input.value.trim());
    try {
      await loadMe();
      if (!location.hash || location.hash === '#/') location.hash = firstSection();
      route();
    } catch (err) {
      session.clear();
      error.textContent = err instanceof ApiError ? `${err.message} (${err.code})` : String(err);
    }
  });
  fill(view, form);
  input.focus();
}

async function loadMe() {
  session.me = await api('/api/v1/me');
  const me = session.me;
  const cameras = me.camera_ids.length ? ` · cameras ${me.camera_ids.join(', ')}` : '';
  whoami.textContent = `key ${me.key_id} · ${me.scopes.join(' ')}${cameras}`;
  for (const link of nav.querySelectorAll('a')) {
    const section = SECTIONS[link.dataset.section];
    link.hidden = section.scope !== null && !session.can(section.scope);
  }
  nav.hidden = false;
  signOut.hidden = false;
}

function firstSection() {
  const name = Object.keys(SECTIONS).find((s) => SECTIONS[s].scope === null || session.can(SECTIONS[s].scope));
  return `#/${name}`;
}

signOut.addEventListener('click', () => {
  leave();
  leave = () => {};
  session.clear();
  nav.hidden = true;
  signOut.hidden = true;
  whoami.textContent = '';
  location.hash = '';
  signInForm('Signed out.');
});

async function route() {
  leave();
  leave = () => {};
  if (!session.key) return signInForm();
  if (!session.me) {
    try {
      await loadMe();
    } catch (err) {
      session.clear();
      return signInForm(err.message);
    }
  }
  const [, name = '', id] = (location.hash || '').split('/');
  if (!SECTIONS[name]) {
    location.hash = firstSection();
    return;
  }
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.section === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const section = SECTIONS[name];
  if (section.scope && !session.can(section.scope)) {
    fill(view, h('h1', {}, 'Not allowed'), h('p', {}, `This key lacks the scope ${section.scope}.`));
    return;
  }
  const draw = name === 'incidents' && id ? incidentView : section.draw;
  try {
    leave = (await draw(view, decodeURIComponent(id || ''))) || (() => {});
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session.clear();
      return signInForm(err.message);
    }
    toast(err.message, 'error');
    fill(view, h('h1', {}, 'Something went wrong'), h('p', { class: 'error' }, err.message));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof ApiError) {
    toast(`${e.reason.message} (${e.reason.code})`, 'error');
    e.preventDefault();
  }
});
route();
