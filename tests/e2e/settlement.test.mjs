// End to end: settlement (schema/0007_settlement.sql, edge::cron). Charges beyond the reservation
// and debt, a request that outlives the stale-reservation sweep, a request that straddles a month
// boundary, priced plugin calls paid from a plan allowance, the 2^53 balance bound, and
// settlements that D1 refuses (injected, test-only faults) replayed from KV by the scheduled handler,
// and one the wallet refuses, replayed into the wallet.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, startGatewayEarly, startMockOpenAI, stopEarly } from './harness.mjs';
import { startPluginServer } from './plugin-mocks.mjs';

const PRICE_IN = 1_000_000; // 1 micro-unit per prompt token
const PRICE_OUT = 2_000_000; // 2 per completion token
const PROMPT = 9; // o200k: 3 framing + "user" + "hello there" (2) + 3 priming; the mock reports it too
const costOf = (prompt, completion) => prompt * (PRICE_IN / 1e6) + completion * (PRICE_OUT / 1e6);
const NOTES_PRICE = 1_000;

let gw; // stale reservations after 100 days: cron runs as of next month never sweep
let mock;
let plugins;
/** Resolvers of requests the mock holds until the test lets them answer, by message. */
const held = new Map();

const adminOk = (...args) => gw.adminOk(...args);
const billing = (g, id) => g.adminOk('GET', `/admin/tenants/${id}/billing`);
const post = (g, key, body, headers = {}) =>
  fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
const say = (content) => [{ role: 'user', content }];

async function until(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A plain mock completion of `content` with the given usage. */
function reply(res, content, usage) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({
    id: 'chatcmpl-settle', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: usage[0], completion_tokens: usage[1], total_tokens: usage[0] + usage[1] },
  }));
  return true;
}

/** The gateways of the later suites, started in the first `before` (promises). */
const early = {};

before(async () => {
  mock = await startMockOpenAI({ promptTokens: PROMPT, chunkDelayMs: 5 });
  // "bill N": the provider reports N completion tokens whatever max_tokens said.
  // "hold X": answered (5 completion tokens) only when the test calls held.get('hold X')().
  mock.setBehavior(async (req, res) => {
    const text = req.body?.messages?.at(-1)?.content;
    if (typeof text !== 'string') return false;
    const bill = /^bill (\d+)$/.exec(text);
    if (bill) return reply(res, 'a long answer', [PROMPT, Number(bill[1])]);
    if (text.startsWith('hold ')) {
      await new Promise((resolve) => held.set(text, resolve));
      return reply(res, 'mock reply to hold', [PROMPT, 5]);
    }
    return false;
  });
  plugins = await startPluginServer();
  // The later suites' gateways start now, beside this one (each suite awaits its own).
  early.lg = startGatewayEarly({
    vars: {
      WALLETS: 'false',
      PROVIDER_MOCK_KEY: 'sk-mock',
      STALE_RESERVATION_SECONDS: String(100 * 86_400),
    },
  });
  // The injected faults are D1's (its settlement and call record): this gateway runs the D1
  // path, WALLETS=false. With wallets on, a settlement that cannot reach the wallet is kept in
  // KV and replayed into the wallet (docs/money.md "Wallets").
  early.faulty = startGatewayEarly({
    vars: {
      WALLETS: 'false',
      TOLLGATE_TEST_DEPLOYMENT: 'true',
      TOLLGATE_FAULTS: 'settle_d1,record_call_d1',
      PLUGINS_ALLOW_LOCAL_HTTP: 'true',
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
    },
  });
  early.wf = startGatewayEarly({ vars: { TOLLGATE_TEST_DEPLOYMENT: 'true', TOLLGATE_FAULTS: 'settle_wallet' } });
  gw = await startGateway({
    vars: {
      PROVIDER_MOCK_KEY: 'sk-mock',
      STALE_RESERVATION_SECONDS: String(100 * 86_400),
      PLUGINS_ALLOW_LOCAL_HTTP: 'true',
      PLUGIN_SETTINGS_KEY: 'test-master-key-for-plugin-settings',
    },
  });
  await setUpModel(gw);
});

/** The mock provider and its model on gateway `g`. */
async function setUpModel(g) {
  await g.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await g.adminOk('PUT', '/admin/models/mock-model', {
    provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: PRICE_IN, output_price: PRICE_OUT,
    max_output_tokens: 1000, encoding: 'o200k_base',
  });
}

after(async () => {
  for (const release of held.values()) release();
  await gw?.kill();
  await stopEarly();
  await mock?.close();
  await plugins?.close();
});

describe('charges beyond the reservation', () => {
  test('the provider reports more than was reserved: charged in full when the balance allows', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'beyond', credit: 1_000 });
    const res = await post(gw, key.key, { model: 'mock-model', max_tokens: 5, messages: say('bill 100') });
    assert.equal(res.status, 200, await res.clone().text());
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    // The local prompt count of "bill 100" and 5 output tokens: far below the reported usage.
    assert.equal(row.reserved, costOf(row.local_prompt_tokens, 5));
    assert.equal(row.cost, costOf(PROMPT, 100)); // 209
    assert.equal(res.headers.get('x-tollgate-cost'), String(costOf(PROMPT, 100)));
    assert.equal(row.beyond_reservation, costOf(PROMPT, 100) - row.reserved);
    assert.deepEqual([row.debt, row.uncharged], [0, 0]);
    const state = await billing(gw, tenant.id);
    assert.deepEqual([state.balance, state.debt, state.reserved], [1_000 - 209, 0, 0]);
    const session = gw.d1('SELECT cost FROM sessions WHERE tenant_id = ?', tenant.id)[0];
    assert.equal(session.cost, 209, 'session totals use the amount charged');
    const month = gw.d1('SELECT SUM(cost) AS c FROM usage_monthly WHERE tenant_id = ?', tenant.id)[0];
    assert.equal(month.c, 209, 'month totals use the amount charged');
  });

  test('what cannot be taken becomes debt; debt refuses new requests (402) until credit pays it', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'debtor', credit: 100 });
    const res = await post(gw, key.key, { model: 'mock-model', max_tokens: 5, messages: say('bill 100') });
    assert.equal(res.status, 200);
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.equal(row.cost, 209);
    assert.equal(row.debt, 209 - 100, 'the reservation (19) and the rest of the balance (81) were taken');
    let state = await billing(gw, tenant.id);
    assert.deepEqual([state.balance, state.debt], [0, 109]);
    const balance = await (await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key.key}` } })).json();
    assert.equal(balance.debt, 109);

    const refused = async () => {
      const r = await post(gw, key.key, { model: 'mock-model', max_tokens: 1, messages: say('hello there') });
      assert.equal(r.status, 402);
      const err = (await r.json()).error;
      assert.equal(err.code, 'insufficient_quota');
      assert.match(err.message, /debt/);
      assert.match(err.message, /\b\d+ micro-units\b/);
    };
    await refused();
    // A credit pays the debt first. With wallets on (the default) a credit is recorded in the
    // wallet's own ledger, whose entry the credit answers (docs/money.md "Wallets"); D1's
    // credit_ledger holds only the opening credit, made before the wallet took the tenant.
    const paid = await adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 50 });
    assert.deepEqual(paid.ledger_entry, { amount: 50, debt_paid: 50, balance: 0 });
    state = await billing(gw, tenant.id);
    assert.deepEqual([state.balance, state.debt], [0, 59]);
    await refused();
    const rest = await adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 1_000 });
    assert.deepEqual(rest.ledger_entry, { amount: 1_000, debt_paid: 59, balance: 1_000 - 59 });
    state = await billing(gw, tenant.id);
    assert.deepEqual([state.balance, state.debt], [1_000 - 59, 0]);
    const ledger = gw.d1('SELECT amount, debt_paid FROM credit_ledger WHERE tenant_id = ? ORDER BY id', tenant.id);
    assert.deepEqual(ledger.map((l) => [l.amount, l.debt_paid]), [[100, 0]]);
    const ok = await post(gw, key.key, { model: 'mock-model', max_tokens: 5, messages: say('hello there') });
    assert.equal(ok.status, 200);
  });

  test('a credit that would take the balance beyond 2^53 - 1 is refused', async () => {
    const { tenant } = await gw.newTenant({ name: 'rich', credit: 10 });
    const res = await gw.admin('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 2 ** 53 - 1 });
    assert.equal(res.status, 409, res.text);
    assert.equal((await billing(gw, tenant.id)).balance, 10);
    await adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 2 ** 53 - 11 });
    assert.equal((await billing(gw, tenant.id)).balance, 2 ** 53 - 1);
  });
});

// D1-only mechanisms: D1's cron sweep of stale reservations and the cron's month refill, driven
// by `POST /admin/cron {time}` as of the future. A wallet keeps its own clock (its alarm sweeps,
// its first command of a new month refills), so these run on a gateway with WALLETS=false.
describe('late settlement (D1 path, WALLETS=false)', () => {
  let lg;
  before(async () => {
    lg = await early.lg; // WALLETS=false, PROVIDER_MOCK_KEY, STALE_RESERVATION_SECONDS of 100 days
    await setUpModel(lg);
  });
  after(async () => {
    await lg?.kill();
  });

  test('a request that outlives the sweep: credit returned, key released, then charged what it delivered', async () => {
    const { tenant, key } = await lg.newTenant({ name: 'late', credit: 1_000_000 });
    const pending = post(lg, key.key, { model: 'mock-model', max_tokens: 5, messages: say('hold late') },
      { 'idempotency-key': 'late-1' });
    const reservation = await until('the reservation', () =>
      lg.d1('SELECT * FROM reservations WHERE tenant_id = ?', tenant.id)[0]);
    await until('the upstream call', () => held.has('hold late'));
    assert.equal((await billing(lg, tenant.id)).balance, 1_000_000 - reservation.amount);

    // As of 101 days later the reservation is stale (STALE_RESERVATION_SECONDS is 100 days here).
    const run = await lg.adminOk('POST', '/admin/cron', { time: Date.now() + 101 * 86_400_000 });
    assert.ok(run.done.includes('swept 1 stale reservations'), JSON.stringify(run.done));
    let state = await billing(lg, tenant.id);
    assert.deepEqual([state.balance, state.reserved], [1_000_000, 0], 'credit returned');
    assert.equal(lg.d1('SELECT COUNT(*) AS n FROM usage WHERE request_id LIKE ?', `${reservation.id}%`)[0].n, 0,
      'the sweep writes no usage row');
    const expiry = lg.d1('SELECT * FROM reservation_expiries WHERE id = ?', reservation.id)[0];
    assert.equal(expiry.amount, reservation.amount);
    assert.equal(lg.d1("SELECT COUNT(*) AS n FROM idempotency_keys WHERE key = 'late-1'")[0].n, 0,
      'the pending Idempotency-Key is released');

    held.get('hold late')();
    const res = await pending;
    assert.equal(res.status, 200);
    const row = await lg.usageRow(reservation.id);
    assert.equal(row.status, 'ok');
    assert.equal(row.cost, costOf(PROMPT, 5));
    assert.equal(row.beyond_reservation, row.cost, 'nothing was held any more');
    state = await billing(lg, tenant.id);
    assert.deepEqual([state.balance, state.debt, state.reserved], [1_000_000 - row.cost, 0, 0]);
    // Today was rolled up by the cron run as of the future: the late row joined its rollup.
    const daily = lg.d1('SELECT SUM(requests) AS n, SUM(cost) AS c FROM usage_daily WHERE tenant_id = ?', tenant.id)[0];
    assert.deepEqual([daily.n, daily.c], [1, row.cost]);
  });

  test('an allowance hold settles against its own month, not the next one', async () => {
    await lg.adminOk('PUT', '/admin/plans/own-period', { name: 'Own period', allowance: 100 });
    const { tenant, key } = await lg.newTenant({ name: 'boundary', credit: 0 });
    await lg.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'own-period' });
    const pending = post(lg, key.key, { model: 'mock-model', max_tokens: 5, messages: say('hold boundary') });
    await until('the upstream call', () => held.has('hold boundary'));
    const hold = lg.d1('SELECT * FROM reservations WHERE tenant_id = ?', tenant.id)[0];
    assert.ok(hold.allowance_amount >= 19 && hold.amount === 0, JSON.stringify(hold));
    let state = await billing(lg, tenant.id);
    assert.deepEqual([state.allowance_remaining, state.allowance_reserved], [100 - hold.allowance_amount, hold.allowance_amount]);

    const now = new Date();
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    await lg.adminOk('POST', '/admin/cron', { time: nextMonth + 3_600_000 });
    state = await billing(lg, tenant.id);
    assert.equal(state.allowance_period, nextMonth);
    assert.equal(state.allowance_remaining, 100, 'the new month starts full');

    held.get('hold boundary')();
    const res = await pending;
    assert.equal(res.status, 200);
    const row = await lg.usageRow(res.headers.get('x-request-id'));
    assert.equal(row.cost, 19);
    assert.equal(row.allowance_cost, 19, 'paid by the hold of its own month');
    state = await billing(lg, tenant.id);
    assert.deepEqual([state.allowance_remaining, state.balance, state.debt], [100, 0, 0]);
  });
});

describe('plans', () => {
  test('re-assigning a plan while a request holds its allowance does not pay that hold twice', async () => {
    await adminOk('PUT', '/admin/plans/replan', { name: 'Replan', allowance: 100 });
    const { tenant, key } = await gw.newTenant({ name: 'replan', credit: 0 });
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'replan' });
    const pending = post(gw, key.key, { model: 'mock-model', max_tokens: 5, messages: say('hold replan') });
    await until('the upstream call', () => held.has('hold replan'));
    // The hold is in the tenant's wallet (WALLETS on): its allowance part is `allowance_reserved`.
    const before = await billing(gw, tenant.id);
    const hold = before.allowance_reserved;
    assert.ok(hold >= 19 && before.reserved === 0, JSON.stringify(before));
    assert.equal(before.allowance_remaining, 100 - hold);
    const again = await adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'replan' });
    assert.equal(again.allowance_remaining, 100 - hold, 'the hold stays out of the refilled allowance');
    held.get('hold replan')();
    const res = await pending;
    assert.equal(res.status, 200);
    await gw.usageRow(res.headers.get('x-request-id'));
    const state = await billing(gw, tenant.id);
    assert.deepEqual([state.allowance_remaining, state.balance, state.reserved], [100 - 19, 0, 0]);
  });
});

describe('plugin calls', () => {
  test('a plan-only tenant (allowance, balance 0) pays a priced plugin call from its allowance', async () => {
    await adminOk('PUT', '/admin/plugins/notes', {
      manifest: {
        identifier: 'notes', title: 'Notes', description: 'Echoes its input',
        endpoint: { url: `${plugins.url}/notes` },
        apis: [{ name: 'run', description: 'Runs notes', parameters: { type: 'object', properties: { text: { type: 'string' } } } }],
      },
      price_per_call: NOTES_PRICE,
    }, 201);
    await adminOk('PUT', '/admin/plans/plugins-plan', { name: 'Plugins plan', allowance: 1_000_000 });
    const { tenant, key } = await gw.newTenant({ name: 'plan-plugins', credit: 0 });
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'plugins-plan' });
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/notes`, {});
    const res = await post(gw, key.key, { model: 'mock-model', messages: say('/notes.run text=hi'), plugin_commands: true });
    assert.equal(res.status, 200, await res.clone().text());
    const requestId = res.headers.get('x-request-id');
    const call = await until('the call row', () =>
      gw.d1('SELECT * FROM plugin_calls WHERE request_id = ?', requestId)[0]);
    assert.equal(call.status, 'ok');
    assert.deepEqual([call.cost, call.allowance_cost, call.debt], [NOTES_PRICE, NOTES_PRICE, 0]);
    const state = await until('settled', async () => {
      const s = await billing(gw, tenant.id);
      return s.reserved === 0 && s.allowance_reserved === 0 && s;
    });
    const spent = gw.d1('SELECT COALESCE(SUM(cost), 0) AS c FROM usage WHERE tenant_id = ?', tenant.id)[0].c;
    assert.equal(state.allowance_remaining, 1_000_000 - NOTES_PRICE - spent);
    assert.deepEqual([state.balance, state.debt], [0, 0]);
  });
});

describe('settlements D1 refuses (injected faults)', () => {
  let faulty;
  before(async () => {
    faulty = await early.faulty; // WALLETS=false, TOLLGATE_FAULTS=settle_d1,record_call_d1
  });
  after(async () => {
    await faulty?.kill();
  });

  /** Runs the scheduled handler (the real `scheduled` event) until `done()` holds. */
  async function cronUntil(what, done) {
    return until(what, async () => {
      const res = await fetch(`${faulty.url}/__scheduled?cron=*/5+*+*+*+*`);
      assert.equal(res.status, 200, await res.text());
      return done();
    }, 60_000);
  }

  test('a settlement that fails every attempt is kept in KV and written by the scheduled handler', async () => {
    const { tenant, key } = await faulty.newTenant({ name: 'kv-settle', credit: 1_000_000 });
    const res = await post(faulty, key.key, { model: 'tollgate-echo', messages: say('hello there') });
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const cost = Number(res.headers.get('x-tollgate-cost'));
    assert.ok(cost > 0);
    // D1 refuses the settlement: no row; the reservation is still held.
    assert.equal(faulty.d1('SELECT COUNT(*) AS n FROM usage WHERE request_id = ?', requestId)[0].n, 0);
    assert.ok((await billing(faulty, tenant.id)).reserved > 0);
    const row = await cronUntil('the replayed row', () =>
      faulty.d1('SELECT * FROM usage WHERE request_id = ?', requestId)[0]);
    assert.equal(row.cost, cost);
    assert.equal(row.status, 'ok');
    const state = await billing(faulty, tenant.id);
    assert.deepEqual([state.balance, state.reserved, state.debt], [1_000_000 - cost, 0, 0]);
    assert.match(faulty.logs(), new RegExp(`settlement of ${requestId} kept for replay: \\{`));
    // Replayed once: the KV entry is gone and a second run changes nothing.
    const again = await faulty.adminOk('POST', '/admin/cron', {});
    assert.ok(again.done.includes('replayed 0 pending settlements'), JSON.stringify(again.done));
    assert.equal((await billing(faulty, tenant.id)).balance, 1_000_000 - cost);
    assert.equal(faulty.d1('SELECT COUNT(*) AS n FROM usage WHERE request_id = ?', requestId)[0].n, 1);
  });

  test('an Idempotency-Key left pending by a failed settlement is leased: marked done once its row exists', async () => {
    const { key } = await faulty.newTenant({ name: 'kv-idem', credit: 1_000_000 });
    const body = { model: 'tollgate-echo', stream: true, messages: say('hello there') };
    const res = await post(faulty, key.key, body, { 'idempotency-key': 'kv-idem-1' });
    assert.equal(res.status, 200);
    await res.text();
    const requestId = res.headers.get('x-request-id');
    await cronUntil('the replayed row', () => faulty.d1('SELECT * FROM usage WHERE request_id = ?', requestId)[0]);
    const state = () => faulty.d1("SELECT state FROM idempotency_keys WHERE key = 'kv-idem-1'")[0]?.state;
    assert.equal(state(), 'pending', 'the failed settlement never marked it');
    // Past the lease (STALE_RESERVATION_SECONDS, 900 s by default).
    await faulty.adminOk('POST', '/admin/cron', { time: Date.now() + 16 * 60_000 });
    assert.equal(state(), 'done');
    const retry = await post(faulty, key.key, body, { 'idempotency-key': 'kv-idem-1' });
    assert.equal(retry.status, 409);
    assert.equal((await retry.json()).error.code, 'idempotency_key_used');
  });

  test('a plugin call record that fails is kept in KV and written by the scheduled handler', async () => {
    await faulty.adminOk('PUT', '/admin/plugins/notes', {
      manifest: {
        identifier: 'notes', title: 'Notes', description: 'Echoes its input',
        endpoint: { url: `${plugins.url}/notes` },
        apis: [{ name: 'run', description: 'Runs notes', parameters: { type: 'object', properties: { text: { type: 'string' } } } }],
      },
      price_per_call: NOTES_PRICE,
    }, 201);
    const { tenant, key } = await faulty.newTenant({ name: 'kv-call', credit: 1_000_000 });
    await faulty.adminOk('PUT', `/admin/tenants/${tenant.id}/plugins/notes`, {});
    const res = await post(faulty, key.key, { model: 'tollgate-echo', messages: say('/notes.run text=hi'), plugin_commands: true });
    assert.equal(res.status, 200, await res.clone().text());
    const requestId = res.headers.get('x-request-id');
    assert.equal(faulty.d1('SELECT COUNT(*) AS n FROM plugin_calls WHERE request_id = ?', requestId)[0].n, 0);
    const call = await cronUntil('the replayed call', () =>
      faulty.d1('SELECT * FROM plugin_calls WHERE request_id = ?', requestId)[0]);
    assert.deepEqual([call.status, call.cost], ['ok', NOTES_PRICE]);
    const state = await until('settled', async () => {
      const s = await billing(faulty, tenant.id);
      return s.reserved === 0 && s;
    });
    const spent = faulty.d1('SELECT COALESCE(SUM(cost), 0) AS c FROM usage WHERE tenant_id = ?', tenant.id)[0].c;
    assert.equal(state.balance, 1_000_000 - NOTES_PRICE - spent);
  });
});

describe('a settlement the wallet cannot take (injected fault, WALLETS on)', () => {
  let wf;
  before(async () => {
    wf = await early.wf; // TOLLGATE_FAULTS=settle_wallet, wallets on
  });
  after(async () => {
    await wf?.kill();
  });

  test('is kept in KV and replayed into the wallet by the scheduled handler, once', async () => {
    const { tenant, key } = await wf.newTenant({ name: 'kv-wallet', credit: 1_000_000 });
    const res = await post(wf, key.key, { model: 'tollgate-echo', messages: say('hello there') });
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id');
    const cost = Number(res.headers.get('x-tollgate-cost'));
    assert.ok(cost > 0);
    await until('the settlement kept', () => wf.logs().includes(`settlement of ${requestId} kept for replay: {`));
    // Every attempt failed: the wallet still holds the reservation and charged nothing.
    let state = await billing(wf, tenant.id);
    assert.ok(state.reserved > 0, JSON.stringify(state));
    assert.equal(state.balance + state.reserved, 1_000_000);
    assert.equal(await wf.openReservations(tenant.id), 1);
    await until('the replay into the wallet', async () => {
      const r = await fetch(`${wf.url}/__scheduled?cron=*/5+*+*+*+*`);
      assert.equal(r.status, 200, await r.text());
      return (await billing(wf, tenant.id)).reserved === 0;
    }, 60_000);
    state = await billing(wf, tenant.id);
    assert.deepEqual([state.balance, state.reserved, state.debt], [1_000_000 - cost, 0, 0]);
    await wf.exported(tenant.id);
    const row = await wf.usageRow(requestId);
    assert.deepEqual([row.cost, row.status], [cost, 'ok']);
    // Replayed once: the KV entry is gone and a second run changes nothing.
    const again = await wf.adminOk('POST', '/admin/cron', {});
    assert.ok(again.done.includes('replayed 0 pending settlements'), JSON.stringify(again.done));
    assert.equal((await billing(wf, tenant.id)).balance, 1_000_000 - cost);
    assert.equal(wf.d1('SELECT COUNT(*) AS n FROM usage WHERE request_id = ?', requestId)[0].n, 1);
  });
});
