// End to end: tenant wallets (Durable Objects). Limits of keys and tenants through the admin API,
// the lazy migration of a tenant's D1 money into its wallet (with a request in flight), D1 refusing
// money moves for a migrated tenant, and a workerd restart keeping the wallet's state.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway } from './harness.mjs';

let gw;
// Our own state directory, so that the restart test can start workerd again on the same state.
const persistDir = mkdtempSync(join(tmpdir(), 'tollgate-e2e-wallet-'));
// A slow echo stream keeps a reservation open while the tenant is migrated.
const VARS = { ECHO_CHUNK_DELAY_MS: '150' };

before(async () => {
  gw = await startGateway({ vars: VARS, state: { persistDir } });
});

after(async () => {
  await gw?.kill();
  if (!process.env.TOLLGATE_E2E_KEEP) rmSync(persistDir, { recursive: true, force: true });
});

const EMPTY_USAGE = { spent: 0, held: 0, budget_period_start: null, requests: null, tokens: null };
const NO_LIMITS = { rpm: null, tpm: null, budget: null, budget_period: null };

describe('limits', () => {
  test('a key starts without limits; PUT sets, keeps absent fields, null clears', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'limits', credit: 1000 });
    const path = `/admin/keys/${key.id}/limits`;
    const first = await gw.adminOk('GET', path);
    assert.deepEqual(first, { key_id: key.id, tenant_id: tenant.id, limits: NO_LIMITS, usage: EMPTY_USAGE });

    const set = await gw.adminOk('PUT', path, { rpm: 5, tpm: 1000, budget: 2500, budget_period: 'day' });
    assert.deepEqual(set.limits, { rpm: 5, tpm: 1000, budget: 2500, budget_period: 'day' });
    assert.deepEqual(set.usage.requests, { limit: 5, remaining: 5, reset_ms: 0 });
    assert.deepEqual(set.usage.tokens, { limit: 1000, remaining: 1000, reset_ms: 0 });
    const dayStart = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    assert.equal(set.usage.budget_period_start, dayStart);

    const patched = await gw.adminOk('PUT', path, { rpm: null, budget: 900 });
    assert.deepEqual(patched.limits, { rpm: null, tpm: 1000, budget: 900, budget_period: 'day' });
    assert.equal(patched.usage.requests, null);
    assert.deepEqual((await gw.adminOk('GET', path)).limits, patched.limits);

    // The tenant's own limits are separate from its keys'.
    const t = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/limits`);
    assert.deepEqual(t, { tenant_id: tenant.id, limits: NO_LIMITS, usage: EMPTY_USAGE });
    const tset = await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/limits`, { budget: 10, budget_period: 'month' });
    assert.deepEqual(tset.limits, { rpm: null, tpm: null, budget: 10, budget_period: 'month' });
    assert.deepEqual((await gw.adminOk('GET', path)).limits, patched.limits);
  });

  test('bad bodies are refused with the field named; unknown ids are 404', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'limits-bad' });
    const path = `/admin/keys/${key.id}/limits`;
    for (const [body, param] of [
      [{ rpm: 0 }, 'rpm'],
      [{ tpm: 1_000_000_000_001 }, 'tpm'],
      [{ budget: 9007199254740992 }, 'budget'],
    ]) {
      const res = await gw.admin('PUT', path, body);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error.param, param);
    }
    for (const body of [{ budget_period: 'year' }, { rpm: -1 }, { rpm: 1.5 }, { rmp: 3 }, [1], 'x']) {
      const res = await gw.admin('PUT', path, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.json.error.type, 'invalid_request_error');
    }
    // Nothing of the refused bodies was applied.
    assert.deepEqual((await gw.adminOk('GET', path)).limits, NO_LIMITS);
    assert.equal((await gw.admin('GET', '/admin/keys/nokey/limits')).status, 404);
    assert.equal((await gw.admin('PUT', '/admin/tenants/none/limits', { rpm: 1 })).status, 404);
    assert.equal((await gw.admin('DELETE', `/admin/tenants/${tenant.id}/limits`)).status, 405);
    // Admin routes need the admin token.
    const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key.key}` } });
    assert.equal(res.status, 401);
  });

  test('concurrent PUTs on one wallet are all applied, one at a time', async () => {
    const { tenant, keys } = await gw.newTenant({ name: 'limits-burst', keys: 4 });
    const puts = [];
    for (let i = 1; i <= 40; i++) {
      const k = keys[i % 4];
      puts.push(gw.adminOk('PUT', `/admin/keys/${k.id}/limits`, { rpm: i }).then((r) => [k.id, i, r]));
    }
    const done = await Promise.all(puts);
    for (const [, i, r] of done) assert.equal(r.limits.rpm, i);
    // The last PUT of each key (in answer order per key, which the object serialises) is what stays.
    for (const k of keys) {
      const mine = done.filter(([id]) => id === k.id).map(([, i]) => i);
      const now = (await gw.adminOk('GET', `/admin/keys/${k.id}/limits`)).limits.rpm;
      assert.ok(mine.includes(now), `${now} is one of ${mine}`);
    }
    assert.equal((await gw.adminOk('GET', `/admin/tenants/${tenant.id}/limits`)).limits.rpm, null);
  });
});

describe('migration from D1', () => {
  test('the first money command takes balance, debt, plan and open reservations exactly once', async () => {
    // Money in D1 to migrate needs a gateway with wallets off (they are on by default): this
    // phase runs on the same state with WALLETS explicitly 'false', and ends while a stream still
    // holds its D1 reservation (workerd stops mid-stream, so the request is never settled).
    const state = { persistDir, adminToken: gw.adminToken, pepper: gw.pepper };
    await gw.kill();
    gw = await startGateway({ vars: { ...VARS, WALLETS: 'false' }, state });
    const { tenant, key, client } = await gw.newTenant({ name: 'migrate', credit: 2_000_000 });
    await gw.adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 500_000, reason: 'top-up' });

    // Limits can be set before: they do not take the tenant.
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { tpm: 50_000 });
    const before = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`);
    assert.equal(before.migrated, false);
    assert.equal(before.balance, null);
    assert.equal(gw.d1('SELECT * FROM wallet_claims WHERE tenant_id = ?', tenant.id).length, 0);

    // A stream in flight holds a D1 reservation.
    const stream = await client.chat.completions.create({
      model: 'tollgate-echo',
      stream: true,
      max_tokens: 40,
      messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }],
    });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const [held] = gw.d1('SELECT amount, allowance_amount FROM reservations WHERE tenant_id = ?', tenant.id);
    assert.ok(held && held.amount > 0, 'a reservation is open');
    const [d1Tenant] = gw.d1('SELECT balance, debt FROM tenants WHERE id = ?', tenant.id);
    assert.equal(d1Tenant.balance + held.amount, 2_500_000);

    // Wallets on again (the default), the reservation still open in D1.
    await gw.kill();
    await Promise.resolve(it.return?.()).catch(() => {}); // the stream's connection is gone
    gw = await startGateway({ vars: VARS, state });
    assert.deepEqual(gw.d1('SELECT amount, allowance_amount FROM reservations WHERE tenant_id = ?', tenant.id), [held]);
    assert.equal((await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`)).migrated, false);

    const migrated = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/migrate`);
    assert.equal(migrated.migrated, true);
    assert.equal(migrated.open_reservations, 1);
    assert.equal(migrated.balance.balance, d1Tenant.balance);
    assert.equal(migrated.balance.reserved, held.amount);
    assert.equal(migrated.balance.debt, 0);
    assert.equal(migrated.balance.balance + migrated.balance.reserved, 2_500_000);

    // The claim is in D1, with this object's id; the D1 reservation moved into the wallet.
    const claims = gw.d1('SELECT object_id, snapshot FROM wallet_claims WHERE tenant_id = ?', tenant.id);
    assert.equal(claims.length, 1);
    assert.match(claims[0].object_id, /^[0-9a-f]{64}$/);
    assert.equal(JSON.parse(claims[0].snapshot).reservations.length, 1);
    assert.equal(gw.d1('SELECT * FROM reservations WHERE tenant_id = ?', tenant.id).length, 0);

    // Once only: migrating again changes nothing.
    const again = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/migrate`);
    assert.deepEqual(again.balance, migrated.balance);
    assert.equal(gw.d1('SELECT * FROM wallet_claims WHERE tenant_id = ?', tenant.id).length, 1);

    // D1 refuses money moves for the tenant now: a credit written the old way (a gateway with
    // WALLETS explicitly off) is lost to nobody.
    await gw.kill();
    gw = await startGateway({ vars: { ...VARS, WALLETS: 'false' }, state });
    const refused = await gw.admin('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 1, reason: 'late' });
    assert.ok(refused.status >= 400, `old-path credit refused: ${refused.status} ${refused.text}`);
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM credit_ledger WHERE tenant_id = ?', tenant.id)[0].n, 2);
    // The key's limits set before the migration are still there.
    assert.equal((await gw.adminOk('GET', `/admin/keys/${key.id}/limits`)).limits.tpm, 50_000);
    // The rest of this file runs with wallets on (the default).
    await gw.kill();
    gw = await startGateway({ vars: VARS, state });
  });

  test('a tenant with a plan and without money migrates its allowance', async () => {
    await gw.adminOk('PUT', '/admin/plans/wallet-plan', { name: 'Wallet plan', allowance: 700_000 });
    const { tenant } = await gw.newTenant({ name: 'plan' });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'wallet-plan' });
    const v = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/migrate`);
    assert.equal(v.balance.balance, 0);
    assert.equal(v.balance.plan_allowance, 700_000);
    assert.equal(v.balance.allowance_remaining, 700_000);
    const d = new Date();
    assert.equal(v.balance.allowance_period, Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
    assert.equal(v.balance.allowance_resets_at, Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
    const exported = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/export`);
    assert.deepEqual(exported, { exported: 0, pending: 0 });
  });

  test('an unknown tenant has no wallet', async () => {
    assert.equal((await gw.admin('POST', '/admin/tenants/nobody/wallet/migrate')).status, 404);
    assert.equal((await gw.admin('GET', '/admin/tenants/nobody/wallet')).status, 404);
  });
});

describe('throughput (printed, never asserted: docs/scale.md)', () => {
  test('one wallet answers a burst of limits reads', async () => {
    const { tenant } = await gw.newTenant({ name: 'burst' });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/limits`, { rpm: 1000 });
    const total = 400;
    const concurrency = 16;
    let next = 0;
    const started = performance.now();
    const worker = async () => {
      while (next < total) {
        next++;
        const r = await gw.admin('GET', `/admin/tenants/${tenant.id}/limits`);
        assert.equal(r.status, 200);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = (performance.now() - started) / 1000;
    console.log(`# wallet: ${total} limits reads at c=${concurrency} in ${seconds.toFixed(2)} s = ${(total / seconds).toFixed(0)}/s (each: admin auth, one D1 read, one wallet command)`);
  });
});

describe('restart', () => {
  test('limits and money survive a workerd restart', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'restart', credit: 123_456 });
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { rpm: 7, budget: 99, budget_period: 'week' });
    await gw.adminOk('PUT', `/admin/tenants/${tenant.id}/limits`, { tpm: 321 });
    const migrated = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/migrate`);
    const state = { persistDir, adminToken: gw.adminToken, pepper: gw.pepper };
    await gw.kill();
    gw = await startGateway({ vars: VARS, state });
    const k = await gw.adminOk('GET', `/admin/keys/${key.id}/limits`);
    assert.deepEqual(k.limits, { rpm: 7, tpm: null, budget: 99, budget_period: 'week' });
    const t = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/limits`);
    assert.equal(t.limits.tpm, 321);
    const v = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`);
    assert.equal(v.migrated, true);
    assert.deepEqual(v.balance, migrated.balance);
    assert.equal(v.balance.balance, 123_456);
  });
});
