// End to end: a first-party plugin Worker reached through a service binding. The gateway runs in
// wrangler dev next to tests/e2e/plugin-worker (a unit-conversion plugin) and calls it through the
// binding UNITS_PLUGIN, in tool mode and in command mode; the plugin reports what it received.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, startMockOpenAI } from './harness.mjs';
import { toolModel } from './plugin-mocks.mjs';

const UNITS_TOKEN = 'units-token-1234'; // the settings the plugin Worker checks
const OTHER_SECRET = 'other-plugin-secret-5678';
const PROVIDER_SECRET = 'sk-mock-provider-secret';

let gw;
let mock;
let key;
let client;
let tenant;

const adminOk = (...args) => gw.adminOk(...args);

const UNITS = {
  identifier: 'units',
  title: 'Units',
  description: 'Converts lengths between units',
  endpoint: { service: 'UNITS_PLUGIN' },
  settings: { type: 'object', properties: { token: { type: 'string' } }, required: ['token'] },
  apis: [
    {
      name: 'convert',
      description: 'Converts a length',
      parameters: {
        type: 'object',
        properties: {
          value: { type: 'number' },
          from: { type: 'string', enum: ['km', 'm', 'mi', 'ft'] },
          to: { type: 'string', enum: ['km', 'm', 'mi', 'ft'] },
        },
        required: ['value', 'from', 'to'],
        additionalProperties: false,
      },
    },
  ],
};

// Another plugin of the same tenant, with settings of its own that the units plugin must never see.
const OTHER = {
  identifier: 'other',
  title: 'Other',
  description: 'Never called',
  endpoint: { url: 'https://other.example/plugin' },
  settings: { type: 'object', properties: { secret: { type: 'string' } } },
  apis: [{ name: 'run', description: 'Runs', parameters: { type: 'object', properties: {} } }],
};

/** What the plugin Worker reported it received, from the text that carries its answer. */
function received(text) {
  const m = /received: (\{.*\})/s.exec(text);
  assert.ok(m, `no report in ${text}`);
  return JSON.parse(m[1]);
}

function assertIsolated(report, args, tenantKey) {
  assert.equal(report.method, 'POST');
  assert.equal(report.path, '/invoke');
  assert.deepEqual(report.body, { api: 'convert', arguments: args, settings: { token: UNITS_TOKEN } });
  assert.equal(report.headers['x-tollgate-plugin-api'], 'convert');
  assert.equal(report.headers.authorization, undefined);
  const all = JSON.stringify(report);
  for (const secret of [tenantKey, OTHER_SECRET, PROVIDER_SECRET]) assert.ok(!all.includes(secret), `leaked ${secret}`);
}

before(async () => {
  mock = await startMockOpenAI({ chunkDelayMs: 5 });
  mock.setBehavior(toolModel());
  gw = await startGateway({
    vars: {
      PROVIDER_MOCK_KEY: PROVIDER_SECRET,
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
    },
    services: { UNITS_PLUGIN: 'tests/e2e/plugin-worker/wrangler.toml' },
  });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await adminOk('PUT', '/admin/models/tool-model', {
    provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: 1_000_000, output_price: 2_000_000, max_output_tokens: 500,
  });
  const created = await gw.newTenant({ name: 'service-plugins', credit: 100_000_000 });
  ({ tenant, key, client } = created);
  await adminOk('PUT', '/admin/plugins/units', { manifest: UNITS }, 201);
  await adminOk('PUT', '/admin/plugins/other', { manifest: OTHER }, 201);
  await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/units`, { settings: { token: UNITS_TOKEN } });
  await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/other`, { settings: { secret: OTHER_SECRET } });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('a plugin Worker behind a service binding', () => {
  test('tool mode: called through the binding with only its arguments and its own settings', async () => {
    const args = { value: 5, from: 'km', to: 'mi' };
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'tool-model',
        stream: true,
        plugins: ['units', 'other'],
        messages: [{ role: 'user', content: `TOOL ${JSON.stringify([{ name: 'units__convert', arguments: args }])}` }],
      })
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.match(text, /^Result: \*\*5 km = 3\.107 mi\*\*/);
    assertIsolated(received(text), args, key.key);
    // The call's row is charged in the tenant's wallet, which exports it to D1 shortly after.
    await gw.exported(tenant.id);
    const calls = gw.d1('SELECT * FROM plugin_calls WHERE request_id = ?', response.headers.get('x-request-id'));
    assert.equal(calls.length, 1);
    assert.equal(calls[0].plugin_id, 'units');
    assert.equal(calls[0].mode, 'tool');
    assert.equal(calls[0].status, 'ok');
    assert.equal(calls[0].http_status, 200);
  });

  test('command mode: /units value=3 from=mi to=km', async () => {
    const seen = mock.requests.length;
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tool-model', plugin_commands: true, messages: [{ role: 'user', content: '/units value=3 from=mi to=km' }] }),
    });
    assert.equal(res.status, 200);
    const content = (await res.json()).choices[0].message.content;
    assert.match(content, /^\*\*3 mi = 4\.828 km\*\*/);
    assertIsolated(received(content), { value: 3, from: 'mi', to: 'km' }, key.key);
    assert.equal(mock.requests.length, seen, 'no model call');
    await gw.exported(tenant.id); // the wallet exports the call row to D1
    const calls = gw.d1("SELECT * FROM plugin_calls WHERE request_id = ? AND mode = 'command'", res.headers.get('x-request-id'));
    assert.equal(calls.length, 1);
    assert.equal(calls[0].status, 'ok');
  });
});
