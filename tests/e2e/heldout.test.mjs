// Hostile and unusual inputs on every client endpoint, as a judge would send them (heldout-cases.mjs has
// the table): every answer is a success of the endpoint's shape or an error in the shape of the API called
// (OpenAI's; Anthropic's on /v1/messages*) with the expected status, never a 5xx; afterwards no usage row,
// balance change or reservation was lost or applied twice. Then providers that misbehave, per provider kind
// (mock-providers.mjs `mb-*` models), and clients that leave.
//
// No assertion depends on timing: the per-request bound only keeps a hang from stalling the run.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway } from './harness.mjs';
import { CASES, ENDPOINTS, validBody } from './heldout-cases.mjs';
import { startMockProviders } from './mock-providers.mjs';

const KEYS = { anthropic: 'sk-ant-mock', gemini: 'AIza-mock', azure: 'azure-mock-key', hf: 'hf_mock', openai: 'sk-openai-mock' };
const CREDIT = 1_000_000_000_000;
const REQUEST_BOUND_MS = 60_000;
const CONCURRENCY = 4;
/** Misbehaving-provider cases in flight at once (each still checked on its own). */
const MISBEHAVING_AT_ONCE = 6;
/** Client-leaves cases in flight at once. */
const LEAVING_AT_ONCE = 6;

let gw;
let mock;
let t; // the swept tenant
let revokedKey;
const console_ = { cookie: '', csrf: '' };

before(async () => {
  mock = await startMockProviders({ keys: KEYS });
  gw = await startGateway({
    vars: {
      PROVIDER_ANTHROPIC_KEY: KEYS.anthropic,
      PROVIDER_GEMINI_KEY: KEYS.gemini,
      PROVIDER_AZURE_KEY: KEYS.azure,
      PROVIDER_HF_KEY: KEYS.hf,
      PROVIDER_OPENAI_KEY: KEYS.openai,
      UPSTREAM_TIMEOUT_MS: '3000',
      CLIENT_ABORT_DRAIN_MS: '2000',
    },
  });
  await gw.adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: `${mock.url}/openai/v1`, api_key_secret: 'PROVIDER_OPENAI_KEY' });
  await gw.adminOk('PUT', '/admin/models/emb-openai', { provider: 'openai', upstream_model: 'text-embedding-3-small', input_price: 2_000_000, output_price: 0, kind: 'embedding' });
  await gw.adminOk('PUT', '/admin/models/tts-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'tts', character_price: 15_000_000 });
  await gw.adminOk('PUT', '/admin/models/whisper-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'stt', minute_price: 6000 });
  await gw.adminOk('PUT', '/admin/models/dall-e-3', {
    provider: 'openai',
    input_price: 0,
    output_price: 0,
    kind: 'image',
    image_prices: [{ size: '1024x1024', quality: 'standard', price: 40_000 }],
  });
  await gw.adminOk('PUT', '/admin/models/gpt-image-1', { provider: 'openai', input_price: 5_000_000, image_input_price: 10_000_000, output_price: 40_000_000, kind: 'image' });
  t = await gw.newTenant({ name: 'heldout', credit: CREDIT });
  const other = await gw.newTenant({ name: 'revoked', credit: 0 });
  await gw.adminOk('DELETE', `/admin/keys/${other.key.id}`);
  revokedKey = other.key.key;
  // A console session of the swept tenant.
  const login = await raw({ method: 'POST', path: '/console/api/login', headers: { 'content-type': 'application/json', origin: gw.url }, body: Buffer.from(JSON.stringify({ key: t.key.key })) });
  assert.equal(login.status, 200, login.text);
  console_.cookie = String(login.headers['set-cookie'] ?? '').split(';')[0];
  const state = await raw({ method: 'GET', path: '/console/api/session', headers: { cookie: console_.cookie } });
  console_.csrf = JSON.parse(state.text).csrf_token;
  assert.ok(console_.cookie && console_.csrf, state.text);
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

/** One HTTP request with node's client (any method, latin1 header values): { status, headers, text }. */
function raw({ method, path, headers = {}, body = null, signal }) {
  return new Promise((resolve, reject) => {
    const u = new URL(gw.url);
    const req = http.request(
      { host: u.hostname, port: u.port, method, path, headers: body ? { ...headers, 'content-length': body.length } : headers, signal },
      (res) => {
        const parts = [];
        res.on('data', (d) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(REQUEST_BOUND_MS, () => req.destroy(new Error(`no answer within ${REQUEST_BOUND_MS} ms`)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

function authHeaders(mode, key) {
  switch (mode) {
    case null:
      return {};
    case 'lower':
      return { authorization: `bearer ${key}` };
    case 'two-spaces':
      return { authorization: `Bearer  ${key}` };
    case 'trailing':
      return { authorization: `Bearer ${key} ` };
    case 'x-api-key':
      return { 'x-api-key': key };
    case 'conflict-bad-x':
      return { authorization: `Bearer ${key}`, 'x-api-key': 'tg-bogus-key' };
    case 'conflict-bad-bearer':
      return { authorization: 'Bearer tg-bogus-key', 'x-api-key': key };
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`u:${key}`).toString('base64')}` };
    case 'latin1':
      return { authorization: `Bearer ${key}\u00e9` };
    case 'revoked':
      return { authorization: `Bearer ${revokedKey}` };
    default:
      return { authorization: `Bearer ${key}` };
  }
}

/** Why `value` is not an error of `api`'s shape, or null. */
function errorShapeProblem(api, value) {
  if (api === 'anthropic') {
    if (value?.type !== 'error') return 'type is not "error"';
    const e = value.error;
    if (!e || typeof e.type !== 'string' || typeof e.message !== 'string') return 'no error.{type,message}';
    return null;
  }
  const e = value?.error;
  if (!e || typeof e !== 'object' || Array.isArray(e)) return 'no error object';
  if (typeof e.message !== 'string' || !e.message) return 'no message';
  if (typeof e.type !== 'string') return 'no type';
  if (!('param' in e) || !(e.param === null || typeof e.param === 'string')) return 'bad param';
  if (!('code' in e) || !(e.code === null || typeof e.code === 'string')) return 'bad code';
  return null;
}

/** Why a 2xx answer is not a well-formed success, or null. */
function successProblem(res) {
  const type = String(res.headers['content-type'] ?? '');
  if (res.status === 204) return null;
  if (type.includes('text/event-stream')) {
    const text = res.text.trimEnd();
    const ends = ['data: [DONE]', 'event: message_stop', 'event: error', '"type":"response.completed"', '"type":"response.failed"', '"type":"error"', '"type":"response.incomplete"'];
    const tail = text.slice(-4000);
    if (!ends.some((m) => tail.includes(m))) return `stream without an end: …${tail.slice(-300)}`;
    return null;
  }
  if (type.includes('application/json')) {
    try {
      JSON.parse(res.text);
    } catch {
      return 'unparseable JSON success';
    }
  }
  return null;
}

function expectOf(c, e, method) {
  // A route the gateway does not serve is a 404 whatever is sent to it (a preflight aside).
  if (e.unrouted && method !== 'OPTIONS' && c.name !== 'valid') return String(c.expect).startsWith('runtime-or') ? c.expect : 404;
  return typeof c.expect === 'function' ? c.expect(e) : c.expect;
}
/** The API whose error shape a path gets: Anthropic's under /v1/messages (any case), else OpenAI's. */
function apiOfPath(path) {
  const segs = path.split('?')[0].split('/').filter(Boolean);
  return segs.length >= 2 && segs[0].toLowerCase() === 'v1' && segs[1].toLowerCase() === 'messages' ? 'anthropic' : 'openai';
}

/** Sends case `c` to endpoint `e`; returns the record checked afterwards. */
async function send(e, c) {
  const ctx = { key: t.key.key };
  const r = c.request(e, ctx) ?? {};
  const method = r.method ?? e.method;
  const path = r.path ?? e.path;
  const base = validBody(e, ctx);
  const headers = { ...authHeaders('auth' in r ? r.auth : 'default', t.key.key) };
  if (e.console) {
    delete headers.authorization;
    if (e.session && r.consoleSession !== false) {
      headers.cookie = console_.cookie;
      headers['x-csrf-token'] = console_.csrf;
    }
    headers.origin = gw.url;
  }
  let body = 'body' in r ? r.body : base.body;
  if (body && !('content-type' in (r.headers ?? {})) && !('body' in r) && base.contentType) headers['content-type'] = base.contentType;
  Object.assign(headers, r.headers ?? {});
  if (method === 'GET' || method === 'HEAD') body = null;
  const res = await raw({ method, path, headers, body });
  return { e, c, method, path, res };
}

/** Problems with one answer (empty when it is right). */
function check({ e, c, method, path, res }) {
  const problems = [];
  const expected = expectOf(c, e, method);
  const expect = expected === 'runtime-or-405' ? 405 : expected;
  const fromWorker = !!res.headers['x-request-id'];
  if ((expected === 'runtime-or-any' || expected === 'runtime-or-405') && !fromWorker) {
    if (res.status >= 500 && res.status !== 501) problems.push(`runtime answered ${res.status}`);
    return problems;
  }
  if (!fromWorker) problems.push(`no x-request-id (status ${res.status}: ${res.text.slice(0, 200)})`);
  if (res.status >= 500) problems.push(`server error ${res.status}: ${res.text.slice(0, 300)}`);
  const okStatuses = e.okStatus ?? [200, 201];
  if (expect && typeof expect === 'object' && !Array.isArray(expect)) {
    if (res.status !== expect.status) problems.push(`status ${res.status}, expected ${expect.status}: ${res.text.slice(0, 300)}`);
    let param;
    try {
      param = JSON.parse(res.text).error?.param;
    } catch {}
    if (expect.param !== undefined && param !== expect.param) problems.push(`param ${param}, expected ${expect.param}`);
  }
  if (typeof expect === 'number' && res.status !== expect) problems.push(`status ${res.status}, expected ${expect}: ${res.text.slice(0, 300)}`);
  if (Array.isArray(expect) && !expect.includes(res.status)) problems.push(`status ${res.status}, expected one of ${expect}: ${res.text.slice(0, 300)}`);
  if (res.status >= 400 && method !== 'HEAD') {
    let value = null;
    try {
      value = JSON.parse(res.text);
    } catch {}
    const api = apiOfPath(path);
    const why = errorShapeProblem(api, value);
    // An expected "error" status of the endpoint itself (redeem of an unknown code) is still an error.
    if (why) problems.push(`error not in ${api} shape (${why}): ${res.text.slice(0, 300)}`);
  } else if (res.status < 300 && !okStatuses.includes(res.status) && res.status !== 204) {
    problems.push(`unexpected success status ${res.status}`);
  } else if (res.status < 300) {
    const why = successProblem(res);
    if (why) problems.push(why);
  }
  if (method === 'OPTIONS') {
    // A browser's preflight: every requested header and the method are allowed, for any origin.
    const allowed = String(res.headers['access-control-allow-headers'] ?? '').toLowerCase().split(/\s*,\s*/);
    for (const h of ['authorization', 'content-type', 'x-api-key', 'anthropic-version']) {
      if (!allowed.includes(h)) problems.push(`preflight does not allow header ${h}`);
    }
    if (!String(res.headers['access-control-allow-methods'] ?? '').includes(e.method)) problems.push(`preflight does not allow ${e.method}`);
    if (!res.headers['access-control-allow-origin']) problems.push('preflight without access-control-allow-origin');
  }
  return problems;
}

const sent = [];

describe('hostile inputs on every endpoint', () => {
  test('every case gets a well-formed answer of the API called', { timeout: 900_000 }, async () => {
    const jobs = [];
    for (const e of ENDPOINTS) for (const c of CASES) if (c.applies(e)) jobs.push([e, c]);
    // Plus the valid request of every endpoint (the sweep's control).
    for (const e of ENDPOINTS) jobs.push([e, { name: 'valid', applies: () => true, request: () => ({}), expect: e.okStatus ?? [200, 201] }]);
    const counts = {};
    const failures = [];
    let next = 0;
    async function worker() {
      while (next < jobs.length) {
        const [e, c] = jobs[next++];
        counts[e.name] = (counts[e.name] ?? 0) + 1;
        let rec;
        try {
          rec = await send(e, c);
        } catch (err) {
          failures.push(`${e.name} × ${c.name}: request failed: ${err.message}`);
          continue;
        }
        sent.push(rec);
        for (const p of check(rec)) failures.push(`${e.name} × ${c.name}: ${p}`);
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    console.log(`heldout sweep: ${jobs.length} requests; per endpoint ${JSON.stringify(counts)}`);
    assert.deepEqual(failures, [], `${failures.length} failures:\n${failures.join('\n')}`);
  });

  test('afterwards: no panic, no open reservation, one row per billed success, balance = credit − Σ cost', async () => {
    assert.doesNotMatch(gw.logs(), /panicked at|RuntimeError: unreachable/);
    await sleep(500);
    const deadline = Date.now() + 30_000;
    while ((await gw.openReservations(t.tenant.id)) !== 0 && Date.now() < deadline) await sleep(200);
    assert.equal(await gw.openReservations(t.tenant.id), 0, 'open reservations after settlement');
    await gw.exported(t.tenant.id);
    let rows;
    let problems;
    const rowsDeadline = Date.now() + 20_000;
    do {
      rows = gw.d1('SELECT request_id, status, cost FROM usage WHERE tenant_id = ?', t.tenant.id);
      const byId = new Map(rows.map((r) => [r.request_id, r]));
      problems = [];
      for (const { e, c, method, res } of sent) {
        const id = res.headers['x-request-id'];
        if (!id) continue;
        const row = byId.get(id);
        const replay = res.headers['idempotent-replayed'] === 'true';
        if (e.billed && res.status === 200 && !replay && method === e.method && !row) {
          problems.push(`${e.name} × ${c.name}: 200 without a usage row (${id})`);
        }
        if (res.status >= 400 && row && row.status === 'ok') problems.push(`${e.name} × ${c.name}: ${res.status} with an ok usage row`);
      }
      if (problems.length === 0) break;
      await sleep(250);
    } while (Date.now() < rowsDeadline);
    assert.deepEqual(problems, []);
    const spent = rows.reduce((s, r) => s + Number(r.cost), 0);
    const b = await raw({ method: 'GET', path: '/v1/balance', headers: { authorization: `Bearer ${t.key.key}` } });
    const bal = JSON.parse(b.text);
    assert.equal(bal.reserved, 0);
    assert.equal(bal.balance, CREDIT - spent, 'balance = credit − Σ cost');
  });
});

// ---- providers that misbehave --------------------------------------------------------------------------------

const KIND_PROVIDERS = {
  openai: () => ({ kind: 'openai', base_url: `${mock.url}/openai/v1`, api_key_secret: 'PROVIDER_OPENAI_KEY' }),
  azure: () => ({ kind: 'azure', base_url: `${mock.url}/azure`, api_key_secret: 'PROVIDER_AZURE_KEY', config: { api_version: '2024-10-21' } }),
  anthropic: () => ({ kind: 'anthropic', base_url: `${mock.url}/anthropic/v1`, api_key_secret: 'PROVIDER_ANTHROPIC_KEY' }),
  gemini: () => ({ kind: 'gemini', base_url: `${mock.url}/gemini/v1beta`, api_key_secret: 'PROVIDER_GEMINI_KEY' }),
  ollama: () => ({ kind: 'ollama', base_url: `${mock.url}/ollama` }),
  huggingface: () => ({ kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' }),
};
// What each misbehaviour must end as (docs/money.md, "How a request ends"): the plain status and error
// code, whether a stream ends in an error event, and what is charged ('none' | 'reservation' | 'some').
const MISBEHAVIOURS = {
  slowheaders: { plain: 200, stream: 'ok', charge: 'some', rowStatus: 'ok' },
  gzip: { plain: 200, stream: 'ok', charge: 'some', rowStatus: 'ok' },
  '429': { plain: 429, code: 'upstream_rate_limited', stream: 429, charge: 'none' },
  html: { plain: 502, code: 'upstream_unusable', stream: 'error', charge: 'reservation' },
  badjson: { plain: 502, code: 'upstream_unusable', stream: 'error', charge: 'reservation' },
  stall: { plain: 504, code: 'upstream_timeout', stream: 'error', charge: 'some' },
  noend: { plain: 502, code: 'upstream_unusable', stream: 'error', charge: 'some' },
  // A stream whose bytes all arrived, its end event included, is complete whatever the declared
  // length said; Gemini's stream has no end event, so the broken connection is its end: an error.
  lenlie: { plain: 502, code: 'upstream_unusable', stream: (kind) => (kind === 'gemini' ? 'error' : 'ok'), charge: 'some' },
  reset: { plain: 502, code: 'upstream_unusable', stream: 'error', charge: 'some' },
};
let mbTenant;

async function chatRaw(key, body, extraHeaders = {}) {
  return raw({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extraHeaders }, body: Buffer.from(JSON.stringify(body)) });
}

/** Why a streamed answer does not end well (a [DONE] after content, or an error event), or null. */
function streamEnd(text) {
  const events = text.split(/\n\n/).map((s) => s.trim()).filter(Boolean);
  const last = events.at(-1) ?? '';
  if (last === 'data: [DONE]') {
    const errored = events.some((ev) => ev.startsWith('data: {"error"'));
    return errored ? 'error' : 'ok';
  }
  if (last.startsWith('data: {"error"')) return 'error';
  return `no end: …${text.slice(-300)}`;
}

describe('providers that misbehave, per provider kind', () => {
  before(async () => {
    for (const [kind, provider] of Object.entries(KIND_PROVIDERS)) {
      await gw.adminOk('PUT', `/admin/providers/mb-${kind}`, provider());
      for (const mode of Object.keys(MISBEHAVIOURS)) {
        await gw.adminOk('PUT', `/admin/models/mb-${kind}-${mode}`, { provider: `mb-${kind}`, upstream_model: `mb-${mode}`, input_price: 1_000_000, output_price: 2_000_000, max_output_tokens: 64 });
      }
      await gw.adminOk('PUT', `/admin/models/ok-${kind}`, { provider: `mb-${kind}`, upstream_model: 'mock-model', input_price: 1_000_000, output_price: 2_000_000, max_output_tokens: 4_000_000 });
    }
    mbTenant = await gw.newTenant({ name: 'misbehaving', credit: CREDIT });
  });

  // The cases are independent (each checks its own request and usage row): they run MISBEHAVING_AT_ONCE at
  // a time; the money invariant is checked after all of them, as before.
  describe('each misbehaviour, plain and streamed', { concurrency: MISBEHAVING_AT_ONCE }, () => {
    for (const kind of Object.keys(KIND_PROVIDERS)) {
      for (const [mode, want] of Object.entries(MISBEHAVIOURS)) {
        for (const stream of [false, true]) {
          test(`${kind} ${mode} ${stream ? 'stream' : 'plain'}`, async () => {
            const res = await chatRaw(mbTenant.key.key, { model: `mb-${kind}-${mode}`, stream, max_tokens: 32, messages: [{ role: 'user', content: 'three words here' }] });
            const id = res.headers['x-request-id'];
            assert.ok(id, 'x-request-id');
            const wantStream = typeof want.stream === 'function' ? want.stream(kind) : want.stream;
            const expectStatus = stream ? (typeof wantStream === 'number' ? wantStream : 200) : want.plain;
            assert.equal(res.status, expectStatus, res.text.slice(0, 400));
            if (res.status >= 400) {
              const value = JSON.parse(res.text);
              assert.equal(errorShapeProblem('openai', value), null, res.text);
              if (want.code) assert.equal(value.error.code, want.code, res.text);
            } else if (stream) {
              assert.equal(streamEnd(res.text), wantStream, res.text.slice(-600));
            } else {
              assert.equal(JSON.parse(res.text).object, 'chat.completion');
            }
            const row = await gw.usageRow(id);
            if (want.rowStatus) assert.equal(row.status, want.rowStatus);
            if (want.charge === 'none') assert.equal(row.cost, 0, JSON.stringify(row));
            if (want.charge === 'reservation') assert.equal(row.cost, row.reserved, JSON.stringify(row));
            if (want.charge === 'some') assert.ok(row.cost > 0 && row.cost <= row.reserved + row.uncharged, JSON.stringify(row));
            if (res.status >= 400 && want.charge !== 'none') assert.equal(res.headers['x-should-retry'], 'false');
          });
        }
      }
    }
  });

  test('a 1 MB single SSE line is relayed whole (one word of the reply is 1 MB)', { timeout: 120_000 }, async () => {
    const word = 'w'.repeat(1_000_000); // the request stays under MAX_BODY_BYTES (1 MiB)
    for (const kind of Object.keys(KIND_PROVIDERS)) {
      const res = await chatRaw(mbTenant.key.key, { model: `ok-${kind}`, stream: true, max_tokens: 2_000_000, messages: [{ role: 'user', content: word }] });
      assert.equal(res.status, 200, res.text.slice(0, 300));
      assert.equal(streamEnd(res.text), 'ok', `${kind}: ${res.text.slice(-300)}`);
      let content = '';
      for (const ev of res.text.split('\n\n')) {
        if (!ev.startsWith('data: {')) continue;
        content += JSON.parse(ev.slice(6)).choices?.[0]?.delta?.content ?? '';
      }
      assert.ok(content.includes(word), `${kind}: the 1 MB word arrived whole (${content.length} chars)`);
      const row = await gw.usageRow(res.headers['x-request-id']);
      assert.equal(row.status, 'ok');
    }
  });

  test('afterwards: no open reservation, balance = credit − Σ cost', async () => {
    const deadline = Date.now() + 30_000;
    while ((await gw.openReservations(mbTenant.tenant.id)) !== 0 && Date.now() < deadline) await sleep(200);
    assert.equal(await gw.openReservations(mbTenant.tenant.id), 0);
    await gw.exported(mbTenant.tenant.id);
    const spent = gw.d1('SELECT COALESCE(SUM(cost), 0) AS s FROM usage WHERE tenant_id = ?', mbTenant.tenant.id)[0].s;
    const bal = JSON.parse((await raw({ method: 'GET', path: '/v1/balance', headers: { authorization: `Bearer ${mbTenant.key.key}` } })).text);
    assert.equal(bal.balance, CREDIT - Number(spent));
  });
});

// ---- clients that leave ----------------------------------------------------------------------------------------

/**
 * Sends `body` to `path` on a raw socket and closes it when `leaveWhen(received)` says so (received: the
 * bytes so far, as text). Resolves with what was received when the socket closed.
 */
function leaving({ path, body, key, headers = {}, leaveWhen = () => false, leaveAfter = null }) {
  return new Promise((resolve) => {
    const u = new URL(gw.url);
    const s = net.connect(Number(u.port), u.hostname);
    const data = Buffer.from(JSON.stringify(body));
    let received = '';
    let left = false;
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    s.on('connect', () => {
      s.write(`POST ${path} HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\n${extra}content-length: ${data.length}\r\n\r\n`);
      s.write(data);
      if (leaveWhen('')) {
        left = true;
        s.destroy();
      }
    });
    s.on('data', (d) => {
      received += d.toString('latin1');
      if (!left && leaveWhen(received)) {
        left = true;
        s.destroy();
      }
    });
    leaveAfter?.then(() => {
      left = true;
      s.destroy();
    });
    s.on('close', () => resolve(received));
    s.on('error', () => {});
    s.setTimeout(REQUEST_BOUND_MS, () => s.destroy());
  });
}

/** A seeded generator (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe('clients that leave', () => {
  let leaver;
  const STREAMING = [
    { api: 'chat', path: '/v1/chat/completions', body: (model, tag = '') => ({ model, stream: true, max_tokens: 200, messages: [{ role: 'user', content: `one two three four five six seven eight nine ten${tag}` }] }) },
    { api: 'responses', path: '/v1/responses', body: (model, tag = '') => ({ model, stream: true, max_output_tokens: 200, input: `one two three four five six seven eight nine ten${tag}` }) },
    { api: 'messages', path: '/v1/messages', body: (model, tag = '') => ({ model, stream: true, max_tokens: 200, messages: [{ role: 'user', content: `one two three four five six seven eight nine ten${tag}` }] }) },
  ];
  /** Whether the mock provider received a request whose body names `tag` (among those from index `from`). */
  const providerGot = (tag, from = 0) => mock.requests.slice(from).some((r) => JSON.stringify(r.body ?? null).includes(tag));
  before(async () => {
    leaver = await gw.newTenant({ name: 'leaver', credit: CREDIT });
  });

  /** The one usage row of session `sid` (every request of these tests names its own session). */
  async function onlyRowOf(sid) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const rows = gw.d1('SELECT * FROM usage WHERE session_id = ?', sid);
      if (rows.length > 0 || Date.now() > deadline) {
        await sleep(300); // a second row, were there one, would have landed with the first
        return gw.d1('SELECT * FROM usage WHERE session_id = ?', sid);
      }
      await sleep(100);
    }
  }

  // Each case names its own session (and, for the provider's side, its own word in the prompt): they run
  // LEAVING_AT_ONCE at a time.
  describe('one client leaves, per API and model', { concurrency: LEAVING_AT_ONCE }, () => {
    for (const s of STREAMING) {
      for (const model of ['tollgate-echo', 'ok-anthropic', 'ok-openai', 'mb-gemini-slowheaders']) {
        test(`${s.api} via ${model}: abort after the first chunk → one client_abort row`, async () => {
          const sid = `leave-first-${s.api}-${model}`;
          await leaving({ path: s.path, body: s.body(model), key: leaver.key.key, headers: { 'x-session-id': sid }, leaveWhen: (r) => /\r\n\r\n[\s\S]*data: /.test(r) });
          const rows = await onlyRowOf(sid);
          assert.equal(rows.length, 1, JSON.stringify(rows));
          assert.ok(['client_abort', 'ok'].includes(rows[0].status), JSON.stringify(rows[0]));
        });
        test(`${s.api} via ${model}: abort before the headers → one row`, async () => {
          const sid = `leave-early-${s.api}-${model}`;
          const seen = mock.requests.length;
          const tag = ` ${sid}`;
          await leaving({
            path: s.path,
            body: s.body(model, tag),
            key: leaver.key.key,
            headers: { 'x-session-id': sid },
            // Leave once the provider has this request (the echo model: at once).
            leaveWhen: () => model === 'tollgate-echo' || providerGot(tag, seen),
          });
          const rows = await onlyRowOf(sid);
          assert.ok(rows.length <= 1, JSON.stringify(rows));
          if (model !== 'tollgate-echo') assert.equal(rows.length, 1, 'the provider had the request: one row');
        });
      }
    }
  });

  test('plain request, client leaves while the gateway reads the provider body → one charged row', async () => {
    const sid = 'leave-plain-stall';
    const seen = mock.requests.length;
    // Leave once the provider has the request (it then sends half a body and stalls).
    const providerHasIt = (async () => {
      while (mock.requests.length === seen) await sleep(20);
    })();
    const got = await leaving({ path: '/v1/chat/completions', body: { model: 'mb-openai-stall', max_tokens: 32, messages: [{ role: 'user', content: 'x' }] }, key: leaver.key.key, headers: { 'x-session-id': sid }, leaveAfter: providerHasIt });
    assert.equal(got, '', 'left before any answer');
    const rows = await onlyRowOf(sid);
    assert.equal(rows.length, 1, JSON.stringify(rows));
  });

  test('100 concurrent clients that abort at random moments: one row each, nothing open, balance exact', { timeout: 300_000 }, async () => {
    const random = rng(Number(process.env.TOLLGATE_HELDOUT_SEED ?? 20261201));
    const models = ['tollgate-echo', 'ok-anthropic', 'ok-openai', 'ok-gemini', 'ok-ollama', 'ok-azure', 'ok-huggingface'];
    const jobs = Array.from({ length: 100 }, (_, i) => {
      const s = STREAMING[Math.floor(random() * STREAMING.length)];
      const model = models[Math.floor(random() * models.length)];
      const afterBytes = 1 + Math.floor(random() * 1500); // leave once this many bytes arrived
      const sid = `burst-${i}`;
      return leaving({ path: s.path, body: s.body(model), key: leaver.key.key, headers: { 'x-session-id': sid }, leaveWhen: (r) => r.length >= afterBytes }).then(() => sid);
    });
    const sids = await Promise.all(jobs);
    const deadline = Date.now() + 60_000;
    while ((await gw.openReservations(leaver.tenant.id)) !== 0 && Date.now() < deadline) await sleep(250);
    assert.equal(await gw.openReservations(leaver.tenant.id), 0);
    await gw.exported(leaver.tenant.id);
    const rows = gw.d1("SELECT session_id, COUNT(*) AS n FROM usage WHERE session_id LIKE 'burst-%' GROUP BY session_id");
    const many = rows.filter((r) => r.n !== 1);
    assert.deepEqual(many, []);
    assert.equal(rows.length, sids.length, 'every request has its row');
    const spent = gw.d1('SELECT COALESCE(SUM(cost), 0) AS s FROM usage WHERE tenant_id = ?', leaver.tenant.id)[0].s;
    const bal = JSON.parse((await raw({ method: 'GET', path: '/v1/balance', headers: { authorization: `Bearer ${leaver.key.key}` } })).text);
    assert.equal(bal.reserved, 0);
    assert.equal(bal.balance, CREDIT - Number(spent));
  });
});
