// End to end: per-isolate credit leases (WALLET_LEASES, docs/money.md "Credit leases"). A request
// that finds no lease reserves in the wallet and asks for one in the same command; the next ones
// take from the isolate's lease without waiting for the wallet (their take is announced before the
// upstream call). Money is never overspent: 200 concurrent requests on a balance for ~50 leave
// balance == credit − Σ cost with one usage row each and, once the leases expired (the wallet's
// test clock moved on), no open hold. A revoked key stops within one round; a key given limits
// stops using leases, and a request admitted on its lease before it learned is settled as today
// (charged without a reservation). A SIGKILL mid-burst loses nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, randomToken, sleep, startGateway } from './harness.mjs';

const vars = { WALLETS: 'true', WALLET_LEASES: 'true', TOLLGATE_TEST_DEPLOYMENT: 'true' };
let gw;

before(async () => {
  gw = await startGateway({ vars });
});

after(async () => {
  await gw?.kill();
});

const chat = (url, key, { content = 'hello there', stream = false, model = 'tollgate-echo' } = {}) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, max_tokens: 8, stream, messages: [{ role: 'user', content }] }),
  });

async function until(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

const wallet = (g, tenantId) => g.adminOk('GET', `/admin/tenants/${tenantId}/wallet`);

/** Every request settled and exported (leases may still be open). */
const settled = (g, tenantId) =>
  until('settled and exported', async () => {
    const v = await wallet(g, tenantId);
    return v.open_reservations === 0 && v.outbox_pending === 0 ? v : null;
  });

/** Moves the wallet's clock past every lease's expiry, runs its sweep, waits for no hold at all. */
async function expireLeases(g, tenantId, offsetMs = 120_000) {
  await g.adminOk('POST', `/admin/tenants/${tenantId}/wallet/clock`, { offset_ms: offsetMs });
  await g.adminOk('POST', `/admin/tenants/${tenantId}/wallet/export`);
  return until('no open lease or reservation', async () => {
    const v = await wallet(g, tenantId);
    return v.open_reservations === 0 && v.open_leases === 0 && v.outbox_pending === 0 ? v : null;
  }, 60_000);
}

async function ok(res) {
  assert.equal(res.status, 200, await res.clone().text());
  const body = await res.json();
  return { id: body.id.replace(/^chatcmpl-/, ''), cost: Number(res.headers.get('x-tollgate-cost')), lease: res.headers.get('x-tollgate-lease') };
}

function rowsOf(g, tenantId) {
  return g.d1('SELECT request_id, cost, reserved, beyond_reservation FROM usage WHERE tenant_id = ?', tenantId);
}

describe('credit leases', () => {
  test('the first request reserves and gets a lease; the next ones take from it; the lease is held', async () => {
    const CREDIT = 10_000_000;
    const { tenant, key } = await gw.newTenant({ name: 'lease', credit: CREDIT });
    const first = await ok(await chat(gw.url, key.key));
    assert.equal(first.lease, 'miss');
    const held = await wallet(gw, tenant.id);
    assert.equal(held.open_leases, 1);
    const seconds = [];
    for (let i = 0; i < 3; i++) seconds.push(await ok(await chat(gw.url, key.key, { content: `again ${i}` })));
    assert.deepEqual(seconds.map((s) => s.lease), ['hit', 'hit', 'hit']);
    // A stream is admitted on the lease too.
    const stream = await chat(gw.url, key.key, { stream: true });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get('x-tollgate-lease'), 'hit');
    const streamId = stream.headers.get('x-request-id');
    await stream.text();
    const v = await settled(gw, tenant.id);
    const rows = rowsOf(gw, tenant.id);
    assert.equal(rows.length, 5);
    const ids = new Set(rows.map((r) => r.request_id));
    for (const r of [first, ...seconds]) assert.ok(ids.has(r.id));
    assert.ok(ids.has(streamId));
    // Each taken request was charged from its own reservation (the take landed before the settle).
    for (const r of rows) {
      assert.ok(r.reserved > 0, `${r.request_id} reserved`);
      assert.equal(r.beyond_reservation, 0);
    }
    const spent = rows.reduce((s, r) => s + r.cost, 0);
    // While the lease is open its leftover is held: balance + reserved == credit − Σ cost.
    assert.ok(v.balance.reserved > 0);
    assert.equal(v.balance.balance + v.balance.reserved, CREDIT - spent);
    const b = await (await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key.key}` } })).json();
    assert.equal(b.reserved, v.balance.reserved);
    // After the wallet's expiry the leftover returns.
    const done = await expireLeases(gw, tenant.id);
    assert.equal(done.balance.reserved, 0);
    assert.equal(done.balance.balance, CREDIT - spent);
  });

  test('200 concurrent requests on a balance for ~50: never overspent, one row each, no hold left', async () => {
    // What one request reserves here.
    const probeTenant = await gw.newTenant({ name: 'probe', credit: 10_000_000 });
    const probe = await ok(await chat(gw.url, probeTenant.key.key));
    const reserved = (await gw.usageRow(probe.id)).reserved;
    assert.ok(reserved > 0);

    const CREDIT = reserved * 50;
    const { tenant, key } = await gw.newTenant({ name: 'burst', credit: CREDIT });
    // The first request brings the isolate a lease; the burst then mixes lease takes and reserves.
    const warm = await ok(await chat(gw.url, key.key));
    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => chat(gw.url, key.key, { content: `burst ${i}`, stream: i % 4 === 3 })));
    const served = [];
    let hits = 0;
    for (const r of responses) {
      if (r.status === 200) {
        served.push(r.headers.get('x-request-id'));
        if (r.headers.get('x-tollgate-lease') === 'hit') hits++;
        await r.arrayBuffer();
      } else {
        assert.equal(r.status, 402, await r.clone().text());
        assert.equal((await r.json()).error.code, 'insufficient_quota');
      }
    }
    assert.ok(hits >= 1, 'some of the burst took from the lease');
    assert.ok(served.length >= 30 && served.length < 200, `${served.length} served`);
    await settled(gw, tenant.id);
    const done = await expireLeases(gw, tenant.id);
    const rows = rowsOf(gw, tenant.id);
    // One usage row per served request, nothing else.
    assert.deepEqual(new Set(rows.map((r) => r.request_id)), new Set([warm.id, ...served]));
    assert.equal(rows.length, served.length + 1);
    const spent = rows.reduce((s, r) => s + r.cost, 0);
    // Never overspent: no debt, every request charged within its reservation.
    assert.equal(done.balance.debt, 0);
    assert.ok(rows.every((r) => r.beyond_reservation === 0));
    assert.equal(done.balance.balance, CREDIT - spent);
    assert.equal(done.balance.reserved, 0);
  });

  test('a revoked key stops within one round', async () => {
    const CREDIT = 10_000_000;
    const { tenant, key } = await gw.newTenant({ name: 'revoke', credit: CREDIT });
    assert.equal((await ok(await chat(gw.url, key.key))).lease, 'miss');
    assert.equal((await ok(await chat(gw.url, key.key))).lease, 'hit');
    await gw.adminOk('DELETE', `/admin/keys/${key.id}`);
    assert.equal((await wallet(gw, tenant.id)).open_leases, 0, 'revoking cancels the key\'s leases');
    // The isolate may admit one more request on its lease before the wallet's answer tells it
    // (if its key cache still knew the key as live); that request is charged normally.
    const third = await chat(gw.url, key.key);
    assert.ok([200, 401].includes(third.status), `${third.status}`);
    await third.arrayBuffer();
    const fourth = await chat(gw.url, key.key);
    assert.equal(fourth.status, 401);
    assert.equal((await fourth.json()).error.code, 'invalid_api_key');
    await settled(gw, tenant.id);
    const done = await expireLeases(gw, tenant.id);
    const rows = rowsOf(gw, tenant.id);
    assert.equal(rows.length, third.status === 200 ? 3 : 2);
    assert.equal(done.balance.balance, CREDIT - rows.reduce((s, r) => s + r.cost, 0));
    assert.equal(done.balance.reserved, 0);
  });

  test('a key given limits stops using leases; a request admitted on its lease before it learned is settled as today', async () => {
    const CREDIT = 10_000_000;
    const { tenant, key } = await gw.newTenant({ name: 'limited', credit: CREDIT });
    assert.equal((await ok(await chat(gw.url, key.key))).lease, 'miss');
    assert.equal((await ok(await chat(gw.url, key.key))).lease, 'hit');
    // A budget below one request: the wallet cancels the key's leases at once.
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { budget: 1, budget_period: 'total' });
    assert.equal((await wallet(gw, tenant.id)).open_leases, 0);
    // The isolate does not know yet: it admits the next request on its lease and calls the
    // upstream; the wallet's fallback reserve refuses the take (budget), the answer has gone out:
    // the request is settled as today's settle does without a reservation.
    const third = await ok(await chat(gw.url, key.key));
    assert.equal(third.lease, 'hit');
    const row = await gw.usageRow(third.id);
    assert.equal(row.cost, third.cost);
    assert.equal(row.reserved, 0);
    assert.equal(row.beyond_reservation, third.cost);
    // From then on the key takes the normal reserve path, and its limit holds.
    const fourth = await chat(gw.url, key.key);
    assert.equal(fourth.status, 402);
    assert.equal(fourth.headers.get('x-tollgate-lease'), null);
    assert.equal((await fourth.json()).error.code, 'budget_exceeded');
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { budget: null, rpm: 1000 });
    const fifth = await chat(gw.url, key.key);
    assert.equal(fifth.status, 200);
    assert.equal(fifth.headers.get('x-tollgate-lease'), 'miss');
    assert.equal(fifth.headers.get('x-ratelimit-limit-requests'), '1000');
    await fifth.arrayBuffer();
    const sixth = await ok(await chat(gw.url, key.key));
    assert.equal(sixth.lease, 'miss', 'a limited key gets no lease');
    await settled(gw, tenant.id);
    const v = await wallet(gw, tenant.id);
    assert.equal(v.open_leases, 0);
    const rows = rowsOf(gw, tenant.id);
    assert.equal(rows.length, 5);
    assert.equal(v.balance.balance, CREDIT - rows.reduce((s, r) => s + r.cost, 0));
    assert.equal(v.balance.reserved, 0);
    assert.equal(v.balance.debt, 0);
  });

  test('a take refused while nothing was sent yet (the upstream failed first): the client gets the refusal', async () => {
    // A provider nobody listens on: the upstream call fails before any output.
    const deadPort = await freePort();
    await gw.adminOk('PUT', '/admin/providers/lease-dead', { kind: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1` });
    await gw.adminOk('PUT', '/admin/models/lease-dead', {
      provider: 'lease-dead',
      upstream_model: 'gone',
      input_price: 1,
      output_price: 1,
      max_output_tokens: 8,
      encoding: 'o200k_base',
    });
    const CREDIT = 10_000_000;
    const { tenant, key } = await gw.newTenant({ name: 'lease-fail', credit: CREDIT });
    assert.equal((await ok(await chat(gw.url, key.key))).lease, 'miss');
    // A limit cancels the lease in the wallet; the isolate still has it.
    await gw.adminOk('PUT', `/admin/keys/${key.id}/limits`, { budget: 1, budget_period: 'total' });
    const res = await chat(gw.url, key.key, { model: 'lease-dead' });
    // Not the upstream's 502: the wallet's refusal of the take, awaited before answering.
    assert.equal(res.status, 402, await res.clone().text());
    assert.equal((await res.json()).error.code, 'budget_exceeded');
    await settled(gw, tenant.id);
    const v = await wallet(gw, tenant.id);
    const rows = rowsOf(gw, tenant.id);
    // It was admitted on the lease (a normal reserve's refusal leaves no row): its failure is
    // settled as the failure it was (free), with no reservation.
    assert.equal(rows.length, 2);
    const [failed] = gw.d1("SELECT cost, reserved, status FROM usage WHERE tenant_id = ? AND status != 'ok'", tenant.id);
    assert.deepEqual({ ...failed }, { cost: 0, reserved: 0, status: 'upstream_error' });
    assert.equal(v.balance.balance, CREDIT - rows.reduce((s, r) => s + r.cost, 0));
    assert.equal(v.balance.reserved, 0);
  });
});

describe('restart with leases', () => {
  const state = { persistDir: mkdtempSync(join(tmpdir(), 'tollgate-lease-restart-')), adminToken: `admin-${randomToken()}`, pepper: randomToken(32) };
  let rg;
  after(async () => {
    await rg?.kill();
    rmSync(state.persistDir, { recursive: true, force: true });
  });

  async function send(url, key, i) {
    try {
      const res = await chat(url, key, { content: `r${i} ` + 'w '.repeat(i % 20), stream: i % 2 === 1 });
      const id = res.headers.get('x-request-id');
      await res.text();
      return { id, status: res.status, done: true };
    } catch {
      return { id: null, status: 0, done: false }; // cut by the kill
    }
  }

  test('SIGKILL mid-burst with leases: wallet charges == D1 rows == balance change, no hold left', async () => {
    const CREDIT = 50_000_000;
    const restartVars = { ...vars, ECHO_CHUNK_DELAY_MS: '10', STALE_RESERVATION_SECONDS: '60' };
    rg = await startGateway({ vars: restartVars, state });
    const { tenant, key } = await rg.newTenant({ name: 'lease-restart', credit: CREDIT });
    const warm = await send(rg.url, key.key, 0);
    assert.equal(warm.status, 200);
    const burst = Array.from({ length: 100 }, (_, i) => send(rg.url, key.key, i + 1));
    await until('the first answers of the burst', async () => {
      const v = await wallet(rg, tenant.id);
      return v.outbox_pending + v.outbox_exported >= 10 ? v : null;
    });
    process.kill(-rg.pid, 'SIGKILL');
    await Promise.all(burst);
    await rg.kill();

    rg = await startGateway({ vars: restartVars, state });
    const cron = await fetch(`${rg.url}/__scheduled?cron=*/5+*+*+*+*`);
    assert.equal(cron.status, 200, await cron.text());
    // Past the leases' expiry and the stale limit of the reservations that died with workerd.
    const final = await expireLeases(rg, tenant.id, 180_000);
    const rows = rg.d1('SELECT request_id, cost FROM usage WHERE tenant_id = ?', tenant.id);
    const ids = rows.map((r) => r.request_id);
    assert.equal(new Set(ids).size, ids.length, 'every request id at most once in D1');
    assert.equal(rows.length, final.outbox_exported);
    const d1Sum = rows.reduce((s, r) => s + r.cost, 0);
    assert.equal(final.balance.reserved, 0);
    assert.equal(final.balance.debt, 0);
    assert.equal(final.month.cost, d1Sum, 'what the wallet charged == the usage rows in D1');
    assert.equal(CREDIT - final.balance.balance, d1Sum, 'the balance change == the usage rows in D1');
  });
});
