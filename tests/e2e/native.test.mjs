// End to end for the native passthrough (docs/agents.md, "Native passthrough"): `POST /v1/messages`
// on an `anthropic` provider and `POST /v1/responses` on an `openai` provider with `responses_api`
// are forwarded to the provider's own API and its bytes relayed unchanged. Each test compares the
// bytes the client received with the bytes the mock upstream wrote (mock-providers.mjs records
// them), and checks the usage row and the balance against the provider's reported usage.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway } from './harness.mjs';
import { RESPONSES_REASONING_TOKENS, THINKING, USAGE, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', openai: 'sk-openai-mock', hf: 'hf_mock', azure: 'azure-mock' };

let gw;
let mock;
let client;
let anthropic;
let key;

const balance = async () => {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).balance;
};

/** The settled usage row of a request and the balance it took, once its reservation is gone. */
async function settled(requestId, before) {
  const row = await gw.usageRow(requestId);
  for (let i = 0; i < 100 && before - (await balance()) !== row.cost; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(before - (await balance()), row.cost, 'the balance went down by the row cost');
  return row;
}

/** The last request the mock received on `path`, and the bytes it answered. */
function upstreamOf(path) {
  const req = mock.requests.filter((r) => r.url.startsWith(path)).at(-1);
  assert.ok(req, `no upstream request on ${path}`);
  return { req, bytes: Buffer.concat(req.sent) };
}

async function post(path, body, headers = {}) {
  return fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

before(async () => {
  mock = await startMockProviders({ keys: KEYS, chunkDelayMs: 2 });
  gw = await startGateway({
    vars: { PROVIDER_ANTHROPIC_KEY: KEYS.anthropic, PROVIDER_OPENAI_KEY: KEYS.openai, PROVIDER_HF_KEY: KEYS.hf, PROVIDER_AZURE_KEY: KEYS.azure },
  });
  await gw.adminOk('PUT', '/admin/providers/anthropic', {
    kind: 'anthropic',
    base_url: `${mock.url}/anthropic/v1`,
    api_key_secret: 'PROVIDER_ANTHROPIC_KEY',
  });
  await gw.adminOk('PUT', '/admin/providers/openai', {
    kind: 'openai',
    base_url: `${mock.url}/openai/v1`,
    api_key_secret: 'PROVIDER_OPENAI_KEY',
    config: { responses_api: true },
  });
  await gw.adminOk('PUT', '/admin/providers/azure', {
    kind: 'azure',
    base_url: `${mock.url}/azure`,
    api_key_secret: 'PROVIDER_AZURE_KEY',
    config: { deployment: 'dep-1' },
  });
  await gw.adminOk('PUT', '/admin/providers/hf', { kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' });
  for (const [name, provider, upstream] of [
    ['claude', 'anthropic', 'claude-sonnet-4-5'],
    ['claude-fail', 'anthropic', 'mock-fail'],
    ['claude-split', 'anthropic', 'mock-split'],
    ['gpt', 'openai', 'gpt-5'],
    ['gpt-azure', 'azure', 'gpt-5'],
    ['gpt-fail-stream', 'openai', 'mock-fail-stream'],
    ['hf-model', 'hf', 'tgi'],
  ]) {
    await gw.adminOk('PUT', `/admin/models/${name}`, {
      provider,
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 777,
    });
  }
  // A failing native route with a translated fallback.
  await gw.adminOk('PUT', '/admin/routes/claude-fail', { routes: [{ provider: 'hf', upstream_model: 'tgi', priority: 2 }] });
  let issued;
  ({ client, key: issued } = await gw.newTenant({ name: 'native', credit: 100_000_000 }));
  key = issued.key;
  anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('POST /v1/messages on an anthropic provider (native)', () => {
  test('plain: the provider body unchanged; model, cap, headers and auth set; billed from its usage', async () => {
    const before = await balance();
    const res = await post(
      '/v1/messages?beta=true',
      { model: 'claude', max_tokens: 100, messages: [{ role: 'user', content: 'hello there' }], metadata: { user_id: 'u1' } },
      { 'anthropic-version': '2023-06-01', 'anthropic-beta': 'interleaved-thinking-2025-05-14' },
    );
    assert.equal(res.status, 200);
    const got = Buffer.from(await res.arrayBuffer());
    const { req, bytes } = upstreamOf('/anthropic/v1/messages');
    assert.equal(got.toString('utf8'), bytes.toString('utf8'));
    assert.ok(got.equals(bytes), 'byte for byte');
    assert.equal(req.body.model, 'claude-sonnet-4-5');
    assert.equal(req.body.max_tokens, 100);
    assert.deepEqual(req.body.metadata, { user_id: 'u1' });
    assert.equal(req.headers['x-api-key'], KEYS.anthropic);
    assert.equal(req.headers['anthropic-version'], '2023-06-01');
    assert.equal(req.headers['anthropic-beta'], 'interleaved-thinking-2025-05-14');
    assert.equal(req.headers.authorization, undefined, 'the client key is never forwarded');
    assert.ok(!JSON.stringify(req.headers).includes(key), 'the client key is never forwarded');
    const u = USAGE.anthropic(5);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.api, 'messages');
    assert.equal(row.status, 'ok');
    assert.equal(row.usage_source, 'upstream');
    assert.equal(row.prompt_tokens, u.input_tokens + u.cache_read_input_tokens);
    assert.equal(row.cached_prompt_tokens, u.cache_read_input_tokens);
    assert.equal(row.completion_tokens, 5);
    assert.equal(res.headers.get('x-tollgate-cost'), String(row.cost));
  });

  test('messages.stream with thinking and cache writes: bytes unchanged, signature kept, writes billed', async () => {
    const before = await balance();
    const stream = anthropic.messages.stream({
      model: 'claude',
      max_tokens: 2000,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral', ttl: '1h' } }],
      messages: [{ role: 'user', content: 'stream this please' }],
    });
    const final = await stream.finalMessage();
    const { response } = await stream.withResponse();
    const thinking = final.content.find((b) => b.type === 'thinking');
    assert.equal(thinking.signature, THINKING.signature);
    assert.equal(final.content.find((b) => b.type === 'text').text, 'mock reply to stream this please');
    assert.equal(final.model, 'claude-sonnet-4-5', 'a native answer names the upstream model');
    const { req } = upstreamOf('/anthropic/v1/messages');
    assert.deepEqual(req.body.system, [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral', ttl: '1h' } }]);
    const words = 6 + THINKING.tokens;
    const u = USAGE.anthropicCached(words);
    const row = await settled(response.headers.get('x-request-id'), before);
    assert.equal(row.status, 'ok');
    assert.equal(row.stream, 1);
    assert.equal(row.prompt_tokens, u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens);
    assert.equal(row.cached_prompt_tokens, u.cache_read_input_tokens);
    assert.equal(row.completion_tokens, words);
    // The cache writes are kept apart, for their own prices (docs/agents.md, "Billing").
    assert.equal(row.cache_write_5m_tokens, u.cache_creation.ephemeral_5m_input_tokens);
    assert.equal(row.cache_write_1h_tokens, u.cache_creation.ephemeral_1h_input_tokens);
  });

  test('a raw stream arrives byte for byte (ping, thinking, signature, message_stop)', async () => {
    const res = await post('/v1/messages', {
      model: 'claude',
      max_tokens: 2000,
      stream: true,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'relay me exactly' }],
    }, { 'anthropic-version': '2023-06-01' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const got = Buffer.from(await res.arrayBuffer());
    const { bytes } = upstreamOf('/anthropic/v1/messages');
    assert.ok(got.equals(bytes), `${got}\n!==\n${bytes}`);
    assert.match(got.toString(), /event: ping\n/);
    assert.match(got.toString(), /signature_delta/);
  });

  test('a stream arriving in 7-byte pieces is relayed byte for byte and billed from its usage', async () => {
    const before = await balance();
    const res = await post('/v1/messages', {
      model: 'claude-split',
      max_tokens: 2000,
      stream: true,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'split me — ünïcödé 🌦 please' }],
    }, { 'anthropic-version': '2023-06-01' });
    const got = Buffer.from(await res.arrayBuffer());
    const { bytes } = upstreamOf('/anthropic/v1/messages');
    assert.ok(got.equals(bytes), `${got}\n!==\n${bytes}`);
    const words = 'mock reply to split me — ünïcödé 🌦 please'.split(' ').length + THINKING.tokens;
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.status, 'ok');
    assert.equal(row.completion_tokens, words);
    assert.equal(row.cost, costOf(40, words));
  });

  test('a guard cut: output past the client cap ends with max_tokens and message_stop, billed truncated', async () => {
    const before = await balance();
    const res = await post('/v1/messages', {
      model: 'claude',
      max_tokens: 12,
      stream: true,
      messages: [{ role: 'user', content: 'one two three four five six seven' }],
    }, { 'anthropic-version': '2023-06-01' });
    const got = (await res.text());
    const { bytes } = upstreamOf('/anthropic/v1/messages');
    const events = got.split('\n\n').filter(Boolean);
    const tail = events.slice(-3).map((e) => JSON.parse(e.split('\ndata: ')[1]));
    assert.deepEqual(tail.map((e) => e.type), ['content_block_stop', 'message_delta', 'message_stop']);
    assert.equal(tail[1].delta.stop_reason, 'max_tokens');
    // Everything before the gateway's ending is the provider's, unchanged, cut between events.
    const provided = events.slice(0, -3).map((e) => `${e}\n\n`).join('');
    assert.ok(bytes.toString().startsWith(provided));
    const text = events
      .map((e) => JSON.parse(e.split('\ndata: ')[1]))
      .filter((e) => e.delta?.type === 'text_delta')
      .map((e) => e.delta.text)
      .join('');
    assert.equal(text, 'mock reply', 'cut before the token past the cap');
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.status, 'truncated');
    assert.equal(row.prompt_tokens, 40, "the provider's prompt count");
    assert.equal(row.completion_tokens, Math.ceil('mock reply'.length / 4), 'the delivered output, counted locally');
    assert.equal(row.cost, costOf(40, row.completion_tokens));
  });

  test('a guard cut on a stream split mid-event: the client never sees half an event', async () => {
    const res = await post('/v1/messages', {
      model: 'claude-split',
      max_tokens: 12,
      stream: true,
      messages: [{ role: 'user', content: 'one two three four five six seven' }],
    }, { 'anthropic-version': '2023-06-01' });
    const got = await res.text();
    const { bytes } = upstreamOf('/anthropic/v1/messages');
    const events = got.split('\n\n').filter(Boolean);
    // Every event parses: none was cut in half before the gateway's ending.
    const parsed = events.map((e) => JSON.parse(e.split('\ndata: ')[1]));
    assert.deepEqual(parsed.slice(-3).map((e) => e.type), ['content_block_stop', 'message_delta', 'message_stop']);
    const provided = events.slice(0, -3).map((e) => `${e}\n\n`).join('');
    assert.ok(bytes.toString().startsWith(provided));
    const text = parsed.filter((e) => e.delta?.type === 'text_delta').map((e) => e.delta.text).join('');
    assert.equal(text, 'mock reply');
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.equal(row.status, 'truncated');
  });

  test('a client abort mid-stream: the drain reads the provider to its usage, billed client_abort', async () => {
    const before = await balance();
    const res = await post(
      '/v1/messages',
      { model: 'claude', max_tokens: 8000, stream: true, messages: [{ role: 'user', content: 'word '.repeat(400).trim() }] },
      { 'anthropic-version': '2023-06-01' },
    );
    const id = res.headers.get('x-request-id');
    const reader = res.body.getReader();
    await reader.read();
    await reader.cancel();
    const row = await settled(id, before);
    assert.equal(row.status, 'client_abort');
    assert.equal(row.usage_source, 'upstream');
    assert.equal(row.completion_tokens, 403, "the provider's final output count");
    assert.equal(row.cost, costOf(40, 403));
  });

  test('an upstream 529 overloaded is an Anthropic-shaped error, not charged (fallback off: one route)', async () => {
    await gw.adminOk('PUT', '/admin/routes/claude-fail', { routes: [] });
    const before = await balance();
    const res = await post('/v1/messages', { model: 'claude-fail', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    assert.match(body.error.message, /HTTP 529/);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.cost, 0);
  });

  test('a failing native route falls back to a translated one before the first byte', async () => {
    await gw.adminOk('PUT', '/admin/routes/claude-fail', { routes: [{ provider: 'hf', upstream_model: 'tgi', priority: 2 }] });
    const data = await anthropic.messages.create({ model: 'claude-fail', max_tokens: 50, messages: [{ role: 'user', content: 'fall back' }] });
    assert.equal(data.content[0].text, 'mock reply to fall back');
    assert.equal(data.model, 'claude-fail', 'the translated answer names the public model');
  });

  test('count_tokens asks the provider on an anthropic route, counts locally elsewhere', async () => {
    const before = await balance();
    const res = await post('/v1/messages/count_tokens', { model: 'claude', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { input_tokens: 40 });
    assert.equal(res.headers.get('x-tollgate-count-source'), 'upstream');
    const { req } = upstreamOf('/anthropic/v1/messages/count_tokens');
    assert.equal(req.body.model, 'claude-sonnet-4-5');
    assert.equal(req.body.max_tokens, undefined);
    const local = await anthropic.messages.countTokens({ model: 'hf-model', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    assert.equal(local.response.headers.get('x-tollgate-count-source'), 'local');
    assert.ok(local.data.input_tokens > 0);
    assert.equal(await balance(), before);
  });
});

describe('POST /v1/responses on an openai provider with responses_api (native)', () => {
  test('plain: the provider body unchanged, store false, billed with reasoning and cached tokens', async () => {
    const before = await balance();
    const res = await post('/v1/responses', { model: 'gpt', input: 'hello there', reasoning: { effort: 'low' } });
    assert.equal(res.status, 200);
    const got = Buffer.from(await res.arrayBuffer());
    const { req, bytes } = upstreamOf('/openai/v1/responses');
    assert.ok(got.equals(bytes), 'byte for byte');
    assert.equal(req.body.model, 'gpt-5');
    assert.equal(req.body.store, false);
    assert.equal(req.body.max_output_tokens, 777);
    assert.equal(req.headers.authorization, `Bearer ${KEYS.openai}`);
    const u = USAGE.responses(5, RESPONSES_REASONING_TOKENS);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.api, 'responses');
    assert.equal(row.prompt_tokens, u.input_tokens);
    assert.equal(row.cached_prompt_tokens, u.input_tokens_details.cached_tokens);
    assert.equal(row.completion_tokens, u.output_tokens);
    assert.equal(row.reasoning_tokens, RESPONSES_REASONING_TOKENS);
  });

  test('openai SDK responses.create stream: the event sequence unchanged, byte for byte', async () => {
    const before = await balance();
    const { data: stream, response } = await client.responses
      .create({ model: 'gpt', input: 'stream this please', stream: true })
      .withResponse();
    let text = '';
    let completed;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.equal(text, 'mock reply to stream this please');
    assert.equal(completed.model, 'gpt-mock-2025-01-01');
    const row = await settled(response.headers.get('x-request-id'), before);
    assert.equal(row.status, 'ok');
    assert.equal(row.completion_tokens, USAGE.responses(6).output_tokens);

    const raw = await post('/v1/responses', { model: 'gpt', input: 'relay me exactly', stream: true });
    const got = Buffer.from(await raw.arrayBuffer());
    const { bytes } = upstreamOf('/openai/v1/responses');
    assert.ok(got.equals(bytes), `${got}\n!==\n${bytes}`);
  });

  test('a guard cut ends with response.incomplete (max_output_tokens), billed truncated', async () => {
    const before = await balance();
    // gpt-5 counts with o200k: the cap is in tokens.
    const res = await post('/v1/responses', { model: 'gpt', input: 'one two three four five six', stream: true, max_output_tokens: 2 });
    const events = (await res.text()).split('\n\n').filter(Boolean).map((e) => JSON.parse(e.split('\ndata: ')[1]));
    const last = events.at(-1);
    assert.equal(last.type, 'response.incomplete');
    assert.equal(last.response.incomplete_details.reason, 'max_output_tokens');
    assert.equal(last.response.id, 'resp_mock01');
    const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    const full = 'mock reply to one two three four five six';
    assert.ok(text.length > 0 && text.length < full.length && full.startsWith(text), text);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.status, 'truncated');
    assert.ok(row.completion_tokens <= 2, `${row.completion_tokens}`);
    assert.equal(last.response.usage.output_tokens, row.completion_tokens);
  });

  test('azure: the v1 path, the deployment as model, api-key; the stream byte for byte', async () => {
    const before = await balance();
    const res = await post('/v1/responses', { model: 'gpt-azure', input: 'hello azure', stream: true });
    assert.equal(res.status, 200);
    const got = Buffer.from(await res.arrayBuffer());
    const { req, bytes } = upstreamOf('/azure/openai/v1/responses');
    assert.ok(got.equals(bytes), `${got}\n!==\n${bytes}`);
    assert.equal(req.body.model, 'dep-1');
    assert.equal(req.headers['api-key'], KEYS.azure);
    assert.equal(req.headers.authorization, undefined);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.api, 'responses');
    assert.equal(row.completion_tokens, USAGE.responses(5).output_tokens);
  });

  test('response.failed after output: relayed unchanged, billed prompt and delivered output (upstream_error)', async () => {
    const before = await balance();
    const res = await post('/v1/responses', { model: 'gpt-fail-stream', input: 'fail late', stream: true });
    const got = Buffer.from(await res.arrayBuffer());
    const { bytes } = upstreamOf('/openai/v1/responses');
    assert.ok(got.equals(bytes), 'the failure event is the provider\'s, unchanged');
    assert.match(got.toString(), /event: response\.failed\n/);
    const row = await settled(res.headers.get('x-request-id'), before);
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.usage_source, 'local');
    assert.ok(row.completion_tokens > 0 && row.cost > 0, JSON.stringify(row));
  });

  test('Idempotency-Key: a retry replays the same bytes, one call and one charge', async () => {
    const before = await balance();
    const n = mock.requests.length;
    const headers = { 'idempotency-key': `native-${Date.now()}` };
    const first = await post('/v1/responses', { model: 'gpt', input: 'only once' }, headers);
    const firstBytes = Buffer.from(await first.arrayBuffer());
    const row = await settled(first.headers.get('x-request-id'), before);
    const again = await post('/v1/responses', { model: 'gpt', input: 'only once' }, headers);
    assert.equal(again.status, 200);
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(firstBytes));
    assert.equal(mock.requests.length, n + 1, 'the provider was called once');
    assert.equal(before - (await balance()), row.cost);
  });

  test('a hosted tool or a billable option is refused before anything is sent', async () => {
    const n = mock.requests.length;
    const res = await post('/v1/responses', { model: 'gpt', input: 'x', service_tier: 'priority' });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.param, 'service_tier');
    assert.equal(mock.requests.length, n);
  });
});
