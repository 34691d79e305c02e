// End to end: the wallet survives a restart of workerd in the middle of a burst (issue 13). With
// WALLETS on, 100 concurrent chat requests (half of them streamed) run against one tenant; in the
// middle of them wrangler dev and its workerd are killed (SIGKILL, no graceful shutdown) and started
// again on the same persisted state. After the export, the scheduled handler and the wallet's stale
// sweep: what the wallet charged == the usage rows in D1 == the balance change, every request id is
// in D1 at most once and every settled one exactly once, and no reservation is left open.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { randomToken, sleep, startGateway } from './harness.mjs';

const CREDIT = 50_000_000;
const vars = {
  WALLETS: 'true',
  ECHO_CHUNK_DELAY_MS: '10',
  // The wallet's alarm returns reservations older than this (its floor is 60 s): the requests
  // that died with the first workerd.
  STALE_RESERVATION_SECONDS: '60',
};

const state = { persistDir: mkdtempSync(join(tmpdir(), 'tollgate-restart-')), adminToken: `admin-${randomToken()}`, pepper: randomToken(32) };
let gw;

after(async () => {
  await gw?.kill();
  rmSync(state.persistDir, { recursive: true, force: true });
});

async function send(url, key, i) {
  const stream = i % 2 === 1;
  const words = Array.from({ length: 5 + (i % 20) }, (_, j) => `w${i}x${j}`).join(' ');
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tollgate-echo', stream, messages: [{ role: 'user', content: words }] }),
    });
    const id = res.headers.get('x-request-id');
    await res.text();
    return { id, status: res.status, done: true };
  } catch {
    return { id: null, status: 0, done: false }; // cut by the kill
  }
}

async function until(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

test('restart mid-burst: wallet charges == D1 usage rows == balance change, each request once, no open reservation', async () => {
  gw = await startGateway({ vars, state });
  const { tenant, key } = await gw.newTenant({ name: 'restart', credit: CREDIT });
  // The tenant moves into its wallet before the burst.
  const warm = await send(gw.url, key.key, 0);
  assert.equal(warm.status, 200);

  const burst = Array.from({ length: 100 }, (_, i) => send(gw.url, key.key, i + 1));
  // Kill once some requests have finished and others are still streaming: a hard kill of the whole
  // process group (wrangler and workerd), no graceful shutdown.
  await until('the first answers of the burst', async () => {
    const v = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`);
    return v.outbox_pending + v.outbox_exported >= 10 ? v : null;
  }, 30_000);
  process.kill(-gw.pid, 'SIGKILL');
  const results = await Promise.all(burst);
  await gw.kill();
  const cut = results.filter((r) => !r.done).length;
  const answered = results.filter((r) => r.done && r.id).map((r) => r.id);

  // Same state directory, same secrets: the wallet (Durable Object storage), D1 and KV as left.
  gw = await startGateway({ vars, state });
  // The export of what the wallet settled before the kill, the replay of KV-kept settlements.
  await gw.adminOk('POST', `/admin/tenants/${tenant.id}/wallet/export`);
  const cron = await fetch(`${gw.url}/__scheduled?cron=*/5+*+*+*+*`);
  assert.equal(cron.status, 200, await cron.text());
  // The requests that died with the first workerd hold reservations until the wallet's stale sweep.
  const quiet = await until('no open reservation and nothing left to export', async () => {
    const v = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`);
    return v.open_reservations === 0 && v.outbox_pending === 0 ? v : null;
  }, 150_000);

  // The wallet still works after the restart.
  const later = await send(gw.url, key.key, 1000);
  assert.equal(later.status, 200);
  const final = await until('the last request exported', async () => {
    const v = await gw.adminOk('GET', `/admin/tenants/${tenant.id}/wallet`);
    return v.open_reservations === 0 && v.outbox_pending === 0 && v.outbox_exported === quiet.outbox_exported + 1 ? v : null;
  }, 30_000);

  const rows = gw.d1('SELECT request_id, cost, from_wallet FROM usage WHERE tenant_id = ?', tenant.id);
  const ids = rows.map((r) => r.request_id);
  assert.equal(new Set(ids).size, ids.length, 'every request id at most once in D1');
  assert.ok(rows.every((r) => r.from_wallet === 1));
  // Every settlement the wallet holds is in D1, and nothing else is.
  assert.equal(rows.length, final.outbox_exported);
  assert.ok(ids.includes(later.id) && ids.includes(warm.id));
  const issued = new Set([warm.id, later.id, ...answered]);
  // Rows may belong to requests whose client was cut by the kill (their id never reached it).
  assert.ok(rows.length <= 102, `${rows.length} rows for 102 requests`);
  const d1Sum = rows.reduce((s, r) => s + r.cost, 0);
  const walletSum = final.month.cost;
  const balanceChange = CREDIT - final.balance.balance;
  assert.equal(final.balance.reserved, 0);
  assert.equal(final.balance.debt, 0);
  assert.equal(walletSum, d1Sum, 'what the wallet charged == the usage rows in D1');
  assert.equal(balanceChange, d1Sum, 'the balance change == the usage rows in D1');
  // The month totals the reports read agree too.
  const [monthly] = gw.d1('SELECT cost, requests FROM usage_monthly WHERE tenant_id = ?', tenant.id);
  assert.equal(monthly.cost, d1Sum);
  assert.equal(monthly.requests, rows.length);
  // Diagnostics for the log: how the kill fell.
  const settledAnswered = ids.filter((id) => issued.has(id)).length;
  console.log(`restart: ${answered.length} answered, ${cut} cut, ${rows.length} rows (${settledAnswered} of answered ids), sum ${d1Sum}`);
});
