#!/usr/bin/env bash
# Benchmarks Tollgate against a direct call, a JavaScript pass-through worker and the Portkey gateway,
# and rewrites the gateway section of BENCHMARKS.md (between <!-- gateway-bench:start/end -->).
#
#   bash scripts/bench.sh                  # 3 repetitions of 10 s per run: about 20 minutes
#   BENCH_QUICK=1 bash scripts/bench.sh    # 1 repetition of 3 s: a few minutes, for development
#
# Other settings (environment): BENCH_REPS, BENCH_DURATION_S, BENCH_TTFB_DURATION_S, BENCH_WARMUP_S,
# BENCH_COLD_STARTS (0: none), BENCH_TARGETS (direct,passthrough-mf,tollgate-mf,tollgate-workerd,
# portkey; passthrough and tollgate for the wrangler dev ports), BENCH_SCENARIOS
# (plain,stream,ttfb,prompt2k,wallet,tenants: wallet and tenants run once, on tollgate-mf),
# BENCH_WALLETS=0 (Tollgate on the D1 hot path instead of the tenant wallets), BENCH_PIPELINE=0
# (skip scripts/bench-pipeline.sh), BENCH_WRITE=0 (leave BENCHMARKS.md alone).
# Raw results: target/bench/results.json; logs of the helpers: target/bench/*.log.
#
# Installs what it needs, idempotently: the project set-up (scripts/setup.sh), wrk (apt-get) and the
# peer gateway (npm ci in bench/peer, versions pinned by its package-lock.json); builds the worker
# (release). Every process it starts runs on 127.0.0.1 and is stopped at the end.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

# shellcheck source=scripts/setup.sh
source scripts/setup.sh

if ! command -v wrk >/dev/null; then
  command -v apt-get >/dev/null || die "wrk is missing and there is no apt-get: install wrk (https://github.com/wg/wrk)"
  sudo=()
  if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
  say "installing wrk (apt-get)"
  if ! "${sudo[@]}" apt-get install -y wrk >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update >/dev/null
    "${sudo[@]}" apt-get install -y wrk >/dev/null || die "apt-get install wrk failed"
  fi
fi

peer=bench/peer
if [[ ! -f "$peer/node_modules/@portkey-ai/gateway/package.json" ||
  "$peer/package-lock.json" -nt "$peer/node_modules/.package-lock.json" ]]; then
  say "installing the peer gateway into $peer (npm ci)"
  # --ignore-scripts: Portkey's postinstall (patch-package) has nothing to patch in the published build.
  (cd "$peer" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null) || die "npm ci in $peer failed"
fi

bash scripts/build.sh || die "build failed"

# Tollgate's own CPU per request (pure core, native and wasm), before any server starts; run.mjs
# puts the table into BENCHMARKS.md.
mkdir -p target/bench
if [[ "${BENCH_PIPELINE:-1}" == 1 ]]; then
  say "Tollgate's own CPU per request (scripts/bench-pipeline.sh)"
  bash scripts/bench-pipeline.sh >target/bench/pipeline.md || die "bench-pipeline failed"
else
  rm -f target/bench/pipeline.md
fi

exec node bench/run.mjs
