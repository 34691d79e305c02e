// End to end fuzzing of POST /v1/chat/completions (issue 11): the built worker under wrangler dev, the
// echo model, and one fuzzing upstream (fuzz-mocks.mjs) behind every provider kind that answers with
// the golden fixtures valid, mutated, cut short, split at random byte boundaries or as errors.
//
// A few hundred seeded requests: random and mutated bodies, hostile headers (huge, duplicated, odd
// content types, bad auth forms, Idempotency-Key and X-Session-Id junk), truncated and chunked bodies on
// raw sockets, client aborts. Every answer must be a success of the right shape or a 4xx/5xx whose body
// is {"error":{"message","type","param","code"}}; a stream must end with [DONE] or an error event. Then:
// the worker still answers, printed no panic, and every reservation settled with
// balance = credit − Σ cost.
//
// Deterministic: TOLLGATE_FUZZ_SEED (printed) seeds the requests and the upstream's answers (which
// follow from a hash of each upstream request), TOLLGATE_FUZZ_REQUESTS sets the count (default 300).
// No assertion depends on timing; the per-request bound only keeps a hang from stalling the run.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway } from './harness.mjs';
import { KINDS, anyValue, literals, makeRng, mutateBytes, mutateValue, number, startFuzzUpstream, text } from './fuzz-mocks.mjs';

const SEED = Number(process.env.TOLLGATE_FUZZ_SEED ?? 0x70116a7e) >>> 0;
const REQUESTS = Number(process.env.TOLLGATE_FUZZ_REQUESTS ?? 300);
const CONCURRENCY = 4;
const REQUEST_BOUND_MS = 60_000;
const MAX_BODY = 65_536;
const RICH_CREDIT = 1_000_000_000_000;
const POOR_CREDIT = 300;

let gw;
let upstream;
const tenants = {};
/** Raw requests answered by the runtime rather than the worker, by form. */
const runtimeAnswers = {};
const keys = {};

const PROVIDERS = {
  openai: (url) => ({ kind: 'openai', base_url: `${url}/openai` }),
  azure: (url) => ({ kind: 'azure', base_url: `${url}/azure`, config: { api_version: '2024-10-21' } }),
  anthropic: (url) => ({ kind: 'anthropic', base_url: `${url}/anthropic` }),
  gemini: (url) => ({ kind: 'gemini', base_url: `${url}/gemini` }),
  ollama: (url) => ({ kind: 'ollama', base_url: `${url}/ollama` }),
  hf: (url) => ({ kind: 'huggingface', base_url: `${url}/hf` }),
};
const UPSTREAM_MODEL = {
  openai: 'gpt-4o-mini',
  azure: 'gpt4o-deployment',
  anthropic: 'claude-sonnet-4-5',
  gemini: 'gemini-2.5-flash',
  ollama: 'llama3.2',
  hf: 'tgi',
};
const MODELS = ['tollgate-echo', ...KINDS.map((k) => `fz-${k}`)];

before(async () => {
  console.log(`fuzz e2e: seed ${SEED} (TOLLGATE_FUZZ_SEED to replay), ${REQUESTS} requests`);
  upstream = await startFuzzUpstream({ seed: SEED, stallMs: 3000 });
  gw = await startGateway({
    vars: {
      PROVIDER_FZ_KEY: 'sk-fuzz-upstream',
      MAX_BODY_BYTES: String(MAX_BODY),
      UPSTREAM_CONNECT_TIMEOUT_MS: '2000',
      UPSTREAM_TIMEOUT_MS: '1500',
      ECHO_CHUNK_DELAY_MS: '0',
    },
  });
  for (const kind of KINDS) {
    await gw.adminOk('PUT', `/admin/providers/fz-${kind}`, { ...PROVIDERS[kind](upstream.url), api_key_secret: 'PROVIDER_FZ_KEY' });
    await gw.adminOk('PUT', `/admin/models/fz-${kind}`, {
      provider: `fz-${kind}`,
      upstream_model: UPSTREAM_MODEL[kind],
      input_price: 1_000_000,
      output_price: 2_000_000,
      max_output_tokens: 512,
      // half the models count locally, the others estimate
      ...(['openai', 'anthropic', 'ollama'].includes(kind) ? { encoding: 'o200k_base' } : {}),
    });
  }
  const rich = await gw.newTenant({ name: 'fuzz-rich', credit: RICH_CREDIT, keys: 3 });
  const poor = await gw.newTenant({ name: 'fuzz-poor', credit: POOR_CREDIT });
  tenants.rich = rich.tenant;
  tenants.poor = poor.tenant;
  keys.main = rich.keys[0].key;
  keys.revoked = rich.keys[1].key;
  await gw.adminOk('DELETE', `/admin/keys/${rich.keys[1].id}`);
  const restricted = await gw.adminOk('POST', `/admin/tenants/${rich.tenant.id}/keys`, { name: 'echo-only', models: ['tollgate-echo'] }, 201);
  keys.restricted = restricted.key;
  keys.poor = poor.keys[0].key;
});

after(async () => {
  await gw?.kill();
  await upstream?.close();
});

// ---- request generation ------------------------------------------------------------------------------

function contentPart(rng) {
  switch (rng.below(7)) {
    case 0:
    case 1:
      return { type: 'text', text: text(rng) };
    case 2:
      return { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } };
    case 3:
      return { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } };
    case 4:
      return { type: 'file', file: { file_id: 'file-abc' } };
    case 5:
      return { type: 'refusal', refusal: text(rng) };
    default:
      return { type: rng.pick(['x', '', 'text']), text: anyValue(rng, 1) };
  }
}

function message(rng, i) {
  const role = rng.pick(['system', 'developer', 'user', 'user', 'assistant', 'tool']);
  const m = { role };
  if (rng.chance(85)) m.content = rng.chance(30) ? Array.from({ length: rng.below(4) }, () => contentPart(rng)) : text(rng);
  if (rng.chance(10)) m.name = text(rng);
  if (role === 'assistant' && rng.chance(30)) {
    m.tool_calls = [{ id: `call_${i}`, type: 'function', function: { name: 'get_weather', arguments: rng.chance(70) ? '{"location":"Paris"}' : text(rng) } }];
  }
  if (role === 'tool') m.tool_call_id = `call_${i}`;
  return m;
}

function chatValue(rng, model) {
  const v = { model, messages: Array.from({ length: 1 + rng.below(4) }, (_, i) => message(rng, i)) };
  if (!v.messages.some((m) => m.role === 'user')) v.messages.push({ role: 'user', content: text(rng) });
  if (rng.chance(60)) v.stream = rng.chance(65);
  if (rng.chance(30)) v.stream_options = { include_usage: rng.chance(50) };
  if (rng.chance(35)) v[rng.pick(['max_tokens', 'max_completion_tokens'])] = rng.chance(70) ? 1 + rng.below(300) : number(rng);
  if (rng.chance(12)) v.n = rng.chance(60) ? 1 + rng.below(3) : number(rng);
  if (rng.chance(25)) {
    v.tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: text(rng),
          parameters: rng.chance(70) ? { type: 'object', properties: { location: { type: 'string', enum: ['Paris', 7, null] } } } : anyValue(rng),
        },
      },
    ];
  }
  if (rng.chance(8)) v.plugins = rng.chance(50) ? [] : ['weather'];
  if (rng.chance(10)) v[rng.pick(['temperature', 'seed', 'stop', 'user', 'x_unknown'])] = anyValue(rng, 1);
  return v;
}

/** A body: JSON of a (possibly mutated) request, possibly mangled byte-wise. */
function bodyFor(rng, model, { mutate }) {
  let v = chatValue(rng, model);
  const structural = mutate ? rng.below(4) : 0;
  for (let i = 0; i < structural; i++) v = mutateValue(rng, v);
  let buf = Buffer.from(literals(v));
  if (mutate && (structural === 0 || rng.chance(30))) buf = mutateBytes(rng, buf);
  if (rng.chance(2)) buf = Buffer.alloc(MAX_BODY + 1 + rng.below(1000), 0x20); // over the limit
  return buf;
}

const auth = (key) => `Bearer ${key}`;

/** Headers as [name, value] pairs (duplicates allowed): hostile ones when `hostile`. */
function headersFor(rng, { hostile, key = keys.main }) {
  const h = [];
  if (!hostile) {
    h.push(['authorization', auth(key)], ['content-type', 'application/json']);
    if (rng.chance(20)) h.push(['x-session-id', `sess-${rng.below(1000)}`]);
    return h;
  }
  const authForms = [
    auth(key), auth(key), auth(key), null, 'Bearer', 'Bearer ', `bearer ${key}`, `Bearer  ${key}`, `BEARER ${key}`,
    `Basic ${Buffer.from(`user:${key}`).toString('base64')}`, `Bearer ${key}x`, `Bearer ${key.slice(0, -1)}`, 'Bearer tg-',
    'Bearer tg--', `Bearer tg-${'0'.repeat(26)}-${'a'.repeat(40)}`, `Bearer ${'x'.repeat(8000)}`, `Token ${key}`,
    `Bearer ${key}\u00e9`, `Bearer ${key}, Bearer ${key}`,
  ];
  const a = rng.pick(authForms);
  if (a !== null) h.push(['authorization', a]);
  if (rng.chance(8)) h.push(['authorization', auth(keys.revoked)]);
  if (rng.chance(8)) h.push(['x-api-key', key]);
  if (rng.chance(8)) h.push(['api-key', rng.pick([key, `${key}x`, '', 'tg-'])]);
  const ct = rng.pick([
    'application/json', 'application/json', null, 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x',
    'application/x-www-form-urlencoded', '*/*', 'application/json\u00ff', 'text/event-stream',
  ]);
  if (ct !== null) h.push(['content-type', ct]);
  if (rng.chance(10)) h.push(['content-type', 'text/html']);
  if (rng.chance(40)) {
    h.push(['x-session-id', rng.pick(['', ' ', 'ok-session', 'a'.repeat(128), 'a'.repeat(129), '../../etc/passwd', 'sess with space', 'caf\u00e9', 'a,b', '%00', 'x'.repeat(5000)])]);
    if (rng.chance(20)) h.push(['x-session-id', 'second']);
  }
  if (rng.chance(35)) {
    h.push(['idempotency-key', rng.pick(['', ' ', `idem-${rng.below(20)}`, `idem-${rng.below(20)}`, 'k'.repeat(255), 'k'.repeat(256), 'with space', 'caf\u00e9', '\t'])]);
    if (rng.chance(20)) h.push(['idempotency-key', 'other']);
  }
  if (rng.chance(15)) h.push([`x-fuzz-${rng.below(100)}`, 'j'.repeat(rng.pick([100, 4000, 12000]))]);
  if (rng.chance(10)) for (let i = 0; i < 60; i++) h.push([`x-many-${i}`, String(i)]);
  if (rng.chance(10)) h.push(['accept', rng.pick(['text/event-stream', 'application/xml', '*/*'])]);
  if (rng.chance(5)) h.push(['content-encoding', rng.pick(['gzip', 'br', 'identity'])]);
  return h;
}

function toHeaders(pairs) {
  const headers = new Headers();
  for (const [k, v] of pairs) headers.append(k, v);
  return headers;
}

// ---- checking answers ------------------------------------------------------------------------------------

/** Why a body is not {"error":{"message":string,"type":string,"param":string|null,"code":string|null}}, or null. */
function errorShapeProblem(value) {
  const e = value?.error;
  if (!e || typeof e !== 'object' || Array.isArray(e)) return 'no error object';
  if (typeof e.message !== 'string') return 'message is not a string';
  if (typeof e.type !== 'string') return 'type is not a string';
  for (const f of ['param', 'code']) {
    if (!(f in e)) return `${f} missing`;
    if (e[f] !== null && typeof e[f] !== 'string') return `${f} is neither string nor null`;
  }
  return null;
}

/** Problems with one answer (an empty list when it is fine). `complete`: the body was read to its end. */
function answerProblems(status, contentType, buf, { complete = true } = {}) {
  const problems = [];
  const textBody = buf.toString('utf8');
  if (status >= 400 && status <= 599) {
    let value;
    try {
      value = JSON.parse(textBody);
    } catch {
      return [`${status} with a body that is not JSON: ${JSON.stringify(textBody.slice(0, 300))}`];
    }
    const why = errorShapeProblem(value);
    if (why) problems.push(`${status} error body not OpenAI-shaped (${why}): ${textBody.slice(0, 300)}`);
    return problems;
  }
  if (status !== 200) return [`unexpected status ${status}: ${textBody.slice(0, 300)}`];
  if ((contentType ?? '').startsWith('text/event-stream')) {
    const events = textBody.split(/\r?\n\r?\n/).filter((e) => e.trim() !== '');
    let last = null;
    for (const event of events) {
      const data = event
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data === '') continue; // comment or keep-alive
      if (last === '[DONE]') problems.push(`event after [DONE]: ${data.slice(0, 200)}`);
      if (data === '[DONE]') {
        last = data;
        continue;
      }
      let value;
      try {
        value = JSON.parse(data);
      } catch {
        if (complete || event !== events[events.length - 1]) problems.push(`stream event is not JSON: ${JSON.stringify(data.slice(0, 200))}`);
        continue;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        problems.push(`stream event is not an object: ${data.slice(0, 200)}`);
      } else if (value.error !== undefined && value.error !== null) {
        // (an `error` that is null is not one: the SDKs test it for truth)
        const why = errorShapeProblem(value);
        if (why) problems.push(`stream error event not OpenAI-shaped (${why}): ${data.slice(0, 200)}`);
        last = 'error';
      } else {
        // Chunks are forwarded with the provider's own bytes (Azure's content-filter chunk has
        // `"object":""`), so only the shape clients rely on is checked.
        if (!Array.isArray(value.choices) || value.choices.some((c) => !c || typeof c !== 'object')) {
          problems.push(`stream chunk of the wrong shape: ${data.slice(0, 200)}`);
        }
        last = 'chunk';
      }
    }
    if (complete && last !== '[DONE]' && last !== 'error') {
      problems.push(`stream ended without [DONE] or an error event (last: ${last}); its end: ${JSON.stringify(textBody.slice(-400))}`);
    }
    return problems;
  }
  let value;
  try {
    value = JSON.parse(textBody);
  } catch {
    return [`200 (${contentType}) with a body that is not JSON: ${JSON.stringify(textBody.slice(0, 300))}`];
  }
  if (value?.object !== 'chat.completion' || !Array.isArray(value.choices)) {
    problems.push(`200 body is not a chat.completion: ${textBody.slice(0, 300)}`);
  } else {
    for (const c of value.choices) {
      if (!c || typeof c.message !== 'object') problems.push(`choice without a message: ${JSON.stringify(c).slice(0, 200)}`);
    }
    if (value.usage !== undefined && (typeof value.usage?.prompt_tokens !== 'number' || typeof value.usage?.completion_tokens !== 'number')) {
      problems.push(`usage of the wrong shape: ${JSON.stringify(value.usage)}`);
    }
  }
  return problems;
}

// ---- sending ------------------------------------------------------------------------------------------------

/** fetch() with a bound; the body is read whole, or only its first bytes when `abortAfterFirst`. */
async function send({ method = 'POST', path = '/v1/chat/completions', headers, body, abortAfterFirst = false, chunkedPieces = null }) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error('no answer within the bound')), REQUEST_BOUND_MS);
  try {
    let reqBody = body;
    const init = { method, headers: toHeaders(headers), signal: ac.signal };
    if (chunkedPieces) {
      reqBody = new ReadableStream({
        async pull(controller) {
          const next = chunkedPieces.shift();
          if (next === undefined) controller.close();
          else {
            controller.enqueue(new Uint8Array(next));
            await sleep(0);
          }
        },
      });
      init.duplex = 'half';
    }
    if (method !== 'GET' && method !== 'HEAD') init.body = reqBody;
    const res = await fetch(gw.url + path, init);
    const contentType = res.headers.get('content-type');
    if (abortAfterFirst && res.body && (contentType ?? '').startsWith('text/event-stream')) {
      const reader = res.body.getReader();
      const first = await reader.read();
      ac.abort(new Error('client went away'));
      await reader.cancel().catch(() => {});
      return { status: res.status, contentType, buf: Buffer.from(first.value ?? []), complete: false };
    }
    const buf = Buffer.from(await res.arrayBuffer());
    return { status: res.status, contentType, buf, complete: true };
  } finally {
    clearTimeout(timer);
  }
}

/** A raw HTTP/1.1 request: `head` lines and body bytes written as told; resolves with the raw answer (or ''). */
function rawRequest(writes, { halfClose = true } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(gw.port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => socket.destroy(), 15_000);
    socket.on('data', (d) => chunks.push(d));
    const done = () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    };
    socket.on('close', done);
    socket.on('error', () => {});
    socket.on('connect', async () => {
      for (const w of writes) {
        if (socket.destroyed) return;
        socket.write(w);
        await sleep(1);
      }
      if (halfClose && !socket.destroyed) socket.end();
    });
  });
}

/** Parses a raw HTTP/1.1 answer (content-length or chunked) into status, content type and body. */
function parseRaw(buf) {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) return null;
  const head = buf.subarray(0, sep).toString('latin1').split('\r\n');
  const status = Number(head[0].split(' ')[1]);
  const headers = Object.fromEntries(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  let body = buf.subarray(sep + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    let at = 0;
    for (;;) {
      const nl = body.indexOf('\r\n', at);
      if (nl < 0) break;
      const size = parseInt(body.subarray(at, nl).toString('latin1'), 16);
      if (!(size > 0)) break;
      parts.push(body.subarray(nl + 2, nl + 2 + size));
      at = nl + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  return { status, contentType: headers['content-type'] ?? null, buf: body, complete: true };
}

function rawHead(lines) {
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

// ---- the cases ------------------------------------------------------------------------------------------------

const CASES = {
  /** The echo model with random and mutated bodies. */
  echoBody: async (rng) => {
    const body = bodyFor(rng, rng.chance(85) ? 'tollgate-echo' : rng.pick([...MODELS, 'nope', '', 'tollgate/auto']), { mutate: rng.chance(75) });
    return { label: `body ${body.toString('utf8').slice(0, 160)}`, answer: await send({ headers: headersFor(rng, { hostile: false }), body }) };
  },
  /** Every provider kind, the upstream answering with valid, mutated, split or broken fixtures. */
  upstream: async (rng) => {
    const model = `fz-${rng.pick(KINDS)}`;
    const body = bodyFor(rng, model, { mutate: rng.chance(20) });
    return { label: `${model} body ${body.toString('utf8').slice(0, 160)}`, answer: await send({ headers: headersFor(rng, { hostile: false }), body }) };
  },
  /** Hostile headers on ordinary bodies. */
  headers: async (rng) => {
    const body = bodyFor(rng, rng.pick(MODELS), { mutate: rng.chance(15) });
    const headers = headersFor(rng, { hostile: true, key: rng.pick([keys.main, keys.main, keys.restricted, keys.poor]) });
    const names = headers.map(([k, v]) => `${k}(${v.length})`).join(' ');
    return { label: `headers ${names}`, answer: await send({ headers, body }) };
  },
  /** Other keys: revoked, restricted to the echo model, a tenant with almost no credit. */
  keys: async (rng) => {
    const key = rng.pick([keys.revoked, keys.restricted, keys.poor]);
    const body = bodyFor(rng, rng.pick(MODELS), { mutate: false });
    return { label: `key ${key.slice(0, 12)}… body ${body.toString('utf8').slice(0, 120)}`, answer: await send({ headers: headersFor(rng, { hostile: false, key }), body }) };
  },
  /** Client aborts after the first bytes of a stream. */
  abort: async (rng) => {
    const model = rng.pick(MODELS);
    const v = chatValue(rng, model);
    v.stream = true;
    return { label: `abort ${model}`, answer: await send({ headers: headersFor(rng, { hostile: false }), body: JSON.stringify(v), abortAfterFirst: true }) };
  },
  /** A chunked request body (fetch with a stream body), split at random, sometimes over the limit. */
  chunked: async (rng) => {
    let body = bodyFor(rng, rng.pick(MODELS), { mutate: rng.chance(30) });
    if (rng.chance(15)) body = Buffer.concat([body, Buffer.alloc(MAX_BODY, 0x20)]);
    const pieces = [];
    for (let at = 0; at < body.length; ) {
      const n = 1 + rng.below(rng.chance(50) ? 16 : 4096);
      pieces.push(body.subarray(at, at + n));
      at += n;
    }
    return { label: `chunked ${pieces.length} pieces`, answer: await send({ headers: headersFor(rng, { hostile: false }), chunkedPieces: pieces }) };
  },
  /** Raw sockets: a body shorter than its Content-Length, malformed chunked framing, a half-sent head. */
  raw: async (rng) => {
    const body = Buffer.from(JSON.stringify(chatValue(rng, rng.pick(MODELS))));
    const common = [`Host: 127.0.0.1:${gw.port}`, `Authorization: Bearer ${keys.main}`, 'Content-Type: application/json'];
    const form = rng.pick(['short', 'long', 'badChunk', 'noLastChunk', 'halfHead', 'fine']);
    let writes;
    if (form === 'short') {
      writes = [rawHead(['POST /v1/chat/completions HTTP/1.1', ...common, `Content-Length: ${body.length + 1 + rng.below(100)}`]), body];
    } else if (form === 'long') {
      writes = [rawHead(['POST /v1/chat/completions HTTP/1.1', ...common, `Content-Length: ${Math.max(0, body.length - 1 - rng.below(10))}`, 'Connection: close']), body];
    } else if (form === 'badChunk' || form === 'noLastChunk' || form === 'fine') {
      const head = rawHead(['POST /v1/chat/completions HTTP/1.1', ...common, 'Transfer-Encoding: chunked', 'Connection: close']);
      const chunks = [];
      for (let at = 0; at < body.length; ) {
        const n = 1 + rng.below(64);
        const piece = body.subarray(at, at + n);
        chunks.push(Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]));
        at += n;
      }
      if (form === 'badChunk') chunks.splice(rng.below(chunks.length + 1), 0, Buffer.from('zz\r\nxx\r\n'));
      if (form !== 'noLastChunk') chunks.push(Buffer.from('0\r\n\r\n'));
      writes = [head, ...chunks];
    } else {
      writes = [Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\n${common[0]}\r\nAuthorization: Bear`)];
    }
    const raw = await rawRequest(writes, { halfClose: true });
    const parsed = parseRaw(raw);
    // A connection the client broke may get no answer at all, and broken HTTP framing is answered
    // by the runtime's HTTP layer before the worker runs (a worker crash shows in its output, checked
    // at the end). What the worker answers (it sets x-request-id) must be well formed.
    if (!parsed || !/\r\nx-request-id:/i.test(raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1'))) {
      runtimeAnswers[form] = (runtimeAnswers[form] ?? 0) + 1;
      return { label: `raw ${form} (no worker answer)`, answer: null };
    }
    return { label: `raw ${form}`, answer: parsed };
  },
  /** Idempotency-Key sequences: the same key again with the same or another body, or two at once. */
  idempotency: async (rng) => {
    const key = `fuzz-idem-${rng.below(1e9)}`;
    const model = rng.pick(MODELS);
    const body = JSON.stringify(chatValue(rng, model));
    const headers = [...headersFor(rng, { hostile: false }), ['idempotency-key', key]];
    const other = JSON.stringify(chatValue(rng, model));
    const answers = rng.chance(50)
      ? await Promise.all([send({ headers, body }), send({ headers, body })])
      : [await send({ headers, body }), await send({ headers, body: rng.chance(50) ? body : other })];
    return { label: `idempotency ${model}`, answers };
  },
  /** Wrong methods and paths next to the endpoint. */
  method: async (rng) => {
    const method = rng.pick(['GET', 'PUT', 'DELETE', 'PATCH']);
    const path = rng.pick(['/v1/chat/completions', '/v1/chat/completions/', '/v1/chat', '/v1//chat/completions', '/v1/chat/completions?x=1']);
    const body = method === 'GET' ? undefined : bodyFor(rng, 'tollgate-echo', { mutate: false });
    return { label: `${method} ${path}`, answer: await send({ method, path, headers: headersFor(rng, { hostile: false }), body }) };
  },
};

const WEIGHTS = { echoBody: 30, upstream: 34, headers: 12, keys: 4, abort: 5, chunked: 5, raw: 5, idempotency: 3, method: 2 };

describe('fuzzing the chat endpoint', () => {
  test(`${REQUESTS} seeded requests get well-formed answers`, async (t) => {
    const rng = makeRng(SEED);
    // TOLLGATE_FUZZ_ONLY=3,57 replays only those cases of the seed's sequence.
    const only = process.env.TOLLGATE_FUZZ_ONLY?.split(',').map(Number);
    const plan = Array.from({ length: REQUESTS }, (_, i) => ({ i, kind: rng.weighted(WEIGHTS), rng: rng.fork() })).filter(
      ({ i }) => !only || only.includes(i),
    );
    const failures = [];
    const statuses = {};
    let next = 0;
    async function worker() {
      while (next < plan.length) {
        const { i, kind, rng: caseRng } = plan[next++];
        let result;
        try {
          result = await CASES[kind](caseRng);
        } catch (err) {
          failures.push(`#${i} ${kind}: request failed: ${err?.cause?.message ?? err.message}`);
          continue;
        }
        for (const answer of result.answers ?? [result.answer]) {
          if (!answer) continue;
          statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
          for (const p of answerProblems(answer.status, answer.contentType, answer.buf, { complete: answer.complete })) {
            failures.push(`#${i} ${kind} [${result.label}]: ${p}`);
          }
        }
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    t.diagnostic(`seed ${SEED}; statuses ${JSON.stringify(statuses)}; upstream plans ${JSON.stringify(upstream.plans)}`);
    t.diagnostic(`raw requests without a worker answer: ${JSON.stringify(runtimeAnswers)}`);
    assert.deepEqual(failures, [], `seed ${SEED}: ${failures.length} bad answers:\n${failures.slice(0, 30).join('\n')}`);
    // The run reached both kinds of outcome and the upstream's stream and plain paths.
    if (!only) assert.ok(statuses[200] > 0 && Object.keys(statuses).some((s) => s >= 400), JSON.stringify(statuses));
  });

  test('afterwards the worker is healthy, printed no panic, and every reservation settled', async () => {
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, 'ok');
    const ok = await send({
      headers: [['authorization', auth(keys.main)], ['content-type', 'application/json']],
      body: JSON.stringify({ model: 'tollgate-echo', messages: [{ role: 'user', content: 'still there?' }] }),
    });
    assert.equal(ok.status, 200, ok.buf.toString());
    assert.equal(JSON.parse(ok.buf.toString()).choices[0].message.content, 'Echo: still there?');

    for (const tenant of [tenants.rich, tenants.poor]) {
      let state;
      // Settlement runs after the responses (wait_until); bounded so that a leak fails the test.
      for (let i = 0; i < 400; i++) {
        state = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/billing`);
        if (state.reserved === 0 && state.allowance_reserved === 0) break;
        await sleep(150);
      }
      assert.equal(state.reserved, 0, `${tenant.name}: reservations left: ${JSON.stringify(state)}`);
      assert.equal(state.allowance_reserved, 0);
      await gw.exported(tenant.id); // D1's usage rows complete (a wallet exports them)
      const [{ credit }] = gw.d1('SELECT COALESCE(SUM(amount), 0) AS credit FROM credit_ledger WHERE tenant_id = ?', tenant.id);
      const [{ spent, rows }] = gw.d1('SELECT COALESCE(SUM(cost), 0) AS spent, COUNT(*) AS rows FROM usage WHERE tenant_id = ?', tenant.id);
      assert.equal(state.balance, Number(credit) - Number(spent), `${tenant.name}: balance = credit − Σ cost over ${rows} usage rows`);
      // A charge above the reservation (a provider reporting more than it was allowed) is taken in
      // full and recorded as such (docs/money.md): what the reservation did not cover is exactly
      // the excess, and without debt the balance identity above holds.
      const [{ odd }] = gw.d1(
        'SELECT COUNT(*) AS odd FROM usage WHERE tenant_id = ? AND beyond_reservation <> MAX(0, cost - reserved)',
        tenant.id,
      );
      assert.equal(Number(odd), 0, 'beyond_reservation is the charge above the reservation');
      assert.equal(state.debt, 0);
    }
    assert.equal(await gw.openReservations(), 0);

    const logs = gw.logs();
    const crash = /panicked|RuntimeError|unreachable executed|Uncaught \(in promise\)|Worker threw exception/i.exec(logs);
    assert.equal(crash, null, `the worker crashed: ${crash ? logs.slice(Math.max(0, crash.index - 600), crash.index + 600) : ''}`);
  });
});
