// Small DOM helpers shared by the views.

/** An element: `h('button', {type: 'button', onclick}, 'Save')`. Attributes whose value is
 * null, undefined or false are left out; `true` sets an empty attribute. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'style') {
      // Through CSSOM: the page's Content-Security-Policy refuses inline style attributes.
      Object.assign(el.style, value);
    } else if (name === 'value' && 'value' in el) {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: the label wraps its control, so every control has a label. */
export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control,
    hint ? h('small', { class: 'hint' }, hint) : null);
}

/** A short message that goes away by itself. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** Local date and time of an RFC 3339 timestamp. */
export function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toLocaleString();
}

/** A `<time>` element for a timestamp. */
export function time(ts) {
  return h('time', { datetime: ts || '' }, when(ts));
}

/** A status or severity badge. */
export function badge(text, kind = text) {
  return h('span', { class: `badge ${String(kind).replace(/[^a-z_]/gi, '')}` }, text);
}

/** `datetime-local` value → RFC 3339 in UTC, or undefined when empty. */
export function fromLocal(value) {
  return value ? new Date(value).toISOString() : undefined;
}

/** A Date → `datetime-local` value in local time. */
export function toLocal(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Asks before something that cannot be undone; resolves to true when confirmed. */
export function confirmDialog(title, text, action = 'Confirm') {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, title),
      h('p', {}, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', onclick: () => close(true) }, action),
        h('button', { type: 'button', onclick: () => close(false) }, 'Cancel')));
    function close(answer) {
      dialog.close();
      dialog.remove();
      resolve(answer);
    }
    dialog.addEventListener('cancel', () => close(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}
