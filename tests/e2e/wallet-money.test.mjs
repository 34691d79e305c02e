// End to end: every money operation through the tenant's wallet (`WALLETS=true`, docs/money.md
// "Wallets"). Each test first moves the tenant into its wallet (a chat request, or the migrate
// command), after which D1 refuses money moves for it: before issue 13's wiring these operations
// failed there. Redemption codes (API and console), Stripe top-ups, plugin call prices, plans
// (assignment, approved plan requests, a plan's new allowance, the monthly refill seen by moving
// the wallet's test clock) and the price multiplier. The first block runs with the test fault
// `wallet_credit` (the worker dies between the D1 claim and the wallet credit), then workerd is
// restarted on the same state without it: a retry completes the credit, once.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway } from './harness.mjs';
import { startPluginServer } from './plugin-mocks.mjs';

const WEBHOOK_SECRET = 'whsec_wallet_money';
const persistDir = mkdtempSync(join(tmpdir(), 'tollgate-e2e-wallet-money-'));
const VARS = {
  WALLETS: 'true',
  TOLLGATE_TEST_DEPLOYMENT: 'true',
  STRIPE_SECRET_KEY: 'sk_test_wallet_money',
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_CURRENCY: 'usd',
  PLUGINS_ALLOW_LOCAL_HTTP: 'true',
  PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
};
const NOTES_PRICE = 1_000;
const MICRO_PER_CENT = 10_000;

let gw;
let plugins;
/** Admin token and pepper kept across the restart (codes are stored by their peppered digest). */
let keep;

before(async () => {
  plugins = await startPluginServer();
});

after(async () => {
  await gw?.kill();
  await plugins?.close();
  if (!process.env.TOLLGATE_E2E_KEEP) rmSync(persistDir, { recursive: true, force: true });
});

const chat = (key, content = 'hello there') =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tollgate-echo', max_tokens: 8, messages: [{ role: 'user', content }] }),
  });

const redeem = (key, code) =>
  fetch(`${gw.url}/v1/redeem`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ code }),
  });

async function balance(key) {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return res.json();
}

/** Balance, debt, reservations and the allowance of the tenant, from its wallet. */
const billing = (tenantId) => gw.adminOk('GET', `/admin/tenants/${tenantId}/billing`);

async function until(what, fn, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until the wallet has exported every row and holds no reservation. */
const quiet = (tenantId) =>
  until(`wallet of ${tenantId} quiet`, async () => {
    const v = await gw.adminOk('GET', `/admin/tenants/${tenantId}/wallet`);
    return v.outbox_pending === 0 && v.open_reservations === 0 && v;
  });

/** A tenant whose money its wallet already holds (D1 refuses money moves for it from now on). */
async function walletTenant(name, credit) {
  const t = await gw.newTenant({ name, credit });
  const view = await gw.adminOk('POST', `/admin/tenants/${t.tenant.id}/wallet/migrate`);
  assert.equal(view.migrated, true);
  assert.equal(gw.d1('SELECT COUNT(*) AS n FROM wallet_claims WHERE tenant_id = ?', t.tenant.id)[0].n, 1);
  return t;
}

async function newCodes(count, amount) {
  return (await gw.adminOk('POST', '/admin/redemption-codes', { count, amount }, 201)).codes;
}

function sign(payload, t = Math.floor(Date.now() / 1000)) {
  const v1 = createHmac('sha256', WEBHOOK_SECRET).update(`${t}.${payload}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

/** Delivers a signed `checkout.session.completed` of `cents` for `tenantId`. */
async function deliver(sessionId, eventId, tenantId, cents) {
  const event = JSON.stringify({
    id: eventId,
    object: 'event',
    type: 'checkout.session.completed',
    data: {
      object: {
        id: sessionId, object: 'checkout.session', payment_status: 'paid', amount_total: cents,
        currency: 'usd', client_reference_id: tenantId, metadata: { tenant_id: tenantId },
      },
    },
  });
  const res = await fetch(`${gw.url}/stripe/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': sign(event) },
    body: event,
  });
  return { status: res.status, body: await res.json() };
}

const D1_CREDITS = (tenantId) => gw.d1('SELECT COUNT(*) AS n FROM credit_ledger WHERE tenant_id = ?', tenantId)[0].n;

describe('a credit interrupted between the D1 claim and the wallet', () => {
  const state = {};

  test('with the worker failing before the wallet credit: the code is claimed, the payment recorded, nothing credited', async () => {
    gw = await startGateway({ vars: { ...VARS, TOLLGATE_FAULTS: 'wallet_credit' }, state: { persistDir } });
    keep = { adminToken: gw.adminToken, pepper: gw.pepper };
    state.a = await walletTenant('interrupted-a', 1_000);
    state.b = await walletTenant('interrupted-b', 1_000);
    [state.code] = await newCodes(1, 5_000);
    const res = await redeem(state.a.key.key, state.code);
    assert.equal(res.status, 503, await res.clone().text());
    const rows = gw.d1('SELECT via_wallet, wallet_credited_at FROM redemption_codes WHERE redeemed_by = ?', state.a.tenant.id);
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ via_wallet: 1, wallet_credited_at: null }]);
    const paid = await deliver('cs_interrupted', 'evt_interrupted_1', state.a.tenant.id, 250);
    assert.equal(paid.status, 503, JSON.stringify(paid.body));
    assert.equal((await balance(state.a.key.key)).balance, 1_000);
    await gw.kill();
  });

  test('after a restart: the same tenant completes the credit once, anyone else gets 409', async () => {
    gw = await startGateway({ vars: VARS, state: { persistDir, ...keep } });
    const { a, b, code } = state;
    // Another tenant cannot take the claimed code.
    const other = await redeem(b.key.key, code);
    assert.equal(other.status, 409);
    assert.equal((await other.json()).error.code, 'redemption_code_used');
    // The claimer's retry completes the pending credit.
    const done = await redeem(a.key.key, code);
    assert.equal(done.status, 200, await done.clone().text());
    const body = await done.json();
    assert.deepEqual([body.amount, body.balance], [5_000, 6_000]);
    // Once: a third attempt is refused and changes nothing.
    const again = await redeem(a.key.key, code);
    assert.equal(again.status, 409);
    assert.equal((await again.json()).error.code, 'redemption_code_used');
    // Stripe delivers the session again (a new event id): the recorded payment is credited once.
    const redelivered = await deliver('cs_interrupted', 'evt_interrupted_2', a.tenant.id, 250);
    assert.equal(redelivered.status, 200, JSON.stringify(redelivered.body));
    assert.deepEqual([redelivered.body.credited, redelivered.body.completed], [250 * MICRO_PER_CENT, true]);
    const dup = await deliver('cs_interrupted', 'evt_interrupted_2', a.tenant.id, 250);
    assert.equal(dup.body.duplicate, true);
    assert.equal((await balance(a.key.key)).balance, 6_000 + 250 * MICRO_PER_CENT);
    assert.equal((await balance(b.key.key)).balance, 1_000);
    assert.equal(D1_CREDITS(a.tenant.id), 1, 'only the opening credit is in D1: the rest is the wallet\'s');
  });
});

describe('redemption codes', () => {
  test('a code credits the wallet of a migrated tenant once; concurrent redemptions credit once', async () => {
    const { tenant, key } = await walletTenant('redeemer', 100);
    const [code, raced] = await newCodes(2, 7_000);
    const res = await redeem(key.key, code.toLowerCase().replaceAll('-', ' '));
    assert.equal(res.status, 200, await res.clone().text());
    const body = await res.json();
    assert.deepEqual([body.object, body.amount, body.balance], ['redemption', 7_000, 7_100]);
    assert.match(body.ledger_id, /^cred_/);
    assert.equal((await balance(key.key)).balance, 7_100);
    const again = await redeem(key.key, code);
    assert.equal(again.status, 409);
    // Two at once from the same tenant: one claims, the other completes the same credit or is
    // refused; the wallet's idempotency key lets it land once.
    const both = await Promise.all([redeem(key.key, raced), redeem(key.key, raced)]);
    assert.ok(both.some((r) => r.status === 200), both.map((r) => r.status).join());
    assert.equal((await balance(key.key)).balance, 14_100);
    const rows = gw.d1('SELECT via_wallet, wallet_credited_at FROM redemption_codes WHERE redeemed_by = ?', tenant.id);
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => r.via_wallet === 1 && r.wallet_credited_at > 0));
    assert.equal(D1_CREDITS(tenant.id), 1, 'no D1 credit row: the wallet took the credit');
  });

  test('the console redeems through the same path', async () => {
    const { key } = await walletTenant('console-redeemer', 0);
    const [code] = await newCodes(1, 3_000);
    const login = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: key.key }),
    });
    assert.equal(login.status, 200);
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const { csrf_token: csrf } = await login.json();
    const res = await fetch(`${gw.url}/console/api/redeem`, {
      method: 'POST',
      headers: { cookie, origin: gw.url, 'x-csrf-token': csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ code }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).balance, 3_000);
    assert.equal((await balance(key.key)).balance, 3_000);
  });

  test('a credit the wallet refuses (balance beyond 2^53 - 1) leaves the code unused', async () => {
    const { key } = await walletTenant('rich', 9_007_199_254_740_000);
    const [code] = await newCodes(1, 1_000);
    const res = await redeem(key.key, code);
    assert.equal(res.status, 409);
    assert.equal((await res.json()).error.code, 'balance_limit');
    const [row] = gw.d1("SELECT redeemed_at, via_wallet FROM redemption_codes WHERE batch_id = (SELECT MAX(batch_id) FROM redemption_codes)");
    assert.deepEqual({ ...row }, { redeemed_at: null, via_wallet: 0 });
    // Another tenant can still use it.
    const { key: other } = await walletTenant('rich-other', 0);
    assert.equal((await redeem(other.key, code)).status, 200);
  });
});

describe('Stripe top-ups', () => {
  test('a paid session credits the wallet once per session and event; D1 keeps the payment', async () => {
    const { tenant, key } = await walletTenant('payer', 0);
    const first = await deliver('cs_wallet_1', 'evt_wallet_1', tenant.id, 1_500);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual([first.body.credited, first.body.completed], [1_500 * MICRO_PER_CENT, false]);
    const again = await deliver('cs_wallet_1', 'evt_wallet_1', tenant.id, 1_500);
    assert.deepEqual([again.status, again.body.duplicate], [200, true]);
    assert.equal((await balance(key.key)).balance, 1_500 * MICRO_PER_CENT);
    const [payment] = gw.d1('SELECT amount, via_wallet, wallet_credited_at FROM stripe_payments WHERE session_id = ?', 'cs_wallet_1');
    assert.deepEqual([payment.amount, payment.via_wallet], [1_500 * MICRO_PER_CENT, 1]);
    assert.ok(payment.wallet_credited_at > 0);
    assert.equal(D1_CREDITS(tenant.id), 0);
    // An unknown tenant is a 404 (Stripe keeps retrying), nothing recorded.
    const unknown = await deliver('cs_wallet_2', 'evt_wallet_2', 'ten_nobody', 100);
    assert.equal(unknown.status, 404);
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM stripe_payments WHERE session_id = ?', 'cs_wallet_2')[0].n, 0);
  });
});

describe('plugin call prices', () => {
  before(async () => {
    const manifest = (id, path) => ({
      identifier: id, title: id, description: `The ${id} plugin`,
      endpoint: { url: `${plugins.url}${path}` },
      apis: [{ name: 'run', description: 'Runs it', parameters: { type: 'object', properties: { text: { type: 'string' } } } }],
    });
    await gw.adminOk('PUT', '/admin/plugins/notes', { manifest: manifest('notes', '/notes'), price_per_call: NOTES_PRICE }, 201);
    await gw.adminOk('PUT', '/admin/plugins/broken', { manifest: manifest('broken', '/badjson'), price_per_call: NOTES_PRICE }, 201);
  });

  const command = (key, text) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tollgate-echo', plugin_commands: true, messages: [{ role: 'user', content: text }] }),
    });

  async function callRow(requestId) {
    return until('the exported call row', () => gw.d1('SELECT * FROM plugin_calls WHERE request_id = ?', requestId)[0]);
  }

  test('a priced call is charged in the wallet; its row reaches D1 with the wallet\'s charge', async () => {
    const { tenant, key } = await walletTenant('plugin-payer', 10_000);
    for (const id of ['notes', 'broken']) await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/${id}`, {});
    const res = await command(key.key, '/notes.run text=hi');
    assert.equal(res.status, 200, await res.clone().text());
    const row = await callRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.status, row.cost, row.allowance_cost, row.debt, row.from_wallet], ['ok', NOTES_PRICE, 0, 0, 1]);
    await quiet(tenant.id);
    assert.deepEqual([(await balance(key.key)).balance, (await balance(key.key)).reserved], [10_000 - NOTES_PRICE, 0]);
    // A failed call costs nothing: its price is held during the call and returns.
    const failed = await command(key.key, '/broken.run text=hi');
    assert.equal(failed.status, 200);
    const frow = await callRow(failed.headers.get('x-request-id'));
    assert.notEqual(frow.status, 'ok');
    assert.deepEqual([frow.cost, frow.from_wallet], [0, 1]);
    await quiet(tenant.id);
    assert.equal((await balance(key.key)).balance, 10_000 - NOTES_PRICE);
  });

  test('a plan-only tenant pays from its allowance; a tenant that cannot cover the price is not charged', async () => {
    await gw.adminOk('PUT', '/admin/plans/plugin-plan', { name: 'Plugin plan', allowance: 5_000 });
    const { tenant, key } = await walletTenant('plugin-plan', 0);
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'plugin-plan' });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/notes`, {});
    const res = await command(key.key, '/notes.run text=plan');
    const row = await callRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.cost, row.allowance_cost], [NOTES_PRICE, NOTES_PRICE]);
    await quiet(tenant.id);
    const b = await billing(tenant.id);
    assert.deepEqual([b.allowance_remaining, b.balance], [5_000 - NOTES_PRICE, 0]);

    const poor = await walletTenant('plugin-poor', NOTES_PRICE - 1);
    await gw.adminOk('PUT', `/admin/tenants/${poor.tenant.id}/plugins/notes`, {});
    const refused = await command(poor.key.key, '/notes.run text=poor');
    assert.equal(refused.status, 200);
    assert.match(JSON.stringify(await refused.json()), /insufficient_quota/);
    const prow = await callRow(refused.headers.get('x-request-id'));
    assert.deepEqual([prow.status, prow.cost], ['insufficient_quota', 0]);
    await quiet(poor.tenant.id);
    assert.equal((await balance(poor.key.key)).balance, NOTES_PRICE - 1);
  });
});

describe('plans', () => {
  test('assigning a plan grants its allowance in the wallet; removing it drops it', async () => {
    await gw.adminOk('PUT', '/admin/plans/wallet-basic', { name: 'Wallet basic', allowance: 500 });
    const { tenant, key } = await walletTenant('planned', 0);
    const assigned = await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'wallet-basic' });
    assert.deepEqual([assigned.plan_id, assigned.plan_allowance, assigned.allowance_remaining], ['wallet-basic', 500, 500]);
    const b = await billing(tenant.id);
    assert.equal(b.allowance_remaining, 500);
    // The wallet now pays a request from the allowance.
    const res = await chat(key.key);
    assert.equal(res.status, 200, await res.clone().text());
    const cost = Number(res.headers.get('x-tollgate-cost'));
    await quiet(tenant.id);
    assert.equal((await billing(tenant.id)).allowance_remaining, 500 - cost);
    const removed = await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: null });
    assert.deepEqual([removed.plan_id, removed.allowance_remaining], [null, 0]);
    assert.equal((await gw.admin('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'nope' })).status, 400);
  });

  test('the wallet refills the allowance on the first command of a new UTC month; a new plan allowance applies then', async () => {
    await gw.adminOk('PUT', '/admin/plans/wallet-monthly', { name: 'Wallet monthly', allowance: 400 });
    const { tenant, key } = await walletTenant('monthly', 0);
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'wallet-monthly' });
    const res = await chat(key.key);
    assert.equal(res.status, 200);
    const cost = Number(res.headers.get('x-tollgate-cost'));
    await quiet(tenant.id);
    const now = await billing(tenant.id);
    assert.equal(now.allowance_remaining, 400 - cost);
    // The operator raises the plan: this month keeps what is left...
    await gw.adminOk('PUT', '/admin/plans/wallet-monthly', { name: 'Wallet monthly', allowance: 900 });
    assert.equal((await billing(tenant.id)).allowance_remaining, 400 - cost);
    // ...and the next month starts with the new allowance (the wallet's clock moved a month on).
    const offset = now.allowance_resets_at - Date.now() + 60_000;
    await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/clock`, { offset_ms: offset });
    const next = await billing(tenant.id);
    assert.equal(next.allowance_remaining, 900);
    assert.equal(next.allowance_period, now.allowance_resets_at);
    const spent = await chat(key.key);
    assert.equal(spent.status, 200);
    const cost2 = Number(spent.headers.get('x-tollgate-cost'));
    await quiet(tenant.id);
    assert.equal((await billing(tenant.id)).allowance_remaining, 900 - cost2);
  });

  test('an approved plan request assigns the plan in the wallet exactly once', async () => {
    await gw.adminOk('PUT', '/admin/plans/wallet-pro', { name: 'Wallet pro', allowance: 3_000 });
    const { tenant, key } = await walletTenant('upgrader', 1_000);
    const login = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: key.key }),
    });
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const { csrf_token: csrf } = await login.json();
    const asked = await fetch(`${gw.url}/console/api/plan-requests`, {
      method: 'POST',
      headers: { cookie, origin: gw.url, 'x-csrf-token': csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ plan_id: 'wallet-pro' }),
    });
    assert.ok(asked.status === 200 || asked.status === 201, await asked.clone().text());
    const [req] = gw.d1('SELECT id FROM plan_requests WHERE tenant_id = ?', tenant.id);
    const approved = await gw.adminOk('POST', `/admin/plan-requests/${req.id}/approve`);
    assert.equal(approved.request.status, 'approved');
    assert.deepEqual([approved.tenant.plan_id, approved.tenant.allowance_remaining], ['wallet-pro', 3_000]);
    const res = await chat(key.key);
    const cost = Number(res.headers.get('x-tollgate-cost'));
    await quiet(tenant.id);
    // Approving again is refused and grants nothing again.
    const twice = await Promise.all([0, 1].map(() => gw.admin('POST', `/admin/plan-requests/${req.id}/approve`)));
    assert.deepEqual(twice.map((r) => r.status), [409, 409]);
    const b = await billing(tenant.id);
    assert.deepEqual([b.allowance_remaining, b.balance], [3_000 - cost, 1_000]);
  });
});

describe('price multiplier', () => {
  test('the tenant multiplier reaches the wallet charge unchanged (one rounding up per request)', async () => {
    const { tenant, key } = await walletTenant('margin', 1_000_000);
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/pricing`, { price_multiplier_bps: 15_001 });
    const res = await chat(key.key, 'multiply me please');
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const row = await gw.usageRow(requestId);
    // tollgate-echo: 1,000,000 per 1M prompt tokens, 2,000,000 per 1M completion tokens.
    const exact = (BigInt(row.prompt_tokens) * 1_000_000n + BigInt(row.completion_tokens) * 2_000_000n) * 15_001n;
    const expected = Number((exact + 10n ** 10n - 1n) / 10n ** 10n);
    assert.equal(row.multiplier_bps, 15_001);
    assert.equal(row.cost, expected);
    assert.equal(Number(res.headers.get('x-tollgate-cost')), expected);
    assert.equal(gw.d1('SELECT from_wallet FROM usage WHERE request_id = ?', requestId)[0].from_wallet, 1);
    await quiet(tenant.id);
    assert.equal((await balance(key.key)).balance, 1_000_000 - expected);
  });
});

describe('with WALLETS off (restarted on the same state)', () => {
  before(async () => {
    await gw.kill();
    // Wallets are on by default: only an explicit 'false' turns them off.
    gw = await startGateway({ vars: { ...VARS, WALLETS: 'false' }, state: { persistDir, ...keep } });
  });

  test('codes, Stripe payments, plugin prices and plans move D1 money as before', async () => {
    await gw.adminOk('PUT', '/admin/plans/d1-plan', { name: 'D1 plan', allowance: 700 });
    const { tenant, key } = await gw.newTenant({ name: 'd1-tenant', credit: 10_000 });
    const d1 = () => ({ ...gw.d1('SELECT balance, allowance_remaining FROM tenants WHERE id = ?', tenant.id)[0] });
    const [code] = await newCodes(1, 2_000);
    const res = await redeem(key.key, code);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).balance, 12_000);
    const paid = await deliver('cs_d1_1', 'evt_d1_1', tenant.id, 1);
    assert.equal(paid.body.credited, MICRO_PER_CENT);
    assert.equal(D1_CREDITS(tenant.id), 3, 'opening credit, code, payment: all in D1');
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'd1-plan' });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/notes`, {});
    const call = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tollgate-echo', plugin_commands: true, messages: [{ role: 'user', content: '/notes.run text=d1' }] }),
    });
    assert.equal(call.status, 200);
    const row = await until('the call row', () => gw.d1('SELECT * FROM plugin_calls WHERE request_id = ?', call.headers.get('x-request-id'))[0]);
    assert.deepEqual([row.cost, row.allowance_cost, row.from_wallet], [NOTES_PRICE, 700, 0]);
    assert.deepEqual(d1(), { balance: 12_000 + MICRO_PER_CENT - (NOTES_PRICE - 700), allowance_remaining: 0 });
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM wallet_claims WHERE tenant_id = ?', tenant.id)[0].n, 0);
  });
});
