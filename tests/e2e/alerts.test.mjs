// End to end: threshold alerts with signed webhooks (a mock receiver on 127.0.0.1 verifies every
// signature), one delivery per crossing, retries with backoff, re-arming, and the scheduled
// handler's sweep of stale reservations and session expiry (run through --test-scheduled).
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, startMockOpenAI } from './harness.mjs';

const WEBHOOK_SECRET = 'whsec_e2e_0123456789abcdef';

let gw;
let mock;
let hooks;

const adminOk = (...args) => gw.adminOk(...args);

const newTenant = (name, credit) => gw.newTenant({ name, credit });

async function chat(key, { model = 'tollgate-echo', content = 'hello there', session, maxTokens } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key.key}`,
      'content-type': 'application/json',
      ...(session ? { 'x-session-id': session } : {}),
    },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content }],
      ...(maxTokens ? { max_tokens: maxTokens } : {}),
    }),
  });
  const text = await res.text();
  return { status: res.status, text, requestId: res.headers.get('x-request-id') };
}

/**
 * Runs the scheduled handler. As of now: through wrangler's --test-scheduled endpoint (the real
 * `scheduled` event). As of another time: through POST /admin/cron, the same tasks (wrangler's
 * endpoint always uses the real clock).
 */
async function cron(atMs = null) {
  if (atMs === null) {
    const res = await fetch(`${gw.url}/__scheduled?cron=*/5+*+*+*+*`);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    return;
  }
  const r = await adminOk('POST', '/admin/cron', { time: Math.round(atMs) });
  assert.equal(r.object, 'cron_run');
}

async function until(what, fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Verifies `X-Tollgate-Signature: t=<s>,v1=<hex>` over "<t>.<raw body>", as a receiver would. */
function verifySignature(header, rawBody, secret = WEBHOOK_SECRET) {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=')));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  const got = Buffer.from(parts.v1 ?? '', 'hex');
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** A webhook receiver. `failFirst[path] = n` answers the first n posts to path with 500. */
async function startWebhookReceiver() {
  const received = [];
  const failFirst = {};
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(parts);
      const entry = {
        path: req.url,
        headers: req.headers,
        raw,
        body: JSON.parse(raw.toString('utf8')),
        validSignature: verifySignature(String(req.headers['x-tollgate-signature'] ?? ''), raw),
      };
      received.push(entry);
      if ((failFirst[req.url] ?? 0) > 0) {
        failFirst[req.url] -= 1;
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('receiver down');
        return;
      }
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    received,
    failFirst,
    to: (path) => received.filter((e) => e.path === path),
    close: () => new Promise((r) => server.close(r)),
  };
}

const deliveries = async (ruleId) => (await adminOk('GET', `/admin/alerts/${ruleId}/deliveries`)).data;

const GATEWAY_VARS = {
  WEBHOOK_SECRET,
  PROVIDER_MOCK_KEY: 'sk-mock',
  UPSTREAM_CONNECT_TIMEOUT_MS: '20000',
  UPSTREAM_TIMEOUT_MS: '20000',
  SESSION_TTL_SECONDS: '60',
};

/** Starts a gateway with the mock provider and its hanging model configured. */
async function startConfiguredGateway(extraVars = {}) {
  const g = await startGateway({ vars: { ...GATEWAY_VARS, ...extraVars } });
  await g.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await g.adminOk('PUT', '/admin/models/mock-hang', {
    provider: 'mock',
    upstream_model: 'mock-hang',
    input_price: 1_000_000,
    output_price: 1_000_000,
    max_output_tokens: 100,
  });
  return g;
}

/**
 * The gateway of the D1 sweep test (WALLETS off), started with the file's gateway rather than in the
 * test. Its hanging request times out after SWEEP_UPSTREAM_TIMEOUT_MS: long enough for the test's few
 * admin calls and cron runs before it, short enough that waiting for its 504 costs little.
 */
const SWEEP_UPSTREAM_TIMEOUT_MS = '8000';
let sweepGw;

before(async () => {
  hooks = await startWebhookReceiver();
  mock = await startMockOpenAI({ chunkDelayMs: 1 });
  [gw, sweepGw] = await Promise.all([
    startConfiguredGateway(),
    startConfiguredGateway({ WALLETS: 'false', UPSTREAM_TIMEOUT_MS: SWEEP_UPSTREAM_TIMEOUT_MS }),
  ]);
});

after(async () => {
  await sweepGw?.kill();
  await gw?.kill();
  await mock?.close();
  await hooks?.close();
});

describe('alert rules (admin)', () => {
  test('create, list, get, delete; invalid rules are 400', async () => {
    const { tenant } = await newTenant('rules', 1_000_000);
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'monthly_spend_above', threshold: 5_000_000, webhook_url: `${hooks.url}/x`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    assert.match(rule.id, /^alr_/);
    assert.equal(rule.state, 'armed');
    assert.equal(rule.signing_secret, 'WEBHOOK_SECRET');
    const list = await adminOk('GET', `/admin/tenants/${tenant.id}/alerts`);
    assert.deepEqual(list.data.map((r) => r.id), [rule.id]);
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).kind, 'monthly_spend_above');
    for (const bad of [
      { kind: 'vibes', threshold: 1, webhook_url: `${hooks.url}/x`, signing_secret: 'WEBHOOK_SECRET' },
      { kind: 'balance_below', threshold: -1, webhook_url: `${hooks.url}/x`, signing_secret: 'WEBHOOK_SECRET' },
      { kind: 'balance_below', threshold: 1, webhook_url: 'ftp://x', signing_secret: 'WEBHOOK_SECRET' },
      { kind: 'balance_below', threshold: 1, webhook_url: `${hooks.url}/x`, signing_secret: 'NOT_SET' },
      { kind: 'balance_below', threshold: 1, webhook_url: `${hooks.url}/x`, signing_secret: 'whsec_raw-secret' },
    ]) {
      const r = await gw.admin('POST', `/admin/tenants/${tenant.id}/alerts`, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.ok(r.json.error.param);
    }
    const missing = await gw.admin('POST', '/admin/tenants/ten_nope/alerts', {
      kind: 'balance_below', threshold: 1, webhook_url: `${hooks.url}/x`, signing_secret: 'WEBHOOK_SECRET',
    });
    assert.equal(missing.status, 404);
    await adminOk('DELETE', `/admin/alerts/${rule.id}`);
    assert.equal((await gw.admin('GET', `/admin/alerts/${rule.id}`)).status, 404);
    assert.equal((await gw.admin('DELETE', `/admin/alerts/${rule.id}`)).status, 404);
  });
});

describe('crossings', () => {
  test('monthly tokens: one signed webhook per crossing, however many requests follow', async () => {
    const { tenant, key } = await newTenant('tokens', 100_000_000);
    // Each echo request "hello there" is 9 prompt + 4 completion tokens (o200k); threshold 30.
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'monthly_tokens_above', threshold: 30, webhook_url: `${hooks.url}/tokens`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    for (let i = 0; i < 2; i++) assert.equal((await chat(key)).status, 200);
    await sleep(500);
    assert.equal(hooks.to('/tokens').length, 0, 'not crossed yet (26 tokens)');
    // Cross with a burst of concurrent requests, then more after.
    const burst = await Promise.all([1, 2, 3, 4, 5].map(() => chat(key)));
    assert.ok(burst.every((r) => r.status === 200));
    await until('the webhook', () => hooks.to('/tokens').length >= 1);
    for (let i = 0; i < 3; i++) await chat(key);
    await cron();
    await sleep(1000);
    const got = hooks.to('/tokens');
    assert.equal(got.length, 1, 'exactly one delivery for the crossing');
    const hook = got[0];
    assert.ok(hook.validSignature, 'signature verifies');
    assert.match(hook.headers['x-tollgate-signature'], /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.equal(hook.headers['content-type'], 'application/json');
    assert.equal(hook.body.type, 'alert.triggered');
    assert.equal(hook.body.id, `${rule.id}-1`);
    assert.equal(hook.headers['x-tollgate-event-id'], hook.body.id);
    assert.equal(hook.body.tenant_id, tenant.id);
    assert.equal(hook.body.rule.kind, 'monthly_tokens_above');
    assert.ok(hook.body.value > 30);
    assert.equal(hook.body.period, new Date().toISOString().slice(0, 7));
    // A tampered body would not verify.
    assert.equal(verifySignature(hook.headers['x-tollgate-signature'], Buffer.from(hook.raw.toString().replace('}', ' }'))), false);

    const ds = await deliveries(rule.id);
    assert.equal(ds.length, 1);
    assert.equal(ds[0].status, 'delivered');
    assert.equal(ds[0].attempts, 1);
    assert.equal(ds[0].last_status, 204);
    assert.deepEqual(ds[0].payload, hook.body);
    const state = await adminOk('GET', `/admin/alerts/${rule.id}`);
    assert.equal(state.state, 'fired');
    assert.equal(state.fire_count, 1);
    // The next month re-arms it (the scheduled run dated 40 days ahead sees a new month).
    await cron(Date.now() + 40 * 86_400_000);
    const rearmed = await adminOk('GET', `/admin/alerts/${rule.id}`);
    assert.equal(rearmed.state, 'armed');
    assert.equal(hooks.to('/tokens').length, 1);
    // That run was dated in the future; back in this month the rule would fire again. Remove it.
    await adminOk('DELETE', `/admin/alerts/${rule.id}`);
  });

  test('a failing webhook is retried with backoff by the scheduled handler', async () => {
    const { tenant, key } = await newTenant('spend', 100_000_000);
    hooks.failFirst['/spend'] = 1;
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'monthly_spend_above', threshold: 10, webhook_url: `${hooks.url}/spend`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    assert.equal((await chat(key)).status, 200); // costs 9 + 8 = 17 micro-units
    await until('the first attempt', () => hooks.to('/spend').length >= 1);
    const first = await until('the failure to be recorded', async () => {
      const ds = await deliveries(rule.id);
      return ds[0]?.attempts === 1 ? ds[0] : null;
    });
    assert.equal(first.status, 'pending');
    assert.equal(first.last_status, 500);
    assert.ok(first.next_attempt_at >= first.created_at + 60_000, 'backs off a minute');
    // Not yet due: a run now does not resend.
    await cron();
    assert.equal(hooks.to('/spend').length, 1);
    // Due: the retry succeeds.
    await cron(Date.now() + 2 * 60_000);
    const got = hooks.to('/spend');
    assert.equal(got.length, 2);
    assert.equal(got[1].headers['x-tollgate-delivery-attempt'], '2');
    assert.equal(got[1].body.id, got[0].body.id, 'the same event');
    assert.equal(got[1].raw.toString(), got[0].raw.toString(), 'the same body');
    assert.ok(got.every((h) => h.validSignature));
    const [d] = await deliveries(rule.id);
    assert.equal(d.status, 'delivered');
    assert.equal(d.attempts, 2);
    // Delivered: later runs send nothing more.
    await cron(Date.now() + 60 * 60_000);
    assert.equal(hooks.to('/spend').length, 2);
  });

  test('balance below: fires once, re-arms after a top-up, fires again', async () => {
    // 100 micro-units of credit; each echo request costs 17 and reserves more, so cap max_tokens.
    const { tenant, key } = await newTenant('balance', 100);
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'balance_below', threshold: 60, webhook_url: `${hooks.url}/balance`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 83 left
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 66 left
    await sleep(500);
    assert.equal(hooks.to('/balance').length, 0);
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 49 left: crossed
    await until('the balance webhook', () => hooks.to('/balance').length >= 1);
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 32 left: still below
    await sleep(500);
    assert.equal(hooks.to('/balance').length, 1);
    assert.equal(hooks.to('/balance')[0].body.value, 49);
    // Top up: the next check (here the scheduled one) re-arms the rule.
    await adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 100 });
    await cron();
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).state, 'armed');
    for (let i = 0; i < 5; i++) assert.equal((await chat(key, { maxTokens: 5 })).status, 200);
    await until('the second crossing', () => hooks.to('/balance').length >= 2);
    await sleep(500);
    const got = hooks.to('/balance');
    assert.equal(got.length, 2);
    assert.equal(got[1].body.id, `${rule.id}-2`);
    assert.ok(got.every((h) => h.validSignature));
    // Deleting the rule stops it.
    await adminOk('DELETE', `/admin/alerts/${rule.id}`);
  });
});

describe('many rules', () => {
  test('the scheduled check pages through every rule: a rule after the first 500 still fires', async () => {
    const { tenant: quiet } = await newTenant('quiet', 1_000_000);
    const filler = { kind: 'balance_below', threshold: 0, webhook_url: `${hooks.url}/never`, signing_secret: 'WEBHOOK_SECRET' };
    for (let i = 0; i < 500; i += 25) {
      await Promise.all(Array.from({ length: 25 }, () =>
        adminOk('POST', `/admin/tenants/${quiet.id}/alerts`, filler, 201)));
    }
    const { tenant } = await newTenant('last-rule', 1_000);
    await sleep(5); // a later millisecond: its rule id sorts after every filler rule
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'balance_below', threshold: 5_000, webhook_url: `${hooks.url}/last`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    const ids = gw.d1('SELECT id FROM alert_rules ORDER BY id').map((r) => r.id);
    assert.ok(ids.indexOf(rule.id) >= 500, `rule at position ${ids.indexOf(rule.id)}`);
    await cron();
    await until('the webhook of the last rule', () => hooks.to('/last').length === 1);
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).state, 'fired');
    assert.equal(hooks.to('/never').length, 0);
  });
});

describe('scheduled handler', () => {
  test('sweeps a stale reservation: credit returned, recorded as expired, no usage row; the request settles later', async (ctx) => {
    // D1's cron sweep of reservations is a D1-only mechanism (a wallet returns its stale holds
    // from its own alarm, docs/money.md "Wallets"): this test runs on its own gateway with
    // WALLETS explicitly off. The helpers of this file use `gw`, so it stands in for the test.
    const main = gw;
    gw = sweepGw;
    ctx.after(() => {
      gw = main;
    });
    const { tenant, key } = await newTenant('sweep', 10_000_000);
    const pending = chat(key, { model: 'mock-hang' });
    const reservation = await until('the reservation', () =>
      gw.d1('SELECT * FROM reservations WHERE tenant_id = ?', tenant.id)[0],
    );
    const held = await adminOk('GET', `/admin/tenants/${tenant.id}`);
    assert.equal(held.reserved, reservation.amount);
    assert.equal(held.balance, 10_000_000 - reservation.amount);
    // Not stale yet: nothing happens.
    await cron();
    assert.equal(gw.d1('SELECT COUNT(*) AS c FROM reservations WHERE id = ?', reservation.id)[0].c, 1);
    // 16 minutes later it is.
    await cron(Date.now() + 16 * 60_000);
    assert.equal(gw.d1('SELECT COUNT(*) AS c FROM reservations WHERE id = ?', reservation.id)[0].c, 0);
    const t = await adminOk('GET', `/admin/tenants/${tenant.id}`);
    assert.equal(t.balance, 10_000_000);
    assert.equal(t.reserved, 0);
    const expiry = gw.d1('SELECT * FROM reservation_expiries WHERE id = ?', reservation.id)[0];
    assert.equal(expiry.amount, reservation.amount);
    assert.equal(expiry.created_at, reservation.created_at);
    assert.equal(gw.d1('SELECT COUNT(*) AS c FROM usage WHERE request_id = ?', reservation.id)[0].c, 0);
    // The request itself times out later, after it was sent: the provider may have served it, so
    // its late settlement charges the reservation (docs/money.md, "How a request ends") from the
    // balance the sweep returned.
    const res = await pending;
    assert.equal(res.status, 504);
    const row = await until('the usage row', () =>
      gw.d1('SELECT * FROM usage WHERE request_id = ?', reservation.id)[0],
    );
    assert.equal(row.status, 'upstream_timeout');
    assert.equal(row.error_code, 'upstream_timeout');
    assert.equal(row.cost, reservation.amount);
    const after = await until('the charge', async () => {
      const s = await adminOk('GET', `/admin/tenants/${tenant.id}`);
      return s.reserved === 0 && s;
    });
    assert.equal(after.balance, 10_000_000 - reservation.amount);
  });

  test('expires idle sessions in D1 and KV; their request history stays', async () => {
    const { key } = await newTenant('sessions', 10_000_000);
    assert.equal((await chat(key, { session: 'old-session' })).status, 200);
    const get = (path) => fetch(gw.url + path, { headers: { authorization: `Bearer ${key.key}` } });
    await until('the session', async () => (await get('/v1/sessions/old-session')).status === 200);
    await cron(); // idle for less than SESSION_TTL_SECONDS (60): kept
    assert.equal((await get('/v1/sessions/old-session')).status, 200);
    await cron(Date.now() + 5 * 60_000);
    assert.equal((await get('/v1/sessions/old-session')).status, 404);
    const history = await (await get('/v1/sessions/old-session/requests')).json();
    assert.equal(history.data.length, 1);
  });
});
