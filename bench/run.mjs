// Tollgate's benchmark: the gateway against a direct call and against the Portkey gateway, in one run.
// Started by scripts/bench.sh (which installs wrk and the peer and builds the worker first).
//
// What runs (all on 127.0.0.1; every process started here is stopped at the end, by process group):
//   mock       bench/mock-upstream.mjs, an instant OpenAI-compatible upstream, in its own process
//   direct     the client calls the mock itself: the floor every gateway is measured against
//   tollgate   the release build in workerd under `wrangler dev` (local D1 and KV), through wrangler's
//              port, which passes through wrangler's proxy worker (a second workerd process)
//   tollgate-workerd  the same worker through the user workerd's own entry socket (no dev proxy)
//   tollgate-mf  the same build on a copy of the same state, run by bench/miniflare-host.mjs: workerd
//              through Miniflare's API, without wrangler dev's proxy, inspector and watchers (the
//              runtime a deployed worker has, minus the network)
//   passthrough-mf  the reference JavaScript worker the same way: the floor of the plain local runtime
//   passthrough  bench/passthrough/worker.js, a JavaScript worker that only forwards to the mock, under
//              its own wrangler dev and measured at its workerd entry socket: the floor of the local stack
//   portkey    @portkey-ai/gateway (bench/peer) on Node, pointed at the mock by x-portkey-custom-host
// Tollgate runs with full metering: key check (isolate cache, KV, D1), model lookup, local token
// count, and with WALLETS=true (the default here; BENCH_WALLETS=0 for the D1 path) a reservation
// and a settlement in the tenant's wallet (a Durable Object), whose alarm exports the usage rows to
// D1; with WALLETS=false a reservation batch and a settlement batch in D1.
//
// Scenarios, at concurrency 1 and 16, each target in turn, BENCH_REPS times (order rotated per rep):
//   plain   small chat request, JSON reply (wrk: latency percentiles, requests/s)
//   stream  same request streamed: 20 content chunks and a usage chunk (wrk: whole-stream latency)
//   ttfb    streamed, timed by bench/stream-client.mjs: first body byte and end of stream
//   prompt2k  plain request whose prompt is bench/fixtures/prompt-2k.txt (~2,000 tokens): CPU of counting
//   wallet  once, on tollgate-mf: one tenant at c=16 (reserve + settle pairs/s, export rate and lag)
//           and one wallet command timed inside workerd (bench/wallet-driver); bench/lib/wallet.mjs
//   tenants once, on tollgate-mf: 100 tenants × 10 concurrent clients (req/s, p50/p99, export lag)
// Before the scenarios: D1 statements per request (x-tollgate-d1-statements of wrangler dev's
// Tollgate, a test deployment), the first request of a fresh key and ten warm ones.
// For each run: CPU ticks (utime+stime from /proc) of every process of each target's process tree,
// before and after, so CPU per request; the machine's total busy CPU, so the share taken by processes
// outside the benchmark; and the 1-minute load average.
// Also: cold starts (restarts on the same state), wasm size, and a results JSON.
//
// Environment: BENCH_QUICK=1 (1 rep of 3 s: for development), BENCH_REPS, BENCH_DURATION_S,
// BENCH_TTFB_DURATION_S, BENCH_WARMUP_S, BENCH_COLD_STARTS, BENCH_TARGETS (comma list),
// BENCH_SCENARIOS (comma list), BENCH_WALLETS=0 (the D1 hot path), BENCH_WRITE=0 (do not rewrite
// BENCHMARKS.md).
//
// The pieces live in bench/lib/: config, procs, load, targets, measure, report; this file
// orchestrates them (same CLI and output as before the split).

import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort, randomToken, ROOT, sleep, startGateway } from '../tests/e2e/harness.mjs';
import { BENCH, CFG, MOCK_SECRET, MODEL, MODEL_NOCOUNT, OUT_DIR, log } from './lib/config.mjs';
import { CLK_TCK, gateways, loadAvg, stateDirs, stopAll } from './lib/procs.mjs';
import { request, runStreamClient, runWrk } from './lib/load.mjs';
import { configureTollgate, inspectWrangler, queryD1, startMiniflareHost, startMock, startPassthrough, startPortkey, verifyTarget, wranglerTomlVars, writeBodies } from './lib/targets.mjs';
import { coldStart, coldStartPassthrough, measure, probeD1Statements, targetTicks } from './lib/measure.mjs';
import { adminOn, tenantsSimulation, walletFigures } from './lib/wallet.mjs';
import { fmt, machine, renderMarkdown, versions, wasmSize, writeBenchmarksMd } from './lib/report.mjs';

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/** Scenarios run once on the Miniflare target rather than per target (bench/lib/wallet.mjs). */
const WALLET_SCENARIOS = ['wallet', 'tenants'];

async function main() {
  const startedAt = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const t0 = performance.now();
  const loadStart = loadAvg();
  log(`config ${JSON.stringify(CFG)}; load ${loadStart.join(' ')}`);
  const { files } = writeBodies();
  const wasm = wasmSize();

  const mock = await startMock();
  const mockUrl = `http://127.0.0.1:${mock.value}`;
  log(`mock upstream on ${mockUrl}`);

  const vars = {
    PROVIDER_MOCK_KEY: MOCK_SECRET,
    WALLETS: CFG.wallets ? 'true' : 'false',
    ...(CFG.leases ? { WALLET_LEASES: 'true' } : {}),
  };
  // wrangler dev's Tollgate (set-up, targets tollgate and tollgate-workerd, the D1 probe) is a test
  // deployment: it answers with x-tollgate-d1-statements. The measured Miniflare target is not.
  const gwVars = { ...vars, TOLLGATE_TEST_DEPLOYMENT: 'true' };
  // One D1/KV state for the measured gateway and the cold restarts after it.
  const state = {
    persistDir: mkdtempSync(join(tmpdir(), 'tollgate-bench-')),
    adminToken: `admin-${randomToken()}`,
    pepper: randomToken(32),
  };
  stateDirs.add(state.persistDir);
  log('starting Tollgate (wrangler dev)');
  let gw = await startGateway({ vars: gwVars, state });
  gateways.add(gw);
  const { key, tenantId } = await configureTollgate(gw, mockUrl);
  const wr = await inspectWrangler(gw);
  log(`wrangler tree: ${wr.tree.map((p) => `${p.comm}(${p.pid})`).join(' ')}; user workerd ${wr.user?.pid} entry port ${wr.entryPort}`);

  const tollgateRole = (p) =>
    p.pid === wr.user?.pid ? 'worker' : p.comm === 'workerd' ? 'proxy' : p.comm === 'node' ? 'wrangler' : p.comm;
  const all = {
    direct: {
      name: 'direct',
      url: `${mockUrl}/v1/chat/completions`,
      headers: { authorization: `Bearer ${MOCK_SECRET}` },
      root: mock.pid,
      role: () => 'mock',
    },
    tollgate: {
      name: 'tollgate',
      url: `${gw.url}/v1/chat/completions`,
      headers: { authorization: `Bearer ${key}` },
      root: gw.pid,
      role: tollgateRole,
    },
    'tollgate-workerd': wr.entryPort && {
      name: 'tollgate-workerd',
      url: `http://127.0.0.1:${wr.entryPort}/v1/chat/completions`,
      headers: { authorization: `Bearer ${key}` },
      root: gw.pid,
      role: tollgateRole,
    },
  };
  if (CFG.targets.includes('tollgate-workerd') && !wr.entryPort) {
    log('WARNING: the user workerd entry port was not found; skipping target tollgate-workerd');
  }
  let passthrough = null;
  if (CFG.targets.includes('passthrough')) {
    passthrough = await startPassthrough(mockUrl);
    const pw = await inspectWrangler(passthrough, '"passthrough"');
    if (!pw.entryPort) throw new Error('passthrough: the user workerd entry port was not found');
    log(`passthrough worker on ${passthrough.url}, workerd entry port ${pw.entryPort}`);
    all.passthrough = {
      name: 'passthrough',
      url: `http://127.0.0.1:${pw.entryPort}/v1/chat/completions`,
      headers: { authorization: `Bearer ${MOCK_SECRET}` },
      root: passthrough.pid,
      role: (p) => (p.pid === pw.user?.pid ? 'worker' : p.comm === 'workerd' ? 'proxy' : p.comm === 'node' ? 'wrangler' : p.comm),
    };
  }
  let tollgateMf = null;
  if (CFG.targets.includes('tollgate-mf')) {
    // A copy of the configured state (provider, models, tenant, key), so that the two runtimes
    // never write one SQLite file at the same time.
    await sleep(500);
    tollgateMf = { persistDir: mkdtempSync(join(tmpdir(), 'tollgate-bench-mf-')), driverPort: await freePort() };
    stateDirs.add(tollgateMf.persistDir);
    cpSync(join(state.persistDir, 'v3'), join(tollgateMf.persistDir, 'v3'), { recursive: true });
    tollgateMf.host = await startMiniflareHost('tollgate-mf', {
      script: join(ROOT, 'build', 'index.js'),
      wasm: join(ROOT, 'build', 'index_bg.wasm'),
      persistDir: tollgateMf.persistDir,
      // The variables wrangler dev gives the other target: wrangler.toml's [vars], then the
      // harness's (startGateway): the mock provider lives on http://127.0.0.1, which only
      // ALLOW_PRIVATE_UPSTREAMS permits (without it every request was a 502 provider_not_configured).
      vars: {
        ...wranglerTomlVars(),
        ADMIN_TOKEN: state.adminToken,
        KEY_PEPPER: state.pepper,
        ECHO_CHUNK_DELAY_MS: '5',
        ALLOW_PRIVATE_UPSTREAMS: 'true',
        ...vars,
      },
      name: 'tollgate',
      durableObjects: { WALLET: 'TenantWallet' },
      walletDriver: CFG.wallets && CFG.scenarios.includes('wallet'),
      walletDriverScript: join(BENCH, 'wallet-driver', 'worker.js'),
      driverPort: tollgateMf.driverPort,
      marker: 'tollgate',
    });
    log(`Tollgate (Miniflare) on ${tollgateMf.host.url}`);
    all['tollgate-mf'] = {
      name: 'tollgate-mf',
      url: `${tollgateMf.host.url}/v1/chat/completions`,
      headers: { authorization: `Bearer ${key}` },
      root: tollgateMf.host.pid,
      role: (p) => (p.comm === 'workerd' ? 'worker' : p.comm === 'node' ? 'miniflare' : p.comm),
    };
  }
  let passthroughMf = null;
  if (CFG.targets.includes('passthrough-mf')) {
    passthroughMf = await startMiniflareHost('passthrough-mf', {
      script: join(BENCH, 'passthrough', 'worker.js'),
      vars: { UPSTREAM: mockUrl },
      marker: 'passthrough',
    });
    log(`pass-through worker (Miniflare) on ${passthroughMf.url}`);
    all['passthrough-mf'] = {
      name: 'passthrough-mf',
      url: `${passthroughMf.url}/v1/chat/completions`,
      headers: { authorization: `Bearer ${MOCK_SECRET}` },
      root: passthroughMf.pid,
      role: (p) => (p.comm === 'workerd' ? 'worker' : p.comm === 'node' ? 'miniflare' : p.comm),
    };
  }
  let portkey = null;
  if (CFG.targets.includes('portkey')) {
    portkey = await startPortkey(mockUrl);
    log(`Portkey on ${portkey.url}`);
    all.portkey = {
      name: 'portkey',
      url: `${portkey.url}/v1/chat/completions`,
      headers: {
        authorization: `Bearer ${MOCK_SECRET}`,
        'x-portkey-provider': 'openai',
        'x-portkey-custom-host': `${mockUrl}/v1`,
      },
      root: portkey.pid,
      role: (p) => (p.comm === 'node' || p.comm === 'MainThread' ? 'node' : p.comm),
    };
  }
  const targets = CFG.targets.map((n) => all[n]).filter(Boolean);
  CFG.targets = targets.map((t) => t.name);

  for (const t of targets) {
    const v = await verifyTarget(t, files);
    log(`verified ${t.name}: plain ok, stream of ${v.streamEvents} events`);
    if (t.name.startsWith('tollgate') && !v.plainHeaders['x-tollgate-cost']) {
      throw new Error(`${t.name}: no x-tollgate-cost header: metering is not on`);
    }
  }

  // D1 statements per request on the hot path (wrangler dev's Tollgate, a test deployment): the
  // first request of a fresh key (cold caches, and the tenant's move into its wallet), then warm ones.
  const d1Probe = await probeD1Statements(gw, mockUrl, files);
  log(`D1 statements per request: first ${d1Probe.first}, warm ${JSON.stringify(d1Probe.warm)}`);

  // Idle CPU of each target, so that background work is visible.
  const idle = {};
  {
    const before = Object.fromEntries(targets.map((t) => [t.name, targetTicks(t)]));
    await sleep(2000);
    for (const t of targets) {
      const a = targetTicks(t);
      const sum = (o) => Object.values(o).reduce((x, y) => x + y, 0);
      idle[t.name] = ((sum(a) - sum(before[t.name])) / CLK_TCK / 2) * 1000; // ms of CPU per s
    }
    log(`idle CPU (ms/s): ${JSON.stringify(idle)}`);
  }

  let answeredTollgate = 0;
  const runs = [];
  const mockPid = mock.pid;
  for (const scenario of CFG.scenarios.filter((sc) => !WALLET_SCENARIOS.includes(sc))) {
    const bodyFile = scenario === 'plain' || scenario === 'prompt2k' ? files[scenario] : files.stream;
    for (const c of CFG.concurrencies) {
      const exec = (t, durationS) =>
        scenario === 'ttfb'
          ? runStreamClient({ url: t.url, bodyFile, headers: t.headers, concurrency: c, durationS })
          : runWrk({ url: t.url, bodyFile, headers: t.headers, concurrency: c, durationS });
      for (const t of targets) {
        const w = await exec(t, CFG.warmupS);
        if (t.name.startsWith('tollgate')) answeredTollgate += w.answered;
        if (w.errors) log(`WARNING: warm-up ${scenario} c=${c} ${t.name}: ${w.errors} errors ${JSON.stringify(w.errorDetail)}`);
      }
      for (let rep = 0; rep < CFG.reps; rep++) {
        const order = targets.map((_, i) => targets[(i + rep) % targets.length]);
        for (const t of order) {
          const r = await measure(t, targets, mockPid, () =>
            exec(t, scenario === 'ttfb' ? CFG.ttfbDurationS : CFG.durationS),
          );
          if (t.name.startsWith('tollgate')) answeredTollgate += r.answered;
          runs.push({ scenario, concurrency: c, target: t.name, rep, ...r });
          log(
            `${scenario} c=${c} rep ${rep + 1}/${CFG.reps} ${t.name}: p50 ${fmt(r.p50)} p99 ${fmt(r.p99)} ms` +
              `${r.ttfbP50 !== undefined ? ` ttfb p50 ${fmt(r.ttfbP50)}` : ''}, ${fmt(r.rps, 0)} req/s, ` +
              `CPU ${fmt(r.cpuMsPerReq)} ms/req, load ${r.load1}, foreign ${fmt(r.foreignCpuPct, 0)} %` +
              `${r.errors ? `, ${r.errors} ERRORS ${JSON.stringify(r.errorDetail)}` : ''}`,
          );
        }
      }
    }
  }

  // The wallets' own figures, on the Miniflare target (docs/scale.md).
  let walletBench = null;
  let tenantsBench = null;
  const walletScenarios = CFG.scenarios.filter((sc) => WALLET_SCENARIOS.includes(sc));
  if (walletScenarios.length && !(CFG.wallets && tollgateMf)) {
    log(`WARNING: ${walletScenarios.join(',')} need BENCH_WALLETS=1 and target tollgate-mf; skipped`);
  } else if (walletScenarios.length) {
    const admin = adminOn(tollgateMf.host.url, state.adminToken);
    if (walletScenarios.includes('wallet')) {
      walletBench = await walletFigures({
        url: tollgateMf.host.url,
        driverUrl: `http://127.0.0.1:${tollgateMf.driverPort}`,
        admin,
        bodyFile: files.plain,
        durationS: CFG.durationS,
      });
      log(`wallet: ${JSON.stringify(walletBench)}`);
    }
    if (walletScenarios.includes('tenants')) {
      tenantsBench = await tenantsSimulation({
        url: tollgateMf.host.url,
        admin,
        body: readFileSync(files.plain),
        durationS: CFG.durationS,
        countRows: (ids) =>
          Number(queryD1(tollgateMf.persistDir, `SELECT COUNT(*) AS n FROM usage WHERE tenant_id IN (${ids.map((i) => `'${i}'`).join(',')})`)[0].n),
      });
    }
  }

  // Metering check: usage rows for what Tollgate answered, and the 2k prompt's token count.
  await sleep(1000);
  let meteringCheck = null;
  let prompt2kTokens = null;
  if (targets.some((t) => t.name.startsWith('tollgate'))) {
    // Both states: wrangler dev's (tollgate, tollgate-workerd) and the Miniflare copy's.
    const query = (sql) => [...gw.d1(sql), ...(tollgateMf ? queryD1(tollgateMf.persistDir, sql) : [])];
    const answered = answeredTollgate + 2 * targets.filter((t) => t.name.startsWith('tollgate')).length;
    // With wallets the rows reach D1 by each wallet's export (about a second after settlement).
    const t0Export = performance.now();
    let byStatus = {};
    for (;;) {
      byStatus = {};
      for (const r of query('SELECT status, COUNT(*) AS n FROM usage WHERE tenant_id = ' + `'${tenantId}'` + ' GROUP BY status')) {
        byStatus[r.status] = (byStatus[r.status] ?? 0) + Number(r.n);
      }
      const rows = Object.values(byStatus).reduce((a, b) => a + b, 0);
      if (!CFG.wallets || rows >= answered || performance.now() - t0Export > 60_000) break;
      await sleep(250);
    }
    const open = query('SELECT COUNT(*) AS n FROM reservations').reduce((a, r) => a + Number(r.n), 0);
    meteringCheck = {
      usageRows: Object.values(byStatus).reduce((a, b) => a + b, 0),
      byStatus,
      openReservations: Number(open),
      // + the set-up's verification requests
      answered,
      wallets: CFG.wallets,
      exportWaitMs: performance.now() - t0Export,
    };
    const p = await request(all.tollgate.url, {
      headers: { 'content-type': 'application/json', ...all.tollgate.headers },
      body: readFileSync(files.prompt2k),
    });
    const reqId = p.headers['x-request-id'];
    for (let i = 0; i < 50 && prompt2kTokens === null; i++) {
      const row = await gw.admin('GET', `/admin/requests/${reqId}`);
      if (row.status === 200) prompt2kTokens = row.json.local_prompt_tokens ?? null;
      else await sleep(100);
    }
    log(`metering: ${JSON.stringify(meteringCheck)}; 2k prompt = ${prompt2kTokens} tokens`);
  }

  if (portkey) await portkey.stop();
  if (passthrough) await passthrough.stop();
  if (passthroughMf) await passthroughMf.stop();
  if (tollgateMf) await tollgateMf.host.stop();
  await gw.kill();
  gateways.delete(gw);
  gw = null;

  const coldStarts = [];
  if (CFG.targets.some((t) => t.startsWith('tollgate'))) {
    for (let i = 0; i < CFG.coldStarts; i++) {
      for (const model of [MODEL, MODEL_NOCOUNT]) {
        const cs = await coldStart(state, vars, model, key, files);
        coldStarts.push(cs);
        log(`cold start ${i + 1}/${CFG.coldStarts} (${model}): ${JSON.stringify(cs)}`);
      }
      if (CFG.targets.some((t) => t.startsWith('passthrough'))) {
        const cs = await coldStartPassthrough(mockUrl, files);
        coldStarts.push(cs);
        log(`cold start ${i + 1}/${CFG.coldStarts} (passthrough): ${JSON.stringify(cs)}`);
      }
    }
  }
  await mock.stop();

  const results = {
    startedAt,
    elapsedS: (performance.now() - t0) / 1000,
    config: CFG,
    versions: versions(),
    machine: machine(),
    loadStart,
    loadEnd: loadAvg(),
    idleCpuMsPerS: idle,
    wasm,
    meteringCheck,
    d1Probe,
    walletBench,
    tenantsBench,
    prompt2kTokens,
    runs,
    coldStarts,
    // scripts/bench.sh writes it just before this run (BENCH_PIPELINE=0: skipped).
    pipeline: existsSync(join(OUT_DIR, 'pipeline.md')) ? readFileSync(join(OUT_DIR, 'pipeline.md'), 'utf8') : null,
  };
  writeFileSync(join(OUT_DIR, 'results.json'), JSON.stringify(results, null, 2));
  const md = renderMarkdown(results);
  writeFileSync(join(OUT_DIR, 'section.md'), md);
  if (CFG.write) {
    writeBenchmarksMd(md);
    log('wrote BENCHMARKS.md (gateway section)');
  }
  log(`results: ${join(OUT_DIR, 'results.json')}; done in ${fmt(results.elapsedS / 60, 1)} min`);
}

/** `node bench/run.mjs --render <results.json>`: rewrites the section from a saved run, without measuring. */
async function renderOnly(file) {
  const results = JSON.parse(readFileSync(file, 'utf8'));
  writeBenchmarksMd(renderMarkdown(results));
  log(`wrote BENCHMARKS.md (gateway section) from ${file}`);
}

(process.argv[2] === '--render' ? renderOnly(process.argv[3] ?? join(OUT_DIR, 'results.json')) : main())
  .catch(async (err) => {
    log(`FAILED: ${err.stack ?? err}`);
    await stopAll();
    process.exit(1);
  })
  .then(async () => {
    await stopAll();
  });
