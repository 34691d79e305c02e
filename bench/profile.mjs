// Where Tollgate's worker CPU goes: a V8 CPU profile of the release build under load, on the same
// runtime as the benchmark's Miniflare target (bench/miniflare-host.mjs with its inspector on).
//
//   node bench/profile.mjs [seconds=5] [concurrency=1] [plain|stream=plain]
//                                                          (after scripts/build.sh; source scripts/setup.sh)
//
// Sets up a state like bench/run.mjs (wrangler dev, then stopped), runs Tollgate on it with
// WALLETS=true (BENCH_WALLETS=0: false), loads it with plain (or streamed: 20 content chunks and a
// usage chunk) chat requests to the instant mock (wrk),
// and prints the functions with the most self time; the raw profile is
// target/bench/tollgate-<scenario>.cpuprofile (open it in Chrome's DevTools). A development tool: timing is
// never asserted.

import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, randomToken, ROOT, sleep, startGateway } from '../tests/e2e/harness.mjs';
import { CFG, MOCK_SECRET, OUT_DIR, log } from './lib/config.mjs';
import { gateways, stateDirs, stopAll } from './lib/procs.mjs';
import { runWrk } from './lib/load.mjs';
import { configureTollgate, startMiniflareHost, startMock, wranglerTomlVars, writeBodies } from './lib/targets.mjs';

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 1);
const scenario = process.argv[4] ?? 'plain';
if (!['plain', 'stream'].includes(scenario)) throw new Error(`scenario must be plain or stream, not ${scenario}`);

async function inspector(port) {
  const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const target = list.find((t) => /tollgate/.test(t.id ?? '') || /tollgate/.test(t.title ?? '')) ?? list[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let next = 1;
  const waiting = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    }
  };
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close(), target: target.id ?? target.title };
}

async function main() {
  const { files } = writeBodies();
  const mock = await startMock();
  const mockUrl = `http://127.0.0.1:${mock.value}`;
  const vars = { PROVIDER_MOCK_KEY: MOCK_SECRET, WALLETS: CFG.wallets ? 'true' : 'false' };
  const state = { persistDir: mkdtempSync(join(tmpdir(), 'tollgate-profile-')), adminToken: `admin-${randomToken()}`, pepper: randomToken(32) };
  stateDirs.add(state.persistDir);
  const gw = await startGateway({ vars, state });
  gateways.add(gw);
  const { key } = await configureTollgate(gw, mockUrl);
  await sleep(500);
  await gw.kill();
  gateways.delete(gw);
  const copy = mkdtempSync(join(tmpdir(), 'tollgate-profile-mf-'));
  stateDirs.add(copy);
  cpSync(join(state.persistDir, 'v3'), join(copy, 'v3'), { recursive: true });
  const inspectorPort = await freePort();
  const host = await startMiniflareHost('tollgate-profile', {
    script: join(ROOT, 'build', 'index.js'),
    wasm: join(ROOT, 'build', 'index_bg.wasm'),
    persistDir: copy,
    vars: { ...wranglerTomlVars(), ADMIN_TOKEN: state.adminToken, KEY_PEPPER: state.pepper, ALLOW_PRIVATE_UPSTREAMS: 'true', ...vars },
    name: 'tollgate',
    durableObjects: { WALLET: 'TenantWallet' },
    inspectorPort,
    marker: 'tollgate',
  });
  const target = { url: `${host.url}/v1/chat/completions`, bodyFile: files[scenario], headers: { authorization: `Bearer ${key}` } };
  await runWrk({ ...target, concurrency, durationS: 2 }); // warm-up
  const insp = await inspector(inspectorPort);
  log(`profiling ${insp.target} for ${seconds} s at c=${concurrency}, ${scenario} requests`);
  await insp.send('Profiler.enable');
  await insp.send('Profiler.setSamplingInterval', { interval: 100 });
  await insp.send('Profiler.start');
  const r = await runWrk({ ...target, concurrency, durationS: seconds });
  await sleep(300);
  const { result } = await insp.send('Profiler.stop');
  insp.close();
  const profile = result.profile;
  writeFileSync(join(OUT_DIR, `tollgate-${scenario}.cpuprofile`), JSON.stringify(profile));
  // Self time per function (sample counts × interval).
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const n = byId.get(id);
    const f = n.callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url ? f.url.split('/').pop() : ''}:${f.lineNumber}`;
    self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self.entries()].filter(([k]) => /^\((idle|program|garbage collector)\)/.test(k)).reduce((a, [, v]) => a + v, 0);
  console.log(`${r.answered} requests in ${seconds} s (${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms)`);
  console.log(`profiled ${(total / 1000).toFixed(0)} ms, of which idle/program/gc ${(idle / 1000).toFixed(0)} ms; busy per request ${((total - idle) / 1000 / r.answered).toFixed(3)} ms`);
  // Busy time by where the code lives: Tollgate's wasm, the wasm-bindgen glue (index.js), other
  // JavaScript (Miniflare's wrappers of D1/KV, the runtime's own JS), the runtime's built-ins.
  const where = new Map();
  profile.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    if (/^\((idle|program|garbage collector)\)/.test(f.functionName)) return;
    const url = f.url ?? '';
    const kind = url.startsWith('wasm://') ? 'wasm' : /index\.js$/.test(url) ? 'glue (index.js)' : url ? `js ${url.split('/').pop()}` : 'built-ins';
    where.set(kind, (where.get(kind) ?? 0) + (dt[i] ?? 0));
  });
  const busy = total - idle;
  for (const [kind, us] of [...where.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    console.log(`  ${kind.padEnd(28)} ${((us / busy) * 100).toFixed(1).padStart(5)} % of busy, ${(us / 1000 / r.answered).toFixed(4)} ms/req`);
  }
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40);
  for (const [name, us] of top) console.log(`${(us / 1000 / r.answered).toFixed(4)} ms/req  ${((us / total) * 100).toFixed(1).padStart(5)} %  ${name}`);
  await host.stop();
  await mock.stop();
}

main()
  .catch(async (err) => {
    log(`FAILED: ${err.stack ?? err}`);
    await stopAll();
    process.exit(1);
  })
  .then(stopAll);
