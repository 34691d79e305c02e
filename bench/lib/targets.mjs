// Set-up of the targets: mock, Tollgate (wrangler dev, workerd port, Miniflare), the pass-through worker, Portkey.
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT } from '../../tests/e2e/harness.mjs';
import { BENCH, MODEL, MODEL_NOCOUNT, OUT_DIR, PEER_DIR, PORTKEY_JS, PRICE_IN, PRICE_OUT, require } from './config.mjs';
import { processTree, startHelper, stateDirs } from './procs.mjs';
import { request } from './load.mjs';

// ---------------------------------------------------------------------------------------------
// Set-up: mock, Tollgate, Portkey
// ---------------------------------------------------------------------------------------------

export function writeBodies() {
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

export async function startMock() {
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
export async function configureTollgate(gw, mockUrl) {
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
export async function inspectWrangler(gw, marker = '"tollgate"') {
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

export async function startPortkey(mockUrl) {
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
export async function startPassthrough(mockUrl, { pollMs = 50 } = {}) {
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
 * The `[vars]` of wrangler.toml (`KEY = "value"` lines), which wrangler dev gives the worker and
 * Miniflare's API does not read: the Miniflare target gets them so that both runtimes run one
 * configuration.
 */
export function wranglerTomlVars(file = join(ROOT, 'wrangler.toml')) {
  const vars = {};
  let inVars = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const t = line.trim();
    if (t.startsWith('[')) {
      inVars = t === '[vars]';
      continue;
    }
    const m = inVars ? /^([A-Z0-9_]+)\s*=\s*"([^"]*)"\s*(#.*)?$/.exec(t) : null;
    if (m) vars[m[1]] = m[2];
  }
  return vars;
}

/**
 * A worker under bench/miniflare-host.mjs (workerd through Miniflare's API); resolves once /healthz
 * answers. `persistDir`: a wrangler-style state directory (D1 and KV), or null for none.
 */
export async function startMiniflareHost(name, { script, wasm = null, persistDir = null, vars = {}, marker, ...rest }) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // rest: `name` (the worker's) and `durableObjects` (see bench/miniflare-host.mjs).
  const cfg = { script, wasm, persistDir, vars, port, ...rest };
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
export function queryD1(persistDir, sql) {
  const { DatabaseSync } = require('node:sqlite');
  const db = new DatabaseSync(d1FileOf(persistDir), { readOnly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

/** One plain and one streamed request through a target: fails loudly when the set-up is wrong. */
export async function verifyTarget(t, files) {
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
