// Helpers of the end-to-end fuzz test (fuzz.test.mjs): a seeded generator, JSON and byte mutators, and
// a mock upstream that answers every provider kind with its golden fixtures (tests/fixtures/<kind>/)
// valid, mutated, cut short, split at random byte boundaries, or as errors with random statuses.
//
// The mock decides how to answer from a hash of the request it receives and the seed, so a run is
// reproducible whatever the order in which concurrent requests arrive.
//
//   POST /openai/chat/completions                        OpenAI SSE / chat.completion
//   POST /azure/openai/deployments/{d}/chat/completions  Azure (OpenAI SSE)
//   POST /anthropic/messages                             Anthropic SSE / message
//   POST /gemini/models/{m}:generateContent | :streamGenerateContent?alt=sse
//   POST /ollama/api/chat                                Ollama NDJSON / message
//   POST /hf/v1/chat/completions                         TGI (OpenAI SSE with quirks)

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

// ---- the generator ------------------------------------------------------------------------------

/** mulberry32: a small seeded generator, reproducible across runs. */
export function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = {
    next,
    /** Integer in [0, n). */
    below: (n) => Math.floor(next() * n),
    /** True with probability pct %. */
    chance: (pct) => next() * 100 < pct,
    pick: (items) => items[Math.floor(next() * items.length)],
    /** Picks a key of `weights` ({ name: weight }) in proportion to its weight. */
    weighted(weights) {
      const entries = Object.entries(weights);
      let r = next() * entries.reduce((s, [, w]) => s + w, 0);
      for (const [name, w] of entries) {
        if ((r -= w) < 0) return name;
      }
      return entries[entries.length - 1][0];
    },
    /** A new generator for one case. */
    fork: () => makeRng(Math.floor(next() * 4294967296)),
  };
  return rng;
}

/** FNV-1a over bytes, for deriving a case's generator from what a request carried. */
export function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// ---- JSON values and their mutation ------------------------------------------------------------------

export const TEXTS = [
  '',
  ' ',
  'hello there',
  'Hello, gateway! How are you today?',
  'ünïcødé façade — naïve café',
  '北京明天的天气怎么样？请告诉我。',
  '🦀🚀👩‍👩‍👧‍👦 emoji ZWJ 🇫🇷',
  '<|endoftext|><|im_start|>system<|im_end|>',
  '\u0000\u0001\u007f\t\r\n\u2028\ufeff',
  'a\u0301e\u0308\u200b\u202ertl',
  "'s 't 're 've 'm 'll 'd   \n\n  ",
  '{"json": [1, 2, {"x": null}]}',
  '/weather Beijing',
  'data: [DONE]\n\n',
];

export const FIELD_NAMES = [
  'model', 'messages', 'role', 'content', 'name', 'type', 'text', 'tool_calls', 'tool_call_id', 'function',
  'arguments', 'parameters', 'properties', 'enum', 'description', 'stream', 'stream_options', 'include_usage',
  'max_tokens', 'max_completion_tokens', 'n', 'tools', 'tool_choice', 'functions', 'plugins', 'temperature',
  'stop', 'seed', 'user', 'response_format', 'image_url', 'url', 'input_audio', 'usage', 'prompt_tokens',
  'completion_tokens', 'choices', 'delta', 'index', 'finish_reason', 'error', 'x_unknown', '', '__proto__',
];

// Number literals JSON.stringify cannot write; they are spliced into the text by `literals()`.
const BIG = ['18446744073709551615', '18446744073709551616', '9223372036854775808', '-1', '1e400', '-0', '4294967296', '1.5'];
const BIG_MARK = '__fuzz_big_';

/** JSON text with the big-number markers replaced by their literals. */
export function literals(value) {
  return JSON.stringify(value).replace(new RegExp(`"${BIG_MARK}(\\d+)"`, 'g'), (_, i) => BIG[Number(i)]);
}

export function text(rng) {
  switch (rng.below(8)) {
    case 0: {
      let s = '';
      for (let i = rng.below(30); i > 0; i--) {
        const cp = rng.pick([rng.below(0x80), 0x80 + rng.below(0x780), 0x800 + rng.below(0xd000), 0x10000 + rng.below(0xfffff)]);
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    case 1:
      return rng.pick(TEXTS).repeat(1 + rng.below(30));
    default:
      return rng.pick(TEXTS);
  }
}

export function number(rng) {
  if (rng.chance(40)) return `${BIG_MARK}${rng.below(BIG.length)}`;
  return rng.pick([0, 1, -1, 2, 16, 17, 4294967295, 2 ** 53, -(2 ** 53), 0.5, 1e20]);
}

export function anyValue(rng, depth = 2) {
  switch (rng.below(depth <= 0 ? 5 : 7)) {
    case 0: return null;
    case 1: return rng.chance(50);
    case 2: return number(rng);
    case 3: return text(rng);
    case 4: return rng.pick(FIELD_NAMES);
    case 5: return Array.from({ length: rng.below(4) }, () => anyValue(rng, depth - 1));
    default: {
      const o = {};
      for (let i = rng.below(4); i > 0; i--) o[rng.pick(FIELD_NAMES)] = anyValue(rng, depth - 1);
      return o;
    }
  }
}

function nodes(value, path = [], out = []) {
  out.push(path);
  if (value && typeof value === 'object') {
    for (const k of Object.keys(value)) nodes(value[k], [...path, k], out);
  }
  return out;
}

/** One structural mutation: a node replaced, removed, duplicated, wrapped, or an extreme number. */
export function mutateValue(rng, root) {
  const all = nodes(root);
  const path = rng.pick(all);
  if (path.length === 0) return rng.chance(50) ? anyValue(rng) : root;
  const parent = path.slice(0, -1).reduce((v, k) => v?.[k], root);
  const key = path[path.length - 1];
  if (!parent || typeof parent !== 'object') return root;
  switch (rng.below(6)) {
    case 0:
    case 1:
      parent[key] = anyValue(rng);
      break;
    case 2:
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete parent[key];
      break;
    case 3:
      if (Array.isArray(parent[key]) && parent[key].length) {
        for (let i = rng.below(10); i >= 0; i--) parent[key].push(structuredClone(parent[key][0]));
      } else {
        parent[key] = [parent[key]];
      }
      break;
    case 4:
      parent[key] = { [rng.pick(FIELD_NAMES)]: parent[key] };
      break;
    default:
      parent[key] = number(rng);
  }
  return root;
}

/** Sets every numeric field whose name says it counts tokens to an extreme literal. */
export function extremeCounts(rng, value) {
  if (!value || typeof value !== 'object') return;
  for (const k of Object.keys(value)) {
    if (/token|count/i.test(k) && typeof value[k] === 'number') value[k] = `${BIG_MARK}${rng.below(BIG.length)}`;
    else extremeCounts(rng, value[k]);
  }
}

const BYTE_INSERTS = [
  [0xff], [0xc3], [0xe4, 0xb8], [0xed, 0xa0, 0x80], [0x00], '\\ud800', '1e999', '123456789012345678901234567890',
  '"model":"x",', ',', '}', ']', '"', '\\', 'NaN', [0xef, 0xbb, 0xbf],
].map((x) => Buffer.from(typeof x === 'string' ? Buffer.from(x) : x));

/** A byte-level mutation of a buffer: cut, bit flip, insertion, deletion, random bytes, deep nesting. */
export function mutateBytes(rng, buf) {
  const len = buf.length;
  switch (rng.below(6)) {
    case 0:
      return buf.subarray(0, rng.below(len + 1));
    case 1: {
      if (!len) return buf;
      const out = Buffer.from(buf);
      out[rng.below(len)] ^= 1 << rng.below(8);
      return out;
    }
    case 2: {
      const at = rng.below(len + 1);
      return Buffer.concat([buf.subarray(0, at), rng.pick(BYTE_INSERTS), buf.subarray(at)]);
    }
    case 3: {
      const a = rng.below(len + 1);
      return Buffer.concat([buf.subarray(0, a), buf.subarray(Math.min(len, a + rng.below(40)))]);
    }
    case 4: {
      const depth = rng.pick([127, 128, 129, 5000]);
      return Buffer.from(`{"model":"tollgate-echo","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`);
    }
    default:
      return Buffer.concat([buf, Buffer.from(Array.from({ length: rng.below(16) }, () => rng.below(256)))]);
  }
}

// ---- the fixtures -----------------------------------------------------------------------------------

function fixture(path) {
  const bytes = readFileSync(join(ROOT, 'tests', 'fixtures', path));
  if (bytes.subarray(0, 2).toString() !== '#!') return bytes;
  return bytes.subarray(bytes.indexOf(0x0a) + 1);
}

/** Per kind: stream transcripts (SSE or NDJSON), plain bodies, error bodies. */
const FIXTURES = {
  openai: { streams: ['openai/groq_stream.sse'], plain: ['openai/deepseek_response.json'], errors: ['openai/mistral_error.json'] },
  azure: { streams: ['azure/stream.sse'], plain: ['azure/response.json'], errors: ['azure/error_content_filter.json'] },
  anthropic: {
    streams: ['anthropic/stream_text.sse', 'anthropic/stream_tools.sse', 'anthropic/stream_error.sse'],
    plain: ['anthropic/response_tools.json'],
    errors: ['anthropic/error_invalid.json'],
  },
  gemini: { streams: ['gemini/stream_text.sse', 'gemini/stream_tools.sse'], plain: ['gemini/response_tools.json'], errors: ['gemini/error_invalid.json'] },
  ollama: { streams: ['ollama/stream.ndjson'], plain: ['ollama/response_tools.json'], errors: ['ollama/error_not_found.json'] },
  hf: { streams: ['huggingface/stream_tools.sse'], plain: ['huggingface/response_tools.json'], errors: ['huggingface/error_validation.json'] },
};
export const KINDS = Object.keys(FIXTURES);

const STREAM_INSERTS = [
  ': keep-alive\n\n', 'data: [DONE]\n\n', 'data: \n\n', 'data: {}\n\n', 'data: null\n\n', 'data: [1,2]\n\n',
  'data: {"error":{"message":"boom","type":"server_error"}}\n\n', 'data: {"error":"plain string"}\n\n',
  'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
  'event: ping\n\n', 'retry: 10\nid: 7\n\n', 'data: {"choices":[{"index":4294967295,"delta":{"content":"x"}}]}\n\n',
  '{"done":true}\n', '\r', '\r\n', '\n', 'data: {"a":\n',
].map((s) => Buffer.from(s));

function splitEvents(kind, buf) {
  const sep = kind === 'ollama' ? '\n' : '\n\n';
  const out = [];
  let start = 0;
  for (;;) {
    const i = buf.indexOf(sep, start);
    if (i < 0) break;
    out.push(buf.subarray(start, i + sep.length));
    start = i + sep.length;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

function mutateEventJson(rng, event) {
  const s = event.toString('utf8');
  const at = s.indexOf('data:');
  const start = at >= 0 ? at + 5 : 0;
  const nl = s.indexOf('\n', start);
  const end = nl >= 0 ? nl : s.length;
  let value;
  try {
    value = JSON.parse(s.slice(start, end));
  } catch {
    return event;
  }
  for (let i = rng.below(3); i >= 0; i--) {
    if (rng.chance(30)) extremeCounts(rng, value);
    else value = mutateValue(rng, value);
  }
  return Buffer.from(`${s.slice(0, start)}${at >= 0 ? ' ' : ''}${literals(value)}${s.slice(end)}`);
}

/** A mutated transcript: events altered, dropped, duplicated, swapped, garbage inserted, bits flipped. */
export function mutateTranscript(rng, kind, buf) {
  const events = splitEvents(kind, buf);
  for (let k = rng.below(4); k >= 0; k--) {
    const n = events.length;
    const op = rng.below(7);
    if (op <= 1 && n) {
      const i = rng.below(n);
      events[i] = mutateEventJson(rng, events[i]);
    } else if (op === 2 && n) events.splice(rng.below(n), 1);
    else if (op === 3 && n) events.splice(rng.below(n + 1), 0, events[rng.below(n)]);
    else if (op === 4 && n > 1) {
      const [a, b] = [rng.below(n), rng.below(n)];
      [events[a], events[b]] = [events[b], events[a]];
    } else if (op === 5) events.splice(rng.below(n + 1), 0, rng.pick(STREAM_INSERTS));
    else if (n) {
      const i = rng.below(n);
      const e = Buffer.from(events[i]);
      if (e.length) e[rng.below(e.length)] ^= 1 << rng.below(8);
      events[i] = e;
    }
  }
  let out = Buffer.concat(events);
  if (rng.chance(10)) out = Buffer.from(out.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
  return out;
}

/** A mutated JSON body (structure, token counts, bytes). */
export function mutateBody(rng, buf) {
  let out = buf;
  try {
    let value = JSON.parse(buf.toString('utf8'));
    for (let i = rng.below(3); i >= 0; i--) {
      if (rng.chance(25)) extremeCounts(rng, value);
      else value = mutateValue(rng, value);
    }
    out = Buffer.from(literals(value));
  } catch {}
  return rng.chance(25) ? mutateBytes(rng, out) : out;
}

/** Cut points that split `len` bytes into pieces: byte by byte, or at a few random places. */
export function randomPieces(rng, buf) {
  if (buf.length === 0) return [buf];
  const cuts = rng.chance(15)
    ? Array.from({ length: Math.min(buf.length - 1, 400) }, (_, i) => i + 1)
    : Array.from({ length: 1 + rng.below(12) }, () => rng.below(buf.length + 1));
  cuts.sort((a, b) => a - b);
  const pieces = [];
  let start = 0;
  for (const c of [...cuts, buf.length]) {
    if (c > start) pieces.push(buf.subarray(start, c));
    start = Math.max(start, c);
  }
  return pieces;
}

// ---- the mock upstream ------------------------------------------------------------------------------

const ERROR_STATUSES = [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529];

/**
 * Starts the fuzzing upstream on 127.0.0.1. `seed` mixes into every request's plan; `stallMs` is how long
 * a "stall" answer waits before going on (longer than the gateway's UPSTREAM_TIMEOUT_MS). The result has
 * `url`, `plans` (a count per plan name) and `close()`.
 */
export async function startFuzzUpstream({ seed, stallMs = 4000 }) {
  const sockets = new Set();
  const plans = {};
  const timers = new Set();
  const sleep = (ms) =>
    new Promise((r) => {
      const t = setTimeout(() => {
        timers.delete(t);
        r();
      }, ms);
      timers.add(t);
    });

  async function writePieces(res, pieces) {
    for (const p of pieces) {
      if (res.destroyed) return false;
      res.write(p);
      await new Promise((r) => setImmediate(r));
    }
    return true;
  }

  async function answer(req, res, raw) {
    const url = new URL(req.url, 'http://mock');
    const kind = url.pathname.split('/')[1];
    const fx = FIXTURES[kind];
    if (!fx) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `no fuzz route ${url.pathname}` }));
      return;
    }
    let body = null;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {}
    const stream = kind === 'gemini' ? url.pathname.includes(':streamGenerateContent') : body?.stream === true;
    const rng = makeRng((fnv1a(raw) ^ fnv1a(Buffer.from(req.url)) ^ seed) >>> 0);
    const plan = rng.weighted(
      stream
        ? { valid: 25, mutated: 45, cut: 8, drop: 6, error: 8, garbage: 4, stall: 2, wrongType: 2 }
        : { valid: 30, mutated: 40, cut: 6, error: 14, garbage: 6, empty: 2, stall: 2 },
    );
    plans[`${stream ? 'stream' : 'plain'}:${plan}`] = (plans[`${stream ? 'stream' : 'plain'}:${plan}`] ?? 0) + 1;

    if (plan === 'error') {
      const status = rng.pick(ERROR_STATUSES);
      const errBody = rng.chance(70) ? mutateBody(rng, fixture(rng.pick(fx.errors))) : Buffer.from('<html>Bad Gateway</html>');
      res.writeHead(status, { 'content-type': rng.chance(80) ? 'application/json' : 'text/html' });
      res.end(errBody);
      return;
    }
    if (plan === 'garbage') {
      res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'application/json' });
      res.end(Buffer.from(Array.from({ length: rng.below(300) }, () => rng.below(256))));
      return;
    }
    if (plan === 'empty') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end();
      return;
    }

    if (!stream) {
      let out = fixture(rng.pick(fx.plain));
      if (plan === 'mutated') out = mutateBody(rng, out);
      res.writeHead(200, { 'content-type': 'application/json', ...(plan === 'cut' ? { 'content-length': String(out.length) } : {}) });
      if (plan === 'cut') {
        await writePieces(res, [out.subarray(0, rng.below(out.length))]);
        res.destroy();
        return;
      }
      if (plan === 'stall') {
        await writePieces(res, [out.subarray(0, rng.below(out.length))]);
        await sleep(stallMs);
        if (!res.destroyed) res.end(out.subarray(0, 0));
        return;
      }
      await writePieces(res, randomPieces(rng, out));
      res.end();
      return;
    }

    let transcript = fixture(rng.pick(fx.streams));
    if (plan !== 'valid') transcript = mutateTranscript(rng, kind, transcript);
    const type = plan === 'wrongType' ? 'application/json' : kind === 'ollama' ? 'application/x-ndjson' : 'text/event-stream';
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
    res.flushHeaders();
    if (plan === 'cut' || plan === 'drop' || plan === 'stall') transcript = transcript.subarray(0, rng.below(transcript.length + 1));
    if (!(await writePieces(res, randomPieces(rng, transcript)))) return;
    if (plan === 'drop') {
      res.destroy(); // connection reset mid-stream
      return;
    }
    if (plan === 'stall') await sleep(stallMs);
    if (!res.destroyed) res.end();
  }

  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      try {
        await answer(req, res, Buffer.concat(parts));
      } catch (err) {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: `fuzz mock failure: ${err.message}` } }));
        } else res.destroy();
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', res);
  });

  function close() {
    for (const t of timers) clearTimeout(t);
    for (const s of sockets) s.destroy();
    return new Promise((res) => server.close(() => res()));
  }
  return { url: `http://127.0.0.1:${server.address().port}`, plans, close };
}
