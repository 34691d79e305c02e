// End to end: `GET /admin/tenants/{id}/ledger` with wallets (issue 13, docs/money.md "Ledger").
// A tenant first lives on D1 (WALLETS=false: its credits and debits are `credit_ledger` rows),
// then the gateway restarts on the same state with wallets on and the tenant moves into its
// wallet, where it gets a credit, a debit, a redemption code and a plan refill (the wallet's test
// clock moved a month on). The listing shows every entry once, newest first, wallet entries then
// D1's history, with the right amounts and the balance after each wallet entry; paging with every
// small limit returns each entry exactly once, across the seam.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { randomToken, startGateway } from './harness.mjs';

const state = {
  persistDir: mkdtempSync(join(tmpdir(), 'tollgate-e2e-wallet-ledger-')),
  adminToken: `admin-${randomToken()}`,
  pepper: randomToken(32),
};
const VARS = { TOLLGATE_TEST_DEPLOYMENT: 'true' };

let gw;
after(async () => {
  await gw?.kill();
  if (!process.env.TOLLGATE_E2E_KEEP) rmSync(state.persistDir, { recursive: true, force: true });
});

const ledger = (tenantId, query = '') => gw.adminOk('GET', `/admin/tenants/${tenantId}/ledger${query}`);

/** Every page of the ledger with `limit`, following `next_cursor`. */
async function allPages(tenantId, limit) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 100; i++) {
    const page = await ledger(tenantId, `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.ok(page.data.length <= limit, `page of ${page.data.length} > ${limit}`);
    assert.equal(page.has_more, page.next_cursor !== null);
    out.push(...page.data);
    if (!page.has_more) return out;
    cursor = page.next_cursor;
  }
  throw new Error('paging never ended');
}

const t = {};

describe('the ledger of a tenant that moved from D1 into its wallet', () => {
  test('on D1 (WALLETS=false): credits and a debit are listed newest first, paged', async () => {
    gw = await startGateway({ vars: { ...VARS, WALLETS: 'false' }, state });
    const { tenant, key } = await gw.newTenant({ name: 'ledgered', credit: 5_000 });
    Object.assign(t, { tenant, key });
    await gw.adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 3_000, reason: 'd1 top-up' });
    await gw.adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: -1_000, reason: 'd1 correction' });
    const page = await ledger(tenant.id);
    assert.deepEqual(page.data.map((e) => [e.amount, e.kind, e.store]),
      [[-1_000, 'debit', 'd1'], [3_000, 'credit', 'd1'], [5_000, 'credit', 'd1']]);
    assert.equal(page.has_more, false);
    const paged = await allPages(tenant.id, 2);
    assert.deepEqual(paged.map((e) => e.id), page.data.map((e) => e.id));
    await gw.kill();
    gw = null;
  });

  test('with wallets: credit, debit, code and plan refill are listed once, in order, with the balance after each', async () => {
    gw = await startGateway({ vars: { ...VARS, WALLETS: 'true' }, state });
    const id = t.tenant.id;
    assert.equal((await gw.adminOk('POST', `/admin/tenants/${id}/wallet/migrate`)).migrated, true);
    const d1Before = gw.d1('SELECT id FROM credit_ledger WHERE tenant_id = ? ORDER BY created_at DESC, id DESC', id);
    assert.equal(d1Before.length, 3);

    const credit = await gw.adminOk('POST', `/admin/tenants/${id}/credit`, { amount: 2_000, reason: 'wallet top-up' });
    assert.equal(credit.ledger_entry.balance, 9_000);
    await gw.adminOk('POST', `/admin/tenants/${id}/credit`, { amount: -500, reason: 'wallet correction' });
    const [code] = (await gw.adminOk('POST', '/admin/redemption-codes', { count: 1, amount: 700 }, 201)).codes;
    const redeemed = await fetch(`${gw.url}/v1/redeem`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ code }),
    });
    assert.equal(redeemed.status, 200, await redeemed.clone().text());

    // A plan (its assignment grants this month's allowance: not a ledger entry), then the
    // wallet's clock a month on: the first command of the new month refills it, as an entry.
    await gw.adminOk('PUT', '/admin/plans/ledger-plan', { name: 'Ledger plan', allowance: 400 });
    await gw.adminOk('PUT', `/admin/tenants/${id}/plan`, { plan_id: 'ledger-plan' });
    const before = await gw.adminOk('GET', `/admin/tenants/${id}/billing`);
    await gw.adminOk('POST', `/admin/tenants/${id}/wallet/clock`, { offset_ms: before.allowance_resets_at - Date.now() + 60_000 });
    const refilled = await gw.adminOk('GET', `/admin/tenants/${id}/billing`);
    assert.equal(refilled.allowance_period, before.allowance_resets_at);
    // Reading again does not refill again.
    await gw.adminOk('GET', `/admin/tenants/${id}/billing`);
    await gw.adminOk('POST', `/admin/tenants/${id}/credit`, { amount: 100, reason: 'after the refill' });

    const page = await ledger(id);
    assert.equal(page.has_more, false);
    assert.deepEqual(
      page.data.map((e) => [e.store, e.kind, e.amount, e.balance]),
      [
        ['wallet', 'credit', 100, 9_300],
        ['wallet', 'plan_allowance', 400, 9_200],
        ['wallet', 'credit', 700, 9_200],
        ['wallet', 'debit', -500, 8_500],
        ['wallet', 'credit', 2_000, 9_000],
        ['d1', 'debit', -1_000, null],
        ['d1', 'credit', 3_000, null],
        ['d1', 'credit', 5_000, null],
      ],
    );
    const month = new Date(before.allowance_resets_at).toISOString().slice(0, 7);
    assert.deepEqual(page.data.slice(0, 5).map((e) => e.reason),
      ['after the refill', `plan allowance ${month}`, page.data[2].reason, 'wallet correction', 'wallet top-up']);
    assert.match(page.data[2].reason, /^redemption code/);
    assert.ok(page.data.every((e) => e.tenant_id === id && Number.isInteger(e.created_at)));
    // The D1 part is D1's history, unchanged; no entry twice; the balance is the wallet's.
    assert.deepEqual(page.data.slice(5).map((e) => e.id), d1Before.map((r) => r.id));
    assert.equal(new Set(page.data.map((e) => e.id)).size, page.data.length);
    assert.equal((await gw.adminOk('GET', `/admin/tenants/${id}/billing`)).balance, 9_300);
    t.all = page.data;
  });

  test('paging with any small limit returns every entry exactly once, across the seam', async () => {
    const ids = t.all.map((e) => e.id);
    for (const limit of [1, 2, 3, 4, 5, 7]) {
      const paged = await allPages(t.tenant.id, limit);
      assert.deepEqual(paged.map((e) => e.id), ids, `limit ${limit}`);
    }
    // A cursor on the D1 side lists only D1's older entries.
    const first = await ledger(t.tenant.id, '?limit=6');
    assert.equal(first.data.at(-1).store, 'd1');
    const rest = await ledger(t.tenant.id, `?limit=6&cursor=${encodeURIComponent(first.next_cursor)}`);
    assert.deepEqual(rest.data.map((e) => e.id), ids.slice(6));
    assert.equal(rest.has_more, false);
  });

  test('bad queries are 400 naming the parameter; an unknown tenant is 404', async () => {
    for (const [q, param] of [['?limit=0', 'limit'], ['?limit=1001', 'limit'], ['?cursor=x1', 'cursor'],
      ["?cursor=d1.a'b", 'cursor'], ['?sort=asc', 'sort']]) {
      const res = await gw.admin('GET', `/admin/tenants/${t.tenant.id}/ledger${q}`);
      assert.equal(res.status, 400, q);
      assert.equal(res.json.error.param, param, q);
    }
    const missing = await gw.admin('GET', '/admin/tenants/ten_nobody/ledger');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.type, 'invalid_request_error');
  });
});
