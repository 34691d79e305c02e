// The tenant wallets' figures (docs/scale.md "What one wallet sustains"), on the Miniflare target:
//   wallet    one tenant at c = 16 through the gateway (reserve + settle pairs per second, the
//             export's rows per second and lag), and one wallet command timed inside the runtime
//             (bench/wallet-driver/worker.js: worker → object → answer)
//   tenants   100 tenants × 10 concurrent clients each (requests/s, p50/p99, export lag)
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { sleep } from '../../tests/e2e/harness.mjs';
import { log } from './config.mjs';
import { request, runWrk } from './load.mjs';
import { median } from './report.mjs';

/** Admin calls on a Tollgate URL → parsed JSON (throws on an unexpected status). */
export function adminOn(url, token) {
  return async (method, path, body, expect = [200, 201]) => {
    const res = await request(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    if (!expect.includes(res.status)) throw new Error(`${method} ${path} -> ${res.status}: ${res.body}`);
    return JSON.parse(res.body);
  };
}

async function newTenant(admin, name) {
  const tenant = await admin('POST', '/admin/tenants', { name, credit: 1_000_000_000_000 });
  const key = await admin('POST', `/admin/tenants/${tenant.id}/keys`, { name });
  return { tenantId: tenant.id, keyId: key.id, key: key.key };
}

const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : null);

/**
 * One tenant, c = 16, plain requests to the instant mock for `durationS`: pairs/s is what was
 * answered divided by the time from the start until the wallet held no reservation (every
 * settlement, from waitUntil, done); the export's rate from the wallet's exported count sampled
 * every 250 ms; lag from the end of the load until nothing is pending. Then the driver's timing of
 * single commands.
 */
export async function walletFigures({ url, driverUrl, admin, bodyFile, durationS }) {
  const t = await newTenant(admin, 'bench-wallet');
  const headers = { authorization: `Bearer ${t.key}` };
  // The tenant moves into its wallet on its first request.
  const first = await request(`${url}/v1/chat/completions`, {
    headers: { ...headers, 'content-type': 'application/json' },
    body: (await import('node:fs')).readFileSync(bodyFile),
  });
  if (first.status !== 200) throw new Error(`wallet bench: first request -> ${first.status}: ${first.body}`);
  const inspect = () => admin('GET', `/admin/tenants/${t.tenantId}/wallet`);
  const base = await inspect();
  const samples = [];
  let sampling = true;
  const t0 = performance.now();
  const sampler = (async () => {
    while (sampling) {
      const v = await inspect();
      samples.push({ t: performance.now() - t0, exported: v.outbox_exported - base.outbox_exported, pending: v.outbox_pending, open: v.open_reservations });
      await sleep(250);
    }
  })();
  const r = await runWrk({ url: `${url}/v1/chat/completions`, bodyFile, headers, concurrency: 16, durationS });
  const loadEnd = performance.now() - t0;
  let settledAt = null;
  let exportedAt = null;
  for (;;) {
    const last = samples.at(-1);
    if (last && last.t > loadEnd) {
      if (settledAt === null && last.open === 0) settledAt = last.t;
      if (last.open === 0 && last.pending === 0 && last.exported >= r.answered) {
        exportedAt = last.t;
        break;
      }
    }
    if (performance.now() - t0 > loadEnd + 120_000) break;
    await sleep(50);
  }
  sampling = false;
  await sampler;
  // The export's best second: exported rows over a sliding 1 s window.
  let exportRowsPerS = 0;
  for (let i = 0; i < samples.length; i++) {
    for (let j = i + 1; j < samples.length; j++) {
      if (samples[j].t - samples[i].t >= 1000) {
        exportRowsPerS = Math.max(exportRowsPerS, ((samples[j].exported - samples[i].exported) * 1000) / (samples[j].t - samples[i].t));
        break;
      }
    }
  }
  const out = {
    answered: r.answered,
    errors: r.errors,
    loadS: loadEnd / 1000,
    pairsPerS: settledAt ? r.answered / (settledAt / 1000) : null,
    gatewayRps: r.rps,
    p50: r.p50,
    p99: r.p99,
    maxPending: Math.max(0, ...samples.map((s) => s.pending)),
    exportRowsPerS,
    exportLagMs: exportedAt === null ? null : exportedAt - loadEnd,
  };
  if (driverUrl) {
    const d = await request(`${driverUrl}/time`, {
      body: JSON.stringify({ tenant_id: t.tenantId, key_id: t.keyId, batches: 50, per_batch: 10 }),
      timeoutMs: 120_000,
    });
    if (d.status !== 200) throw new Error(`wallet driver -> ${d.status}: ${d.body}`);
    const j = JSON.parse(d.body);
    const sorted = [...j.msPerCommand].sort((a, b) => a - b);
    out.command = {
      commands: j.commands,
      meanMs: j.elapsedMs / j.commands,
      p50Ms: median(j.msPerCommand),
      p90Ms: percentile(sorted, 90),
    };
  }
  return out;
}

/**
 * `tenants` × `clients` concurrent clients (each a keep-alive connection sending plain requests one
 * after the other with its tenant's key) for `durationS`; export lag: from the end of the load until
 * D1 holds a usage row for every answered request (`countRows(tenantIds)`).
 */
export async function tenantsSimulation({ url, admin, body, durationS, tenants = 100, clients = 10, countRows }) {
  const made = [];
  for (let i = 0; i < tenants; i++) made.push(await newTenant(admin, `bench-sim-${i}`));
  const agent = new http.Agent({ keepAlive: true, maxSockets: tenants * clients });
  const latencies = [];
  let errors = 0;
  let firstError = null;
  const one = (key) =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.request(
        `${url}/v1/chat/completions`,
        { method: 'POST', agent, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) latencies.push(performance.now() - t0);
            else {
              errors++;
              firstError ??= `status ${res.statusCode}`;
            }
            resolve();
          });
        },
      );
      req.on('error', (e) => {
        errors++;
        firstError ??= String(e);
        resolve();
      });
      req.end(body);
    });
  // The first request of each tenant (its move into its wallet) is not measured.
  await Promise.all(made.map((t) => one(t.key)));
  latencies.length = 0;
  errors = 0;
  const ids = made.map((t) => t.tenantId);
  for (let i = 0; i < 600 && countRows(ids) < tenants; i++) await sleep(100);
  const rowsBefore = countRows(ids);
  const t0 = performance.now();
  const end = t0 + durationS * 1000;
  const loops = [];
  for (const t of made) {
    for (let c = 0; c < clients; c++) {
      loops.push(
        (async () => {
          while (performance.now() < end) await one(t.key);
        })(),
      );
    }
  }
  await Promise.all(loops);
  const loadEnd = performance.now();
  agent.destroy();
  const answered = latencies.length;
  let lagMs = null;
  let rows = 0;
  while (performance.now() - loadEnd < 120_000) {
    rows = countRows(made.map((t) => t.tenantId)) - rowsBefore;
    if (rows >= answered) {
      lagMs = performance.now() - loadEnd;
      break;
    }
    await sleep(100);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const out = {
    tenants,
    clients,
    answered,
    errors,
    firstError,
    rps: answered / ((loadEnd - t0) / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    rowsExported: rows,
    exportLagMs: lagMs,
  };
  log(`tenants simulation: ${JSON.stringify(out)}`);
  return out;
}
