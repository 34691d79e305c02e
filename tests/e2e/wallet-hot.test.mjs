// End to end: the hot path on the tenant wallets (`WALLETS=true`). A chat request reserves and
// settles in the tenant's wallet (the tenant moves in on its first request), its usage row reaches
// D1 by the wallet's export, /v1/balance reads the wallet; 200 concurrent requests never exceed a
// key's RPM limit or budget; refusals are 429 rate_limit_exceeded (retry-after, x-ratelimit-*) and
// 402 budget_exceeded.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway } from './harness.mjs';

let gw;

before(async () => {
  gw = await startGateway({ vars: { WALLETS: 'true', TOLLGATE_TEST_DEPLOYMENT: 'true' } });
});

after(async () => {
  await gw?.kill();
});

const chat = (key, content = 'hello there') =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tollgate-echo', max_tokens: 8, messages: [{ role: 'user', content }] }),
  });

async function balance(key) {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return res.json();
}

/** Waits until the wallet has exported every row and holds no reservation. */
async function quiet(tenantId, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await gw.adminOk('GET', `/admin/tenants/${tenantId}/wallet`);
    if (v.outbox_pending === 0 && v.open_reservations === 0) return v;
    if (Date.now() > deadline) throw new Error(`wallet never quiet: ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

describe('hot path on the wallet', () => {
  test('a request reserves and settles in the wallet; its row reaches D1; balance is the wallet\'s', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'hot', credit: 1_000_000 });
    const res = await chat(key.key);
    assert.equal(res.status, 200, await res.clone().text());
    const body = await res.json();
    const cost = Number(res.headers.get('x-tollgate-cost'));
    const requestId = body.id.replace(/^chatcmpl-/, '');
    // The tenant moved into its wallet on its first request; D1 never held a reservation.
    assert.equal(gw.d1('SELECT * FROM wallet_claims WHERE tenant_id = ?', tenant.id).length, 1);
    // The balance is exact at once (the wallet settles from waitUntil: wait for no hold).
    await quiet(tenant.id);
    const b = await balance(key.key);
    assert.equal(b.balance, 1_000_000 - cost);
    assert.equal(b.reserved, 0);
    // The exported row is in D1 with the wallet's charge, and reports read it.
    const row = await gw.usageRow(requestId);
    assert.equal(row.cost, cost);
    const [d1row] = gw.d1('SELECT from_wallet, cost FROM usage WHERE request_id = ?', requestId);
    assert.equal(d1row.from_wallet, 1);
    assert.equal(d1row.cost, cost);
    assert.equal(gw.d1('SELECT * FROM reservations WHERE tenant_id = ?', tenant.id).length, 0);
    // A credit now goes to the wallet (D1 refuses money moves for the tenant).
    const credited = await gw.adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 500 });
    assert.equal(credited.balance, 1_000_000 - cost + 500);
    assert.equal((await balance(key.key)).balance, 1_000_000 - cost + 500);
    const billing = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/billing`);
    assert.equal(billing.balance, 1_000_000 - cost + 500);
  });

  test('a warm request of a known key makes no D1 statement', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'warm', credit: 1_000_000 });
    // The first request reads the key and the model into the isolate's caches and moves the
    // tenant into its wallet (D1 statements expected); the next ones make none.
    const first = await chat(key.key);
    assert.equal(first.status, 200);
    assert.ok(Number(first.headers.get('x-tollgate-d1-statements')) > 0);
    await first.arrayBuffer();
    for (let i = 0; i < 3; i++) {
      await quiet(tenant.id);
      const res = await chat(key.key);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(res.headers.get('x-tollgate-d1-statements'), '0', `request ${i + 2}`);
    }
  });

  test('200 concurrent requests never exceed a key\'s RPM; the refused get 429 with retry-after and x-ratelimit-*', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'rpm', credit: 100_000_000 });
    const RPM = 5;
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { rpm: RPM });
    const started = Date.now();
    const responses = await Promise.all(Array.from({ length: 200 }, () => chat(key.key)));
    const elapsed = Date.now() - started;
    const ok = responses.filter((r) => r.status === 200);
    const limited = responses.filter((r) => r.status === 429);
    assert.equal(ok.length + limited.length, 200, `statuses: ${[...new Set(responses.map((r) => r.status))]}`);
    // The window refills RPM per minute: at most RPM plus what refilled during the burst.
    assert.ok(ok.length >= 1 && ok.length <= RPM + Math.floor((elapsed * RPM) / 60_000), `${ok.length} served`);
    for (const r of ok) {
      assert.equal(r.headers.get('x-ratelimit-limit-requests'), String(RPM));
      assert.ok(Number(r.headers.get('x-ratelimit-remaining-requests')) < RPM);
      assert.ok(r.headers.get('x-ratelimit-reset-requests'));
    }
    const r = limited[0];
    const err = (await r.json()).error;
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.type, 'requests');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal(r.headers.get('x-ratelimit-limit-requests'), String(RPM));
    assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
    await Promise.all(limited.slice(1).map((x) => x.arrayBuffer()));
    await Promise.all(ok.map((x) => x.arrayBuffer()));
    await quiet(tenant.id);
    const [{ n }] = gw.d1('SELECT COUNT(*) AS n FROM usage WHERE key_id = ?', key.id);
    assert.equal(n, ok.length, 'one exported row per served request');
  });

  test('200 concurrent requests never exceed a key\'s budget; ledger = rows', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'budget', credit: 100_000_000 });
    // What one request costs here.
    const probe = await chat(key.key);
    assert.equal(probe.status, 200);
    const one = Number(probe.headers.get('x-tollgate-cost'));
    assert.ok(one > 0);
    await quiet(tenant.id);
    const BUDGET = one * 10;
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { budget: BUDGET, budget_period: 'total' });
    const responses = await Promise.all(Array.from({ length: 200 }, () => chat(key.key)));
    const statuses = responses.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 402), `statuses: ${[...new Set(statuses)]}`);
    const refused = responses.find((r) => r.status === 402);
    assert.ok(refused, 'some requests are refused');
    assert.equal((await refused.json()).error.code, 'budget_exceeded');
    await Promise.all(responses.map((x) => (x.bodyUsed ? null : x.arrayBuffer())));
    await quiet(tenant.id);
    const limits = await gw.adminOk('GET', `/admin/keys/${key.id}/limits`);
    assert.ok(limits.usage.spent <= BUDGET, `spent ${limits.usage.spent} > budget ${BUDGET}`);
    // Ledger vs rows: the wallet's balance moved by exactly the exported costs.
    const [{ total }] = gw.d1('SELECT COALESCE(SUM(cost), 0) AS total FROM usage WHERE tenant_id = ?', tenant.id);
    assert.equal(limits.usage.spent, total);
    assert.equal((await balance(key.key)).balance, 100_000_000 - total);
  });
});
