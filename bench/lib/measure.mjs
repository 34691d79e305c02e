// One measured run (CPU ticks per target before and after) and the cold starts.
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { sleep, startGateway } from '../../tests/e2e/harness.mjs';
import { MOCK_SECRET } from './config.mjs';
import { CLK_TCK, NCPU, gateways, loadAvg, machineBusyTicks, procStat, processTree } from './procs.mjs';
import { request } from './load.mjs';
import { inspectWrangler, startPassthrough } from './targets.mjs';
import { median } from './report.mjs';

// ---------------------------------------------------------------------------------------------
// One measured run
// ---------------------------------------------------------------------------------------------

/** CPU ticks per role of a target's processes. */
export function targetTicks(t) {
  const byRole = {};
  for (const p of processTree(t.root)) {
    const role = t.role(p);
    byRole[role] = (byRole[role] ?? 0) + p.ticks;
  }
  return byRole;
}

function ownTicks() {
  const me = procStat(process.pid);
  return me.ticks + me.childTicks;
}

/** Ticks of every process the benchmark owns: itself (and finished clients), mock, every target. */
function benchTicks(targets, mockPid) {
  let total = ownTicks();
  const roots = new Set([mockPid, ...targets.map((t) => t.root)]);
  for (const root of roots) for (const p of processTree(root)) total += p.ticks;
  return total;
}

export async function measure(t, allTargets, mockPid, fn) {
  const load = loadAvg()[0];
  const before = { ticks: targetTicks(t), bench: benchTicks(allTargets, mockPid), busy: machineBusyTicks() };
  const t0 = performance.now();
  const r = await fn();
  await sleep(300); // settlements (waitUntil) finish inside the window
  const wallS = (performance.now() - t0) / 1000;
  const after = { ticks: targetTicks(t), bench: benchTicks(allTargets, mockPid), busy: machineBusyTicks() };
  const cpuMsByRole = {};
  for (const role of new Set([...Object.keys(before.ticks), ...Object.keys(after.ticks)])) {
    cpuMsByRole[role] = (((after.ticks[role] ?? 0) - (before.ticks[role] ?? 0)) / CLK_TCK) * 1000;
  }
  const cpuMs = Object.values(cpuMsByRole).reduce((a, b) => a + b, 0);
  const foreignTicks = after.busy - before.busy - (after.bench - before.bench);
  return {
    ...r,
    load1: load,
    foreignCpuPct: Math.max(0, (foreignTicks / CLK_TCK / (wallS * NCPU)) * 100),
    cpuMsPerReq: r.answered > 0 ? cpuMs / r.answered : null,
    cpuMsPerReqByRole: Object.fromEntries(
      Object.entries(cpuMsByRole).map(([k, v]) => [k, r.answered > 0 ? v / r.answered : null]),
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// D1 statements per request
// ---------------------------------------------------------------------------------------------

/**
 * D1 statements prepared per plain chat request (`x-tollgate-d1-statements`, a test deployment's
 * header), one request at a time, for a fresh tenant and key: the first request (cold key cache;
 * with wallets, the tenant's move into its wallet) and `warm` more. With wallets the warm ones must
 * be 0 (issue 13). Waiting for each export takes about a second per request, so the probe crosses
 * CONFIG_CACHE_TTL_MS (10 s): the request that refreshes the isolate's caches (model row, routes,
 * plugins) shows their statements, as the hot path does every 10 s per isolate.
 */
export async function probeD1Statements(gw, mockUrl, files, warm = 10) {
  const { tenant, key } = await gw.newTenant({ name: 'bench-d1-probe', credit: 1_000_000_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key.key}` };
  const body = readFileSync(files.plain);
  const counts = [];
  for (let i = 0; i <= warm; i++) {
    const r = await request(`${gw.url}/v1/chat/completions`, { headers, body });
    if (r.status !== 200) throw new Error(`D1 probe: chat -> ${r.status}: ${r.body}`);
    const n = r.headers['x-tollgate-d1-statements'];
    if (n === undefined) throw new Error('D1 probe: no x-tollgate-d1-statements header (not a test deployment?)');
    counts.push(Number(n));
    // The counter is the isolate's: the wallet's export of earlier rows (its alarm, in the same
    // isolate, a second after a settlement) must not fall inside the next request.
    for (let t = 0; t < 200; t++) {
      const w = await gw.admin('GET', `/admin/tenants/${tenant.id}/wallet`);
      if (w.status !== 200 || (w.json.outbox_pending === 0 && w.json.open_reservations === 0)) break;
      await sleep(50);
    }
  }
  const warmCounts = counts.slice(1);
  return { first: counts[0], warm: warmCounts, warmMax: Math.max(...warmCounts), warmZero: warmCounts.filter((n) => n === 0).length };
}

// ---------------------------------------------------------------------------------------------
// Cold starts
// ---------------------------------------------------------------------------------------------

/**
 * Restarts wrangler dev on the benchmark's state and times the first answered request: from the
 * wrangler spawn, from the user workerd's process start (/proc, 1/CLK_TCK resolution) and from
 * wrangler's "Ready on" line; then the first chat completion of that fresh isolate and a warm one.
 */
export async function coldStart(state, vars, model, key, files) {
  const gw = await startGateway({ vars, state, pollMs: 2 });
  gateways.add(gw);
  try {
    const answered = gw.timings.firstAnsweredAt;
    const { user } = await inspectWrangler(gw);
    const body = JSON.stringify({ ...JSON.parse(readFileSync(files.plain, 'utf8')), model });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
    const first = await request(`${gw.url}/v1/chat/completions`, { headers, body });
    if (first.status !== 200) throw new Error(`cold start: first chat -> ${first.status}: ${first.body}`);
    const warm = [];
    for (let i = 0; i < 5; i++) {
      const r = await request(`${gw.url}/v1/chat/completions`, { headers, body });
      if (r.status !== 200) throw new Error(`cold start: warm chat -> ${r.status}: ${r.body}`);
      warm.push(r.ms);
    }
    return {
      model,
      fromSpawnMs: answered - gw.timings.spawnedAt,
      fromWorkerdStartMs: user ? answered - user.startedAtMs : null,
      fromReadyLineMs: gw.timings.readyAt === null ? null : answered - gw.timings.readyAt,
      workerdCpuMsAtFirstAnswer: user ? (procStat(user.pid)?.ticks ?? 0) * (1000 / CLK_TCK) : null,
      firstChatMs: first.ms,
      warmChatMs: median(warm),
    };
  } finally {
    await gw.kill();
    gateways.delete(gw);
  }
}

/** The same timings for the reference JavaScript worker (its first request is a plain completion). */
export async function coldStartPassthrough(mockUrl, files) {
  const pt = await startPassthrough(mockUrl, { pollMs: 2 });
  try {
    const answered = pt.timings.firstAnsweredAt;
    const { user } = await inspectWrangler(pt, '"passthrough"');
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${MOCK_SECRET}` };
    const body = readFileSync(files.plain);
    const first = await request(`${pt.url}/v1/chat/completions`, { headers, body });
    if (first.status !== 200) throw new Error(`passthrough cold start: first chat -> ${first.status}: ${first.body}`);
    const warm = [];
    for (let i = 0; i < 5; i++) warm.push((await request(`${pt.url}/v1/chat/completions`, { headers, body })).ms);
    return {
      model: 'passthrough',
      fromSpawnMs: answered - pt.timings.spawnedAt,
      fromWorkerdStartMs: user ? answered - user.startedAtMs : null,
      fromReadyLineMs: pt.timings.readyAt === null ? null : answered - pt.timings.readyAt,
      workerdCpuMsAtFirstAnswer: user ? (procStat(user.pid)?.ticks ?? 0) * (1000 / CLK_TCK) : null,
      firstChatMs: first.ms,
      warmChatMs: median(warm),
    };
  } finally {
    await pt.stop();
  }
}
