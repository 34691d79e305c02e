// End to end through every native adapter: the built worker under wrangler dev, mock upstreams speaking each
// provider's own protocol (mock-providers.mjs) on 127.0.0.1, and the official `openai` npm SDK as the client.
// Plain and streamed answers, tool calls both ways, usage in the response and in the usage rows, errors.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startGateway } from './harness.mjs';
import { OPENAI_USAGE, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', gemini: 'AIza-mock', azure: 'azure-mock-key', hf: 'hf_mock' };

let gw;
let mock;
let client;
let tenant;

// name → provider settings, upstream model, and what its failure looks like to the client
const PROVIDERS = {
  anthropic: {
    provider: () => ({ kind: 'anthropic', base_url: `${mock.url}/anthropic/v1`, api_key_secret: 'PROVIDER_ANTHROPIC_KEY' }),
    upstream: 'claude-sonnet-4-5',
    failure: { status: 502, message: /^The provider failed \(HTTP 529\)\.$/ },
    cap: (body) => body.max_tokens,
  },
  gemini: {
    provider: () => ({ kind: 'gemini', base_url: `${mock.url}/gemini/v1beta`, api_key_secret: 'PROVIDER_GEMINI_KEY' }),
    upstream: 'gemini-2.5-flash',
    failure: { status: 502, message: /^The provider failed \(HTTP 503\)\.$/ },
    cap: (body) => body.generationConfig?.maxOutputTokens,
  },
  ollama: {
    provider: () => ({ kind: 'ollama', base_url: `${mock.url}/ollama` }),
    upstream: 'llama3.2',
    failure: { status: 502, message: /^The provider does not know this model or route \(HTTP 404\)\.$/ },
    cap: (body) => body.options?.num_predict,
  },
  azure: {
    provider: () => ({ kind: 'azure', base_url: `${mock.url}/azure`, api_key_secret: 'PROVIDER_AZURE_KEY', config: { api_version: '2024-10-21' } }),
    upstream: 'gpt4o-deployment',
    failure: { status: 400, code: 'content_filter', message: /content management policy/ },
    // api_version 2024-10-21 knows max_completion_tokens (required by reasoning deployments).
    cap: (body) => (body.max_tokens === undefined ? body.max_completion_tokens : 'max_tokens sent'),
  },
  hf: {
    provider: () => ({ kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' }),
    upstream: 'tgi',
    failure: { status: 422, code: 'validation', message: /must have less than 4096 tokens/ },
    cap: (body) => (body.max_completion_tokens === undefined ? body.max_tokens : 'max_completion_tokens sent'),
    // TGI reports `eos_token`, which says nothing about tools: the gateway reports `stop`.
    toolFinish: 'stop',
  },
};

const adminOk = (...args) => gw.adminOk(...args);

const usageRow = (requestId) => gw.usageRow(requestId);

/** Every output cap an upstream body carries, whatever the provider's field. */
const capsOf = (body) =>
  [body.max_tokens, body.max_completion_tokens, body.generationConfig?.maxOutputTokens, body.options?.num_predict].filter(
    (v) => v !== undefined,
  );

function assertUsage(usage, [prompt, cached, completion, reasoning]) {
  assert.equal(usage.prompt_tokens, prompt);
  assert.equal(usage.completion_tokens, completion);
  assert.equal(usage.total_tokens, prompt + completion);
  assert.equal(usage.prompt_tokens_details?.cached_tokens ?? 0, cached);
  assert.equal(usage.completion_tokens_details?.reasoning_tokens ?? 0, reasoning);
}

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

/** Reads an SDK stream into text, tool calls, finish reason, usage and chunk count. */
async function collect(stream) {
  const out = { text: '', calls: [], finish: null, usage: null, chunks: 0, models: new Set() };
  for await (const chunk of stream) {
    out.chunks += 1;
    out.models.add(chunk.model);
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      out.text += c.delta?.content ?? '';
      for (const t of c.delta?.tool_calls ?? []) {
        out.calls[t.index] ??= { id: '', name: '', arguments: '' };
        if (t.id) out.calls[t.index].id = t.id;
        out.calls[t.index].name += t.function?.name ?? '';
        out.calls[t.index].arguments += t.function?.arguments ?? '';
      }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

before(async () => {
  mock = await startMockProviders({ keys: KEYS });
  gw = await startGateway({
    vars: {
      PROVIDER_ANTHROPIC_KEY: KEYS.anthropic,
      PROVIDER_GEMINI_KEY: KEYS.gemini,
      PROVIDER_AZURE_KEY: KEYS.azure,
      PROVIDER_HF_KEY: KEYS.hf,
      UPSTREAM_CONNECT_TIMEOUT_MS: '5000',
      ROUTE_FAILURE_THRESHOLD: '2',
      ROUTE_COOLDOWN_MS: '600000',
      AUTO_CHEAP_MODEL: 'ollama-model',
      AUTO_STRONG_MODEL: 'gemini-model',
      AUTO_LONG_PROMPT_TOKENS: '200',
    },
  });
  for (const [name, p] of Object.entries(PROVIDERS)) {
    await adminOk('PUT', `/admin/providers/${name}`, p.provider());
    await adminOk('PUT', `/admin/models/${name}-model`, {
      provider: name,
      upstream_model: p.upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 777,
    });
    await adminOk('PUT', `/admin/models/${name}-fail`, {
      provider: name,
      upstream_model: 'mock-fail',
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
    });
  }
  ({ client, tenant } = await gw.newTenant({ name: 'providers', credit: 100_000_000 }));
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

test('provider list shows kinds and config; presets fill in base URLs', async () => {
  const list = await adminOk('GET', '/admin/providers');
  const azure = list.data.find((p) => p.name === 'azure');
  assert.equal(azure.kind, 'azure');
  assert.deepEqual(azure.config, { api_version: '2024-10-21' });
  const ds = await adminOk('PUT', '/admin/providers/deepseek', { kind: 'deepseek', api_key_secret: 'PROVIDER_DEEPSEEK_API_KEY' });
  assert.equal(ds.kind, 'openai');
  assert.equal(ds.base_url, 'https://api.deepseek.com/v1');
  const bad = await gw.admin('PUT', '/admin/providers/x', { kind: 'nope', base_url: 'http://127.0.0.1:1' });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /anthropic/);
  await adminOk('DELETE', '/admin/providers/deepseek');
});

for (const [name, p] of Object.entries(PROVIDERS)) {
  const model = `${name}-model`;
  const expected = (words) => OPENAI_USAGE[name](words);

  describe(`${name} adapter`, () => {
    test('plain completion: content, finish, usage and the usage row', async () => {
      const before = mock.requests.length;
      const { data, response } = await client.chat.completions
        .create({
          model,
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'hello there' },
          ],
        })
        .withResponse();
      assert.equal(data.object, 'chat.completion');
      assert.equal(data.model, model, 'the public model name, not the upstream one');
      assert.equal(data.choices.length, 1);
      assert.equal(data.choices[0].message.role, 'assistant');
      assert.equal(data.choices[0].message.content, 'mock reply to hello there');
      assert.equal(data.choices[0].finish_reason, 'stop');
      assertUsage(data.usage, expected(5));
      const row = await usageRow(response.headers.get('x-request-id'));
      const [prompt, , completion] = expected(5);
      assert.equal(row.status, 'ok');
      assert.equal(row.usage_source, 'upstream');
      assert.equal(row.provider, name);
      assert.equal(row.upstream_model, p.upstream);
      assert.equal(row.prompt_tokens, prompt);
      assert.equal(row.completion_tokens, completion);
      assert.equal(row.cost, costOf(prompt, completion));
      assert.equal(response.headers.get('x-tollgate-cost'), String(row.cost));
      // The provider saw its own protocol.
      assert.equal(mock.requests.length, before + 1);
      const seen = mock.requests.at(-1);
      // No client cap: the cap the reservation covers (the model's max_output_tokens) is sent, in the
      // provider's own field, and no other cap.
      assert.equal(p.cap(seen.body), 777, JSON.stringify(seen.body));
      assert.deepEqual(capsOf(seen.body), [777]);
      if (name === 'anthropic') {
        assert.deepEqual(seen.body.system, [{ type: 'text', text: 'Be brief.' }]);
        assert.equal(seen.body.max_tokens, 777, "max_tokens defaults to the model's max_output_tokens");
        assert.equal(seen.headers['anthropic-version'], '2023-06-01');
        assert.equal(seen.headers.authorization, undefined);
      }
      if (name === 'gemini') {
        assert.deepEqual(seen.body.systemInstruction, { parts: [{ text: 'Be brief.' }] });
        assert.equal(seen.headers.authorization, undefined);
        assert.ok(seen.url.endsWith('/models/gemini-2.5-flash:generateContent'), seen.url);
      }
      if (name === 'ollama') {
        assert.equal(seen.body.stream, false);
        assert.equal(seen.body.messages[0].role, 'system');
      }
      if (name === 'azure') {
        assert.ok(seen.url.includes('/openai/deployments/gpt4o-deployment/chat/completions?api-version=2024-10-21'), seen.url);
        assert.equal(seen.headers.authorization, undefined);
      }
    });

    test('stream with include_usage: text, finish and usage chunk', async () => {
      const stream = await client.chat.completions.create({
        model,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'a b c d' }],
      });
      const out = await collect(stream);
      assert.equal(out.text, 'mock reply to a b c d');
      assert.deepEqual([...out.models], [model], 'every chunk names the public model');
      assert.equal(out.finish, 'stop');
      assert.ok(out.chunks >= 6, `one chunk per word: ${out.chunks}`);
      assertUsage(out.usage, expected(7));
    });

    test('stream without include_usage: no usage chunk, row still billed from provider usage', async () => {
      const { data: stream, response } = await client.chat.completions
        .create({ model, stream: true, messages: [{ role: 'user', content: 'x y' }] })
        .withResponse();
      const out = await collect(stream);
      assert.equal(out.text, 'mock reply to x y');
      assert.equal(out.usage, null);
      const row = await usageRow(response.headers.get('x-request-id'));
      const [prompt, , completion] = expected(5);
      assert.equal(row.status, 'ok');
      assert.equal(row.usage_source, 'upstream');
      assert.equal(row.prompt_tokens, prompt);
      assert.equal(row.completion_tokens, completion);
      assert.equal(row.stream, 1);
    });

    test('tool call, plain', async () => {
      const data = await client.chat.completions.create({
        model,
        tools: [WEATHER_TOOL],
        messages: [{ role: 'user', content: 'weather in Paris?' }],
      });
      const msg = data.choices[0].message;
      assert.equal(msg.tool_calls.length, 1);
      assert.equal(msg.tool_calls[0].type, 'function');
      assert.ok(msg.tool_calls[0].id, 'tool call id');
      assert.equal(msg.tool_calls[0].function.name, 'get_weather');
      assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { location: 'Paris' });
      assert.equal(data.choices[0].finish_reason, p.toolFinish ?? 'tool_calls');
      assertUsage(data.usage, expected(5));
    });

    test('tool call, streamed', async () => {
      const stream = await client.chat.completions.create({
        model,
        stream: true,
        stream_options: { include_usage: true },
        tools: [WEATHER_TOOL],
        messages: [{ role: 'user', content: 'weather in Paris?' }],
      });
      const out = await collect(stream);
      assert.equal(out.calls.length, 1);
      assert.ok(out.calls[0].id);
      assert.equal(out.calls[0].name, 'get_weather');
      assert.deepEqual(JSON.parse(out.calls[0].arguments), { location: 'Paris' });
      assert.equal(out.finish, p.toolFinish ?? 'tool_calls');
      assertUsage(out.usage, expected(5));
    });

    test('tool result goes back in the native shape', async () => {
      const data = await client.chat.completions.create({
        model,
        tools: [WEATHER_TOOL],
        messages: [
          { role: 'user', content: 'weather in Paris?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_abc', content: 'sunny' },
        ],
      });
      const text = data.choices[0].message.content;
      assert.match(text, /^mock reply to tool result .*sunny/);
      const seen = mock.requests.at(-1).body;
      if (name === 'anthropic') {
        assert.deepEqual(seen.messages[1].content[0], { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: { location: 'Paris' } });
        assert.equal(seen.messages[2].content[0].type, 'tool_result');
        assert.equal(seen.messages[2].content[0].tool_use_id, 'call_abc');
      }
      if (name === 'gemini') {
        assert.deepEqual(seen.contents[2].parts[0], { functionResponse: { name: 'get_weather', response: { output: 'sunny' } } });
      }
      if (name === 'ollama') {
        assert.deepEqual(seen.messages[1].tool_calls[0].function.arguments, { location: 'Paris' });
        assert.equal(seen.messages[2].tool_name, 'get_weather');
      }
    });

    test('two client caps: only the smaller reaches the provider; billable options refused; unknown fields dropped', async () => {
      const before = mock.requests.length;
      await client.chat.completions.create({
        model,
        max_completion_tokens: 5,
        max_tokens: 8000,
        x_unknown_option: { a: 1 },
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(mock.requests.length, before + 1);
      const seen = mock.requests.at(-1).body;
      assert.equal(p.cap(seen), 5, JSON.stringify(seen));
      assert.deepEqual(capsOf(seen), [5]);
      assert.equal(JSON.stringify(seen).includes('x_unknown_option'), false);
      for (const [param, value] of [['service_tier', 'priority'], ['store', true], ['modalities', ['text', 'audio']]]) {
        const err = await client.chat.completions
          .create({ model, [param]: value, messages: [{ role: 'user', content: 'hi' }] })
          .then(
            () => null,
            (e) => e,
          );
        assert.ok(err, `${param} must be refused`);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'unsupported_parameter');
        assert.equal(err.param, param);
        assert.equal(err.error.type, 'invalid_request_error');
      }
      assert.equal(mock.requests.length, before + 1, 'refused before any provider call');
    });

    test('provider failure: OpenAI-shaped error, generic unless the provider rejected the request, nothing charged', async () => {
      const err = await client.chat.completions
        .create({ model: `${name}-fail`, messages: [{ role: 'user', content: 'hi' }] })
        .withResponse()
        .then(
          () => null,
          (e) => e,
        );
      assert.ok(err, 'the request must fail');
      assert.equal(err.status, p.failure.status, err.message);
      assert.match(err.error.message, p.failure.message);
      if (p.failure.code) assert.equal(err.code, p.failure.code);
      const row = await usageRow(err.headers.get('x-request-id'));
      assert.equal(row.status, 'upstream_error');
      assert.equal(row.cost, 0);
    });
  });
}

describe('safety_identifier: the calling tenant, for OpenAI and Azure OpenAI only', () => {
  // docs/providers.md: "tg_" + the first 32 hex digits of SHA-256("tollgate/safety-identifier/v1" 0x00 tenant_id).
  const expected = (tenantId) =>
    `tg_${createHash('sha256').update(Buffer.concat([Buffer.from('tollgate/safety-identifier/v1'), Buffer.from([0]), Buffer.from(tenantId)])).digest('hex').slice(0, 32)}`;
  const lastBody = async (model, extra = {}) => {
    const before = mock.requests.length;
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });
    assert.equal(mock.requests.length, before + 1);
    return mock.requests.at(-1).body;
  };

  before(async () => {
    await adminOk('PUT', '/admin/providers/azure-anon', { ...PROVIDERS.azure.provider(), config: { api_version: '2024-10-21', safety_identifier: false } });
    await adminOk('PUT', '/admin/providers/compat-attr', {
      kind: 'openai', base_url: `${mock.url}/hf/v1`, api_key_secret: 'PROVIDER_HF_KEY', config: { safety_identifier: true },
    });
    await adminOk('PUT', '/admin/providers/compat-plain', {
      kind: 'openai', base_url: `${mock.url}/hf/v1`, api_key_secret: 'PROVIDER_HF_KEY', config: { allowed_params: ['safety_identifier'] },
    });
    for (const [model, provider, upstream] of [
      ['azure-anon-model', 'azure-anon', 'gpt4o-deployment'],
      ['compat-attr-model', 'compat-attr', 'org/served-model'],
      ['compat-plain-model', 'compat-plain', 'org/served-model'],
    ]) {
      await adminOk('PUT', `/admin/models/${model}`, { provider, upstream_model: upstream, input_price: PRICE_IN, output_price: PRICE_OUT, max_output_tokens: 50 });
    }
  });

  test("Azure OpenAI receives the tenant's identifier, never the client's", async () => {
    const ours = expected(tenant.id);
    assert.equal((await lastBody('azure-model')).safety_identifier, ours);
    // A client naming another tenant (or anyone) is overridden, streamed too.
    const other = expected('some-other-tenant');
    assert.equal((await lastBody('azure-model', { safety_identifier: other })).safety_identifier, ours);
    const before = mock.requests.length;
    const stream = await client.chat.completions.create({ model: 'azure-model', stream: true, safety_identifier: 'x', messages: [{ role: 'user', content: 'hi' }] });
    for await (const _ of stream);
    assert.equal(mock.requests.length, before + 1);
    assert.equal(mock.requests.at(-1).body.safety_identifier, ours);
  });

  test('turned off per provider; a compatible server gets it only when its config says so, and never the client\'s', async () => {
    assert.equal((await lastBody('azure-anon-model', { safety_identifier: 'mine' })).safety_identifier, undefined);
    assert.equal((await lastBody('compat-attr-model', { safety_identifier: 'mine' })).safety_identifier, expected(tenant.id));
    // allowed_params does not let the client's value through either.
    assert.equal((await lastBody('compat-plain-model', { safety_identifier: 'mine' })).safety_identifier, undefined);
  });
});

describe('OpenAI-compatible server of unknown kind (kind openai)', () => {
  before(async () => {
    // The mock's TGI endpoint speaks OpenAI chat completions.
    await adminOk('PUT', '/admin/providers/compat', {
      kind: 'openai',
      base_url: `${mock.url}/hf/v1`,
      api_key_secret: 'PROVIDER_HF_KEY',
      config: { allowed_params: ['top_k', 'service_tier'] },
    });
    await adminOk('PUT', '/admin/models/compat-model', {
      provider: 'compat',
      upstream_model: 'org/served-model',
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 321,
    });
  });

  test('both cap fields carry the reserved cap; operator-allowed options pass, others are dropped; public model name', async () => {
    const before = mock.requests.length;
    const { data, response } = await client.chat.completions
      .create({ model: 'compat-model', top_k: 4, service_tier: 'priority', min_p: 0.1, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    assert.equal(mock.requests.length, before + 1);
    const seen = mock.requests.at(-1).body;
    assert.equal(seen.max_tokens, 321);
    assert.equal(seen.max_completion_tokens, 321);
    assert.equal(seen.top_k, 4);
    assert.equal(seen.service_tier, 'priority');
    assert.equal(seen.min_p, undefined);
    assert.equal(seen.model, 'org/served-model');
    assert.equal(data.model, 'compat-model');
    assert.equal((await usageRow(response.headers.get('x-request-id'))).upstream_model, 'org/served-model');
  });
});

describe('routing: fallback routes and circuit breaker', () => {
  const hello = { messages: [{ role: 'user', content: 'hello' }] };

  before(async () => {
    for (const [model, provider] of [['routed', 'anthropic'], ['routed-4xx', 'azure']]) {
      await adminOk('PUT', `/admin/models/${model}`, {
        provider,
        upstream_model: 'mock-fail',
        input_price: PRICE_IN,
        output_price: PRICE_OUT,
      });
      await adminOk('PUT', `/admin/routes/${model}`, { routes: [{ provider: 'gemini', upstream_model: 'gemini-2.5-flash', weight: 2 }] });
    }
  });

  test('routes are listed with the primary first', async () => {
    const r = await adminOk('GET', '/admin/routes/routed');
    assert.deepEqual(r.primary, { provider: 'anthropic', upstream_model: 'mock-fail', priority: 0 });
    assert.deepEqual(r.routes, [{ provider: 'gemini', upstream_model: 'gemini-2.5-flash', priority: 1, weight: 2 }]);
    const bad = await gw.admin('PUT', '/admin/routes/routed', { routes: [{ provider: 'nope' }] });
    assert.equal(bad.status, 400);
  });

  test('a retryable failure falls back to the next route; the row names both', async () => {
    const before = mock.requests.length;
    const { data, response } = await client.chat.completions.create({ model: 'routed', ...hello }).withResponse();
    assert.equal(data.choices[0].message.content, 'mock reply to hello');
    const seen = mock.requests.slice(before).map((r) => r.url.split('/')[1]);
    assert.deepEqual(seen, ['anthropic', 'gemini']);
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'ok');
    assert.equal(row.provider, 'gemini');
    assert.equal(row.upstream_model, 'gemini-2.5-flash');
    assert.deepEqual(JSON.parse(row.routes_tried), ['anthropic/mock-fail']);
    const [prompt, , completion] = OPENAI_USAGE.gemini(4);
    assert.equal(row.cost, costOf(prompt, completion));
  });

  test('streams fall back too, before anything is sent', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'routed', stream: true, ...hello })
      .withResponse();
    const out = await collect(stream);
    assert.equal(out.text, 'mock reply to hello');
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.provider, 'gemini');
    assert.deepEqual(JSON.parse(row.routes_tried), ['anthropic/mock-fail']);
  });

  test('after repeated failures the breaker opens and the failing route is skipped', async () => {
    // Two failures so far (threshold 2): the route is open now.
    const before = mock.requests.length;
    const { response } = await client.chat.completions.create({ model: 'routed', ...hello }).withResponse();
    const seen = mock.requests.slice(before).map((r) => r.url.split('/')[1]);
    assert.deepEqual(seen, ['gemini']);
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.deepEqual(JSON.parse(row.routes_tried), ['anthropic/mock-fail (circuit open)']);
  });

  test('a 4xx (content-policy refusal) is never retried elsewhere', async () => {
    const before = mock.requests.length;
    const err = await client.chat.completions.create({ model: 'routed-4xx', ...hello }).then(
      () => null,
      (e) => e,
    );
    assert.equal(err?.status, 400);
    assert.equal(err.code, 'content_filter');
    const seen = mock.requests.slice(before).map((r) => r.url.split('/')[1]);
    assert.deepEqual(seen, ['azure']);
    const row = await usageRow(err.headers.get('x-request-id'));
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.routes_tried, null);
  });
});

describe('per-route timeouts', () => {
  const hello = { messages: [{ role: 'user', content: 'hello' }] };
  let hang;
  const sockets = new Set();

  before(async () => {
    // Accepts connections and never answers.
    hang = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    });
    await new Promise((r) => hang.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${hang.address().port}/v1`;
    await adminOk('PUT', '/admin/providers/stalled', {
      kind: 'openai',
      base_url: base,
      config: { connect_timeout_ms: 400, first_byte_timeout_ms: 400 },
    });
    for (const model of ['stalled-only', 'stalled-then-gemini']) {
      await adminOk('PUT', `/admin/models/${model}`, {
        provider: 'stalled',
        upstream_model: 'gpt-4o-mini',
        input_price: PRICE_IN,
        output_price: PRICE_OUT,
      });
    }
    await adminOk('PUT', '/admin/routes/stalled-then-gemini', {
      routes: [{ provider: 'gemini', upstream_model: 'gemini-2.5-flash' }],
    });
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => hang.close(r));
  });

  test("a route's own connect timeout answers 504 long before the gateway-wide one", async () => {
    // The gateway-wide timeout is 5 s here; a client that gives up after 3 s would see a
    // connection timeout, not the gateway's 504, if the route's 400 ms were not applied.
    const quick = new OpenAI({ apiKey: client.apiKey, baseURL: client.baseURL, maxRetries: 0, timeout: 3000 });
    await assert.rejects(quick.chat.completions.create({ model: 'stalled-only', ...hello }), (e) => {
      assert.equal(e.status, 504, String(e));
      assert.equal(e.code, 'upstream_timeout');
      assert.match(e.message, /within 400 ms/);
      return true;
    });
  });

  test('a route that timed out after the request was sent is not retried on the next one', async () => {
    // The provider may be doing the work: a second route would make the operator pay twice.
    const before = mock.requests.length;
    const err = await client.chat.completions.create({ model: 'stalled-then-gemini', ...hello }).then(
      () => null,
      (e) => e,
    );
    assert.equal(err?.status, 504);
    assert.equal(err.code, 'upstream_timeout');
    assert.equal(mock.requests.length, before, 'the gemini route was never called');
    const row = await usageRow(err.headers.get('x-request-id'));
    assert.equal(row.provider, 'stalled');
    assert.equal(row.status, 'upstream_timeout');
    assert.equal(row.routes_tried, null);
    assert.equal(row.cost, row.reserved);
  });
});

describe('no fallback once the client has received bytes', () => {
  let server;

  before(async () => {
    // An OpenAI-compatible upstream that streams two chunks, then breaks the connection.
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (content) =>
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
        res.write(chunk('partial'));
        res.write(chunk(' answer'));
        setTimeout(() => res.socket.destroy(), 50);
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    await adminOk('PUT', '/admin/providers/breaks', {
      kind: 'openai',
      base_url: `http://127.0.0.1:${server.address().port}/v1`,
    });
    await adminOk('PUT', '/admin/models/breaks-then-gemini', {
      provider: 'breaks',
      upstream_model: 'gpt-4o-mini',
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
    });
    await adminOk('PUT', '/admin/routes/breaks-then-gemini', {
      routes: [{ provider: 'gemini', upstream_model: 'gemini-2.5-flash' }],
    });
  });

  after(async () => {
    await new Promise((r) => server.close(r));
  });

  test('a stream that breaks after its first chunk is not retried on the next route', async () => {
    const before = mock.requests.length;
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'breaks-then-gemini', stream: true, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    });
    assert.equal(text, 'partial answer');
    assert.equal(mock.requests.length, before, 'the fallback route was never called');
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.provider, 'breaks');
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.routes_tried, null);
    assert.ok(row.cost > 0, 'delivered output is charged');
  });
});

describe('tollgate/auto: cheapest model unless the request needs the strong one', () => {
  const servedBy = async (params) => {
    const before = mock.requests.length;
    const { data, response } = await client.chat.completions.create({ model: 'tollgate/auto', ...params }).withResponse();
    const row = await usageRow(response.headers.get('x-request-id'));
    const seen = mock.requests.slice(before).map((r) => r.url.split('/')[1]);
    return { data, row, seen };
  };
  const ask = (content) => ({ messages: [{ role: 'user', content }] });

  test('plain request: the cheap model', async () => {
    const { data, row, seen } = await servedBy(ask('hi'));
    assert.equal(data.choices[0].message.content, 'mock reply to hi');
    assert.equal(row.model, 'ollama-model');
    assert.deepEqual(seen, ['ollama']);
  });

  test('tools, long prompts and reasoning effort: the strong model', async () => {
    assert.equal((await servedBy({ ...ask('weather?'), tools: [WEATHER_TOOL] })).row.model, 'gemini-model');
    assert.equal((await servedBy(ask('long '.repeat(200)))).row.model, 'gemini-model');
    assert.equal((await servedBy({ ...ask('think'), reasoning_effort: 'high' })).row.model, 'gemini-model');
  });

  test('an explicit hint wins and never reaches the provider', async () => {
    const { row } = await servedBy({ ...ask('weather?'), tools: [WEATHER_TOOL], tollgate_tier: 'cheap' });
    assert.equal(row.model, 'ollama-model');
    assert.equal((await servedBy({ ...ask('x'), tollgate_tier: 'strong' })).row.model, 'gemini-model');
    await client.chat.completions.create({ model: 'hf-model', ...ask('x'), tollgate_tier: 'strong' });
    assert.equal(mock.requests.at(-1).body.tollgate_tier, undefined);
  });
});
