#!/usr/bin/env bash
# Tollgate's own CPU per request (bench/rust/bench_pipeline.rs): the pure core's work for one chat
# completion — parse, count, reserve, build the upstream request, parse or meter the reply, bill —
# natively and in wasm under Node (release builds). Prints a markdown table; asserts nothing.
# scripts/bench.sh runs it and puts the table into BENCHMARKS.md.
#
#   bash scripts/bench-pipeline.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh >/dev/null
export CARGO_TERM_COLOR=never

rows() { grep -E '^\| ' || true; }
cargo test --release --test bench_pipeline -- --ignored --nocapture --test-threads=1 2>/dev/null | rows
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --release --target wasm32-unknown-unknown --test bench_pipeline 2>/dev/null | rows | grep -v '^| platform\|^|---'
