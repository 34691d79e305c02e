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
// Tollgate runs with full metering: key check (KV cache, D1), model lookup, local token count,
// reservation in D1, settlement batch and usage row, session cache in KV.
//
// Scenarios, at concurrency 1 and 16, each target in turn, BENCH_REPS times (order rotated per rep):
//   plain   small chat request, JSON reply (wrk: latency percentiles, requests/s)
//   stream  same request streamed: 20 content chunks and a usage chunk (wrk: whole-stream latency)
//   ttfb    streamed, timed by bench/stream-client.mjs: first body byte and end of stream
//   prompt2k  plain request whose prompt is bench/fixtures/prompt-2k.txt (~2,000 tokens): CPU of counting
// For each run: CPU ticks (utime+stime from /proc) of every process of each target's process tree,
// before and after, so CPU per request; the machine's total busy CPU, so the share taken by processes
// outside the benchmark; and the 1-minute load average.
// Also: cold starts (restarts on the same state), wasm size, and a results JSON.
//
// Environment: BENCH_QUICK=1 (1 rep of 3 s: for development), BENCH_REPS, BENCH_DURATION_S,
// BENCH_TTFB_DURATION_S, BENCH_WARMUP_S, BENCH_COLD_STARTS, BENCH_TARGETS (comma list),
// BENCH_SCENARIOS (comma list), BENCH_WRITE=0 (do not rewrite BENCHMARKS.md).

import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import http from 'node:http';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';

import { ROOT, freePort, randomToken, sleep, startGateway } from '../tests/e2e/harness.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
const CFG = {
  quick: QUICK,
  reps: num(env.BENCH_REPS, QUICK ? 1 : 3),
  durationS: num(env.BENCH_DURATION_S, QUICK ? 3 : 10),
  ttfbDurationS: num(env.BENCH_TTFB_DURATION_S, QUICK ? 2 : 5),
  warmupS: num(env.BENCH_WARMUP_S, QUICK ? 1 : 2),
  coldStarts: num(env.BENCH_COLD_STARTS, QUICK ? 1 : 3),
  concurrencies: [1, 16],
  targets: (env.BENCH_TARGETS ?? 'direct,passthrough-mf,tollgate-mf,tollgate-workerd,portkey').split(',').filter(Boolean),
  scenarios: (env.BENCH_SCENARIOS ?? 'plain,stream,ttfb,prompt2k').split(',').filter(Boolean),
  write: env.BENCH_WRITE !== '0',
};
for (const [k, v] of Object.entries(CFG)) {
  if (typeof v === 'number' && !(Number.isFinite(v) && v > 0)) throw new Error(`bad benchmark setting ${k}=${v}`);
}
if (!CFG.targets.includes('direct')) throw new Error('BENCH_TARGETS must include direct (the baseline)');

const require = createRequire(import.meta.url);
const BENCH = join(ROOT, 'bench');
const OUT_DIR = join(ROOT, 'target', 'bench');
mkdirSync(OUT_DIR, { recursive: true });
const WRK_LUA = join(BENCH, 'wrk-post.lua');
const MOCK_SECRET = 'sk-bench-mock';
const MODEL = 'gpt-4o-mini'; // o200k_base: Tollgate counts the prompt locally
const MODEL_NOCOUNT = 'bench-nocount'; // no local tokenizer: the 4-bytes-a-token estimate
const PRICE_IN = 150_000;
const PRICE_OUT = 600_000;
const PEER_DIR = join(BENCH, 'peer');
const PORTKEY_JS = join(PEER_DIR, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');

const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
const preciseNow = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// Processes: started in their own groups, all stopped on exit
// ---------------------------------------------------------------------------------------------

const groups = new Set(); // pgids of long-running helpers we started (mock, portkey)
const gateways = new Set(); // harness gateways (their kill() stops their group)
const stateDirs = new Set(); // D1/KV state directories created here

function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
  } catch {}
}

async function stopAll() {
  for (const gw of gateways) await gw.kill().catch(() => {});
  gateways.clear();
  for (const pgid of groups) killGroup(pgid, 'SIGTERM');
  if (groups.size) await sleep(500);
  for (const pgid of groups) killGroup(pgid, 'SIGKILL');
  groups.clear();
  if (env.TOLLGATE_E2E_KEEP !== '1') for (const dir of stateDirs) rmSync(dir, { recursive: true, force: true });
  stateDirs.clear();
}
process.on('exit', () => {
  for (const pgid of groups) killGroup(pgid, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping everything`);
    stopAll().finally(() => process.exit(130));
  });
}

/** Starts a long-running helper in its own process group; resolves with it once `ready(output)` holds. */
async function startHelper(name, cmd, args, { cwd = ROOT, envExtra = {}, ready, timeoutMs = 60_000, pollMs = 50, readyLine = null }) {
  const logFile = join(OUT_DIR, `${name}.log`);
  const spawnedAt = preciseNow();
  const child = spawn(cmd, args, {
    cwd,
    env: { ...env, ...envExtra },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  groups.add(child.pid);
  let output = '';
  let readyLineAt = null;
  const onData = (d) => {
    output += d;
    if (readyLine && readyLineAt === null && readyLine.test(output)) readyLineAt = preciseNow();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exited = false;
  child.on('exit', () => (exited = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ready(output);
    if (value) {
      return {
        pid: child.pid,
        value,
        timings: { spawnedAt, readyAt: readyLineAt, firstAnsweredAt: preciseNow() },
        output: () => output,
        async stop() {
          killGroup(child.pid, 'SIGTERM');
          for (let i = 0; i < 50 && !exited; i++) await sleep(100);
          killGroup(child.pid, 'SIGKILL');
          groups.delete(child.pid);
          writeFileSync(logFile, output);
        },
      };
    }
    if (exited || Date.now() > deadline) {
      writeFileSync(logFile, output);
      killGroup(child.pid, 'SIGKILL');
      groups.delete(child.pid);
      throw new Error(`${name} did not start (${exited ? 'exited' : 'timeout'}); output:\n${output.slice(-3000)}`);
    }
    await sleep(pollMs);
  }
}

/** Runs a command to completion (bounded); resolves with its stdout. */
function runToEnd(cmd, args, { timeoutMs }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${err}\n${out}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU of process trees, the machine's busy time, load
// ---------------------------------------------------------------------------------------------

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const BOOT_TIME_S = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))[1]);

/** Fields of /proc/<pid>/stat (null when the process is gone). */
function procStat(pid) {
  let s;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = s.lastIndexOf(')');
  const f = s.slice(close + 2).split(' '); // f[0] is field 3 (state)
  return {
    pid: Number(pid),
    comm: s.slice(s.indexOf('(') + 1, close),
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]), // utime + stime
    childTicks: Number(f[13]) + Number(f[14]), // cutime + cstime (waited-for children)
    startedAtMs: (BOOT_TIME_S + Number(f[19]) / CLK_TCK) * 1000,
  };
}

/** Every process of the tree rooted at `root`, root included. */
function processTree(root) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(name);
    if (st) all.push(st);
  }
  const byParent = new Map();
  for (const p of all) {
    if (!byParent.has(p.ppid)) byParent.set(p.ppid, []);
    byParent.get(p.ppid).push(p);
  }
  const rootStat = all.find((p) => p.pid === root);
  if (!rootStat) return [];
  const out = [];
  const queue = [rootStat];
  while (queue.length) {
    const p = queue.shift();
    out.push(p);
    queue.push(...(byParent.get(p.pid) ?? []));
  }
  return out;
}

/** Busy jiffies of the whole machine (all CPUs): user, nice, system, irq, softirq, steal. */
function machineBusyTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
}
const loadAvg = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
const NCPU = os.cpus().length;

// ---------------------------------------------------------------------------------------------
// Load generators
// ---------------------------------------------------------------------------------------------

async function runWrk({ url, bodyFile, headers, concurrency, durationS }) {
  const headerArgs = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  const out = await runToEnd(
    'wrk',
    ['-t1', `-c${concurrency}`, `-d${durationS}s`, '--timeout', '10s', '-s', WRK_LUA, url, '--', bodyFile, ...headerArgs],
    { timeoutMs: (durationS + 60) * 1000 },
  );
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`wrk printed no BENCH_JSON line:\n${out}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  return {
    requests: r.requests,
    answered: r.requests - r.errors.status,
    errors,
    errorDetail: r.errors,
    seconds: r.duration_us / 1e6,
    rps: r.requests / (r.duration_us / 1e6),
    p50: r.p50_us / 1000,
    p90: r.p90_us / 1000,
    p99: r.p99_us / 1000,
  };
}

async function runStreamClient({ url, bodyFile, headers, concurrency, durationS }) {
  const args = JSON.stringify({ url, bodyFile, headers, concurrency, durationMs: durationS * 1000 });
  const out = await runToEnd(process.execPath, [join(BENCH, 'stream-client.mjs'), args], {
    timeoutMs: (durationS + 60) * 1000,
  });
  const r = JSON.parse(out.trim().split('\n').pop());
  const ms = (x) => (x === null ? null : x / 1000);
  return {
    requests: r.requests,
    answered: r.ok,
    errors: r.failed,
    errorDetail: r.first_failure,
    seconds: r.elapsed_us / 1e6,
    rps: r.ok / (r.elapsed_us / 1e6),
    ttfbP50: ms(r.ttfb.p50_us),
    ttfbP90: ms(r.ttfb.p90_us),
    ttfbP99: ms(r.ttfb.p99_us),
    p50: ms(r.total.p50_us),
    p90: ms(r.total.p90_us),
    p99: ms(r.total.p99_us),
  };
}

/** One HTTP request; resolves { status, headers, body, ms }. */
function request(url, { method = 'POST', headers = {}, body = null, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          ms: performance.now() - t0,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${url}`)));
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// Set-up: mock, Tollgate, Portkey
// ---------------------------------------------------------------------------------------------

function writeBodies() {
  const base = {
    model: MODEL,
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Write one sentence about API gateways.' },
    ],
    max_tokens: 64,
  };
  const prompt2k = readFileSync(join(BENCH, 'fixtures', 'prompt-2k.txt'), 'utf8');
  const bodies = {
    plain: base,
    stream: { ...base, stream: true, stream_options: { include_usage: true } },
    prompt2k: { ...base, messages: [{ role: 'user', content: prompt2k }] },
  };
  const files = {};
  for (const [name, body] of Object.entries(bodies)) {
    files[name] = join(OUT_DIR, `body-${name}.json`);
    writeFileSync(files[name], JSON.stringify(body));
  }
  return { files, bodies };
}

async function startMock() {
  return startHelper('mock-upstream', process.execPath, [join(BENCH, 'mock-upstream.mjs'), '0'], {
    ready: (out) => {
      const m = /\{"port":(\d+)\}/.exec(out);
      return m ? Number(m[1]) : null;
    },
  });
}

async function adminOk(gw, method, path, body, expect = [200, 201]) {
  const res = await gw.admin(method, path, body);
  if (!expect.includes(res.status)) throw new Error(`${method} ${path} -> ${res.status}: ${res.text}`);
  return res.json;
}

/** Provider, models, tenant and key, through the admin API. */
async function configureTollgate(gw, mockUrl) {
  await adminOk(gw, 'PUT', '/admin/providers/mock', {
    kind: 'openai',
    base_url: `${mockUrl}/v1`,
    api_key_secret: 'PROVIDER_MOCK_KEY',
  });
  for (const [name, upstream] of [
    [MODEL, MODEL],
    [MODEL_NOCOUNT, 'bench-upstream-model'],
  ]) {
    await adminOk(gw, 'PUT', `/admin/models/${name}`, {
      provider: 'mock',
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 1000,
    });
  }
  const tenant = await adminOk(gw, 'POST', '/admin/tenants', { name: 'bench', credit: 1_000_000_000_000 });
  const key = await adminOk(gw, 'POST', `/admin/tenants/${tenant.id}/keys`, { name: 'bench' });
  return { tenantId: tenant.id, key: key.key };
}

/** Listening TCP ports of a process (from `ss`). */
function listeningPorts(pid) {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' });
  const ports = [];
  for (const line of out.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const local = line.trim().split(/\s+/)[3] ?? '';
    const port = Number(local.slice(local.lastIndexOf(':') + 1));
    if (port) ports.push(port);
  }
  return ports;
}

/**
 * The processes of a wrangler dev tree: the user workerd (runs Tollgate), wrangler's proxy workerd
 * (owns wrangler's port) and the user workerd's entry port, found by asking each of its listening
 * ports for Tollgate's /healthz.
 */
async function inspectWrangler(gw, marker = '"tollgate"') {
  const tree = processTree(gw.pid);
  const workerds = tree.filter((p) => p.comm === 'workerd');
  let user = null;
  let entryPort = null;
  for (const w of workerds) {
    const ports = listeningPorts(w.pid);
    if (ports.includes(gw.port)) continue; // the proxy
    for (const port of ports) {
      try {
        const res = await request(`http://127.0.0.1:${port}/healthz`, { method: 'GET', timeoutMs: 3000 });
        if (res.status === 200 && res.body.includes(marker)) {
          user = w;
          entryPort = port;
          break;
        }
      } catch {}
    }
    if (user) break;
  }
  const proxy = workerds.find((w) => w !== user && listeningPorts(w.pid).includes(gw.port)) ?? null;
  return { tree, user, proxy, entryPort };
}

async function startPortkey(mockUrl) {
  if (!existsSync(PORTKEY_JS)) throw new Error(`Portkey not installed in ${PEER_DIR}: run scripts/bench.sh`);
  const port = await freePort();
  const helper = await startHelper('portkey', process.execPath, [PORTKEY_JS, `--port=${port}`, '--headless'], {
    cwd: PEER_DIR,
    ready: async () => {
      try {
        const res = await request(`http://127.0.0.1:${port}/`, { method: 'GET', timeoutMs: 1000 });
        return res.status > 0;
      } catch {
        return false;
      }
    },
  });
  return { ...helper, port, url: `http://127.0.0.1:${port}` };
}

const WRANGLER_JS = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  WRANGLER_NO_SKILLS_UPDATE_PROMPTS: 'true',
  FORCE_COLOR: '0',
};

/** The reference JavaScript worker under its own wrangler dev; resolves once /healthz answers. */
async function startPassthrough(mockUrl, { pollMs = 50 } = {}) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const persistDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-passthrough-'));
  stateDirs.add(persistDir);
  const emptyEnv = join(persistDir, 'empty.env');
  writeFileSync(emptyEnv, '');
  const args = [
    WRANGLER_JS, 'dev',
    '--config', join(BENCH, 'passthrough', 'wrangler.toml'),
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--persist-to', persistDir,
    '--env-file', emptyEnv,
    '--show-interactive-dev-session=false',
    '--var', `UPSTREAM:${mockUrl}`,
  ];
  const url = `http://127.0.0.1:${port}`;
  const helper = await startHelper('passthrough', process.execPath, args, {
    envExtra: { ...OFFLINE_ENV, WRANGLER_LOG_PATH: join(persistDir, 'logs') },
    readyLine: /Ready on/,
    timeoutMs: 180_000,
    pollMs,
    ready: async () => {
      try {
        const res = await request(`${url}/healthz`, { method: 'GET', timeoutMs: 5000 });
        return res.status === 200 && res.body.includes('passthrough');
      } catch {
        return false;
      }
    },
  });
  const stop = helper.stop;
  return {
    ...helper,
    port,
    url,
    async stop() {
      await stop();
      rmSync(persistDir, { recursive: true, force: true });
      stateDirs.delete(persistDir);
    },
  };
}

/**
 * A worker under bench/miniflare-host.mjs (workerd through Miniflare's API); resolves once /healthz
 * answers. `persistDir`: a wrangler-style state directory (D1 and KV), or null for none.
 */
async function startMiniflareHost(name, { script, wasm = null, persistDir = null, vars = {}, marker }) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const cfg = { script, wasm, persistDir, vars, port };
  const helper = await startHelper(name, process.execPath, [join(BENCH, 'miniflare-host.mjs'), JSON.stringify(cfg)], {
    envExtra: OFFLINE_ENV,
    readyLine: /READY /,
    timeoutMs: 120_000,
    ready: async (output) => {
      if (!/READY /.test(output)) return false;
      try {
        const res = await request(`${url}/healthz`, { method: 'GET', timeoutMs: 5000 });
        return res.status === 200 && res.body.includes(marker);
      } catch {
        return false;
      }
    },
  });
  return { ...helper, port, url };
}

/** The D1 SQLite file of a wrangler-style state directory. */
function d1FileOf(persistDir) {
  const dir = join(persistDir, 'v3', 'd1', 'miniflare-D1DatabaseObject');
  const name = readdirSync(dir).find((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite');
  if (!name) throw new Error(`no D1 database under ${dir}`);
  return join(dir, name);
}

/** Rows of a read-only query on a state directory's D1. */
function queryD1(persistDir, sql) {
  const { DatabaseSync } = require('node:sqlite');
  const db = new DatabaseSync(d1FileOf(persistDir), { readOnly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

/** One plain and one streamed request through a target: fails loudly when the set-up is wrong. */
async function verifyTarget(t, files) {
  const plain = await request(t.url, {
    headers: { 'content-type': 'application/json', ...t.headers },
    body: readFileSync(files.plain),
  });
  if (plain.status !== 200) throw new Error(`${t.name}: plain request -> ${plain.status}: ${plain.body.slice(0, 500)}`);
  const content = JSON.parse(plain.body).choices?.[0]?.message?.content;
  if (!content) throw new Error(`${t.name}: plain reply has no content: ${plain.body.slice(0, 500)}`);
  const stream = await request(t.url, {
    headers: { 'content-type': 'application/json', ...t.headers },
    body: readFileSync(files.stream),
  });
  const events = stream.body.split('\n').filter((l) => l.startsWith('data: ')).length;
  if (stream.status !== 200 || !stream.body.trimEnd().endsWith('data: [DONE]')) {
    throw new Error(`${t.name}: stream -> ${stream.status}: ${stream.body.slice(0, 500)}`);
  }
  return { plainHeaders: plain.headers, streamEvents: events };
}

// ---------------------------------------------------------------------------------------------
// One measured run
// ---------------------------------------------------------------------------------------------

/** CPU ticks per role of a target's processes. */
function targetTicks(t) {
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

async function measure(t, allTargets, mockPid, fn) {
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
// Cold starts
// ---------------------------------------------------------------------------------------------

/**
 * Restarts wrangler dev on the benchmark's state and times the first answered request: from the
 * wrangler spawn, from the user workerd's process start (/proc, 1/CLK_TCK resolution) and from
 * wrangler's "Ready on" line; then the first chat completion of that fresh isolate and a warm one.
 */
async function coldStart(state, vars, model, key, files) {
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
async function coldStartPassthrough(mockUrl, files) {
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

// ---------------------------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------------------------

function median(xs) {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const spread = (xs) => {
  const s = xs.filter((x) => x !== null && Number.isFinite(x));
  return s.length ? [Math.min(...s), Math.max(...s)] : null;
};

function fmt(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  const d = a >= 100 ? 0 : a >= 10 ? 1 : digits;
  return x.toFixed(d);
}
/** Median, with the min–max over repetitions when there are several. */
function fmtSpread(xs, digits = 2) {
  const m = median(xs);
  const sp = spread(xs);
  if (m === null) return '–';
  if (!sp || xs.length < 2) return fmt(m, digits);
  return `${fmt(m, digits)} <sub>${fmt(sp[0], digits)}–${fmt(sp[1], digits)}</sub>`;
}

function versions() {
  const pkg = (p) => {
    try {
      return JSON.parse(readFileSync(p, 'utf8')).version;
    } catch {
      return null;
    }
  };
  const nm = join(ROOT, 'node_modules');
  const peer = join(PEER_DIR, 'node_modules');
  let wrk = null;
  try {
    wrk = execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    wrk = `${e.stdout ?? ''}`;
  }
  let commit = null;
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim() !== '';
  } catch {}
  return {
    commit: commit && (dirty ? `${commit} (+ uncommitted changes in src)` : commit),
    node: process.version,
    wrangler: pkg(join(nm, 'wrangler', 'package.json')),
    workerd: pkg(join(nm, '@cloudflare', 'workerd-linux-64', 'package.json')),
    portkey: pkg(join(peer, '@portkey-ai', 'gateway', 'package.json')),
    hono: pkg(join(peer, 'hono', 'package.json')),
    honoNodeServer: pkg(join(peer, '@hono', 'node-server', 'package.json')),
    wrk: (/wrk (\S+)/.exec(wrk) ?? [])[1] ?? null,
  };
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
  };
}

function wasmSize() {
  const file = join(ROOT, 'build', 'index_bg.wasm');
  const raw = readFileSync(file);
  return { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length };
}

const TARGET_LABEL = {
  direct: 'direct (mock)',
  passthrough: 'JS pass-through worker (workerd port)',
  'passthrough-mf': 'JS pass-through worker (Miniflare)',
  tollgate: 'Tollgate (wrangler dev)',
  'tollgate-workerd': 'Tollgate (workerd port)',
  'tollgate-mf': 'Tollgate (Miniflare)',
  portkey: 'Portkey',
};

/** Per scenario, concurrency and target: the list of per-rep results. */
function collect(runs, scenario, c, target) {
  return runs.filter((r) => r.scenario === scenario && r.concurrency === c && r.target === target);
}

/** Per rep: value(target) - value(direct) of the same rep. */
function pairedDiff(runs, scenario, c, target, field) {
  const out = [];
  for (const r of collect(runs, scenario, c, target)) {
    const d = runs.find((x) => x.scenario === scenario && x.concurrency === c && x.target === 'direct' && x.rep === r.rep);
    if (d && r[field] !== null && d[field] !== null) out.push(r[field] - d[field]);
  }
  return out;
}

/** Per rep: added(target) / added(portkey). */
function pairedRatio(runs, scenario, c, target, field) {
  const a = pairedDiff(runs, scenario, c, target, field);
  const b = pairedDiff(runs, scenario, c, 'portkey', field);
  const out = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (b[i] > 0) out.push(a[i] / b[i]);
  return out;
}

function cpuRatio(runs, scenario, c, target) {
  const out = [];
  for (const r of collect(runs, scenario, c, target)) {
    const p = runs.find((x) => x.scenario === scenario && x.concurrency === c && x.target === 'portkey' && x.rep === r.rep);
    if (p && r.cpuMsPerReq && p.cpuMsPerReq) out.push(r.cpuMsPerReq / p.cpuMsPerReq);
  }
  return out;
}

/** The rows of scripts/bench-pipeline.sh's table: platform, request, microseconds. */
function ownCpuRows(markdown) {
  if (!markdown) return [];
  return markdown
    .split('\n')
    .map((l) => /^\| (native|wasm[^|]*) \| ([^|]+) \| ([\d.]+) µs \|$/.exec(l.trim()))
    .filter(Boolean)
    .map((m) => ({ platform: m[1].trim(), request: m[2].trim(), us: Number(m[3]) }));
}

function targetsEvaluation(results) {
  const { runs, coldStarts } = results;
  const rows = [];
  const has = (t) => results.config.targets.includes(t);
  const tg = ['tollgate-mf', 'tollgate-workerd', 'tollgate'].find(has) ?? 'tollgate';
  const verdict = (ok) => (ok === null ? 'not measured' : ok ? '**met**' : '**not met**');
  if (has('portkey')) {
    for (const c of CFG.concurrencies) {
      const ours = median(pairedDiff(runs, 'plain', c, tg, 'p50'));
      const theirs = median(pairedDiff(runs, 'plain', c, 'portkey', 'p50'));
      const ratio = median(pairedRatio(runs, 'plain', c, tg, 'p50'));
      rows.push([
        `added p50 latency, plain, c=${c}: ≤ ½ of Portkey's`,
        `${fmt(ours)} ms vs ${fmt(theirs)} ms (ratio ${fmt(ratio)})`,
        verdict(ratio === null ? null : ratio <= 0.5),
      ]);
    }
  }
  for (const c of CFG.concurrencies) {
    const runsC = collect(runs, 'prompt2k', c, tg);
    const worker = median(runsC.map((r) => r.cpuMsPerReqByRole.worker ?? null));
    rows.push([
      `worker CPU per request, 2,000-token prompt, c=${c}: ≤ 1 ms`,
      `${fmt(worker)} ms (user workerd: worker, runtime, local D1/KV simulation)`,
      verdict(worker === null ? null : worker <= 1),
    ]);
  }
  const own = ownCpuRows(results.pipeline);
  const ownWasm = own.find((r) => r.platform.startsWith('wasm') && r.request === 'plain, 2,000-token prompt');
  if (ownWasm) {
    rows.push([
      "Tollgate's own CPU per request, 2,000-token prompt (pure core in wasm, counting included): ≤ 1 ms",
      `${fmt(ownWasm.us / 1000)} ms (scripts/bench-pipeline.sh)`,
      verdict(ownWasm.us <= 1000),
    ]);
  }
  for (const c of CFG.concurrencies) {
    const added = median(pairedDiff(runs, 'ttfb', c, tg, 'ttfbP50'));
    rows.push([
      `stream TTFB added over direct, p50, c=${c}: ≤ 1 ms`,
      `${fmt(added)} ms`,
      verdict(added === null ? null : added <= 1),
    ]);
  }
  if (has('portkey')) {
    for (const c of CFG.concurrencies) {
      const ratio = median(pairedRatio(runs, 'stream', c, tg, 'p50'));
      const ours = median(pairedDiff(runs, 'stream', c, tg, 'p50'));
      const theirs = median(pairedDiff(runs, 'stream', c, 'portkey', 'p50'));
      rows.push([
        `whole-stream added p50, c=${c}: ≤ ½ of Portkey's`,
        `${fmt(ours)} ms vs ${fmt(theirs)} ms (ratio ${fmt(ratio)})`,
        verdict(ratio === null ? null : ratio <= 0.5),
      ]);
    }
  }
  if (coldStarts.length) {
    const fromWorkerd = median(coldStarts.map((c) => c.fromWorkerdStartMs));
    rows.push([
      'cold start to first answered request: ≤ 50 ms',
      `${fmt(fromWorkerd)} ms from workerd start (/healthz)`,
      verdict(fromWorkerd === null ? null : fromWorkerd <= 50),
    ]);
    const firstChat = median(coldStarts.filter((c) => c.model === MODEL).map((c) => c.firstChatMs));
    rows.push([
      'first chat completion of a fresh isolate (counting model): ≤ 50 ms',
      `${fmt(firstChat)} ms`,
      verdict(firstChat === null ? null : firstChat <= 50),
    ]);
  }
  return { via: TARGET_LABEL[tg], rows };
}

function renderMarkdown(results) {
  const { config, versions: v, machine: m, runs, coldStarts, wasm, meteringCheck, prompt2kTokens } = results;
  const L = [];
  const targets = config.targets;
  const reps = config.reps;
  L.push('## Gateway benchmark', '');
  L.push(
    `Generated by \`bash scripts/bench.sh\` on ${results.startedAt} (UTC), ${config.quick ? '**quick mode** (not for comparison), ' : ''}` +
      `${reps} repetition${reps > 1 ? 's' : ''} of ${config.durationS} s per run (stream TTFB: ${config.ttfbDurationS} s), ` +
      `in ${fmt(results.elapsedS / 60, 1)} min. Figures: median of the repetitions, ` +
      `<sub>min–max</sub> when there are several; ms unless marked.`,
    '',
  );
  L.push(
    `- **Machine**: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}. ` +
      `Load average (1/5/15 min) at start ${results.loadStart.join(' / ')}, at end ${results.loadEnd.join(' / ')}. ` +
      `Everything (client, mock, gateways, other work on the machine) shares these cores: see the _load_ and ` +
      `_foreign CPU_ columns (the share of the machine's CPU used by processes outside the benchmark during each run).`,
  );
  L.push(
    `- **Versions**: Tollgate ${v.commit ?? '?'} (release build), workerd ${v.workerd}, wrangler ${v.wrangler}, ` +
      `Node ${v.node}; Portkey \`@portkey-ai/gateway\` ${v.portkey} with hono ${v.hono} and ` +
      `@hono/node-server ${v.honoNodeServer} (bench/peer); wrk ${v.wrk}.`,
  );
  L.push(
    `- **Wasm** \`build/index_bg.wasm\`: ${(wasm.raw / 1024).toFixed(0)} KiB raw, ${(wasm.gzip / 1024).toFixed(0)} KiB gzip (level 9).`,
  );
  if (meteringCheck) {
    L.push(
      `- **Metering was on**: ${meteringCheck.usageRows} usage rows in D1 for ${meteringCheck.answered} requests ` +
        `the load generators counted as answered by Tollgate (requests still in flight when a run stopped are ` +
        `settled too, as client_abort or ok; statuses: ${Object.entries(meteringCheck.byStatus)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}); ${meteringCheck.openReservations} reservations still open at the end.`,
    );
  }
  if (prompt2kTokens !== null) {
    L.push(`- The 2,000-token prompt (bench/fixtures/prompt-2k.txt) counts as ${prompt2kTokens} prompt tokens (o200k_base, framing included) in Tollgate's usage row.`);
  }
  L.push('');

  const cols = (scenario) => {
    const lat = scenario === 'ttfb';
    return lat
      ? ['target', 'c', 'TTFB p50', 'TTFB p99', 'total p50', 'total p99', 'added TTFB p50', 'added total p50', 'req/s', 'load', 'foreign CPU']
      : ['target', 'c', 'p50', 'p90', 'p99', 'req/s', 'added p50', 'vs Portkey (added p50)', 'CPU ms/req', 'vs Portkey (CPU)', 'load', 'foreign CPU'];
  };
  const titles = {
    plain: 'Plain chat completion (small prompt, JSON reply; wrk)',
    stream: 'Streamed chat completion, whole stream (20 content chunks + usage chunk; wrk)',
    ttfb: 'Streamed chat completion: time to first byte and to the end (bench/stream-client.mjs)',
    prompt2k: 'Plain chat completion with a 2,000-token prompt (counting included; wrk)',
  };
  for (const scenario of config.scenarios) {
    L.push(`### ${titles[scenario]}`, '');
    const head = cols(scenario);
    L.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
    for (const c of CFG.concurrencies) {
      for (const t of targets) {
        const rs = collect(runs, scenario, c, t);
        if (!rs.length) continue;
        const g = (f) => rs.map((r) => r[f]);
        const errs = rs.reduce((a, r) => a + r.errors, 0);
        const name = TARGET_LABEL[t] + (errs ? ` (**${errs} errors**)` : '');
        const load = fmt(median(g('load1')), 2);
        const foreign = `${fmt(median(g('foreignCpuPct')), 0)} %`;
        if (scenario === 'ttfb') {
          L.push(
            `| ${name} | ${c} | ${fmtSpread(g('ttfbP50'))} | ${fmtSpread(g('ttfbP99'))} | ${fmtSpread(g('p50'))} | ${fmtSpread(g('p99'))} | ` +
              `${t === 'direct' ? '' : fmtSpread(pairedDiff(runs, scenario, c, t, 'ttfbP50'))} | ` +
              `${t === 'direct' ? '' : fmtSpread(pairedDiff(runs, scenario, c, t, 'p50'))} | ${fmt(median(g('rps')), 0)} | ${load} | ${foreign} |`,
          );
        } else {
          const isGw = t !== 'direct';
          const roles = rs[0].cpuMsPerReqByRole;
          const roleNote =
            t.startsWith('tollgate') && Object.keys(roles).length > 1
              ? ` <sub>${Object.keys(roles)
                  .sort()
                  .map((role) => `${role} ${fmt(median(rs.map((r) => r.cpuMsPerReqByRole[role] ?? null)))}`)
                  .join(', ')}</sub>`
              : '';
          L.push(
            `| ${name} | ${c} | ${fmtSpread(g('p50'))} | ${fmtSpread(g('p90'))} | ${fmtSpread(g('p99'))} | ${fmt(median(g('rps')), 0)} | ` +
              `${isGw ? fmtSpread(pairedDiff(runs, scenario, c, t, 'p50')) : ''} | ` +
              `${isGw && t !== 'portkey' && targets.includes('portkey') ? fmtSpread(pairedRatio(runs, scenario, c, t, 'p50')) : ''} | ` +
              `${fmtSpread(g('cpuMsPerReq'))}${t === 'direct' ? ' <sub>mock</sub>' : roleNote} | ` +
              `${isGw && t !== 'portkey' && targets.includes('portkey') ? fmtSpread(cpuRatio(runs, scenario, c, t)) : ''} | ${load} | ${foreign} |`,
          );
        }
      }
    }
    L.push('');
  }

  if (results.pipeline) {
    L.push(
      "### Tollgate's own CPU per request (scripts/bench-pipeline.sh)",
      '',
      'The pure core\'s work for one chat completion, timed in-process (release builds; median of 7 rounds of ' +
        '100 ms): parse the request, count the prompt (o200k_base), price the reservation, build the upstream ' +
        'request, parse the reply or decode and meter the 23-event stream, bill. The rest of the worker CPU in the ' +
        'tables above is the runtime\'s: JS glue, fetch, and the local D1/KV simulation.',
      '',
      results.pipeline.trim(),
      '',
    );
  }

  if (coldStarts.length) {
    L.push('### Cold start (wrangler dev restarted on the same D1/KV state)', '');
    L.push(
      '| worker, first chat model | from wrangler spawn | from workerd start | from "Ready on" line | workerd CPU until then | first chat completion | warm chat completion |',
      '|---|---|---|---|---|---|---|',
    );
    const coldLabel = {
      [MODEL]: `Tollgate, ${MODEL} (o200k count)`,
      [MODEL_NOCOUNT]: `Tollgate, ${MODEL_NOCOUNT} (estimate, no tokenizer)`,
      passthrough: 'JS pass-through worker (reference)',
    };
    for (const model of [MODEL, MODEL_NOCOUNT, 'passthrough']) {
      const cs = coldStarts.filter((c) => c.model === model);
      if (!cs.length) continue;
      const g = (f) => cs.map((c) => c[f]);
      L.push(
        `| ${coldLabel[model]} | ${fmtSpread(g('fromSpawnMs'))} | ${fmtSpread(g('fromWorkerdStartMs'))} | ` +
          `${fmtSpread(g('fromReadyLineMs'))} | ${fmtSpread(g('workerdCpuMsAtFirstAnswer'))} | ${fmtSpread(g('firstChatMs'))} | ${fmtSpread(g('warmChatMs'))} |`,
      );
    }
    L.push(
      '',
      'The first three columns time the first answered `GET /healthz` (probed every 2 ms from the spawn); ' +
        `workerd's start comes from /proc (resolution ${1000 / CLK_TCK} ms). "first chat completion" is the ` +
        'first `POST /v1/chat/completions` of that fresh isolate, sent right after; "warm" the median of the next five.',
      '',
    );
  }

  const ev = targetsEvaluation(results);
  L.push(`### Targets (Tollgate measured through the ${ev.via})`, '');
  L.push('| target | measured | |', '|---|---|---|');
  for (const r of ev.rows) L.push(`| ${r.join(' | ')} |`);
  L.push('');

  L.push('### Method', '');
  L.push(
    '- One command: `bash scripts/bench.sh` (`BENCH_QUICK=1` for a short development run). It installs wrk ' +
      '(apt-get) and Portkey (`npm ci` in bench/peer) when missing, builds the worker (release), and runs ' +
      'bench/run.mjs, which starts everything on 127.0.0.1 and stops it at the end.',
    '- Upstream: bench/mock-upstream.mjs, a Node http server in its own process answering at once (plain: one ' +
      'JSON body; stream: 23 SSE events, each its own write, then `[DONE]`). **direct** is the client calling it ' +
      'without a gateway.',
    '- **Tollgate** runs the release build with full metering: key digest check (isolate cache, else KV, else ' +
      'D1), model row (isolate cache), o200k_base count of the prompt, one D1 batch before the upstream call ' +
      '(reservation, which re-checks revocation, tenant and balance), upstream call, relay, and after the ' +
      'response one D1 batch (settlement: usage row, session, alert rules). **Tollgate (Miniflare)** runs it in ' +
      'workerd through Miniflare\'s API (bench/miniflare-host.mjs: the runtime without wrangler dev\'s proxy, ' +
      'inspector and watchers) on a copy of the configured D1/KV state; **Tollgate (workerd port)** runs it ' +
      'under `wrangler dev` and sends requests to the user workerd\'s own entry socket; **Tollgate (wrangler ' +
      'dev)** goes through wrangler\'s port and its proxy worker in a second workerd process. The JS ' +
      'pass-through worker (bench/passthrough) runs the same ways: the floor of each local stack.',
    '- **Portkey**: `node build/start-server.js --port=N --headless` from bench/peer, requests with ' +
      '`x-portkey-provider: openai` and `x-portkey-custom-host: <mock>/v1`: a pass-through with no metering ' +
      'or keys of its own.',
    '- Load: `wrk -t1 -cC -dDs` with bench/wrk-post.lua (POST body, latency percentiles, error counts; a ' +
      'non-2xx answer is an error) for plain, stream and prompt2k; bench/stream-client.mjs (node:http, ' +
      'keep-alive) for time to first body byte and to the end of a stream. A warm-up run precedes each ' +
      'scenario; the order of the targets rotates per repetition; added latency and ratios are computed ' +
      'pair by pair within a repetition, then the median is taken.',
    '- CPU per request: utime+stime from /proc/<pid>/stat of every process of the target\'s tree, before and ' +
      'after the run (300 ms after the load stops, so settlements are included), divided by answered requests. ' +
      'For Tollgate the total is split by process: _worker_ is the user workerd (Tollgate\'s wasm, the runtime, ' +
      'and — locally only — the D1/SQLite and KV simulation), _proxy_ wrangler\'s proxy workerd, _wrangler_ its ' +
      'Node process. For direct the column is the mock\'s CPU.',
    '- Local D1 and KV are simulated inside the user workerd (SQLite and files behind JavaScript wrapper ' +
      'workers): no network time, but each operation costs the worker process CPU (`node bench/storage-probe.mjs` ' +
      'measures it), whereas deployed D1 is a network round trip whose CPU is not the worker\'s. The worker CPU ' +
      'here is therefore an upper bound of the deployed worker\'s, and its latency misses the storage round trips.',
    '- Timing is never asserted by the tests; this is a measurement, re-run it on a quiet machine to compare.',
    '',
  );
  return L.join('\n');
}

function writeBenchmarksMd(markdown) {
  const file = join(ROOT, 'BENCHMARKS.md');
  const START = '<!-- gateway-bench:start -->';
  const END = '<!-- gateway-bench:end -->';
  const block = `${START}\n${markdown}\n${END}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\n';
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + END.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

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

  const vars = { PROVIDER_MOCK_KEY: MOCK_SECRET };
  // One D1/KV state for the measured gateway and the cold restarts after it.
  const state = {
    persistDir: mkdtempSync(join(tmpdir(), 'tollgate-bench-')),
    adminToken: `admin-${randomToken()}`,
    pepper: randomToken(32),
  };
  stateDirs.add(state.persistDir);
  log('starting Tollgate (wrangler dev)');
  let gw = await startGateway({ vars, state });
  gateways.add(gw);
  const { key } = await configureTollgate(gw, mockUrl);
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
    tollgateMf = { persistDir: mkdtempSync(join(tmpdir(), 'tollgate-bench-mf-')) };
    stateDirs.add(tollgateMf.persistDir);
    cpSync(join(state.persistDir, 'v3'), join(tollgateMf.persistDir, 'v3'), { recursive: true });
    tollgateMf.host = await startMiniflareHost('tollgate-mf', {
      script: join(ROOT, 'build', 'index.js'),
      wasm: join(ROOT, 'build', 'index_bg.wasm'),
      persistDir: tollgateMf.persistDir,
      vars: { ...vars, ADMIN_TOKEN: state.adminToken, KEY_PEPPER: state.pepper, ECHO_CHUNK_DELAY_MS: '5' },
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
  for (const scenario of CFG.scenarios) {
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

  // Metering check: usage rows for what Tollgate answered, and the 2k prompt's token count.
  await sleep(1000);
  let meteringCheck = null;
  let prompt2kTokens = null;
  if (targets.some((t) => t.name.startsWith('tollgate'))) {
    // Both states: wrangler dev's (tollgate, tollgate-workerd) and the Miniflare copy's.
    const query = (sql) => [...gw.d1(sql), ...(tollgateMf ? queryD1(tollgateMf.persistDir, sql) : [])];
    const byStatus = {};
    for (const r of query('SELECT status, COUNT(*) AS n FROM usage GROUP BY status')) {
      byStatus[r.status] = (byStatus[r.status] ?? 0) + Number(r.n);
    }
    const open = query('SELECT COUNT(*) AS n FROM reservations').reduce((a, r) => a + Number(r.n), 0);
    meteringCheck = {
      usageRows: Object.values(byStatus).reduce((a, b) => a + b, 0),
      byStatus,
      openReservations: Number(open),
      // + the set-up's verification requests
      answered: answeredTollgate + 2 * targets.filter((t) => t.name.startsWith('tollgate')).length,
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
