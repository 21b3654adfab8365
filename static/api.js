// Talking to the HTTP API: the session kept in localStorage, JSON in and out, the bearer
// header on every call (the token never goes into a URL), errors as ApiError.

const SESSION_KEY = 'chirp.session';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The signed-in session: {token, username, expires_at}, or null. */
export function loadSession() {
  try {
    const session = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (session && typeof session.token === 'string' && session.expires_at * 1000 > Date.now()) return session;
  } catch { /* a damaged entry is no session */ }
  return null;
}

export function saveSession(session) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
}

/** Called (once per 401) so the app can send the person back to sign-in. */
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

const MESSAGES = {
  0: 'The server cannot be reached. Check your connection and try again.',
  413: 'That is too long to send.',
  429: 'Slow down a little, then try again.',
  503: 'The service is busy. Try again in a moment.',
};

/**
 * api('GET', '/users/alice') -> parsed JSON; {location} for an empty answer that names one
 * (201 Created); else null.
 * Throws ApiError(status, code, message); a 401 also calls the whenUnauthorized callback.
 */
export async function api(method, path, body, {signal, auth = true} = {}) {
  const headers = {Accept: 'application/json'};
  const session = auth ? loadSession() : null;
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
                                  credentials: 'omit', cache: 'no-store'});
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network_error', MESSAGES[0]);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const error = data && data.error;
    const failure = new ApiError(response.status, error ? error.code : 'http_' + response.status,
                                 error ? error.message : MESSAGES[response.status] || `The server answered ${response.status}.`);
    if (response.status === 401 && session) onUnauthorized(failure);
    throw failure;
  }
  if (data === null && response.headers.get('Location')) return {location: response.headers.get('Location')};
  return data;
}

/** A path segment, escaped: usernames and tags are safe already, search input may hold '#'. */
export const seg = (value) => encodeURIComponent(value);

export function pageQuery(before, count = 20) {
  const query = new URLSearchParams({count: String(count)});
  if (before) query.set('before', before);
  return '?' + query;
}
