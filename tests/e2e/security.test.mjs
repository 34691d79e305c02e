// End to end: who may call what, which secrets may be sent where, and what errors tell tenants.
// Three gateways: a development-like one (private upstreams allowed, for the mocks), a
// production-like one (private upstreams refused, no PLUGIN_SETTINGS_KEY) and one whose secrets
// are misconfigured. Mocks on 127.0.0.1 only.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, startGatewayEarly, startMockOpenAI, stopEarly } from './harness.mjs';
import { startPluginServer } from './plugin-mocks.mjs';

const require = createRequire(import.meta.url);

let gw; // development-like
let plugins;
let hooks;

async function until(what, fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Writes to a gateway's local D1 file (what an operator's manual fix or a bad migration does). */
function d1Write(g, sql, ...params) {
  const { DatabaseSync } = require('node:sqlite');
  const dir = join(g.persistDir, 'v3', 'd1');
  const files = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.sqlite') && e.name !== 'metadata.sqlite') files.push(p);
    }
  };
  walk(dir);
  for (const file of files) {
    const db = new DatabaseSync(file);
    try {
      const has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'api_keys'").get();
      if (has) return db.prepare(sql).run(...params);
    } finally {
      db.close();
    }
  }
  throw new Error('no D1 file with api_keys');
}

const call = (g, method, path, key, body, headers = {}) =>
  fetch(g.url + path, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

const echo = (content = 'hello') => ({ model: 'tollgate-echo', max_tokens: 8, messages: [{ role: 'user', content }] });

/** A receiver that records requests; `/redirect` answers 307 to `target`. */
async function startHooks() {
  const seen = [];
  let target = '';
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      seen.push({ path: req.url, headers: req.headers, raw });
      if (req.url.startsWith('/redirect')) {
        res.writeHead(307, { location: `${target}/stolen` });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    seen,
    setTarget: (t) => (target = t),
    close: () => new Promise((r) => server.close(r)),
  };
}

/** The gateways of the later suites, started in the first `before` (promises). */
const early = {};

before(async () => {
  plugins = await startPluginServer();
  hooks = await startHooks();
  hooks.setTarget(hooks.url);
  // The later suites' gateways start now, beside this one (each suite awaits its own).
  early.prod = startGatewayEarly({ vars: { ALLOW_PRIVATE_UPSTREAMS: null, WEBHOOK_SECRET: 'whsec_prod_0123456789' } });
  early.bad = startGatewayEarly({ vars: { ADMIN_TOKEN: 'too-short-admin-token', KEY_PEPPER: null } });
  gw = await startGateway({
    vars: {
      WEBHOOK_SECRET: 'whsec_sec_0123456789abcdef',
      LEGACY_KEY: 'sk-legacy',
      PROVIDER_STREAM_KEY: 'sk-stream',
      PROVIDER_SECRETS: 'LEGACY_KEY, KEY_PEPPER',
      PLUGINS_ALLOW_LOCAL_HTTP: 'true',
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
    },
  });
  await gw.adminOk('PUT', '/admin/plugins/notes', {
    manifest: {
      identifier: 'notes',
      title: 'notes',
      description: 'notes',
      endpoint: { url: `${plugins.url}/notes` },
      apis: [{ name: 'run', description: 'Runs notes', parameters: { type: 'object', properties: { text: { type: 'string' } } } }],
    },
  }, 201);
});

after(async () => {
  await gw?.kill();
  await stopEarly();
  await plugins?.close();
  await hooks?.close();
});

describe('secrets stay put', () => {
  test("provider secrets are named PROVIDER_* (or allowlisted), never the gateway's own", async () => {
    const put = (secret) =>
      gw.admin('PUT', '/admin/providers/p1', { kind: 'openai', base_url: 'https://api.example.com/v1', api_key_secret: secret });
    for (const secret of ['KEY_PEPPER', 'ADMIN_TOKEN', 'PLUGIN_SETTINGS_KEY', 'MOCK_KEY', 'sk-live-123']) {
      const res = await put(secret);
      assert.equal(res.status, 400, `${secret}: ${res.text}`);
      assert.equal(res.json.error.param, 'api_key_secret');
    }
    assert.match((await put('KEY_PEPPER')).json.error.message, /gateway's own secrets/);
    assert.match((await put('MOCK_KEY')).json.error.message, /PROVIDER_/);
    assert.equal((await put('PROVIDER_ANYTHING')).status, 200);
    assert.equal((await put('LEGACY_KEY')).status, 200, 'listed in PROVIDER_SECRETS');
  });

  test("webhook signing secrets are named WEBHOOK_*, never the gateway's own", async () => {
    const { tenant } = await gw.newTenant({ name: 'hooks-names' });
    for (const secret of ['ADMIN_TOKEN', 'KEY_PEPPER', 'LEGACY_KEY']) {
      const res = await gw.admin('POST', `/admin/tenants/${tenant.id}/alerts`, {
        kind: 'balance_below', threshold: 1, webhook_url: `${hooks.url}/x`, signing_secret: secret,
      });
      assert.equal(res.status, 400, `${secret}: ${res.text}`);
      assert.equal(res.json.error.param, 'signing_secret');
    }
  });

  test('a webhook that answers a redirect is a failed delivery; the target never hears of it', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'redirected', credit: 1_000_000 });
    const rule = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/alerts`, {
      kind: 'balance_below', threshold: 100_000_000, webhook_url: `${hooks.url}/redirect`, signing_secret: 'WEBHOOK_SECRET',
    }, 201);
    assert.equal((await call(gw, 'POST', '/v1/chat/completions', key.key, echo())).status, 200);
    const delivery = await until('the delivery attempt', () =>
      gw.d1('SELECT * FROM alert_deliveries WHERE rule_id = ? AND attempts >= 1', rule.id)[0],
    );
    assert.equal(delivery.last_status, 307);
    assert.notEqual(delivery.status, 'delivered');
    await sleep(300);
    assert.ok(hooks.seen.some((h) => h.path === '/redirect'));
    assert.ok(!hooks.seen.some((h) => h.path.startsWith('/stolen')), 'the redirect was not followed');
  });

  test("a provider whose secret is not set fails without naming the secret to tenants", async () => {
    await gw.adminOk('PUT', '/admin/providers/unset', {
      kind: 'openai', base_url: 'https://api.example.com/v1', api_key_secret: 'PROVIDER_NOT_SET_ANYWHERE',
    });
    await gw.adminOk('PUT', '/admin/models/unset-model', { provider: 'unset', input_price: 1, output_price: 1 });
    const { key } = await gw.newTenant({ name: 'unset', credit: 1_000_000 });
    const res = await call(gw, 'POST', '/v1/chat/completions', key.key, { ...echo(), model: 'unset-model' });
    const text = await res.text();
    assert.equal(res.status, 502, text);
    assert.equal(JSON.parse(text).error.code, 'provider_not_configured');
    assert.ok(!text.includes('PROVIDER_NOT_SET_ANYWHERE'), text);
  });
});

describe('a disabled tenant is refused at once everywhere', () => {
  test('chat, replays, free commands, reads; re-enabling restores it', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'to-disable', credit: 10_000_000 });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/notes`, {});
    const idem = { 'idempotency-key': 'disabled-replay-1' };
    const first = await call(gw, 'POST', '/v1/chat/completions', key.key, echo(), idem);
    assert.equal(first.status, 200);
    const command = { ...echo('/notes hi'), plugin_commands: true };
    assert.equal((await call(gw, 'POST', '/v1/chat/completions', key.key, command)).status, 200);

    await gw.adminOk('PATCH', `/admin/tenants/${tenant.id}`, { disabled: true });
    const replay = await call(gw, 'POST', '/v1/chat/completions', key.key, echo(), idem);
    assert.equal(replay.status, 401, 'no replay for a disabled tenant');
    const calls = plugins.calls.length;
    const cmd = await call(gw, 'POST', '/v1/chat/completions', key.key, command);
    assert.equal(cmd.status, 401, 'no free command for a disabled tenant');
    assert.equal(plugins.calls.length, calls);
    assert.equal((await call(gw, 'POST', '/v1/chat/completions', key.key, echo())).status, 401);
    for (const path of ['/v1/models', '/v1/balance', '/v1/usage']) {
      assert.equal((await call(gw, 'GET', path, key.key)).status, 401, path);
    }
    assert.equal((await call(gw, 'POST', '/v1/tokens/count', key.key, echo())).status, 401);

    await gw.adminOk('PATCH', `/admin/tenants/${tenant.id}`, { disabled: false });
    assert.equal((await call(gw, 'POST', '/v1/chat/completions', key.key, echo('again'))).status, 200);
    assert.equal((await call(gw, 'GET', '/v1/models', key.key)).status, 200);
  });
});

describe('a running stream stops growing once its tenant is disabled', () => {
  test('the next extension is refused and the stream ends at what it reserved', async () => {
    const mock = await startMockOpenAI();
    let release;
    const gate = new Promise((r) => (release = r));
    const words = Array.from({ length: 30 }, (_, i) => ` w${i}`);
    mock.setBehavior(async (record, res) => {
      if (!record.body?.stream) return false;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta, finish = null) =>
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: 'one' }));
      await gate; // the test disables the tenant here
      for (const w of words) res.write(chunk({ content: w }));
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
      return true;
    });
    try {
      await gw.adminOk('PUT', '/admin/providers/streamer', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_STREAM_KEY' });
      // Covers 2 output tokens (o200k): "one" fits, the words after it need an extension.
      await gw.adminOk('PUT', '/admin/models/tiny-cover', { provider: 'streamer', upstream_model: 'gpt-4o-mini', input_price: 1, output_price: 1, max_output_tokens: 2 });
      const { tenant, key } = await gw.newTenant({ name: 'mid-stream', credit: 10_000_000 });
      const res = await call(gw, 'POST', '/v1/chat/completions', key.key, { model: 'tiny-cover', stream: true, messages: [{ role: 'user', content: 'go' }] });
      assert.equal(res.status, 200);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let text = '';
      while (!text.includes('one')) {
        const { value, done } = await reader.read();
        assert.ok(!done, 'stream ended before its first word');
        text += decoder.decode(value, { stream: true });
      }
      await gw.adminOk('PATCH', `/admin/tenants/${tenant.id}`, { disabled: true });
      release();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      assert.ok(!text.includes(' w29'), 'the stream did not run to its end on an extension');
      const row = await gw.usageRow(res.headers.get('x-request-id'));
      assert.equal(row.status, 'truncated', JSON.stringify(row));
    } finally {
      release?.();
      await mock.close();
    }
  });
});

describe('keys', () => {
  const randomId = (like) => {
    const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
    const tail = [...randomBytes(10)].map((b) => alphabet[b % 32]).join('');
    return like.slice(0, 16) + tail;
  };
  const randomSecret = () => randomBytes(60).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 40);

  test('an unknown key id is remembered: a row appearing behind the cache is not looked up', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'negative' });
    const id = randomId(key.id);
    const fake = `tg-${id}-${randomSecret()}`;
    assert.equal(fake.length, key.key.length);
    const res = await call(gw, 'GET', '/v1/models', fake);
    assert.equal(res.status, 401, await res.text());
    // The same id now exists in D1 with a matching digest, written behind the gateway's back.
    const digest = createHmac('sha256', gw.pepper).update(fake).digest('hex');
    d1Write(gw, 'INSERT INTO api_keys (id, tenant_id, name, digest, created_at) VALUES (?, ?, ?, ?, ?)', id, tenant.id, 'sneaky', digest, Date.now());
    assert.equal((await call(gw, 'GET', '/v1/models', fake)).status, 401, 'answered from the negative cache, not D1');
    // Keys the admin API creates are not hidden by it.
    const created = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/keys`, { name: 'fresh' }, 201);
    assert.equal((await call(gw, 'GET', '/v1/models', created.key)).status, 200);
  });

  test('an unreadable model list allows no model (fail closed)', async () => {
    const { tenant } = await gw.newTenant({ name: 'broken-models', credit: 1_000_000 });
    const created = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/keys`, { name: 'restricted', models: ['nothing'] }, 201);
    d1Write(gw, 'UPDATE api_keys SET models = ? WHERE id = ?', '["tollgate-echo"', created.id);
    const models = await (await call(gw, 'GET', '/v1/models', created.key)).json();
    assert.deepEqual(models.data, []);
    assert.equal((await call(gw, 'POST', '/v1/chat/completions', created.key, echo())).status, 403);
  });

  test('/v1/models does not say which provider serves a model', async () => {
    const { key } = await gw.newTenant({ name: 'owned-by' });
    const models = await (await call(gw, 'GET', '/v1/models', key.key)).json();
    assert.ok(models.data.length > 0);
    assert.ok(models.data.every((m) => m.owned_by === 'tollgate'), JSON.stringify(models.data));
  });
});

describe('production-like gateway', () => {
  let prod;
  before(async () => {
    prod = await early.prod; // ALLOW_PRIVATE_UPSTREAMS left out, WEBHOOK_SECRET set
  });
  after(async () => prod?.kill());

  test('providers and webhooks must be public https hosts', async () => {
    for (const base_url of [
      'http://127.0.0.1:9/v1', 'https://127.0.0.1/v1', 'https://127.1/v1', 'https://[::1]/v1', 'https://10.1.2.3/v1',
      'https://192.168.0.10/v1', 'https://169.254.169.254/latest', 'https://localhost/v1', 'https://metadata.google.internal/v1',
      'http://api.example.com/v1',
    ]) {
      const res = await prod.admin('PUT', '/admin/providers/p', { kind: 'openai', base_url, api_key_secret: 'PROVIDER_X' });
      assert.equal(res.status, 400, `${base_url}: ${res.text}`);
      assert.equal(res.json.error.param, 'base_url');
    }
    await prod.adminOk('PUT', '/admin/providers/p', { kind: 'openai', base_url: 'https://api.example.com/v1', api_key_secret: 'PROVIDER_X' });
    const { tenant } = await prod.newTenant({ name: 'hooks' });
    for (const webhook_url of ['http://hooks.example.com/x', 'https://127.0.0.1/x', 'https://10.0.0.1/x', 'https://intranet/x']) {
      const res = await prod.admin('POST', `/admin/tenants/${tenant.id}/alerts`, {
        kind: 'balance_below', threshold: 1, webhook_url, signing_secret: 'WEBHOOK_SECRET',
      });
      assert.equal(res.status, 400, `${webhook_url}: ${res.text}`);
      assert.equal(res.json.error.param, 'webhook_url');
    }
    await prod.adminOk('POST', `/admin/tenants/${tenant.id}/alerts`, {
      kind: 'balance_below', threshold: 1, webhook_url: 'https://hooks.example.com/x', signing_secret: 'WEBHOOK_SECRET',
    }, 201);
  });

  test('plugin settings without PLUGIN_SETTINGS_KEY: a configuration error naming it, not a 500', async () => {
    await prod.adminOk('PUT', '/admin/plugins/wx', {
      manifest: {
        identifier: 'wx', title: 'wx', description: 'wx', endpoint: { url: 'https://plugins.example.com/wx' },
        settings: { type: 'object', properties: { api_key: { type: 'string' } } },
        apis: [{ name: 'run', description: 'run', parameters: { type: 'object', properties: {} } }],
      },
    }, 201);
    const { tenant } = await prod.newTenant({ name: 'wx' });
    const res = await prod.admin('PUT', `/admin/tenants/${tenant.id}/plugins/wx`, { settings: { api_key: 'abcdefgh' } });
    assert.equal(res.status, 503, res.text);
    assert.equal(res.json.error.code, 'configuration_error');
    assert.match(res.json.error.message, /PLUGIN_SETTINGS_KEY/);
  });

  test('failed admin attempts are throttled per address: the 11th is refused even with the right token', async () => {
    for (let i = 0; i < 10; i++) {
      const res = await call(prod, 'GET', '/admin/tenants', `wrong-token-${i}-0123456789abcdef0123456789`);
      assert.equal(res.status, 401);
    }
    const res = await call(prod, 'GET', '/admin/tenants', prod.adminToken);
    assert.equal(res.status, 429, await res.text());
    const after = Number(res.headers.get('retry-after'));
    assert.ok(after >= 1 && after <= 60, `retry-after ${after}`);
  });
});

describe('misconfigured secrets', () => {
  let bad;
  before(async () => {
    bad = await early.bad; // ADMIN_TOKEN too short, KEY_PEPPER left out
  });
  after(async () => bad?.kill());

  test('a short ADMIN_TOKEN disables the admin API with a configuration error', async () => {
    const res = await call(bad, 'GET', '/admin/tenants', 'too-short-admin-token');
    const body = await res.json();
    assert.equal(res.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, 'configuration_error');
    assert.match(body.error.message, /ADMIN_TOKEN/);
    assert.match(body.error.message, /32/);
  });

  test('a missing KEY_PEPPER is named, not an internal error', async () => {
    const fake = `tg-01jd0000000000000000000000-${'a'.repeat(40)}`;
    const res = await call(bad, 'POST', '/v1/chat/completions', fake, echo());
    const body = await res.json();
    assert.equal(res.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, 'configuration_error');
    assert.match(body.error.message, /KEY_PEPPER/);
  });
});
