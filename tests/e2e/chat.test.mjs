// End to end: the built worker under wrangler dev (workerd, local D1 + KV), a mock OpenAI upstream
// on 127.0.0.1, and the official `openai` npm SDK as the client.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startGateway, startMockOpenAI } from './harness.mjs';

const MOCK_SECRET = 'sk-mock-upstream-secret';
const PRICE_IN = 1_000_000; // micro-units per 1M prompt tokens
const PRICE_OUT = 2_000_000;

let gw;
let mock;
let tenant;
let key;
let client;

/** What a request with these counts costs: one rounding up per request. */
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);

const adminOk = (...args) => gw.adminOk(...args);

const usageRow = (requestId) => gw.usageRow(requestId);

const newTenant = (credit, name = 'acme') => gw.newTenant({ name, credit });

const raw = (path, init = {}) => fetch(gw.url + path, init);
const chatBody = (model, extra = {}) =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }], ...extra });
const bearer = (k) => ({ authorization: `Bearer ${k}`, 'content-type': 'application/json' });

before(async () => {
  mock = await startMockOpenAI({ chunkDelayMs: 40 });
  gw = await startGateway({
    vars: { PROVIDER_MOCK_KEY: MOCK_SECRET, MAX_BODY_BYTES: '65536', UPSTREAM_CONNECT_TIMEOUT_MS: '2000', UPSTREAM_TIMEOUT_MS: '2000' },
  });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  for (const [name, upstream] of [
    ['mock-model', 'gpt-4o-mini'],
    ['mock-500', 'mock-500'],
    ['mock-400', 'mock-400'],
    ['mock-hang', 'mock-hang'],
    ['mock-drop', 'mock-drop'],
    ['mock-nousage', 'mock-nousage'],
  ]) {
    await adminOk('PUT', `/admin/models/${name}`, {
      provider: 'mock',
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 1000,
    });
  }
  ({ tenant, key } = await newTenant(100_000_000));
  client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('OpenAI SDK against the built-in echo model', () => {
  test('plain completion with exact usage and a usage row', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'tollgate-echo', messages: [{ role: 'user', content: 'hello world' }] })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Echo: hello world');
    assert.equal(data.object, 'chat.completion');
    // o200k: 3 framing + "user" 1 + "hello world" 2 + 3 priming
    assert.equal(data.usage.prompt_tokens, 9);
    assert.equal(data.usage.completion_tokens, 4); // "Echo", ":", " hello", " world"
    const requestId = response.headers.get('x-request-id');
    assert.match(response.headers.get('x-session-id'), /^sess_/);
    const row = await usageRow(requestId);
    assert.equal(row.status, 'ok');
    assert.equal(row.usage_source, 'upstream');
    assert.equal(row.local_prompt_tokens, 9);
    assert.equal(row.local_completion_tokens, 4);
    assert.equal(row.cost, costOf(9, 4));
    assert.equal(row.tenant_id, tenant.id);
    assert.equal(row.key_id, key.id);
  });

  test('streaming token by token, usage chunk only when asked', async () => {
    const stream = await client.chat.completions.create({
      model: 'tollgate-echo',
      stream: true,
      messages: [{ role: 'user', content: 'stream me please' }],
    });
    let text = '';
    let chunks = 0;
    let sawUsage = false;
    for await (const chunk of stream) {
      chunks += 1;
      if (chunk.usage) sawUsage = true;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(text, 'Echo: stream me please');
    assert.ok(chunks >= 6, `token-by-token chunks: ${chunks}`);
    assert.equal(sawUsage, false);

    const withUsage = await client.chat.completions.create({
      model: 'tollgate-echo',
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 2,
      messages: [{ role: 'user', content: 'one two three four' }],
    });
    let usage = null;
    let finish = null;
    for await (const chunk of withUsage) {
      if (chunk.usage) usage = chunk.usage;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(usage.completion_tokens, 2);
    assert.equal(finish, 'length');
  });

  test('GET /v1/models lists what the key may use', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.ok(models.includes('tollgate-echo') && models.includes('mock-model'), models.join(','));
    const limited = await adminOk('POST', `/admin/tenants/${tenant.id}/keys`, { name: 'echo-only', models: ['tollgate-echo'] }, 201);
    const limitedClient = new OpenAI({ apiKey: limited.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const only = [];
    for await (const m of limitedClient.models.list()) only.push(m.id);
    assert.deepEqual(only, ['tollgate-echo']);
    await assert.rejects(
      limitedClient.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 403 && e.code === 'model_not_allowed',
    );
  });
});

describe('OpenAI-compatible upstream', () => {
  test('plain: passes through, sends the provider secret, bills upstream usage', async () => {
    mock.requests.length = 0;
    const { data, response } = await client.chat.completions
      .create({ model: 'mock-model', messages: [{ role: 'user', content: 'hi mock' }], temperature: 0.3, seed: 7 })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'mock reply to hi mock');
    assert.equal(mock.requests.length, 1);
    const seen = mock.requests[0];
    assert.equal(seen.headers.authorization, `Bearer ${MOCK_SECRET}`);
    assert.equal(seen.body.model, 'gpt-4o-mini');
    assert.equal(seen.body.temperature, 0.3, 'unknown fields pass through');
    assert.equal(seen.body.seed, 7);
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.usage_source, 'upstream');
    assert.equal(row.prompt_tokens, 42);
    assert.equal(row.upstream_prompt_tokens, 42);
    assert.equal(row.completion_tokens, 5); // "mock reply to hi mock": one mock token per word
    assert.equal(row.cost, costOf(42, 5));
    assert.equal(row.provider, 'mock');
  });

  test('stream: chunks arrive as the upstream sends them, usage asked upstream and stripped', async () => {
    mock.requests.length = 0;
    const started = Date.now();
    const stream = await client.chat.completions.create({
      model: 'mock-model',
      stream: true,
      messages: [{ role: 'user', content: 'a b c d e f' }],
    });
    const arrivals = [];
    let text = '';
    for await (const chunk of stream) {
      assert.equal(chunk.usage ?? null, null, 'no usage chunk unless the client asked');
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) {
        arrivals.push(Date.now() - started);
        text += piece;
      }
    }
    assert.equal(text, 'mock reply to a b c d e f');
    assert.equal(mock.requests[0].body.stream_options.include_usage, true);
    // 9 word chunks, 40 ms apart upstream: the client must see them spread out, not in one burst.
    assert.equal(arrivals.length, 9);
    const spread = arrivals[arrivals.length - 1] - arrivals[0];
    assert.ok(spread >= 200, `chunks arrived within ${spread} ms: buffered?`);
    const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
    assert.ok(gaps.filter((g) => g >= 15).length >= 5, `gaps ${gaps}`);
  });

  test('stream with include_usage gives the client the usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock-model',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'x' }],
    });
    let usage = null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.equal(usage.prompt_tokens, 42);
  });

  test('no upstream usage: billed by local count, marked local', async () => {
    const res = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(key.key),
      body: chatBody('mock-nousage', { stream: true }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const row = await usageRow(res.headers.get('x-request-id'));
    assert.equal(row.usage_source, 'local');
    assert.equal(row.upstream_prompt_tokens, null);
    assert.equal(row.prompt_tokens, row.local_prompt_tokens);
    assert.ok(row.completion_tokens > 0);
    assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
  });
});

describe('errors are OpenAI-shaped with the right status', () => {
  const expectError = async (res, status, code) => {
    const body = await res.json();
    assert.equal(res.status, status, JSON.stringify(body));
    assert.equal(typeof body.error.message, 'string');
    assert.equal(typeof body.error.type, 'string');
    if (code) assert.equal(body.error.code, code);
    return body;
  };

  test('400 invalid JSON and missing fields', async () => {
    await expectError(await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: '{"model":' }), 400);
    const b = await expectError(
      await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: '{"model":"tollgate-echo"}' }),
      400,
    );
    assert.equal(b.error.param, 'messages');
  });

  test('401 missing, malformed and unknown keys', async () => {
    await expectError(await raw('/v1/chat/completions', { method: 'POST', body: chatBody('tollgate-echo') }), 401, 'invalid_api_key');
    await expectError(await raw('/v1/models', { headers: bearer('sk-not-ours') }), 401, 'invalid_api_key');
    const forged = key.key.slice(0, -4) + 'AAAA';
    await expectError(await raw('/v1/models', { headers: bearer(forged) }), 401, 'invalid_api_key');
  });

  test('404 unknown model and route', async () => {
    await expectError(
      await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: chatBody('no-such-model') }),
      404,
      'model_not_found',
    );
    await expectError(await raw('/v1/nope', { headers: bearer(key.key) }), 404);
  });

  test('413 oversized body', async () => {
    const big = chatBody('tollgate-echo', { padding: 'x'.repeat(100_000) });
    await expectError(await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: big }), 413);
  });

  test('502 upstream failure is not charged; a 504 after the request was sent is', async () => {
    const before = (await adminOk('GET', `/admin/tenants/${tenant.id}`)).balance;
    const r500 = await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: chatBody('mock-500') });
    await expectError(r500, 502);
    const failed = await usageRow(r500.headers.get('x-request-id'));
    assert.equal(failed.status, 'upstream_error');
    assert.equal(failed.cost, 0);
    const r504 = await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: chatBody('mock-hang') });
    await expectError(r504, 504, 'upstream_timeout');
    // The provider may have done the work: the reservation (prompt + max output) is charged.
    const timedOut = await usageRow(r504.headers.get('x-request-id'));
    assert.equal(timedOut.status, 'upstream_timeout');
    assert.equal(timedOut.cost, timedOut.reserved);
    assert.equal(timedOut.cost, costOf(timedOut.local_prompt_tokens, 1000));
    const afterBalance = (await adminOk('GET', `/admin/tenants/${tenant.id}`)).balance;
    assert.equal(afterBalance, before - timedOut.cost);
  });

  test('upstream 400 keeps the provider message and status', async () => {
    const res = await raw('/v1/chat/completions', { method: 'POST', headers: bearer(key.key), body: chatBody('mock-400') });
    const b = await expectError(res, 400);
    assert.match(b.error.message, /bad param from upstream/);
  });

  test('SDK sees a stream broken by the upstream as an error; delivered output is charged', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock-drop',
      stream: true,
      messages: [{ role: 'user', content: 'one two three four five' }],
    });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    });
    assert.ok(text.length > 0);
  });
});

describe('abnormal endings', () => {
  test("client disconnect mid-stream: the provider is read to its end, its usage charged, status client_abort", async () => {
    const controller = new AbortController();
    const res = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(key.key),
      body: chatBody('mock-model', { stream: true, messages: [{ role: 'user', content: 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10' }] }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const reader = res.body.getReader();
    let received = '';
    while (!received.includes('"content":" reply"')) {
      const { value, done } = await reader.read();
      if (done) break;
      received += Buffer.from(value).toString();
    }
    controller.abort();
    const row = await usageRow(requestId);
    assert.equal(row.status, 'client_abort');
    assert.equal(row.usage_source, 'upstream');
    // "mock reply to w1 … w10": 13 words, one completion token each in the mock's usage.
    assert.equal(row.prompt_tokens, 42);
    assert.equal(row.completion_tokens, 13);
    assert.equal(row.cost, costOf(42, 13));
  });
});

describe('quota and revocation', () => {
  test('402 when the balance cannot cover the worst case; the upstream never sees it', async () => {
    const poor = await newTenant(100, 'poor');
    mock.requests.length = 0;
    const res = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(poor.key.key),
      body: chatBody('mock-model', { max_tokens: 500 }),
    });
    const body = await res.json();
    assert.equal(res.status, 402);
    assert.equal(body.error.code, 'insufficient_quota');
    assert.equal(body.error.type, 'insufficient_quota');
    assert.equal(mock.requests.length, 0);
    const t = await adminOk('GET', `/admin/tenants/${poor.tenant.id}`);
    assert.equal(t.balance, 100);
  });

  test('balance decreases by exactly the sum of usage costs', async () => {
    const { tenant: t, key: k } = await newTenant(5_000_000, 'ledger');
    const c = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const ids = [];
    for (let i = 0; i < 4; i++) {
      const { response } = await c.chat.completions
        .create({ model: i % 2 ? 'mock-model' : 'tollgate-echo', messages: [{ role: 'user', content: `request ${i}` }] })
        .withResponse();
      ids.push(response.headers.get('x-request-id'));
    }
    const rows = await Promise.all(ids.map((id) => usageRow(id)));
    const spent = rows.reduce((s, r) => s + r.cost, 0);
    assert.ok(spent > 0);
    const now = await adminOk('GET', `/admin/tenants/${t.id}`);
    assert.equal(now.balance, 5_000_000 - spent);
    assert.equal(now.reserved, 0);
  });

  test('a revoked key is refused at once', async () => {
    const { key: k } = await newTenant(1_000_000, 'revokee');
    const c = new OpenAI({ apiKey: k.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await c.chat.completions.create({ model: 'tollgate-echo', messages: [{ role: 'user', content: 'warm the cache' }] });
    await adminOk('DELETE', `/admin/keys/${k.id}`);
    await assert.rejects(
      c.chat.completions.create({ model: 'tollgate-echo', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 401,
    );
    await assert.rejects(c.models.list(), (e) => e.status === 401);
  });

  test('sessions: client id kept, totals accumulated', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await raw('/v1/chat/completions', {
        method: 'POST',
        headers: { ...bearer(key.key), 'x-session-id': 'conv-e2e-1' },
        body: chatBody('tollgate-echo'),
      });
      assert.equal(res.headers.get('x-session-id'), 'conv-e2e-1');
      await usageRow(res.headers.get('x-request-id'));
    }
    const res = await raw('/v1/sessions/conv-e2e-1', { headers: bearer(key.key) });
    const s = await res.json();
    assert.equal(res.status, 200, JSON.stringify(s));
    assert.equal(s.request_count, 2);
    assert.equal(s.last_model, 'tollgate-echo');
    const bad = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: { ...bearer(key.key), 'x-session-id': 'bad id with spaces' },
      body: chatBody('tollgate-echo'),
    });
    assert.equal(bad.status, 400);
  });
});
