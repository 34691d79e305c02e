// The console's JSON client. The session lives in an HttpOnly cookie the page cannot read; the
// CSRF token comes from sign-in or GET …/session and is kept in memory only (never in storage).
let csrf = '';

export function setCsrf(token) {
  csrf = token || '';
}

// Called when a signed-in call answers 401 (the session expired, or its key was revoked): the page
// goes back to its sign-in form with the server's message instead of showing errors on every tab.
let sessionEnded = null;

export function onSessionEnd(fn) {
  sessionEnded = fn;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

export async function api(path, { method = 'GET', body, query } = {}) {
  const url = new URL(`/console/api/${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, json);
    if (resp.status === 401 && !/(^|\/)login$/.test(path) && sessionEnded) sessionEnded(err.message);
    throw err;
  }
  return json;
}

/** A console URL with a query string (for downloads). */
export function apiUrl(path, query) {
  const url = new URL(`/console/api/${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  return url.pathname + url.search;
}

// ---- money and time (integers only: micro-units, UTC ms) ----

/** 12345678 micro-units → "12.345678"; with `short`, two decimals (truncated, never rounded up). */
export function money(micros, short = false) {
  if (micros === null || micros === undefined) return '–';
  // API amounts are integers; chart axis ticks may not be (rounded to the micro-unit for display).
  const n = typeof micros === 'bigint' ? micros : BigInt(Math.round(Number(micros)));
  const neg = n < 0n;
  const abs = neg ? -n : n;
  const whole = abs / 1000000n;
  const frac = (abs % 1000000n).toString().padStart(6, '0');
  const s = `${whole.toLocaleString('en-US')}.${short ? frac.slice(0, 2) : frac}`;
  return neg ? `-${s}` : s;
}

/** 12345678 micro-units → "12.345678" without digit grouping (for CSV cells and form fields). */
export function plainMoney(micros) {
  return money(micros).replace(/,/g, '');
}

/** "12.34" → 12340000 micro-units (exact, no floats); null when not a decimal amount. */
export function parseMoney(text) {
  const m = /^\s*(-?)(\d+)(?:\.(\d{0,6}))?\s*$/.exec(text || '');
  if (!m) return null;
  const micros = BigInt(m[2]) * 1000000n + BigInt((m[3] || '').padEnd(6, '0') || '0');
  return Number(m[1] ? -micros : micros);
}

export function tokens(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

export const DAY_MS = 86400000;

export function dayStart(ms) {
  return ms - (ms % DAY_MS);
}

export function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function isoTime(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '–';
}
