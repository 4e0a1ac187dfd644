// The console's only way to the server: the public REST API and the WebSocket, with the key
// from session storage in a header (never in a URL).

const STORAGE = 'vigil.key';

/** The signed-in key and what it may do (`GET /api/v1/me`). */
export const session = {
  me: null,
  get key() {
    return sessionStorage.getItem(STORAGE);
  },
  save(key) {
    sessionStorage.setItem(STORAGE, key);
  },
  clear() {
    sessionStorage.removeItem(STORAGE);
    this.me = null;
    mediaCache.forEach((url) => url.then(URL.revokeObjectURL, () => {}));
    mediaCache.clear();
  },
  /** Whether the key holds `scope` (`admin` holds them all). */
  can(scope) {
    const scopes = this.me?.scopes || [];
    return scopes.includes('admin') || scopes.includes(scope);
  },
};

/** An error answer of the API: `{"error": {"code", "message", "details"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

/** Calls the API. `json` sends a JSON body, `form` a multipart one. Answers JSON, a Blob for
 * other content, or null for 204. */
export async function api(path, { method = 'GET', json, form, headers = {}, signal } = {}) {
  const sent = { 'X-API-Key': session.key || '', ...headers };
  let body;
  if (json !== undefined) {
    sent['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const resp = await fetch(path, { method, headers: sent, body, signal, cache: 'no-store' });
  if (resp.status === 204) return null;
  const type = resp.headers.get('content-type') || '';
  const data = type.includes('json') ? await resp.json().catch(() => ({})) : await resp.blob();
  if (!resp.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(resp.status, error.code || `HTTP_${resp.status}`,
      error.message || resp.statusText || 'request failed', error.details);
  }
  return data;
}

/** A query string of the defined values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(name, value);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

const mediaCache = new Map();

/** An object URL for a stored picture (`/api/v1/media/{sha}`), fetched once per session. */
export function mediaUrl(path) {
  if (!mediaCache.has(path)) {
    const url = api(path).then((blob) => URL.createObjectURL(blob));
    url.catch(() => mediaCache.delete(path));
    mediaCache.set(path, url);
  }
  return mediaCache.get(path);
}

/** A fresh object URL for a picture that changes (a camera's snapshot); the caller revokes it. */
export async function freshUrl(path) {
  return URL.createObjectURL(await api(path));
}

/** A signed, expiring URL for a clip, so `<video>` can fetch ranges without a header. */
export async function signedUrl(sha) {
  const signed = await api(`/api/v1/media/${sha}/sign?ttl_secs=3600`, { method: 'POST' });
  return signed.url;
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  bytes.forEach((b) => { binary += String.fromCharCode(b); });
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Live events of `topics` over `/ws`, resuming after the last position seen when the
 * connection drops. The key travels as a WebSocket subprotocol (`vigil.key.{base64url}`),
 * since a browser cannot set headers on the handshake. */
export function live(topics, onEvent, { onState = () => {} } = {}) {
  let socket;
  let closed = false;
  let after = null;
  let retry = 1000;
  function open() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/ws`, ['vigil', `vigil.key.${base64url(session.key || '')}`]);
    socket.onopen = () => {
      retry = 1000;
      const subscribe = { type: 'subscribe', topics };
      if (after !== null) subscribe.after_position = after;
      socket.send(JSON.stringify(subscribe));
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === 'subscribed') onState('live');
      if (data.type === 'event') {
        after = data.position;
        onEvent(data);
      }
      if (data.type === 'error') onState(`error: ${data.message}`);
    };
    socket.onclose = () => {
      if (closed) return;
      onState('reconnecting');
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  open();
  return {
    close() {
      closed = true;
      socket.close();
    },
  };
}
