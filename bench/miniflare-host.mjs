// Runs a worker in workerd through Miniflare's API — the runtime `wrangler dev` uses, without its dev
// proxy, inspector and file watching — on a wrangler-style local state directory (D1 and KV as
// `wrangler dev --persist-to <dir>` keeps them). The benchmark uses it to measure Tollgate and the
// reference worker on the plain local runtime (bench/run.mjs, targets `tollgate-mf`, `passthrough-mf`).
//
//   node bench/miniflare-host.mjs '<json>'
//
// json: {"script": "build/index.js", "wasm": "build/index_bg.wasm" (optional), "persistDir": dir,
//        "vars": {...}, "port": n, "compatibilityDate": "2025-11-01", "inspectorPort": n (optional:
//        a V8 inspector, e.g. to take CPU profiles)}
// Prints `READY http://127.0.0.1:<port>/` once Miniflare is up; runs until killed.

import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { join, resolve } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const modules = [{ type: 'ESModule', path: resolve(cfg.script) }];
if (cfg.wasm) modules.push({ type: 'CompiledWasm', path: resolve(cfg.wasm) });

const options = convertV4MiniflareOptions({
  modules,
  modulesRoot: resolve(cfg.script, '..'),
  compatibilityDate: cfg.compatibilityDate ?? '2025-11-01',
  // The ids of wrangler.toml, so that wrangler's local state is found.
  d1Databases: { DB: '00000000-0000-0000-0000-000000000000' },
  kvNamespaces: { KV: '00000000000000000000000000000000' },
  bindings: cfg.vars ?? {},
  cf: false,
  host: '127.0.0.1',
  port: cfg.port,
  ...(cfg.inspectorPort ? { inspectorPort: cfg.inspectorPort } : {}),
});
// Miniflare 5 keeps every resource under `<root>/<plugin>`: wrangler's `<dir>/v3/d1`, `<dir>/v3/kv`.
if (cfg.persistDir) options.resourcePersistencePath = join(resolve(cfg.persistDir), 'v3');
const mf = new Miniflare(options);
const url = await mf.ready;
console.log(`READY ${url.href}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
