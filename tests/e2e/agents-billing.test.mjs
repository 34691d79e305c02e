// End to end: the billing rules of chat on the agent APIs (`POST /v1/responses`, `POST /v1/messages`,
// translated to chat): the long-context tier (reservation and charge), cache writes at their 5-minute
// and 1-hour prices, Idempotency-Key replays, the output guard's cut of a stream without a cap, a
// client that leaves, an upstream failure before and after output, and reports by api. Every test
// asserts the usage row (status, tokens, cost) and the tenant's balance; amounts are computed here
// from the prices configured below (docs/money.md, "Cache writes and long context").
//
// Upstreams: a scripted OpenAI-compatible server (behaviour chosen by the upstream model name) and a
// scripted Anthropic one that reports cache writes, both on 127.0.0.1.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startGateway } from './harness.mjs';

// Base tier: $1 / $2 per 1M tokens; above 1,000 prompt tokens: $3 / $5.
const BASE = { input_price: 1_000_000, output_price: 2_000_000 };
const LONG = { long_context_threshold: 1000, long_input_price: 3_000_000, long_output_price: 5_000_000 };
const baseCost = (prompt, completion) => Math.ceil((prompt * 1_000_000 + completion * 2_000_000) / 1e6);
const longCost = (prompt, completion) => Math.ceil((prompt * 3_000_000 + completion * 5_000_000) / 1e6);
// Claude-like cache prices: $3 in, $0.30 read, $3.75 5-minute write, $6 1-hour write, $15 out.
const CLAUDE = {
  input_price: 3_000_000,
  cached_input_price: 300_000,
  output_price: 15_000_000,
  cache_write_5m_price: 3_750_000,
  cache_write_1h_price: 6_000_000,
};
// What the Anthropic mock reports: 30 uncached, 10 read, 120 + 80 written, 3 out.
const ANTHROPIC_USAGE = {
  input_tokens: 30,
  cache_read_input_tokens: 10,
  cache_creation_input_tokens: 200,
  cache_creation: { ephemeral_5m_input_tokens: 120, ephemeral_1h_input_tokens: 80 },
  output_tokens: 3,
};
const CACHED_COST = Math.ceil((30 * 3_000_000 + 10 * 300_000 + 120 * 3_750_000 + 80 * 6_000_000 + 3 * 15_000_000) / 1e6);
const LONG_PROMPT = 'word '.repeat(1500);

/** The scripted upstreams. */
async function startUpstream() {
  const sockets = new Set();
  const wait = (ms) => new Promise((r) => setTimeout(r, ms));
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {}
      const gone = () => res.destroyed || res.socket?.destroyed;
      const sse = () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
      };
      if (req.url.endsWith('/ant/messages')) {
        const content = [{ type: 'text', text: 'cached hello' }];
        const message = { id: 'msg_tiers', type: 'message', role: 'assistant', model: body.model, content, stop_reason: 'end_turn', stop_sequence: null, usage: ANTHROPIC_USAGE };
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(JSON.stringify(message));
        }
        sse();
        const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
        res.write(ev('message_start', { message: { ...message, content: [], stop_reason: null, usage: { ...ANTHROPIC_USAGE, output_tokens: 1 } } }));
        res.write(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
        for (const t of ['cached', ' hello']) res.write(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: t } }));
        res.write(ev('content_block_stop', { index: 0 }));
        res.write(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 3 } }));
        return res.end(ev('message_stop', {}));
      }
      // OpenAI-compatible chat completions.
      const model = String(body.model ?? '');
      const text = JSON.stringify(body.messages ?? []);
      const created = 1700000000;
      const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id: 'chatcmpl-t', object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
      const delta = (t) => chunk([{ index: 0, delta: { content: t }, finish_reason: null }]);
      const open = () => {
        sse();
        res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
      };
      switch (model) {
        case 'ok': {
          // A prompt of more than 2,000 characters is reported as 1,200 tokens, else 40.
          const usage = { prompt_tokens: text.length > 2000 ? 1200 : 40, completion_tokens: 3, total_tokens: 0 };
          usage.total_tokens = usage.prompt_tokens + 3;
          if (!body.stream) {
            res.writeHead(200, { 'content-type': 'application/json' });
            return res.end(
              JSON.stringify({
                id: 'chatcmpl-t',
                object: 'chat.completion',
                created,
                model,
                choices: [{ index: 0, message: { role: 'assistant', content: 'all is well' }, finish_reason: 'stop' }],
                usage,
              }),
            );
          }
          open();
          res.write(delta('all is well'));
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.write(chunk([], { usage }));
          return res.end('data: [DONE]\n\n');
        }
        case 'fail':
          res.writeHead(500, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: { message: 'internal failure', type: 'server_error', param: null, code: null } }));
        case 'break':
          // Some output, then the connection drops (no usage).
          open();
          res.write(delta('partial words here'));
          await wait(50);
          return res.socket?.destroy();
        case 'slow':
          // One word, a pause (the client leaves), the rest and the provider's usage.
          open();
          res.write(delta('first'));
          await wait(1000);
          // Several writes apart: the gateway learns the client left at a write that fails.
          for (let i = 2; i <= 8; i++) {
            res.write(delta(` w${i}`));
            await wait(100);
          }
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.write(chunk([], { usage: { prompt_tokens: 42, completion_tokens: 9, total_tokens: 51 } }));
          return res.end('data: [DONE]\n\n');
        case 'endless':
          // Generates until the gateway hangs up.
          open();
          for (let i = 1; !gone() && i < 100_000; i++) {
            res.write(delta(` w${i}`));
            await wait(10);
          }
          return res.end();
        default:
          res.writeHead(404, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: { message: `no model ${model}` } }));
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(r);
      }),
  };
}

/** Reads an SSE body into `[{event, data}]` (data parsed as JSON when it is). */
function parseSse(text) {
  const events = [];
  for (const block of text.split(/\n\n/)) {
    let event = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    if (!data.length) continue;
    const raw = data.join('\n');
    let parsed = raw;
    try {
      parsed = JSON.parse(raw);
    } catch {}
    events.push({ event: event ?? parsed?.type ?? null, data: parsed });
  }
  return events;
}

let gw;
let up;

before(async () => {
  up = await startUpstream();
  gw = await startGateway({ vars: { PROVIDER_T_KEY: 'sk-t', PROVIDER_TA_KEY: 'sk-ant-t' } });
  await gw.adminOk('PUT', '/admin/providers/t', { kind: 'openai', base_url: `${up.url}/oai`, api_key_secret: 'PROVIDER_T_KEY' });
  await gw.adminOk('PUT', '/admin/providers/ta', { kind: 'anthropic', base_url: `${up.url}/ant`, api_key_secret: 'PROVIDER_TA_KEY' });
  const model = (name, provider, upstream, prices, max = 100) =>
    gw.adminOk('PUT', `/admin/models/${name}`, { provider, upstream_model: upstream, max_output_tokens: max, encoding: 'o200k_base', ...prices });
  await model('tier-ok', 't', 'ok', { ...BASE, ...LONG });
  await model('tier-cache', 'ta', 'claude-sonnet-4-5', CLAUDE);
  for (const m of ['fail', 'break', 'slow']) await model(`tier-${m}`, 't', m, BASE);
  await model('tier-endless', 't', 'endless', BASE, 3);
});

after(async () => {
  await gw?.kill();
  await up?.close();
});

/** A tenant with `credit`, and helpers bound to its key. */
async function tenant(name, credit) {
  const { key, tenant: created } = await gw.newTenant({ name, credit });
  const balance = async () => {
    const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key.key}` } });
    assert.equal(res.status, 200);
    return (await res.json()).balance;
  };
  const post = (path, body, headers = {}, signal) =>
    fetch(`${gw.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
      body: JSON.stringify(body),
      signal,
    });
  return { id: created.id, key: key.key, balance, post };
}

/** The usage row of a response, after checking the balance went down by its cost. */
async function rowOf(res, t, before) {
  const row = await gw.usageRow(res.headers.get('x-request-id'));
  assert.equal(before - (await t.balance()), row.cost, 'the balance went down by the row cost');
  return row;
}

describe('prices: long-context tier and cache writes', () => {
  let t;
  before(async () => {
    t = await tenant('tiers-prices', 100_000_000);
  });

  test('/v1/responses: a long prompt reserves and is charged at the long tier, the whole request', async () => {
    const before = await t.balance();
    const res = await t.post('/v1/responses', { model: 'tier-ok', input: LONG_PROMPT, max_output_tokens: 50 });
    assert.equal(res.status, 200, await res.clone().text());
    const body = await res.json();
    assert.equal(body.usage.input_tokens, 1200);
    const row = await rowOf(res, t, before);
    assert.equal(row.api, 'responses');
    assert.equal(row.status, 'ok');
    assert.equal(row.long_context, 1);
    assert.equal(row.cost, longCost(1200, 3));
    assert.equal(res.headers.get('x-tollgate-cost'), String(row.cost));
    // The reservation: every local prompt token at the long input price, 50 output tokens at the
    // long output price.
    assert.ok(row.local_prompt_tokens > 1000, `local count ${row.local_prompt_tokens}`);
    assert.equal(row.reserved, longCost(row.local_prompt_tokens, 50));
  });

  test('/v1/messages: a short prompt stays on the base tier', async () => {
    const before = await t.balance();
    const res = await t.post('/v1/messages', { model: 'tier-ok', max_tokens: 50, messages: [{ role: 'user', content: 'hello' }] });
    assert.equal(res.status, 200, await res.clone().text());
    const row = await rowOf(res, t, before);
    assert.equal(row.api, 'messages');
    assert.equal(row.long_context, 0);
    assert.equal(row.cost, baseCost(40, 3));
    assert.equal(row.reserved, baseCost(row.local_prompt_tokens, 50));
  });

  test('/v1/messages: cache writes from the Anthropic upstream at their 5m and 1h prices', async () => {
    const before = await t.balance();
    const res = await t.post('/v1/messages', { model: 'tier-cache', max_tokens: 50, messages: [{ role: 'user', content: 'cache this' }] });
    assert.equal(res.status, 200, await res.clone().text());
    const body = await res.json();
    assert.equal(body.usage.input_tokens, 30);
    assert.equal(body.usage.cache_read_input_tokens, 10);
    assert.equal(body.usage.cache_creation_input_tokens, 200);
    const row = await rowOf(res, t, before);
    assert.equal(row.prompt_tokens, 240);
    assert.equal(row.cached_prompt_tokens, 10);
    assert.equal(row.cache_write_5m_tokens, 120);
    assert.equal(row.cache_write_1h_tokens, 80);
    assert.equal(row.cost, CACHED_COST);
    const listed = (await gw.adminOk('GET', '/admin/models')).data.find((m) => m.name === 'tier-cache');
    assert.equal(row.price_version, listed.price_version, 'billed at the current version');
    assert.equal(listed.cache_write_1h_price, 6_000_000);
  });

  test('/v1/responses stream: the same cache writes, billed the same', async () => {
    const before = await t.balance();
    const res = await t.post('/v1/responses', { model: 'tier-cache', input: 'cache this', stream: true });
    assert.equal(res.status, 200);
    const events = parseSse(await res.text());
    assert.equal(events.at(-1).event, 'response.completed');
    const row = await rowOf(res, t, before);
    assert.equal(row.api, 'responses');
    assert.equal(row.cache_write_5m_tokens, 120);
    assert.equal(row.cache_write_1h_tokens, 80);
    assert.equal(row.cost, CACHED_COST);
  });

  test('chat completions on the same model: the same rule', async () => {
    const before = await t.balance();
    const res = await t.post('/v1/chat/completions', { model: 'tier-cache', messages: [{ role: 'user', content: 'cache this' }] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.usage.prompt_tokens, 240);
    assert.equal(JSON.stringify(body.usage).includes('cache_write'), false, 'not on the chat wire');
    const row = await rowOf(res, t, before);
    assert.equal(row.cost, CACHED_COST);
  });

  test('reports by api show the chat, responses and messages lines', async () => {
    const res = await fetch(`${gw.url}/v1/usage?group_by=api`, { headers: { authorization: `Bearer ${t.key}` } });
    assert.equal(res.status, 200);
    const report = await res.json();
    const byApi = Object.fromEntries(report.rows.map((r) => [r.api, r]));
    assert.deepEqual(Object.keys(byApi).sort(), ['chat', 'messages', 'responses']);
    const rows = gw.d1('SELECT api, COUNT(*) AS n, SUM(cost) AS cost FROM usage WHERE tenant_id = ? GROUP BY api', t.id);
    assert.equal(rows.length, 3);
    for (const r of rows) {
      assert.equal(byApi[r.api].requests, r.n, r.api);
      assert.equal(byApi[r.api].cost, r.cost, r.api);
    }
  });
});

describe('PUT /admin/models: cache-write and long-context prices', () => {
  test('returned, versioned, and checked', async () => {
    const put = (prices) => gw.admin('PUT', '/admin/models/tier-admin', { provider: 't', upstream_model: 'ok', ...BASE, ...prices });
    const first = await put({ ...LONG, cache_write_5m_price: 1_250_000 });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.long_context_threshold, 1000);
    assert.equal(first.json.long_input_price, 3_000_000);
    assert.equal(first.json.cache_write_5m_price, 1_250_000);
    assert.equal(first.json.cache_write_1h_price, null);
    const same = await put({ ...LONG, cache_write_5m_price: 1_250_000 });
    assert.equal(same.json.price_version, first.json.price_version, 'same prices: same version');
    const changed = await put({ ...LONG, long_output_price: 6_000_000 });
    assert.ok(changed.json.price_version > first.json.price_version, 'a change is a new version');
    const listed = (await gw.adminOk('GET', '/admin/models')).data.find((m) => m.name === 'tier-admin');
    assert.equal(listed.long_output_price, 6_000_000);
    assert.equal(listed.cache_write_5m_price, null);
    for (const [prices, param] of [
      [{ long_context_threshold: 0, long_input_price: 1, long_output_price: 1 }, 'long_context_threshold'],
      [{ long_context_threshold: 10, long_output_price: 1 }, 'long_input_price'],
      [{ long_input_price: 5 }, 'long_input_price'],
      [{ cache_write_1h_price: -1 }, 'cache_write_1h_price'],
    ]) {
      const res = await put(prices);
      assert.equal(res.status, 400, JSON.stringify(prices));
      assert.equal(res.json.error.param, param, res.text);
    }
    const float = await put({ cache_write_1h_price: 1.5 });
    assert.equal(float.status, 400, 'prices are integers');
  });
});

describe('Idempotency-Key on the agent APIs', () => {
  let t;
  before(async () => {
    t = await tenant('tiers-idem', 100_000_000);
  });

  const cases = [
    ['/v1/responses', { model: 'tier-ok', input: 'hello', max_output_tokens: 20 }, { model: 'tier-ok', input: 'other', max_output_tokens: 20 }, (j) => typeof j.error?.message === 'string'],
    [
      '/v1/messages',
      { model: 'tier-ok', max_tokens: 20, messages: [{ role: 'user', content: 'hello' }] },
      { model: 'tier-ok', max_tokens: 20, messages: [{ role: 'user', content: 'other' }] },
      (j) => j.type === 'error' && typeof j.error?.type === 'string' && typeof j.error?.message === 'string',
    ],
  ];
  for (const [path, body, other, shaped] of cases) {
    test(`${path}: same body replays the answer with one usage row; another body is a 409 in the API's shape`, async () => {
      const key = `tiers-${path}-${Date.now()}`;
      const before = await t.balance();
      const first = await t.post(path, body, { 'idempotency-key': key });
      assert.equal(first.status, 200);
      const firstText = await first.text();
      const row = await rowOf(first, t, before);
      const again = await t.post(path, body, { 'idempotency-key': key });
      assert.equal(again.status, 200);
      assert.equal(await again.text(), firstText, 'the same answer');
      assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE idempotency_key = ?', key)[0].n, 1);
      assert.equal(before - (await t.balance()), row.cost, 'charged once');
      const conflict = await t.post(path, other, { 'idempotency-key': key });
      assert.equal(conflict.status, 409);
      const j = await conflict.json();
      assert.ok(shaped(j), JSON.stringify(j));
    });
  }
});

describe('abnormal endings on the agent APIs', () => {
  test('a stream cut by the guard (Responses without a cap, Messages past its cap): response.incomplete / message_delta max_tokens', async () => {
    // Enough for the reservation (the model's 3 output tokens), not for an extension of 1,024.
    for (const [path, body, check] of [
      [
        '/v1/responses',
        { model: 'tier-endless', input: 'hi', stream: true },
        (events) => {
          const last = events.at(-1);
          assert.equal(last.event, 'response.incomplete', JSON.stringify(last));
          assert.equal(last.data.response.incomplete_details?.reason, 'max_output_tokens');
        },
      ],
      [
        '/v1/messages',
        // Messages always caps the output (`max_tokens` is required): a provider that ignores the
        // cap is cut at it.
        { model: 'tier-endless', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }], stream: true },
        (events) => {
          const delta = events.find((e) => e.event === 'message_delta');
          assert.equal(delta?.data.delta.stop_reason, 'max_tokens', JSON.stringify(events.slice(-3)));
          assert.equal(events.at(-1).event, 'message_stop');
        },
      ],
    ]) {
      const t = await tenant(`tiers-guard-${path}`, 60);
      const before = await t.balance();
      const res = await t.post(path, body);
      assert.equal(res.status, 200, await res.clone().text());
      check(parseSse(await res.text()));
      const row = await rowOf(res, t, before);
      assert.equal(row.status, 'truncated', path);
      // Cut before the output passed what the reservation covers (the model's 3 tokens).
      assert.ok(row.completion_tokens > 0 && row.completion_tokens <= 3, `${path}: ${row.completion_tokens}`);
      assert.ok(row.cost <= row.reserved, path);
      assert.equal(row.cost, baseCost(row.prompt_tokens, row.completion_tokens), path);
    }
  });

  test('a client that leaves mid-stream: the provider is still read, its usage billed', async () => {
    for (const [path, body] of [
      ['/v1/responses', { model: 'tier-slow', input: 'hi', stream: true }],
      ['/v1/messages', { model: 'tier-slow', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }], stream: true }],
    ]) {
      const t = await tenant(`tiers-abort-${path}`, 100_000);
      const before = await t.balance();
      const controller = new AbortController();
      const res = await t.post(path, body, {}, controller.signal);
      assert.equal(res.status, 200);
      const requestId = res.headers.get('x-request-id');
      const reader = res.body.getReader();
      let seen = '';
      while (!seen.includes('first')) {
        const { value, done } = await reader.read();
        assert.ok(!done, 'the stream ended before the first word');
        seen += Buffer.from(value).toString('utf8');
      }
      controller.abort();
      const row = await gw.usageRow(requestId, 30_000);
      assert.equal(row.status, 'client_abort', path);
      assert.equal(row.usage_source, 'upstream', path);
      assert.equal(row.cost, baseCost(42, 9), path);
      assert.equal(before - (await t.balance()), row.cost, path);
    }
  });

  test('upstream 500 before any output: an error in the API shape, nothing charged', async () => {
    const t = await tenant('tiers-fail', 100_000);
    for (const [path, body, shaped] of [
      ['/v1/responses', { model: 'tier-fail', input: 'hi' }, (j) => typeof j.error?.message === 'string'],
      ['/v1/responses', { model: 'tier-fail', input: 'hi', stream: true }, (j) => typeof j.error?.message === 'string'],
      ['/v1/messages', { model: 'tier-fail', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }, (j) => j.type === 'error'],
      ['/v1/messages', { model: 'tier-fail', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }], stream: true }, (j) => j.type === 'error'],
    ]) {
      const before = await t.balance();
      const res = await t.post(path, body);
      assert.ok(res.status >= 500, `${path}: ${res.status}`);
      const j = await res.json();
      assert.ok(shaped(j), `${path}: ${JSON.stringify(j)}`);
      const row = await gw.usageRow(res.headers.get('x-request-id'));
      assert.equal(row.status, 'upstream_error');
      assert.equal(row.cost, 0);
      assert.equal(await t.balance(), before, 'nothing charged');
    }
  });

  test('upstream broken after output: the API’s failure event, prompt and delivered output charged', async () => {
    for (const [path, body, failed] of [
      ['/v1/responses', { model: 'tier-break', input: 'hi', stream: true }, (events) => events.some((e) => e.event === 'response.failed')],
      ['/v1/messages', { model: 'tier-break', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }], stream: true }, (events) => events.some((e) => e.event === 'error')],
    ]) {
      const t = await tenant(`tiers-break-${path}`, 100_000);
      const before = await t.balance();
      const res = await t.post(path, body);
      assert.equal(res.status, 200);
      const events = parseSse(await res.text());
      assert.ok(failed(events), `${path}: ${JSON.stringify(events.slice(-2))}`);
      const row = await rowOf(res, t, before);
      assert.equal(row.status, 'upstream_error', path);
      assert.equal(row.usage_source, 'local', path);
      assert.ok(row.completion_tokens > 0, path);
      assert.equal(row.cost, baseCost(row.prompt_tokens, row.completion_tokens), path);
    }
  });
});

describe('plugins on the agent APIs', () => {
  test('a plugins field is a 400 in the API shape that names where plugins run', async () => {
    const t = await tenant('tiers-plugins', 100_000);
    const r = await t.post('/v1/responses', { model: 'tier-ok', input: 'hi', plugins: ['weather'] });
    assert.equal(r.status, 400);
    const rj = await r.json();
    assert.equal(rj.error.param, 'plugins');
    assert.match(rj.error.message, /\/v1\/chat\/completions/);
    const m = await t.post('/v1/messages', { model: 'tier-ok', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], plugins: ['weather'] });
    assert.equal(m.status, 400);
    const mj = await m.json();
    assert.equal(mj.type, 'error');
    assert.equal(mj.error.type, 'invalid_request_error');
    assert.match(mj.error.message, /\/v1\/chat\/completions/);
  });
});
