// End to end: plugins. The built worker under wrangler dev, mock plugin servers and a mock model
// that emits tool calls, all on 127.0.0.1; the official `openai` npm SDK as the client.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, startGatewayEarly, startMockOpenAI, stopEarly } from './harness.mjs';
import { startPluginServer, toolModel } from './plugin-mocks.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const WEATHER_PRICE = 1_000; // micro-units per successful call
const SETTINGS_SECRET = 'wx-tenant-secret-123';
const CHUNK_DELAY_MS = 30; // between the mock model's stream chunks

let gw;
let mock;
let plugins;
let tenant;
let key;
let client;

const adminOk = (...args) => gw.adminOk(...args);

async function waitFor(fn, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const usageRows = (requestId) =>
  gw.d1("SELECT * FROM usage WHERE request_id = ? OR request_id LIKE ? ORDER BY created_at, request_id", requestId, `${requestId}.r%`);
// A call's row is charged with it in the tenant's wallet, which exports it to D1 `plugin_calls`
// shortly after (docs/plugins.md "Prices"): wait for that export, then read D1.
const callRows = async (requestId) => {
  await gw.exported(tenant.id);
  return gw.d1('SELECT * FROM plugin_calls WHERE request_id = ? ORDER BY id', requestId);
};
// The balance where it is authoritative (the wallet once it took the tenant, else D1).
const balance = async () => (await gw.adminOk('GET', `/admin/tenants/${tenant.id}/billing`)).balance;

function manifest(id, path, extra = {}, params = null) {
  return {
    identifier: id,
    title: `${id} plugin`,
    description: `The ${id} test plugin`,
    endpoint: { url: `${plugins.url}/${path}` },
    apis: [
      {
        name: 'run',
        description: `Runs ${id}`,
        parameters: params ?? { type: 'object', properties: { text: { type: 'string' } } },
      },
    ],
    ...extra,
  };
}

const WEATHER = () => ({
  identifier: 'weather',
  title: 'Weather',
  description: 'Weather forecasts by city',
  version: '1.0.0',
  endpoint: { url: `${plugins.url}/weather` },
  settings: { type: 'object', properties: { api_key: { type: 'string', minLength: 8 } }, required: ['api_key'] },
  apis: [
    {
      name: 'get_forecast',
      description: 'The forecast for a city',
      parameters: {
        type: 'object',
        properties: {
          city: { type: 'string', minLength: 1, maxLength: 40, pattern: '^[^/\\\\\\r\\n]+$' },
          days: { type: 'integer', minimum: 1, maximum: 7 },
        },
        required: ['city'],
        additionalProperties: false,
      },
    },
  ],
});

const chat = (body, k = key.key, signal = undefined) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
const toolMsg = (specs) => [{ role: 'user', content: `TOOL ${JSON.stringify(specs)}` }];

/** The gateway of the last suite (stale-reservation sweep of 4 s), a promise from the first `before`. */
let deadlineGateway;

before(async () => {
  // The last suite's gateway starts now, beside this one.
  deadlineGateway = startGatewayEarly({
    vars: {
      PROVIDER_MOCK_KEY: 'sk-mock-provider-secret',
      PLUGINS_ALLOW_LOCAL_HTTP: 'true',
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
      STALE_RESERVATION_SECONDS: '4',
      CLIENT_ABORT_DRAIN_MS: '500',
    },
  });
  plugins = await startPluginServer({ slowMs: 5000 });
  mock = await startMockOpenAI({ chunkDelayMs: 5 });
  mock.setBehavior(toolModel({ delayMs: CHUNK_DELAY_MS }));
  gw = await startGateway({
    vars: {
      PROVIDER_MOCK_KEY: 'sk-mock-provider-secret',
      PLUGINS_ALLOW_LOCAL_HTTP: 'true',
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
      PLUGIN_MAX_ROUNDS: '3',
    },
  });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await adminOk('PUT', '/admin/models/tool-model', {
    provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: PRICE_IN, output_price: PRICE_OUT, max_output_tokens: 500,
  });
  ({ tenant, key, client } = await gw.newTenant({ name: 'plugins', credit: 100_000_000 }));
});

after(async () => {
  await gw?.kill();
  await stopEarly();
  await mock?.close();
  await plugins?.close();
});

describe('registration', () => {
  test('invalid manifests are refused with the field and the reason', async () => {
    const cases = [
      [(m) => (m.apis[0].parameters.properties.city.type = 'text'), 'manifest.apis[0].parameters.properties.city.type', /must be one of/],
      [(m) => (m.apis[0].parameters.oneOf = []), 'manifest.apis[0].parameters.oneOf', /not supported/],
      [(m) => (m.endpoint = { url: 'ftp://example.com/x' }), 'manifest.endpoint.url', /https/],
      [(m) => (m.endpoint = { url: 'https://evil.example/x' }) && (m.allowed_hosts = ['good.example']), 'manifest.endpoint.url', /allowed_hosts/],
      [(m) => (m.timeout_ms = 999_999), 'manifest.timeout_ms', /100 to 30000/],
      [(m) => delete m.apis, 'manifest.apis', /required/],
      [(m) => (m.identifier = 'other'), 'manifest.identifier', /URL names/],
    ];
    for (const [edit, param, message] of cases) {
      const m = WEATHER();
      edit(m);
      const res = await gw.admin('PUT', '/admin/plugins/weather', { manifest: m });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error.param, param, res.text);
      assert.match(res.json.error.message, message);
    }
    assert.equal((await gw.admin('GET', '/admin/plugins/weather')).status, 404);
  });

  test('register, update, list, enable with sealed settings, remove', async () => {
    const created = await adminOk('PUT', '/admin/plugins/weather', { manifest: WEATHER(), price_per_call: WEATHER_PRICE }, 201);
    assert.equal(created.manifest.timeout_ms, 10_000);
    assert.deepEqual(created.manifest.allowed_hosts, ['127.0.0.1']);
    await adminOk('PUT', '/admin/plugins/weather', { manifest: WEATHER(), price_per_call: WEATHER_PRICE }, 200);
    for (const [id, path, extra] of [
      ['notes', 'notes', {}],
      ['slow', 'slow', { timeout_ms: 700 }],
      ['huge', 'huge', { max_response_bytes: 4096 }],
      ['badjson', 'badjson', {}],
      ['redirect', 'redirect', {}],
      ['spare', 'notes', {}],
    ]) {
      await adminOk('PUT', `/admin/plugins/${id}`, { manifest: manifest(id, path, extra) }, 201);
    }
    const list = await adminOk('GET', '/admin/plugins');
    assert.deepEqual(list.data.map((p) => p.id), ['badjson', 'huge', 'notes', 'redirect', 'slow', 'spare', 'weather']);

    // Settings are validated against the manifest's settings schema.
    const bad = await gw.admin('PUT', `/admin/tenants/${tenant.id}/plugins/weather`, { settings: { api_key: 'short' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'settings.api_key');
    const enabled = await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/weather`, { settings: { api_key: SETTINGS_SECRET } });
    assert.equal(enabled.has_settings, true);
    assert.equal(enabled.default, false);
    for (const id of ['notes', 'slow', 'huge', 'badjson', 'redirect', 'spare']) {
      await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/${id}`, {});
    }
    const listing = await gw.admin('GET', `/admin/tenants/${tenant.id}/plugins`);
    assert.equal(listing.json.data.length, 7);
    // The secret is never returned, and is stored sealed.
    for (const res of [listing, await gw.admin('GET', '/admin/plugins/weather'), await gw.admin('GET', '/admin/plugins')]) {
      assert.ok(!res.text.includes(SETTINGS_SECRET));
    }
    const stored = gw.d1('SELECT settings FROM tenant_plugins WHERE plugin_id = ?', 'weather')[0].settings;
    assert.match(stored, /^v2:[0-9a-f]{8}:[0-9a-f]+$/); // HKDF key, key id (core::plugins::sealed)
    assert.ok(!stored.includes(Buffer.from(SETTINGS_SECRET).toString('hex')));

    await adminOk('DELETE', '/admin/plugins/spare');
    assert.equal((await gw.admin('GET', '/admin/plugins/spare')).status, 404);
    assert.equal(gw.d1("SELECT COUNT(*) AS n FROM tenant_plugins WHERE plugin_id = 'spare'")[0].n, 0);
  });
});

describe('tool mode', () => {
  test('a full round trip, every round streamed live through the openai SDK, every round metered', async () => {
    const before = (await balance());
    const seen = mock.requests.length;
    const started = Date.now();
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'tool-model',
        stream: true,
        stream_options: { include_usage: true },
        plugins: ['weather'],
        messages: [{
          role: 'user',
          content: `TOOL ${JSON.stringify({
            say: 'Let me look that up for you. ',
            calls: [{ name: 'weather__get_forecast', arguments: { city: '北京', days: 2 } }],
          })}`,
        }],
      })
      .withResponse();
    let text = '';
    let usage = null;
    const arrivals = []; // [ms since start, piece]
    const ids = new Set();
    const finishes = [];
    let usageChunks = 0;
    let toolCallDeltas = 0;
    for await (const chunk of stream) {
      ids.add(chunk.id);
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) {
        arrivals.push([Date.now(), piece]);
        text += piece;
      }
      if (chunk.choices[0]?.delta?.tool_calls) toolCallDeltas += 1;
      if (chunk.choices[0]?.finish_reason) finishes.push(chunk.choices[0].finish_reason);
      if (chunk.usage) {
        usage = chunk.usage;
        usageChunks += 1;
      }
    }
    // One completion: one id, round 1's words then round 2's answer, one finish, one usage chunk.
    assert.equal(ids.size, 1, [...ids].join());
    assert.match(text, /^Let me look that up for you\. Result: ### 北京/);
    assert.match(text, /\| tomorrow \| sunny \| 25 \|/);
    assert.match(text, /\(2 day forecast\)/);
    assert.deepEqual(finishes, ['stop']);
    assert.equal(usageChunks, 1);
    assert.equal(toolCallDeltas, 0, 'the plugin call is not shown to the client');
    // Live: round 1's words reached the client before the plugin was even called, and every
    // round's words came spread out as the model wrote them (30 ms apart upstream).
    const call = plugins.calls.at(-1);
    const round1 = arrivals.slice(0, arrivals.findIndex(([, p]) => p.startsWith('Result')));
    assert.equal(round1.length, 7, `round 1 pieces: ${JSON.stringify(arrivals)}`);
    assert.ok(round1[0][0] < call.at, 'round 1 text arrived only after the plugin call: buffered?');
    const times = arrivals.map(([t]) => t - started);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    assert.ok(gaps.filter((g) => g >= 10).length >= 8, `gaps ${gaps}`);
    const requestId = response.headers.get('x-request-id');
    const sessionId = response.headers.get('x-session-id');

    // Every round was requested as a stream; the model saw the plugin as a tool, never the
    // `plugins` field; then its own words and call, and the tool result.
    const upstream = mock.requests.slice(seen);
    assert.equal(upstream.length, 2);
    assert.equal(upstream[0].body.plugins, undefined);
    assert.ok(upstream[0].body.tools.some((t) => t.function.name === 'weather__get_forecast'));
    assert.ok(upstream.every((u) => u.body.stream === true && u.body.stream_options.include_usage === true));
    const [assistant, toolMessage] = upstream[1].body.messages.slice(-2);
    assert.equal(assistant.role, 'assistant');
    assert.equal(assistant.content, 'Let me look that up for you. ');
    assert.deepEqual(assistant.tool_calls, [
      { id: 'call_0_0', type: 'function', function: { name: 'weather__get_forecast', arguments: '{"city":"北京","days":2}' } },
    ]);
    assert.equal(toolMessage.role, 'tool');
    assert.equal(toolMessage.tool_call_id, 'call_0_0');
    assert.match(toolMessage.content, /### 北京/);

    // The plugin got only its arguments and its own settings.
    assert.equal(call.path, '/weather');
    assert.deepEqual(call.body, { api: 'get_forecast', arguments: { city: '北京', days: 2 }, settings: { api_key: SETTINGS_SECRET } });
    assert.equal(call.headers.authorization, undefined);
    assert.ok(!call.raw.includes(key.key) && !call.raw.includes('sk-mock-provider-secret'));
    assert.ok(!JSON.stringify(call.headers).includes(key.key));

    // One usage row per round, linked by id and session; one plugin call row.
    const rows = await waitFor(() => {
      const r = usageRows(requestId);
      return r.length === 2 ? r : null;
    }, 'two usage rows');
    assert.deepEqual(rows.map((r) => r.request_id).sort(), [requestId, `${requestId}.r1`]);
    for (const r of rows) {
      assert.equal(r.status, 'ok');
      assert.equal(r.stream, 1);
      assert.equal(r.usage_source, 'upstream');
      assert.equal(r.session_id, sessionId);
      assert.equal(r.prompt_tokens, 50);
      assert.equal(r.completion_tokens, 7);
      assert.equal(r.cost, Math.ceil((50 * PRICE_IN + 7 * PRICE_OUT) / 1e6));
    }
    assert.deepEqual(usage, { prompt_tokens: 100, completion_tokens: 14, total_tokens: 114 });
    const calls = await callRows(requestId);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].plugin_id, 'weather');
    assert.equal(calls[0].api, 'get_forecast');
    assert.equal(calls[0].status, 'ok');
    assert.equal(calls[0].http_status, 200);
    assert.equal(calls[0].cost, WEATHER_PRICE);
    const spent = rows.reduce((s, r) => s + r.cost, 0) + WEATHER_PRICE;
    await waitFor(async () => before - (await balance()) === spent, `balance to drop by ${spent}`);
    assert.equal(await gw.openReservations(), 0);
    const session = gw.d1('SELECT request_count FROM sessions WHERE id = ?', sessionId)[0];
    assert.equal(session.request_count, 2);
    const usageByPlugin = await adminOk('GET', '/admin/plugins/weather/usage');
    assert.equal(usageByPlugin.data.find((r) => r.tenant_id === tenant.id).ok >= 1, true);
  });

  test('plain (non-streamed) round trip; tenant defaults apply when the request names none', async () => {
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/weather`, { default: true });
    const res = await chat({ model: 'tool-model', messages: toolMsg([{ name: 'weather__get_forecast', arguments: { city: 'Paris' } }]) });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.choices[0].message.content, /^Result: ### Paris/);
    assert.equal(body.usage.prompt_tokens, 100);
    assert.ok(Number(res.headers.get('x-tollgate-cost')) >= WEATHER_PRICE);
    // `plugins: []` turns the defaults off: the model gets no plugin tool.
    const off = await chat({ model: 'tool-model', plugins: [], messages: toolMsg([{ name: 'weather__get_forecast', arguments: { city: 'Paris' } }]) });
    assert.equal((await off.json()).choices[0].message.content, 'No tool was offered.');
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/weather`, { default: false });
  });

  test('invalid arguments, timeouts, oversized and malformed answers, redirects become tool errors', async () => {
    const started = plugins.calls.length;
    const res = await chat({
      model: 'tool-model',
      plugins: ['weather', 'slow', 'huge', 'badjson', 'redirect'],
      messages: toolMsg([
        { name: 'weather__get_forecast', arguments: { city: 'Rome', days: 99 } },
        { name: 'weather__get_forecast', arguments: '{"city": "Rome",' },
        { name: 'slow__run', arguments: { text: 'x' } },
        { name: 'huge__run', arguments: { text: 'x' } },
        { name: 'badjson__run', arguments: { text: 'x' } },
        { name: 'redirect__run', arguments: { text: 'x' } },
      ]),
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    const results = body.choices[0].message.content.replace(/^Result: /, '').split(' | ').map((s) => JSON.parse(s).error);
    assert.deepEqual(results.map((e) => e.code), [
      'invalid_arguments', 'invalid_arguments', 'timeout', 'response_too_large', 'malformed_response', 'redirect_refused',
    ]);
    assert.match(results[0].message, /arguments\.days: 99 is greater than the maximum 7/);
    assert.match(results[1].message, /not valid JSON/);
    assert.match(results[2].message, /700 ms/);
    // Invalid arguments never reach the plugin.
    const reached = plugins.calls.slice(started).map((c) => c.path);
    assert.deepEqual(reached.sort(), ['/badjson', '/huge', '/redirect', '/slow']);
    const requestId = res.headers.get('x-request-id');
    const calls = await callRows(requestId);
    assert.deepEqual(calls.map((c) => c.status), results.map((e) => e.code));
    assert.ok(calls.every((c) => c.cost === 0));
  });

  test('injection attempts: refused by the schema, or delivered only as JSON data', async () => {
    const started = plugins.calls.length;
    const evil = '../../admin\r\nX-Injected: 1';
    const res = await chat({
      model: 'tool-model',
      plugins: ['weather', 'notes'],
      messages: toolMsg([
        { name: 'weather__get_forecast', arguments: { city: evil } },
        { name: 'notes__run', arguments: { text: evil } },
      ]),
    });
    const body = await res.json();
    const [weather, notes] = body.choices[0].message.content.replace(/^Result: /, '').split(' | ');
    assert.equal(JSON.parse(weather).error.code, 'invalid_arguments');
    assert.match(JSON.parse(weather).error.message, /pattern/);
    assert.match(notes, /^received /);
    const reached = plugins.calls.slice(started);
    assert.equal(reached.length, 1);
    assert.equal(reached[0].path, '/notes');
    assert.equal(reached[0].headers['x-injected'], undefined);
    assert.equal(reached[0].body.arguments.text, evil);
    assert.deepEqual(Object.keys(reached[0].body).sort(), ['api', 'arguments', 'settings']);
  });

  test('the loop is bounded; the last round is streamed without plugin tools', async () => {
    const seen = mock.requests.length;
    const stream = await client.chat.completions.create({
      model: 'tool-model',
      stream: true,
      plugins: ['notes'],
      messages: [{ role: 'user', content: `LOOP ${JSON.stringify({ name: 'notes__run', arguments: { text: 'again' } })}` }],
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(text, 'Gave up after 2 results');
    assert.ok(chunks >= 4);
    const upstream = mock.requests.slice(seen);
    assert.equal(upstream.length, 3);
    assert.ok(upstream.every((u) => u.body.stream === true));
    assert.ok(upstream[1].body.tools.some((t) => t.function.name === 'notes__run'));
    assert.equal(upstream[2].body.tools, undefined);
  });

  test('streamed: a round its provider cut at max_tokens is billed without the end-of-turn token an ended turn counts (open family, no usage)', async () => {
    // An open-family model whose server sends no usage: the round is billed by Tollgate's own
    // count, which adds the family's end-of-turn token only to a round that ended its turn.
    await adminOk('PUT', '/admin/models/tool-llama', {
      provider: 'mock', upstream_model: 'llama3.1', input_price: PRICE_IN, output_price: PRICE_OUT, max_output_tokens: 500, encoding: 'llama3',
    });
    const say = 'The quick brown fox jumps over the lazy dog, twice.';
    const roundRow = async (finish) => {
      mock.setBehavior((record, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (delta, reason) =>
          `data: ${JSON.stringify({ id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: 'llama3.1', choices: [{ index: 0, delta, finish_reason: reason }] })}\n\n`;
        res.write(chunk({ role: 'assistant', content: '' }, null));
        res.write(chunk({ content: say }, null));
        res.write(chunk({}, finish));
        res.end('data: [DONE]\n\n');
        return true;
      });
      const res = await chat({ model: 'tool-llama', stream: true, plugins: ['notes'], messages: [{ role: 'user', content: 'Say it.' }] });
      assert.equal(res.status, 200);
      const body = await res.text();
      assert.ok(body.includes(`"finish_reason":"${finish}"`), body);
      const requestId = res.headers.get('x-request-id');
      const rows = await waitFor(() => {
        const r = usageRows(requestId);
        return r.length === 1 ? r : null;
      }, 'the round\'s usage row');
      return rows[0];
    };
    try {
      const stopped = await roundRow('stop');
      const cut = await roundRow('length');
      for (const row of [stopped, cut]) {
        assert.equal(row.status, 'ok');
        assert.equal(row.upstream_completion_tokens, null);
      }
      assert.equal(cut.prompt_tokens, stopped.prompt_tokens);
      assert.equal(cut.completion_tokens, stopped.completion_tokens - 1);
      assert.equal(cut.local_completion_tokens, stopped.local_completion_tokens - 1);
      assert.ok(cut.cost < stopped.cost);
    } finally {
      mock.setBehavior(toolModel({ delayMs: CHUNK_DELAY_MS }));
    }
  });

  test("streamed: a client that leaves in round 2: round 2 is drained and charged the provider's usage; round 1 and the call stand", async () => {
    const controller = new AbortController();
    const res = await chat({
      model: 'tool-model',
      stream: true,
      plugins: ['notes'],
      messages: toolMsg([{ name: 'notes__run', arguments: { text: 'a b c d e f g h i j k l m n o p' } }]),
    }, key.key, controller.signal);
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const reader = res.body.getReader();
    let received = '';
    while (!received.includes('"content":"Result: "')) {
      const { value, done } = await reader.read();
      if (done) break;
      received += Buffer.from(value).toString();
    }
    controller.abort();
    const rows = await waitFor(() => {
      const r = usageRows(requestId);
      return r.length === 2 ? r : null;
    }, 'two usage rows');
    const [first, second] = rows;
    assert.equal(first.request_id, requestId);
    assert.equal(first.status, 'ok');
    assert.equal(second.request_id, `${requestId}.r1`);
    assert.equal(second.status, 'client_abort');
    // The provider is read on after the client left (CLIENT_ABORT_DRAIN_MS), up to its usage.
    assert.equal(second.usage_source, 'upstream');
    assert.equal(second.error_code, null);
    assert.ok(second.completion_tokens >= 1, `generated ${second.completion_tokens}`);
    assert.equal(second.cost, Math.ceil((second.prompt_tokens * PRICE_IN + second.completion_tokens * PRICE_OUT) / 1e6));
    assert.deepEqual((await callRows(requestId)).map((c) => c.status), ['ok']);
    await waitFor(async () => (await gw.openReservations()) === 0, 'no reservation left');
  });

  test('streamed: a provider failure in round 2 ends the stream with an error event; round 2 is not charged', async () => {
    const model = toolModel({ delayMs: CHUNK_DELAY_MS });
    mock.setBehavior((record, res) => {
      const messages = record.body?.messages ?? [];
      if (messages.at(-1)?.role === 'tool' && JSON.stringify(messages).includes('FAIL-ROUND-2')) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'The server had an error', type: 'server_error', param: null, code: null } }));
        return true;
      }
      return model(record, res);
    });
    try {
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'tool-model',
          stream: true,
          plugins: ['notes'],
          messages: [{
            role: 'user',
            content: `TOOL ${JSON.stringify({ say: 'FAIL-ROUND-2 coming. ', calls: [{ name: 'notes__run', arguments: { text: 'x' } }] })}`,
          }],
        })
        .withResponse();
      let text = '';
      await assert.rejects(async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      }, /server had an error|provider/i);
      assert.equal(text, 'FAIL-ROUND-2 coming. ');
      const requestId = response.headers.get('x-request-id');
      const rows = await waitFor(() => {
        const r = usageRows(requestId);
        return r.length === 2 ? r : null;
      }, 'two usage rows');
      assert.equal(rows[0].status, 'ok');
      assert.ok(rows[0].cost > 0);
      assert.equal(rows[1].request_id, `${requestId}.r1`);
      assert.equal(rows[1].status, 'upstream_error');
      assert.equal(rows[1].cost, 0);
      assert.deepEqual((await callRows(requestId)).map((c) => c.status), ['ok']);
    } finally {
      mock.setBehavior(toolModel({ delayMs: CHUNK_DELAY_MS }));
    }
  });

  test('streamed: round 2 answers 200 text/event-stream with unparsable bytes: upstream_unusable, its reservation charged', async () => {
    const model = toolModel({ delayMs: CHUNK_DELAY_MS });
    mock.setBehavior((record, res) => {
      const messages = record.body?.messages ?? [];
      if (messages.at(-1)?.role === 'tool' && JSON.stringify(messages).includes('GARBAGE-ROUND-2')) {
        // The provider accepted the request (and may bill it), then sent nothing usable.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('<html><body>502 Bad Gateway</body></html>\n\nthis is not an event stream\n');
        return true;
      }
      return model(record, res);
    });
    try {
      const before = (await balance());
      const { data: stream, response } = await client.chat.completions
        .create({
          model: 'tool-model',
          stream: true,
          plugins: ['notes'],
          messages: [{
            role: 'user',
            content: `TOOL ${JSON.stringify({ say: 'GARBAGE-ROUND-2 coming. ', calls: [{ name: 'notes__run', arguments: { text: 'x' } }] })}`,
          }],
        })
        .withResponse();
      let text = '';
      await assert.rejects(async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      });
      assert.equal(text, 'GARBAGE-ROUND-2 coming. ');
      const requestId = response.headers.get('x-request-id');
      const rows = await waitFor(() => {
        const r = usageRows(requestId);
        return r.length === 2 ? r : null;
      }, 'two usage rows');
      assert.equal(rows[0].status, 'ok');
      assert.ok(rows[0].cost > 0);
      assert.equal(rows[1].request_id, `${requestId}.r1`);
      assert.equal(rows[1].status, 'upstream_unusable');
      assert.equal(rows[1].error_code, 'upstream_unusable');
      assert.equal(rows[1].usage_source, 'local');
      // The whole reservation of round 2 (the provider billed it, nothing usable came back).
      assert.ok(rows[1].reserved > 0);
      assert.equal(rows[1].cost, rows[1].reserved);
      assert.ok(rows[1].completion_tokens > 0, 'the output the reservation covered is recorded');
      const calls = await waitFor(async () => {
        const c = await callRows(requestId);
        return c.length === 1 ? c : null;
      }, 'one plugin call');
      const callCost = calls.reduce((a, c) => a + (c.cost ?? 0), 0);
      await waitFor(async () => (await gw.openReservations(tenant.id)) === 0, 'no reservation left');
      assert.equal((await balance()), before - rows[0].cost - rows[1].cost - callCost);
    } finally {
      mock.setBehavior(toolModel({ delayMs: CHUNK_DELAY_MS }));
    }
  });

  test("streamed: the client's own tool calls reach it through the SDK; plugin calls beside them are dropped", async () => {
    const started = plugins.calls.length;
    const tools = [{ type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }];
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'tool-model',
        stream: true,
        plugins: ['weather'],
        tools,
        messages: toolMsg([
          { name: 'weather__get_forecast', arguments: { city: 'Oslo' } },
          { name: 'get_time', arguments: { tz: 'Europe/Oslo' } },
        ]),
      })
      .withResponse();
    const calls = [];
    let finish = null;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
        calls[d.index] ??= { id: '', name: '', arguments: '' };
        if (d.id) calls[d.index].id = d.id;
        if (d.function?.name) calls[d.index].name = d.function.name;
        calls[d.index].arguments += d.function?.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.deepEqual(calls, [{ id: 'call_0_1', name: 'get_time', arguments: '{"tz":"Europe/Oslo"}' }]);
    assert.equal(finish, 'tool_calls');
    assert.equal(plugins.calls.length, started, 'the plugin was not called');
    const requestId = response.headers.get('x-request-id');
    const rows = await waitFor(() => {
      const r = usageRows(requestId);
      return r.length === 1 ? r : null;
    }, 'one usage row');
    assert.equal(rows[0].status, 'ok');
    assert.equal(rows[0].stream, 1);
    assert.equal(rows[0].completion_tokens, 7);
  });

  test("the client's own tools are passed back untouched", async () => {
    const tools = [{ type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }];
    const res = await chat({
      model: 'tool-model',
      plugins: ['weather'],
      tools,
      messages: toolMsg([{ name: 'get_time', arguments: { tz: 'UTC' } }]),
    });
    const body = await res.json();
    assert.equal(body.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(body.choices[0].message.tool_calls, [
      { id: 'call_0_0', type: 'function', function: { name: 'get_time', arguments: '{"tz":"UTC"}' } },
    ]);
  });

  test('unknown or disabled plugins are a 400 naming `plugins`', async () => {
    const res = await chat({ model: 'tool-model', plugins: ['nonexistent'], messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.param, 'plugins');
  });
});

describe('command mode', () => {
  test('/weather 北京 answers with the plugin markdown, plain and streamed, without a model call', async () => {
    const seen = mock.requests.length;
    const res = await chat({ model: 'tool-model', plugin_commands: true, messages: [{ role: 'user', content: '/weather 北京' }] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, 'chat.completion');
    assert.match(body.choices[0].message.content, /^### 北京\n/);
    assert.deepEqual(plugins.calls.at(-1).body.arguments, { city: '北京' });
    assert.equal(res.headers.get('x-tollgate-cost'), String(WEATHER_PRICE));

    const stream = await client.chat.completions.create({
      model: 'tool-model',
      stream: true,
      plugin_commands: true,
      messages: [{ role: 'user', content: '/weather.get_forecast city="New York" days=3' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, /^### New York/);
    assert.match(text, /\(3 day forecast\)/);
    assert.deepEqual(plugins.calls.at(-1).body.arguments, { city: 'New York', days: 3 });
    assert.equal(mock.requests.length, seen);

    await gw.exported(tenant.id); // the wallet exports the call rows to D1
    const calls = gw.d1("SELECT * FROM plugin_calls WHERE mode = 'command' ORDER BY id");
    assert.equal(calls.length, 2);
    assert.ok(calls.every((c) => c.status === 'ok' && c.cost === WEATHER_PRICE));
  });

  test('a command with invalid arguments explains the problem', async () => {
    const res = await chat({ model: 'tool-model', plugin_commands: true, messages: [{ role: 'user', content: '/weather city=Oslo days=30' }] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.choices[0].message.content, /invalid_arguments/);
    assert.match(body.choices[0].message.content, /maximum 7/);
  });
});

describe('Idempotency-Key on plugin requests', () => {
  const idemChat = (body, idemKey) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json', 'idempotency-key': idemKey },
      body: JSON.stringify(body),
    });
  const chargedSince = (since) => gw.d1('SELECT COUNT(*) AS n FROM usage WHERE created_at >= ?', since)[0].n;

  test('a retried plain tool loop is replayed, never run or charged again', async () => {
    const body = { model: 'tool-model', plugins: ['notes'], messages: toolMsg([{ name: 'notes__run', arguments: { text: 'idem' } }]) };
    const first = await idemChat(body, 'plugin-loop-1');
    assert.equal(first.status, 200);
    const firstText = await first.text();
    assert.match(JSON.parse(firstText).choices[0].message.content, /^Result: /);
    const requestId = first.headers.get('x-request-id');
    await waitFor(() => usageRows(requestId).length === 2, 'two rounds settled');
    const before = (await balance());
    const calls = plugins.calls.length;
    const modelCalls = mock.requests.length;

    const retry = await idemChat(body, 'plugin-loop-1');
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(await retry.text(), firstText);
    await sleep(300);
    assert.equal(plugins.calls.length, calls, 'the plugin was not called again');
    assert.equal(mock.requests.length, modelCalls, 'the model was not called again');
    assert.equal((await balance()), before, 'nothing charged again');
    assert.equal((await callRows(requestId)).length, 1);
  });

  test('a retried slash command is replayed; the plugin runs once', async () => {
    const body = { model: 'tool-model', plugin_commands: true, messages: [{ role: 'user', content: '/weather Lyon' }] };
    const first = await idemChat(body, 'plugin-cmd-1');
    assert.equal(first.status, 200);
    const firstText = await first.text();
    const calls = plugins.calls.length;
    const before = (await balance());
    const retry = await idemChat(body, 'plugin-cmd-1');
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(await retry.text(), firstText);
    assert.equal(plugins.calls.length, calls);
    assert.equal((await balance()), before);
  });

  test('a retried streamed tool loop is refused as used, not run again', async () => {
    const body = { model: 'tool-model', stream: true, plugins: ['notes'], messages: toolMsg([{ name: 'notes__run', arguments: { text: 's' } }]) };
    const first = await idemChat(body, 'plugin-stream-1');
    assert.equal(first.status, 200);
    await first.text();
    const calls = plugins.calls.length;
    const since = Date.now();
    const retry = await idemChat(body, 'plugin-stream-1');
    assert.equal(retry.status, 409);
    assert.equal((await retry.json()).error.code, 'idempotency_key_used');
    assert.equal(plugins.calls.length, calls);
    assert.equal(chargedSince(since), 0);
  });

  test('a plain tool loop whose round 2 fails answers round 1 with a note; a retry replays it', async () => {
    const model = toolModel({ delayMs: 0 });
    mock.setBehavior((record, res) => {
      const messages = record.body?.messages ?? [];
      if (messages.at(-1)?.role === 'tool' && JSON.stringify(messages).includes('FAIL-PLAIN-2')) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'bad gateway', type: 'server_error', param: null, code: null } }));
        return true;
      }
      return model(record, res);
    });
    try {
      const body = {
        model: 'tool-model',
        plugins: ['notes'],
        messages: [{ role: 'user', content: `TOOL ${JSON.stringify({ say: 'FAIL-PLAIN-2 soon.', calls: [{ name: 'notes__run', arguments: { text: 'p' } }] })}` }],
      };
      const first = await idemChat(body, 'plugin-partial-1');
      assert.equal(first.status, 200, 'not an HTTP error once round 1 and its call were charged');
      assert.equal(first.headers.get('x-tollgate-incomplete'), 'upstream_error');
      const text = await first.text();
      const answer = JSON.parse(text);
      const message = answer.choices[0].message;
      assert.match(message.content, /^FAIL-PLAIN-2 soon\.\n\n\[Tollgate: this answer is incomplete/);
      assert.equal(message.tool_calls ?? null, null);
      assert.equal(answer.choices[0].finish_reason, 'stop');
      const requestId = first.headers.get('x-request-id');
      const rows = await waitFor(() => {
        const r = usageRows(requestId);
        return r.length === 2 ? r : null;
      }, 'two usage rows');
      assert.equal(rows[0].status, 'ok');
      assert.equal(rows[1].status, 'upstream_error');
      const before = (await balance());
      const calls = plugins.calls.length;
      const retry = await idemChat(body, 'plugin-partial-1');
      assert.equal(retry.status, 200);
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
      assert.equal(await retry.text(), text);
      assert.equal(plugins.calls.length, calls);
      assert.equal((await balance()), before);
    } finally {
      mock.setBehavior(toolModel({ delayMs: CHUNK_DELAY_MS }));
    }
  });
});

describe('slash commands are opt-in', () => {
  test('without `plugin_commands: true` a /command is an ordinary message for the model', async () => {
    const calls = plugins.calls.length;
    const res = await chat({ model: 'tool-model', messages: [{ role: 'user', content: '/weather Rome' }] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.choices[0].message.content, 'mock reply to /weather Rome');
    assert.equal(plugins.calls.length, calls, 'no plugin ran');
    const bad = await chat({ model: 'tool-model', plugin_commands: 'yes', messages: [{ role: 'user', content: '/weather Rome' }] });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.param, 'plugin_commands');
  });
});

describe('streamed tool loop on a gateway whose stale-reservation sweep is 4 s (deadline 3 s)', () => {
  let gw2;
  let mock2;
  let client2;
  let key2;
  const tool = toolModel({ delayMs: 5 });
  // Round 1 calls `notes`; round 2 (after the tool result) streams words until the gateway hangs up.
  const endlessRound2 = (record, res) => {
    if (record.body?.messages?.at(-1)?.role !== 'tool') return tool(record, res);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed || res.writableEnded) return clearInterval(timer);
      const chunk = { id: 'chatcmpl-endless', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: ` w${++i}` }, finish_reason: null }] };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    }, 100);
    res.on('close', () => clearInterval(timer));
    return true;
  };
  const body = {
    model: 'tool-model',
    stream: true,
    plugins: ['notes'],
    messages: toolMsg([{ name: 'notes__run', arguments: { text: 'deadline' } }]),
  };
  const rowsOf = (id) =>
    gw2.d1('SELECT * FROM usage WHERE request_id = ? OR request_id LIKE ? ORDER BY created_at, request_id', id, `${id}.r%`);

  before(async () => {
    mock2 = await startMockOpenAI({ chunkDelayMs: 5 });
    mock2.setBehavior(endlessRound2);
    gw2 = await deadlineGateway; // STALE_RESERVATION_SECONDS=4, CLIENT_ABORT_DRAIN_MS=500
    await gw2.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock2.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
    await gw2.adminOk('PUT', '/admin/models/tool-model', {
      provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: PRICE_IN, output_price: PRICE_OUT, max_output_tokens: 500,
    });
    await gw2.adminOk('PUT', '/admin/plugins/notes', { manifest: manifest('notes', 'notes') }, 201);
    let tenant2;
    ({ tenant: tenant2, key: key2, client: client2 } = await gw2.newTenant({ name: 'deadline', credit: 100_000_000 }));
    await gw2.adminOk('PUT', `/admin/tenants/${tenant2.id}/plugins/notes`, {});
  });

  after(async () => {
    await gw2?.kill();
    await mock2?.close();
  });

  test('a round that would outlive the sweep ends cleanly at the deadline (truncated, stream_deadline)', { timeout: 60_000 }, async () => {
    const { data: stream, response } = await client2.chat.completions.create(body).withResponse();
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.match(text, / w1 w2/);
    assert.equal(finish, 'length');
    const id = response.headers.get('x-request-id');
    const rows = await waitFor(() => {
      const r = rowsOf(id);
      return r.length === 2 ? r : null;
    }, 'two usage rows');
    assert.equal(rows[0].status, 'ok');
    assert.equal(rows[1].status, 'truncated');
    assert.equal(rows[1].error_code, 'stream_deadline');
    assert.ok(rows[1].cost > 0);
    await waitFor(async () => (await gw2.openReservations()) === 0, 'no reservation left');
  });

  test('a client that leaves mid-round: the round is drained, then settled as client_abort (drain_deadline)', { timeout: 60_000 }, async () => {
    const abort = new AbortController();
    const res = await fetch(`${gw2.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key2.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    const id = res.headers.get('x-request-id');
    const reader = res.body.getReader();
    let text = '';
    while (!text.includes(' w2')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the stream ended before round 2 streamed');
      text += Buffer.from(value).toString();
    }
    abort.abort();
    const rows = await waitFor(() => {
      const r = rowsOf(id);
      return r.length === 2 ? r : null;
    }, 'two usage rows');
    assert.equal(rows[0].status, 'ok');
    assert.equal(rows[1].status, 'client_abort');
    assert.equal(rows[1].error_code, 'drain_deadline');
    // The provider was still generating and sent no usage: the round's reservation is charged.
    assert.equal(rows[1].cost, rows[1].reserved);
    await waitFor(async () => (await gw2.openReservations()) === 0, 'no reservation left');
  });
});
