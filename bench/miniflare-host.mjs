// Runs a worker in workerd through Miniflare's API — the runtime `wrangler dev` uses, without its dev
// proxy, inspector and file watching — on a wrangler-style local state directory (D1 and KV as
// `wrangler dev --persist-to <dir>` keeps them). The benchmark uses it to measure Tollgate and the
// reference worker on the plain local runtime (bench/run.mjs, targets `tollgate-mf`, `passthrough-mf`).
//
//   node bench/miniflare-host.mjs '<json>'
//
// json: {"script": "build/index.js", "wasm": "build/index_bg.wasm" (optional), "persistDir": dir,
//        "vars": {...}, "port": n, "compatibilityDate": "2025-11-01", "inspectorPort": n (optional:
//        a V8 inspector, e.g. to take CPU profiles), "name": "tollgate" (optional: the worker's
//        name, which names its Durable Objects' state as wrangler dev does),
//        "durableObjects": {"WALLET": "TenantWallet"} (optional: SQLite-backed classes of the script),
//        "walletDriver": true, "walletDriverScript": "bench/wallet-driver/worker.js", "driverPort": n
//        (optional: a second worker bound to the first one's wallets, served on driverPort)}
// Prints `READY http://127.0.0.1:<port>/` once Miniflare is up; runs until killed.

import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import http from 'node:http';
import { join, resolve } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const modules = [{ type: 'ESModule', path: resolve(cfg.script) }];
if (cfg.wasm) modules.push({ type: 'CompiledWasm', path: resolve(cfg.wasm) });

const durableObjects = Object.fromEntries(
  Object.entries(cfg.durableObjects ?? {}).map(([binding, className]) => [binding, { className, useSQLite: true }]),
);
const main = {
  ...(cfg.name ? { name: cfg.name } : {}),
  modules,
  modulesRoot: resolve(cfg.script, '..'),
  compatibilityDate: cfg.compatibilityDate ?? '2025-11-01',
  // The ids of wrangler.toml, so that wrangler's local state is found.
  d1Databases: { DB: '00000000-0000-0000-0000-000000000000' },
  kvNamespaces: { KV: '00000000000000000000000000000000' },
  // Tollgate's tenant wallets (wrangler.toml [[durable_objects.bindings]]): with the worker's name,
  // their state is wrangler dev's `v3/do/tollgate-TenantWallet`, so the copied state carries them.
  ...(Object.keys(durableObjects).length ? { durableObjects } : {}),
  bindings: cfg.vars ?? {},
};
// bench/wallet-driver/worker.js next to Tollgate, bound to its wallets (`"walletDriver": true`).
const driver = cfg.walletDriver && {
  name: 'wallet-driver',
  modules: [{ type: 'ESModule', path: resolve(cfg.walletDriverScript) }],
  compatibilityDate: cfg.compatibilityDate ?? '2025-11-01',
  durableObjects: { WALLET: { className: 'TenantWallet', scriptName: cfg.name, useSQLite: true } },
};
const shared = {
  cf: false,
  host: '127.0.0.1',
  port: cfg.port,
  ...(cfg.inspectorPort ? { inspectorPort: cfg.inspectorPort } : {}),
};
const options = convertV4MiniflareOptions(driver ? { ...shared, workers: [main, driver] } : { ...shared, ...main });
// Miniflare 5 keeps every resource under `<root>/<plugin>`: wrangler's `<dir>/v3/d1`, `<dir>/v3/kv`.
if (cfg.persistDir) options.resourcePersistencePath = join(resolve(cfg.persistDir), 'v3');
const mf = new Miniflare(options);
const url = await mf.ready;
if (driver) {
  // The driver's own port (`"driverPort"`): requests are passed to it through Miniflare's API.
  const worker = await mf.getWorker('wallet-driver');
  http
    .createServer(async (req, res) => {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = Buffer.concat(chunks);
      try {
        const r = await worker.fetch(`http://wallet-driver${req.url}`, {
          method: req.method,
          body: req.method === 'GET' ? undefined : body,
        });
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(await r.text());
      } catch (e) {
        res.writeHead(500);
        res.end(String(e?.stack ?? e));
      }
    })
    .listen(cfg.driverPort, '127.0.0.1');
}
console.log(`READY ${url.href}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
