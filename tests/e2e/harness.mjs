// Helpers for Tollgate's end-to-end tests (node:test files in this folder).
//
//   startGateway({ vars })  a real `wrangler dev` (workerd) on a free port, with its own D1/KV state;
//                           the gateway object has admin(), adminOk(), usageRow(), newTenant() and d1()
//   startGatewayEarly(o)    startGateway(o) begun now for a later suite; awaited there (see below)
//   startMockOpenAI()       a local server speaking the OpenAI chat-completions wire format
//
// The worker must be built first (scripts/build.sh; scripts/test.sh does it): the gateway runs with
// TOLLGATE_SKIP_BUILD=1 so that starting several of them never rebuilds.
// TOLLGATE_E2E_VERBOSE=1 prints wrangler's output; TOLLGATE_E2E_KEEP=1 keeps the state directories.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { stripVTControlCharacters } from 'node:util';
import OpenAI from 'openai';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WRANGLER_JS = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
const VERBOSE = process.env.TOLLGATE_E2E_VERBOSE === '1';
const KEEP = process.env.TOLLGATE_E2E_KEEP === '1';
const require = createRequire(import.meta.url);

// Keeps wrangler and miniflare off the network (telemetry, cf.json, update checks).
const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  WRANGLER_NO_SKILLS_UPDATE_PROMPTS: 'true',
};

export const randomToken = (bytes = 24) => randomBytes(bytes).toString('hex');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// wrangler colours esbuild's messages whatever FORCE_COLOR says.
const plain = (text) => stripVTControlCharacters(text);

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

// Process groups of every gateway still running, killed if the test process exits without kill().
const liveGroups = new Set();
process.on('exit', () => {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {}
  }
});

function wranglerEnv(extra = {}) {
  // FORCE_COLOR=0: plain text in the output that failed tests print.
  return { ...process.env, ...OFFLINE_ENV, FORCE_COLOR: '0', ...extra };
}

/** Runs a short wrangler command to completion; rejects with its output on failure. */
function runWrangler(args, { env = {}, timeoutMs = 120_000 } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [WRANGLER_JS, ...args], {
      cwd: ROOT,
      env: wranglerEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (VERBOSE) process.stderr.write(`[wrangler ${args.join(' ')}]\n${out}\n`);
      if (code === 0) res(out);
      else rej(new Error(`wrangler ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${plain(out)}`));
    });
  });
}

/**
 * A D1/KV state directory with every migration applied, made once per schema and copied into each
 * fresh gateway's directory: `wrangler d1 migrations apply` (seconds of CPU) then runs once per
 * schema rather than once per gateway start. The directory, target/e2e-state/<hash>, is named by
 * what the migrated state depends on (schema/*.sql, wrangler.toml, wrangler's version); it is
 * made in a directory of its own and renamed into place, so files run at once never see half of it.
 */
let migratedTemplatePromise = null;
function migratedTemplate() {
  migratedTemplatePromise ??= (async () => {
    const hash = createHash('sha256');
    hash.update(readFileSync(join(ROOT, 'wrangler.toml')));
    hash.update(readFileSync(join(ROOT, 'node_modules', 'wrangler', 'package.json')));
    for (const f of readdirSync(join(ROOT, 'schema')).sort()) {
      hash.update(`\0${f}\0`);
      hash.update(readFileSync(join(ROOT, 'schema', f)));
    }
    const base = join(ROOT, 'target', 'e2e-state');
    const dir = join(base, hash.digest('hex').slice(0, 16));
    if (existsSync(dir)) return dir;
    mkdirSync(base, { recursive: true });
    const making = mkdtempSync(join(base, 'making-'));
    try {
      await runWrangler(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', making], {
        env: { WRANGLER_LOG_PATH: join(making, 'wrangler-logs'), CI: 'true' },
      });
      rmSync(join(making, 'wrangler-logs'), { recursive: true, force: true });
      try {
        renameSync(making, dir);
      } catch (err) {
        if (!existsSync(dir)) throw err; // another file's run made it first: use theirs
      }
    } finally {
      rmSync(making, { recursive: true, force: true });
    }
    return dir;
  })();
  // A failed attempt is tried again by the next gateway start.
  migratedTemplatePromise.catch(() => (migratedTemplatePromise = null));
  return migratedTemplatePromise;
}

/** The local D1 SQLite file of binding DB under a --persist-to directory. */
function findD1File(persistDir) {
  const found = [];
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, ent.name);
      if (ent.isDirectory()) walk(p);
      else if (ent.name.endsWith('.sqlite') && ent.name !== 'metadata.sqlite') found.push(p);
    }
  };
  walk(join(persistDir, 'v3', 'd1'));
  const preferred = found.filter((p) => p.includes('miniflare-D1DatabaseObject'));
  const candidates = preferred.length ? preferred : found;
  if (candidates.length === 0) throw new Error(`no D1 .sqlite file under ${persistDir}/v3/d1`);
  if (candidates.length === 1) return candidates[0];
  // Several databases: take the one that has the migrations table.
  const { DatabaseSync } = require('node:sqlite');
  for (const file of candidates) {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      const hit = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'd1_migrations'").get();
      if (hit) return file;
    } finally {
      db.close();
    }
  }
  return candidates[0];
}

/**
 * The `-c` arguments that run the gateway with service bindings to the Workers of `services`
 * ({ BINDING: config path relative to the repository }), and a function that removes the generated
 * gateway config.
 */
function serviceConfigs(services) {
  const entries = Object.entries(services);
  if (entries.length === 0) return { configArgs: [], removeConfig: () => {} };
  const blocks = entries.map(([binding, config]) => {
    const text = readFileSync(resolve(ROOT, config), 'utf8');
    const name = /^name\s*=\s*"([^"]+)"/m.exec(text)?.[1];
    if (!name) throw new Error(`${config} has no name = "..."`);
    return `\n[[services]]\nbinding = "${binding}"\nservice = "${name}"\n`;
  });
  const generated = join(ROOT, `.e2e-wrangler-${randomToken(6)}.toml`);
  writeFileSync(generated, readFileSync(join(ROOT, 'wrangler.toml'), 'utf8') + blocks.join(''));
  return {
    configArgs: ['-c', generated, ...entries.flatMap(([, config]) => ['-c', resolve(ROOT, config)])],
    removeConfig: () => rmSync(generated, { force: true }),
  };
}

/** Wall-clock time in milliseconds since the Unix epoch, with sub-millisecond precision. */
const preciseNow = () => performance.timeOrigin + performance.now();

/** Stops a wrangler process group (wrangler and its workerd): SIGTERM, then SIGKILL after 5 s. */
async function stopGroup(child, exitPromise, exited) {
  const signalGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {}
  };
  if (!exited()) {
    signalGroup('SIGTERM');
    const done = await Promise.race([exitPromise, sleep(5000).then(() => null)]);
    if (!done) signalGroup('SIGKILL');
    await Promise.race([exitPromise, sleep(2000)]);
  }
  signalGroup('SIGKILL'); // workerd, should it have outlived wrangler
  liveGroups.delete(child.pid);
}

/**
 * One `wrangler dev` start on fresh ports, waited for until /healthz answers. Returns the running
 * process, or `{ error, output }` (the process group stopped) when it exited or did not answer.
 */
async function launchWrangler({ configArgs, varArgs, persistDir, envFile, logEnv, startupTimeoutMs, pollMs }) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const args = [
    'dev',
    ...configArgs,
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--persist-to', persistDir,
    '--env-file', envFile,
    '--test-scheduled',
    '--show-interactive-dev-session=false',
    ...varArgs,
  ];
  const timings = { spawnedAt: preciseNow(), readyAt: null, firstAnsweredAt: null };
  const child = spawn(process.execPath, [WRANGLER_JS, ...args], {
    cwd: ROOT,
    env: wranglerEnv({ ...logEnv, TOLLGATE_SKIP_BUILD: '1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: kill() stops wrangler and workerd together
  });
  liveGroups.add(child.pid);
  const launched = { child, port, url: `http://127.0.0.1:${port}`, timings, output: '', exited: null, error: null };
  const onData = (d) => {
    launched.output += d;
    if (timings.readyAt === null && /Ready on/.test(launched.output)) timings.readyAt = preciseNow();
    if (VERBOSE) process.stderr.write(d);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  launched.exitPromise = new Promise((res) => {
    child.on('exit', (code, signal) => {
      launched.exited = { code, signal };
      res(launched.exited);
    });
  });
  const fail = async (message) => {
    await stopGroup(child, launched.exitPromise, () => launched.exited);
    launched.error = new Error(`${message}:\n${plain(launched.output)}`);
    return launched;
  };

  // Ready once the port answers HTTP (wrangler holds requests until the worker is loaded).
  const deadline = Date.now() + startupTimeoutMs;
  for (;;) {
    if (launched.exited) {
      const { signal, code } = launched.exited;
      return fail(`wrangler dev exited during startup (${signal ?? `exit ${code}`})`);
    }
    if (Date.now() > deadline) {
      return fail(`wrangler dev not answering on ${launched.url} after ${startupTimeoutMs} ms`);
    }
    try {
      const res = await fetch(`${launched.url}/healthz`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      timings.firstAnsweredAt = preciseNow();
      return launched;
    } catch {
      await sleep(pollMs);
    }
  }
}

/**
 * Starts `wrangler dev` with a fresh state directory (migrations applied) on a free port.
 * `vars` are extra or overriding worker variables (a null value leaves that variable out).
 * The developer's .dev.vars is not read: the gateway sees only these variables and wrangler.toml's [vars].
 *
 * Options for restarts and the benchmark (bench/run.mjs): `state` = { persistDir, adminToken, pepper }
 * of an earlier gateway reuses its D1/KV state and secrets (the directory is then kept on kill());
 * `pollMs` is the interval of the readiness probe. The result's `timings` holds epoch milliseconds of
 * the spawn, of wrangler's "Ready on" line and of the first answered probe, and `pid` the process
 * group of wrangler and its workerd processes.
 *
 * `services` = { BINDING: 'path/to/other/wrangler.toml', … } runs those Workers beside the gateway
 * (`wrangler dev -c <gateway> -c <other> …`) and binds each to the gateway as a service binding:
 * the gateway's config is then wrangler.toml plus one `[[services]]` block per binding, written
 * next to it (so its relative paths hold) and removed on kill().
 */
export async function startGateway({ vars = {}, startupTimeoutMs = 180_000, state = null, pollMs = 250, services = {} } = {}) {
  if (!existsSync(WRANGLER_JS)) throw new Error(`wrangler not installed: run scripts/setup.sh first`);
  if (!existsSync(join(ROOT, 'build', 'index.js'))) {
    throw new Error('build/index.js missing: run scripts/build.sh first');
  }
  const persistDir = state?.persistDir ?? mkdtempSync(join(tmpdir(), 'tollgate-e2e-'));
  let removeGenerated = () => {};
  const cleanupDir = () => {
    removeGenerated();
    if (!KEEP && !state) rmSync(persistDir, { recursive: true, force: true });
  };
  const adminToken = state?.adminToken ?? `admin-${randomToken()}`;
  const pepper = state?.pepper ?? randomToken(32);
  // An empty env file stops wrangler from loading the developer's .dev.vars.
  const envFile = join(persistDir, 'empty.env');
  writeFileSync(envFile, '');
  const logEnv = { WRANGLER_LOG_PATH: join(persistDir, 'wrangler-logs') };

  try {
    if (state) {
      await runWrangler(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persistDir], {
        env: { ...logEnv, CI: 'true' },
      });
    } else {
      // A fresh directory: a copy of the migrated state (the same as applying the migrations here).
      cpSync(await migratedTemplate(), persistDir, { recursive: true });
    }
  } catch (err) {
    cleanupDir();
    throw err;
  }

  // ALLOW_PRIVATE_UPSTREAMS: the mock providers and webhooks live on http://127.0.0.1 (a test
  // that checks the production rule passes `ALLOW_PRIVATE_UPSTREAMS: null`).
  const allVars = {
    ADMIN_TOKEN: adminToken,
    KEY_PEPPER: pepper,
    ECHO_CHUNK_DELAY_MS: '5',
    ALLOW_PRIVATE_UPSTREAMS: 'true',
    // TOLLGATE_E2E_VARS="NAME=value,…": extra vars for every gateway of a run (e.g. the suite with
    // WALLET_LEASES=true); a test's own vars win.
    ...Object.fromEntries(
      (process.env.TOLLGATE_E2E_VARS ?? '')
        .split(',')
        .filter((kv) => kv.includes('='))
        .map((kv) => [kv.slice(0, kv.indexOf('=')).trim(), kv.slice(kv.indexOf('=') + 1).trim()]),
    ),
    ...vars,
  };
  const varArgs = Object.entries(allVars)
    .filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => ['--var', `${k}:${v}`]);
  const { configArgs, removeConfig } = serviceConfigs(services);
  removeGenerated = removeConfig;
  // The ports were free a moment ago; another process (a workerd of the same run binding port 0)
  // may take one before wrangler binds it, and wrangler then exits with "Address already in use":
  // such a start is retried on fresh ports, any other failure is thrown at once.
  const startAttempts = 3;
  let launched;
  for (let attempt = 1; ; attempt++) {
    launched = await launchWrangler({ configArgs, varArgs, persistDir, envFile, logEnv, startupTimeoutMs, pollMs });
    if (!launched.error) break;
    const busy = /Address already in use/i.test(launched.output);
    if (!busy || attempt >= startAttempts) {
      cleanupDir();
      throw launched.error;
    }
    process.stderr.write(`# harness: wrangler dev found a port taken (attempt ${attempt}); starting again on new ports\n`);
  }
  const { child, port, url, timings, exitPromise } = launched;
  const output = () => launched.output;
  const exited = () => launched.exited;

  let killed = false;
  async function kill() {
    if (killed) return;
    killed = true;
    await stopGroup(child, exitPromise, exited);
    cleanupDir();
  }

  let d1File = null;
  function d1(sql, ...params) {
    const { DatabaseSync } = require('node:sqlite');
    d1File ??= findD1File(persistDir);
    const db = new DatabaseSync(d1File, { readOnly: true });
    try {
      return db.prepare(sql).all(...params);
    } finally {
      db.close();
    }
  }

  async function admin(method, path, body) {
    const res = await fetch(url + path, {
      method,
      headers: {
        authorization: `Bearer ${adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {}
    return { status: res.status, json, text, headers: res.headers };
  }

  /** `admin()` that asserts the status (200 unless told) and returns the JSON body. */
  async function adminOk(method, path, body, status = 200) {
    const res = await admin(method, path, body);
    assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
    return res.json;
  }

  /** Waits for the usage row of a request (settlement runs after the response). */
  async function usageRow(requestId, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await admin('GET', `/admin/requests/${requestId}`);
      if (res.status === 200) return res.json;
      if (Date.now() > deadline) throw new Error(`no usage row for ${requestId}`);
      await sleep(100);
    }
  }

  /**
   * Open reservations where they are authoritative: D1's `reservations` (tenants on the D1 path)
   * plus the open holds of every wallet that took its tenant (or only `tenantId`'s).
   */
  async function openReservations(tenantId = null) {
    const inD1 = tenantId
      ? d1('SELECT COUNT(*) AS n FROM reservations WHERE tenant_id = ?', tenantId)[0].n
      : d1('SELECT COUNT(*) AS n FROM reservations')[0].n;
    const claimed = tenantId
      ? d1('SELECT tenant_id FROM wallet_claims WHERE tenant_id = ?', tenantId)
      : d1('SELECT tenant_id FROM wallet_claims');
    let inWallets = 0;
    for (const { tenant_id: id } of claimed) {
      inWallets += (await adminOk('GET', `/admin/tenants/${id}/wallet`)).open_reservations;
    }
    return inD1 + inWallets;
  }

  /**
   * Waits until `tenantId`'s wallet (if it took the tenant) has exported every usage row it
   * settled: D1's rows are then complete (on the D1 path they are at once).
   */
  async function exported(tenantId, timeoutMs = 20_000) {
    if (d1('SELECT tenant_id FROM wallet_claims WHERE tenant_id = ?', tenantId).length === 0) return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await adminOk('GET', `/admin/tenants/${tenantId}/wallet`);
      if (v.outbox_pending === 0) return;
      if (Date.now() > deadline) throw new Error(`wallet of ${tenantId} never exported: ${JSON.stringify(v)}`);
      await sleep(100);
    }
  }

  /** The balance `/v1/balance` answers for API key `key` (asserting a 200). */
  async function balanceOf(key) {
    const res = await fetch(`${url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    return (await res.json()).balance;
  }

  /**
   * The `n` usage rows of session `sid` as its key `key` of tenant `tenantId` reads them
   * (`/v1/sessions/{sid}/requests`, oldest first), once the wallet exported them all; asserts
   * there are exactly `n`.
   */
  async function sessionRows(key, tenantId, sid, n, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await exported(tenantId);
      const res = await fetch(`${url}/v1/sessions/${sid}/requests`, { headers: { authorization: `Bearer ${key}` } });
      const rows = res.status === 200 ? (await res.json()).data : [];
      if (rows.length >= n) {
        assert.equal(rows.length, n, `session ${sid}: ${JSON.stringify(rows)}`);
        return rows.sort((a, b) => (a.request_id < b.request_id ? -1 : 1));
      }
      if (Date.now() > deadline) throw new Error(`session ${sid}: ${rows.length} of ${n} rows`);
      await sleep(100);
    }
  }

  /**
   * A new tenant with `credit` micro-units and `keys` API keys (the first named `main`, then
   * `key1`, …): { tenant, key (the first), keys, client (an openai SDK client with that key) }.
   */
  async function newTenant({ name = 'tenant', credit = 0, keys = 1 } = {}) {
    const tenant = await adminOk('POST', '/admin/tenants', { name, credit }, 201);
    const issued = [];
    for (let i = 0; i < keys; i++) {
      issued.push(await adminOk('POST', `/admin/tenants/${tenant.id}/keys`, { name: i === 0 ? 'main' : `key${i}` }, 201));
    }
    const client = new OpenAI({ apiKey: issued[0]?.key, baseURL: `${url}/v1`, maxRetries: 0 });
    return { tenant, key: issued[0], keys: issued, client };
  }

  return {
    url,
    port,
    pid: child.pid,
    timings,
    adminToken,
    pepper,
    persistDir,
    d1,
    admin,
    adminOk,
    usageRow,
    newTenant,
    openReservations,
    exported,
    balanceOf,
    sessionRows,
    kill,
    /** Everything wrangler printed so far. */
    logs: () => plain(output()),
  };
}

// ---------------------------------------------------------------------------------------------
// Mock OpenAI upstream
// ---------------------------------------------------------------------------------------------

function messageText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .filter((p) => p && p.type === 'text' && typeof p.text === 'string')
      .map((p) => p.text)
      .join(' ');
  }
  return '';
}

function openaiError(res, status, message, type, code = null) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, param: null, code } }));
}

/**
 * `startGateway(options)` begun at once, for a suite that runs later in the same file: a file that
 * needs gateways with different vars calls this in its top-level `before` beside its first gateway,
 * and its later suite `await`s the promise in its own `before`, so the starts overlap instead of
 * following one another. A failed start rejects where it is awaited (never as an unhandled
 * rejection). `stopEarly()` kills every gateway this file started early that is still running
 * (for the file's `after`: a suite that was skipped never killed its gateway).
 */
export function startGatewayEarly(options) {
  const started = startGateway(options);
  started.catch(() => {});
  earlyGateways.push(started);
  return started;
}
const earlyGateways = [];

/** Kills the gateways of `startGatewayEarly` (kill() twice is harmless). */
export async function stopEarly() {
  const all = earlyGateways.splice(0);
  await Promise.all(all.map(async (p) => (await p.catch(() => null))?.kill()));
}

/** Debian's Chromium (scripts/setup.sh installs it), or `CHROMIUM_PATH`. */
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Headless Chromium driven by playwright-core, with a fresh profile directory: a persistent
 * context (`launchPersistentContext`) whose `close()` also removes that directory. `options` add
 * to or override the launch options (viewport, timezoneId, …).
 */
export async function launchChromium(options = {}) {
  const { chromium } = require('playwright-core');
  const userDataDir = mkdtempSync(join(tmpdir(), 'tollgate-chromium-'));
  const removeProfile = () => rmSync(userDataDir, { recursive: true, force: true });
  let browser;
  try {
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      acceptDownloads: true,
      args: [
        '--no-sandbox',
        '--headless',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
      ...options,
    });
  } catch (err) {
    removeProfile();
    throw err;
  }
  const close = browser.close.bind(browser);
  browser.close = async () => {
    try {
      await close();
    } finally {
      removeProfile();
    }
  };
  return browser;
}

/**
 * A mock OpenAI server on 127.0.0.1:<random port>.
 *
 * Replies "mock reply to <last user message>"; usage.prompt_tokens = `promptTokens` (default 42),
 * completion_tokens = number of words in the reply (one stream chunk per word).
 * Upstream model names with special behaviour: mock-500, mock-400, mock-hang, mock-drop, mock-nousage.
 * `setBehavior(fn)`: fn({ method, url, headers, body }, res) runs first for every request; when it returns
 * true (or a promise of true) it has answered and the default behaviour is skipped. setBehavior(null) resets.
 */
export async function startMockOpenAI({ promptTokens = 42, chunkDelayMs = 30 } = {}) {
  const requests = [];
  let behavior = null;
  const sockets = new Set();
  const timers = new Set();
  const mock = {
    url: '',
    requests,
    promptTokens,
    chunkDelayMs,
    setBehavior(fn) {
      behavior = fn;
    },
    close,
  };

  const delay = (ms) =>
    new Promise((r) => {
      const t = setTimeout(() => {
        timers.delete(t);
        r();
      }, ms);
      timers.add(t);
    });

  async function defaultHandler(req, res, body) {
    const path = req.url.split('?')[0].replace(/^\/v1(?=\/)/, '');
    if (req.method === 'GET' && path === '/models') {
      const created = 1700000000;
      const ids = ['gpt-4o-mini', 'gpt-4o', 'mock-500', 'mock-400', 'mock-hang', 'mock-drop', 'mock-nousage'];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: 'mock' })) }));
      return;
    }
    if (req.method !== 'POST' || path !== '/chat/completions') {
      openaiError(res, 404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', 'unknown_url');
      return;
    }
    if (!body || typeof body !== 'object') {
      openaiError(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error');
      return;
    }
    const model = String(body.model ?? '');
    if (model === 'mock-hang') return; // never answers; close() drops the socket
    if (model === 'mock-500') {
      openaiError(res, 500, 'The server had an error while processing your request.', 'server_error');
      return;
    }
    if (model === 'mock-400') {
      openaiError(res, 400, 'bad param from upstream', 'invalid_request_error');
      return;
    }

    const messages = Array.isArray(body.messages) ? body.messages : [];
    const lastUser = [...messages].reverse().find((m) => m && m.role === 'user');
    const text = `mock reply to ${messageText(lastUser?.content)}`.trim();
    const words = text.split(/\s+/).filter(Boolean);
    const pieces = words.map((w, i) => (i === 0 ? w : ` ${w}`));
    const usage = {
      prompt_tokens: mock.promptTokens,
      completion_tokens: pieces.length,
      total_tokens: mock.promptTokens + pieces.length,
    };
    const id = `chatcmpl-mock${randomToken(8)}`;
    const created = Math.floor(Date.now() / 1000);
    const sendUsage = model !== 'mock-nousage';

    if (!body.stream) {
      if (model === 'mock-drop') {
        req.socket.destroy();
        return;
      }
      const reply = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: 'stop' }],
        ...(sendUsage ? { usage } : {}),
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply));
      return;
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    const chunk = (choices, extra = {}) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
    const events = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }])];
    for (const p of pieces) {
      events.push(chunk([{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }]));
    }
    events.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
    if (sendUsage && body.stream_options?.include_usage) events.push(chunk([], { usage }));
    events.push('data: [DONE]\n\n');

    for (let i = 0; i < events.length; i++) {
      if (res.destroyed || res.socket?.destroyed) return;
      if (model === 'mock-drop' && i === 3) {
        res.socket.destroy();
        return;
      }
      res.write(events[i]);
      // Pause between word chunks (after the role chunk and each word), not after the last events.
      if (i < pieces.length) await delay(mock.chunkDelayMs);
    }
    res.end();
  }

  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      const raw = Buffer.concat(parts).toString('utf8');
      let body = raw;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {}
      const record = { method: req.method, url: req.url, headers: req.headers, body };
      requests.push(record);
      try {
        if (behavior && (await behavior(record, res))) return;
        await defaultHandler(req, res, body);
      } catch (err) {
        if (!res.headersSent) openaiError(res, 500, `mock failure: ${err.message}`, 'server_error');
        else res.destroy();
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', res);
  });
  mock.url = `http://127.0.0.1:${server.address().port}/v1`;

  function close() {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const s of sockets) s.destroy();
    return new Promise((res) => server.close(() => res()));
  }

  return mock;
}
