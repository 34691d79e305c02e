// Configuration: the environment, the constants and the log of bench/run.mjs.
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT } from '../../tests/e2e/harness.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

export const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
export const CFG = {
  quick: QUICK,
  reps: num(env.BENCH_REPS, QUICK ? 1 : 3),
  durationS: num(env.BENCH_DURATION_S, QUICK ? 3 : 10),
  ttfbDurationS: num(env.BENCH_TTFB_DURATION_S, QUICK ? 2 : 5),
  warmupS: num(env.BENCH_WARMUP_S, QUICK ? 1 : 2),
  coldStarts: num(env.BENCH_COLD_STARTS, QUICK ? 1 : 3),
  concurrencies: [1, 16],
  targets: (env.BENCH_TARGETS ?? 'direct,passthrough-mf,tollgate-mf,tollgate-workerd,portkey').split(',').filter(Boolean),
  scenarios: (env.BENCH_SCENARIOS ?? 'plain,stream,ttfb,prompt2k,wallet,tenants').split(',').filter(Boolean),
  write: env.BENCH_WRITE !== '0',
  // Tenant wallets (WALLETS=true, docs/scale.md) on every Tollgate target; BENCH_WALLETS=0 measures
  // the D1 hot path instead.
  wallets: env.BENCH_WALLETS !== '0',
  // BENCH_LEASES=1: per-isolate credit leases on the wallets (WALLET_LEASES, docs/money.md).
  leases: env.BENCH_LEASES === '1',
};
for (const [k, v] of Object.entries(CFG)) {
  // BENCH_COLD_STARTS=0 skips the cold starts (development runs).
  const min = k === 'coldStarts' ? 0 : Number.MIN_VALUE;
  if (typeof v === 'number' && !(Number.isFinite(v) && v >= min)) throw new Error(`bad benchmark setting ${k}=${v}`);
}
if (!CFG.targets.includes('direct')) throw new Error('BENCH_TARGETS must include direct (the baseline)');

export const require = createRequire(import.meta.url);
export const BENCH = join(ROOT, 'bench');
export const OUT_DIR = join(ROOT, 'target', 'bench');
mkdirSync(OUT_DIR, { recursive: true });
export const WRK_LUA = join(BENCH, 'wrk-post.lua');
export const MOCK_SECRET = 'sk-bench-mock';
export const MODEL = 'gpt-4o-mini'; // o200k_base: Tollgate counts the prompt locally
export const MODEL_NOCOUNT = 'bench-nocount'; // no local tokenizer: the 4-bytes-a-token estimate
export const PRICE_IN = 150_000;
export const PRICE_OUT = 600_000;
export const PEER_DIR = join(BENCH, 'peer');
export const PORTKEY_JS = join(PEER_DIR, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');

export const log = (...a) => process.stderr.write(`bench: ${a.join(' ')}\n`);
export const preciseNow = () => performance.timeOrigin + performance.now();
