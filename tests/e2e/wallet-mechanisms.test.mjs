// End to end: the wallet versions of the D1-only mechanism tests (issue 13). On D1 these run on
// `WALLETS=false` gateways driven by `POST /admin/cron {time}` (settlement.test.mjs "late
// settlement", alerts.test.mjs "sweeps a stale reservation", ledger.test.mjs plans); here the
// wallet does the work, driven by its test clock (`POST /admin/tenants/{id}/wallet/clock`):
// - a stale hold is returned by the wallet's alarm; the request that outlived it is then charged
//   everything as beyond its reservation (docs/money.md "The rules": Release);
// - at the month boundary the wallet refills the plan allowance and restarts its month figures,
//   and a hold of the old month settles against its own month;
// - an Idempotency-Key is replayed across a restart of workerd without a second charge, and the
//   key of a request that died with workerd is released once the wallet returned its hold;
// - and two limits of issue 13 the other files do not drive through requests: TPM (counts the
//   reserved tokens, settles to the actual, 429 `tokens` with its headers) and a tenant budget
//   (402 `budget_exceeded`, counting settled costs, not reservations).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomToken, sleep, startGateway, startMockOpenAI } from './harness.mjs';

const PRICE_IN = 1_000_000; // 1 micro-unit per prompt token
const PRICE_OUT = 2_000_000; // 2 per completion token
const PROMPT = 9;
const costOf = (prompt, completion) => prompt * (PRICE_IN / 1e6) + completion * (PRICE_OUT / 1e6);
const DAY = 86_400_000;
const STALE_DAYS = 100;
const state = {
  persistDir: mkdtempSync(join(tmpdir(), 'tollgate-e2e-wallet-mechanisms-')),
  adminToken: `admin-${randomToken()}`,
  pepper: randomToken(32),
};
const VARS = {
  WALLETS: 'true',
  TOLLGATE_TEST_DEPLOYMENT: 'true',
  PROVIDER_MOCK_KEY: 'sk-mock',
  // Holds go stale after 100 days of the wallet's clock: a month's move never sweeps them.
  STALE_RESERVATION_SECONDS: String(STALE_DAYS * 86_400),
};

let gw;
let mock;
/** Requests the mock holds until the test lets them answer: message → resolvers, in order. */
const held = new Map();
const release = (text) => held.get(text)?.shift()?.();

const billing = (id) => gw.adminOk('GET', `/admin/tenants/${id}/billing`);
const walletView = (id) => gw.adminOk('GET', `/admin/tenants/${id}/wallet`);
const clock = (id, offset) => gw.adminOk('POST', `/admin/tenants/${id}/wallet/clock`, { offset_ms: offset });
const say = (content) => [{ role: 'user', content }];
const post = (key, content, headers = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'mock-model', max_tokens: 5, messages: say(content) }),
  });

async function until(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Moves the wallet's clock past the stale age and has its alarm run (armed by an export). */
async function sweep(id) {
  await clock(id, (STALE_DAYS + 1) * DAY);
  await gw.adminOk('POST', `/admin/tenants/${id}/wallet/export`);
  return until('the wallet\'s alarm to return the stale hold', async () => {
    const v = await walletView(id);
    return v.open_reservations === 0 && v;
  });
}

before(async () => {
  mock = await startMockOpenAI({ promptTokens: PROMPT, chunkDelayMs: 5 });
  mock.setBehavior(async (req, res) => {
    const text = req.body?.messages?.at(-1)?.content;
    if (text === 'short') {
      // One completion token: less than the reservation covered (5).
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: 'chatcmpl-short', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: PROMPT, completion_tokens: 1, total_tokens: PROMPT + 1 },
      }));
      return true;
    }
    if (typeof text !== 'string' || !text.startsWith('hold ')) return false;
    await new Promise((resolve) => {
      if (!held.has(text)) held.set(text, []);
      held.get(text).push(resolve);
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: 'chatcmpl-held', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'held reply' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: PROMPT, completion_tokens: 5, total_tokens: PROMPT + 5 },
    }));
    return true;
  });
  gw = await startGateway({ vars: VARS, state });
  await gw.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await gw.adminOk('PUT', '/admin/models/mock-model', {
    provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: PRICE_IN, output_price: PRICE_OUT,
    max_output_tokens: 1000, encoding: 'o200k_base',
  });
});

after(async () => {
  for (const list of held.values()) for (const r of list) r();
  await gw?.kill();
  await mock?.close();
  if (!process.env.TOLLGATE_E2E_KEEP) rmSync(state.persistDir, { recursive: true, force: true });
});

describe('stale reservations (the wallet\'s alarm)', () => {
  test('a stale hold is returned by the alarm, no usage row; the request that outlived it is charged beyond its reservation', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'stale', credit: 1_000_000 });
    const pending = post(key.key, 'hold stale');
    await until('the upstream call', () => held.get('hold stale')?.length === 1);
    const heldState = await billing(tenant.id);
    const reserved = heldState.reserved;
    assert.ok(reserved >= costOf(PROMPT, 5), JSON.stringify(heldState));
    assert.equal(heldState.balance, 1_000_000 - reserved);

    await sweep(tenant.id);
    let s = await billing(tenant.id);
    assert.deepEqual([s.balance, s.reserved, s.debt], [1_000_000, 0, 0], 'credit returned');
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE tenant_id = ?', tenant.id)[0].n, 0,
      'the sweep writes no usage row');

    release('hold stale');
    const res = await pending;
    assert.equal(res.status, 200, await res.clone().text());
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.equal(row.cost, costOf(PROMPT, 5));
    assert.deepEqual([row.reserved, row.beyond_reservation, row.debt], [0, row.cost, 0], 'nothing was held any more');
    s = await billing(tenant.id);
    assert.deepEqual([s.balance, s.reserved, s.debt], [1_000_000 - row.cost, 0, 0]);
  });
});

describe('the month boundary (the wallet\'s clock)', () => {
  test('the allowance refills, the month figures restart, and a hold of the old month settles against its own month', async () => {
    await gw.adminOk('PUT', '/admin/plans/boundary', { name: 'Boundary', allowance: 100 });
    const { tenant, key } = await gw.newTenant({ name: 'boundary', credit: 0 });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'boundary' });
    // One request this month, so that the month figures have something to restart from.
    const first = await post(key.key, 'hello there');
    assert.equal(first.status, 200, await first.clone().text());
    const firstCost = Number(first.headers.get('x-tollgate-cost'));
    const pending = post(key.key, 'hold boundary');
    await until('the upstream call', () => held.get('hold boundary')?.length === 1);
    const old = await billing(tenant.id);
    const hold = old.allowance_reserved;
    assert.ok(hold >= costOf(PROMPT, 5), JSON.stringify(old));
    assert.equal(old.allowance_remaining, 100 - firstCost - hold);
    const oldMonth = await until('the first row exported', async () => {
      const v = await walletView(tenant.id);
      return v.outbox_pending === 0 && v.month;
    });
    assert.equal(oldMonth.cost, firstCost);

    // A minute into next month on the wallet's clock.
    await clock(tenant.id, old.allowance_resets_at - Date.now() + 60_000);
    const next = await billing(tenant.id);
    assert.equal(next.allowance_period, old.allowance_resets_at);
    assert.deepEqual([next.allowance_remaining, next.allowance_reserved], [100, 0],
      'the new month starts full; the open hold belongs to the old one');
    const view = await walletView(tenant.id);
    assert.deepEqual([view.month.start, view.month.tokens, view.month.cost], [old.allowance_resets_at, 0, 0]);

    release('hold boundary');
    const res = await pending;
    assert.equal(res.status, 200, await res.clone().text());
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.equal(row.cost, costOf(PROMPT, 5));
    assert.equal(row.allowance_cost, row.cost, 'charged from the old month\'s hold');
    const s = await billing(tenant.id);
    assert.deepEqual([s.allowance_remaining, s.balance, s.debt, s.reserved], [100, 0, 0, 0],
      'the new month\'s allowance is untouched');
  });
});

describe('Idempotency-Key across a restart of workerd', () => {
  const t = {};

  test('a completed request is replayed after the restart, not charged again', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'replay', credit: 1_000_000 });
    Object.assign(t, { tenant, key });
    const first = await post(key.key, 'hello there', { 'idempotency-key': 'replay-1' });
    assert.equal(first.status, 200, await first.clone().text());
    t.body = await first.text();
    t.id = first.headers.get('x-request-id');
    t.cost = Number(first.headers.get('x-tollgate-cost'));
    await gw.exported(tenant.id);

    await gw.kill();
    gw = await startGateway({ vars: VARS, state });
    const again = await post(key.key, 'hello there', { 'idempotency-key': 'replay-1' });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.headers.get('x-request-id'), t.id);
    assert.equal(await again.text(), t.body);
    const s = await billing(tenant.id);
    assert.deepEqual([s.balance, s.reserved], [1_000_000 - t.cost, 0], 'charged once');
    const v = await walletView(tenant.id);
    assert.deepEqual([v.outbox_pending, v.outbox_exported], [0, 1]);
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE tenant_id = ?', tenant.id)[0].n, 1);
  });

  test('the key of a request that died with workerd is released once the wallet returned its hold; the retry is charged once', async () => {
    const { tenant, key } = t;
    const dying = post(key.key, 'hold dead', { 'idempotency-key': 'dead-1' }).catch(() => null);
    await until('the upstream call', () => held.get('hold dead')?.length === 1);
    assert.equal((await walletView(tenant.id)).open_reservations, 1);
    process.kill(-gw.pid, 'SIGKILL');
    await gw.kill();
    assert.equal(await dying, null, 'the client lost its answer with workerd');
    release('hold dead'); // the provider answers a connection nobody reads any more
    gw = await startGateway({ vars: VARS, state });

    // The key is still pending: a retry is told to wait.
    const early = await post(key.key, 'hold dead', { 'idempotency-key': 'dead-1' });
    assert.equal(early.status, 409);
    assert.equal((await early.json()).error.code, 'idempotency_key_in_progress');
    // The wallet's alarm returns the dead request's hold (stale on the wallet's clock)...
    await sweep(tenant.id);
    assert.deepEqual([(await billing(tenant.id)).balance, (await billing(tenant.id)).reserved], [1_000_000 - t.cost, 0]);
    // ...and the scheduled handler's lease releases its key (as of past the stale age).
    const run = await gw.adminOk('POST', '/admin/cron', { time: Date.now() + (STALE_DAYS + 1) * DAY });
    assert.ok(run.done.includes('released 1 stale idempotency keys'), JSON.stringify(run.done));

    const retry = post(key.key, 'hold dead', { 'idempotency-key': 'dead-1' });
    await until('the retry upstream', () => held.get('hold dead')?.length === 1);
    release('hold dead');
    const res = await retry;
    assert.equal(res.status, 200, await res.clone().text());
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    await gw.exported(tenant.id);
    const s = await billing(tenant.id);
    assert.deepEqual([s.balance, s.reserved, s.debt], [1_000_000 - t.cost - row.cost, 0, 0], 'charged once for the dead request');
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE tenant_id = ?', tenant.id)[0].n, 2);
    const replay = await post(key.key, 'hold dead', { 'idempotency-key': 'dead-1' });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  });
});

describe('limits on the hot path', () => {
  test('TPM counts the reserved tokens, settles to the actual ones, and refuses with 429 tokens and its headers', async () => {
    const L = 20; // tokens per minute: the bucket refills one token every 3 s
    const { key } = await gw.newTenant({ name: 'tpm', credit: 1_000_000 });
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { tpm: L });
    const started = Date.now();
    const first = await post(key.key, 'short');
    assert.equal(first.status, 200, await first.clone().text());
    const row = await gw.usageRow(first.headers.get('x-request-id'));
    const reservedTokens = row.local_prompt_tokens + 5; // the prompt + max_tokens
    const actual = row.prompt_tokens + row.completion_tokens;
    assert.ok(actual < reservedTokens, JSON.stringify(row));
    assert.equal(first.headers.get('x-ratelimit-limit-tokens'), String(L));
    const refill = (ms) => Math.ceil((ms * L) / 60_000);
    const afterReserve = Number(first.headers.get('x-ratelimit-remaining-tokens'));
    assert.ok(afterReserve >= L - reservedTokens && afterReserve <= L - reservedTokens + refill(Date.now() - started),
      `remaining ${afterReserve} after reserving ${reservedTokens}`);
    // Settled to the actual tokens: what the reservation counted beyond them came back.
    const usage = (await gw.adminOk('GET', `/admin/keys/${key.id}/limits`)).usage.tokens;
    assert.equal(usage.limit, L);
    assert.ok(usage.remaining >= L - actual && usage.remaining <= L - actual + refill(Date.now() - started),
      `remaining ${usage.remaining} after settling ${actual}`);
    // The next reservation needs more than is left: refused, with the tokens headers.
    const refused = await post(key.key, 'short');
    assert.equal(refused.status, 429);
    const err = (await refused.json()).error;
    assert.deepEqual([err.code, err.type], ['rate_limit_exceeded', 'tokens']);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal(refused.headers.get('x-ratelimit-remaining-tokens'), '0');
    assert.equal(refused.headers.get('x-ratelimit-limit-tokens'), String(L));
  });

  test('a tenant budget counts settled costs and refuses with 402 budget_exceeded', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'tenant-budget', credit: 1_000_000 });
    const first = await post(key.key, 'short');
    assert.equal(first.status, 200, await first.clone().text());
    const row = await gw.usageRow(first.headers.get('x-request-id'));
    const [cost, hold] = [row.cost, row.reserved];
    assert.ok(cost < hold, JSON.stringify(row));
    // A budget of one more request: spent (counted before the budget was set) + hold.
    const set = await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/limits`, { budget: cost + hold, budget_period: 'total' });
    assert.equal(set.usage.spent, cost);
    const second = await post(key.key, 'short');
    assert.equal(second.status, 200, await second.clone().text());
    assert.equal(second.headers.get('x-tollgate-cost'), String(cost));
    // Spent twice the cost: another hold would pass the budget (had it counted the holds, not
    // the settled costs, the second request would have been refused).
    const over = await post(key.key, 'short');
    assert.equal(over.status, 402);
    assert.equal((await over.json()).error.code, 'budget_exceeded');
    const limits = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/limits`);
    assert.deepEqual([limits.usage.spent, limits.usage.held], [2 * cost, 0]);
    assert.equal((await billing(tenant.id)).balance, 1_000_000 - 2 * cost);
  });
});
