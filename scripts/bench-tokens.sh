#!/usr/bin/env bash
# Token-counting benchmark, in one run: Tollgate's counter vs tiktoken-rs, natively and in wasm
# under Node (release builds), then the worker's wasm size (scripts/build.sh → build/index_bg.wasm)
# and the time of build.rs. Prints markdown for BENCHMARKS.md. Asserts nothing about time.
#
#   bash scripts/bench-tokens.sh          # everything
#   bash scripts/bench-tokens.sh --open   # only the open families' counting rows
set -euo pipefail
open_only=0
if [[ "${1:-}" == --open ]]; then
  open_only=1
  export TOLLGATE_BENCH_OPEN_ONLY=/dev/null # bench/rust/bench_tokens.rs: skip the OpenAI rows
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
export CARGO_TERM_COLOR=never

echo "## Token counting benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $(rustc --version), Node $(node --version), tiktoken-rs $(awk '/^name = "tiktoken-rs"/{getline; gsub(/version = |"/,""); print}' Cargo.lock)"
echo

# A natural Chinese text that does not repeat: Rust by Example's Chinese translation, from the
# local rust-docs (rustup's default profile installs it), as plain text. Optional: without it
# the table has no "natural text" rows.
natural="$root/target/bench/zh-natural.txt"
rbe="$(rustc --print sysroot)/share/doc/rust/html/rust-by-example/zh/print.html"
mkdir -p "$(dirname "$natural")"
if [[ -f "$rbe" ]] && python3 - "$rbe" "$natural" <<'PY'
import html, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
page = re.sub(r"(?s)<script.*?</script>|<style.*?</style>|<pre.*?</pre>", "", page)
text = html.unescape(re.sub(r"<[^>]+>", "", page))
open(sys.argv[2], "w", encoding="utf-8").write(re.sub(r"\n\s*\n+", "\n", text))
PY
then
  export TOLLGATE_BENCH_NATURAL_ZH="$natural"
fi

if [[ $open_only == 0 ]]; then
  echo "### Counting (release builds)"
  echo
fi
rows() { grep -E '^\| ' || true; }
native="$(cargo test --release --test bench_tokens -- --ignored --nocapture --test-threads=1 2>/dev/null | rows)"
wasm="$(CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --release --target wasm32-unknown-unknown --test bench_tokens 2>/dev/null | rows)"
# Both tables have 6 columns: the open families' rows are those of their encodings.
open_re='\| (llama3|qwen3|deepseek_v3|tekken|gemma3) \|'
table() { # table [-v]: the open families' rows, or (-v) the others
  local flags=-E
  if [[ "${1:-}" == -v ]]; then flags=-vE; fi
  printf '%s\n%s\n' "$native" "$wasm" | grep -v '^| platform\|^|---' | grep "$flags" "$open_re" || true
}
if [[ $open_only == 0 ]]; then
  echo "| platform | measure | encoding | Tollgate | tiktoken-rs | ratio |"
  echo "|---|---|---|---|---|---|"
  table -v
  echo
fi
echo "### Open families (release builds; counts checked against Hugging Face tokenizers by tests/tokens_open.rs)"
echo
echo "| platform | measure | encoding | Tollgate | yardstick: tiktoken-rs o200k_base, same text | ratio |"
echo "|---|---|---|---|---|---|"
table
echo
if [[ $open_only == 1 ]]; then
  exit 0
fi

echo "### Worker wasm (scripts/build.sh, all encodings)"
echo
bash scripts/build.sh >/dev/null 2>&1 || TOLLGATE_FORCE_BUILD=1 bash scripts/build.sh
raw=$(stat -c %s build/index_bg.wasm)
gz=$(gzip -9 -c build/index_bg.wasm | wc -c)
printf '| build/index_bg.wasm | raw %s bytes (%.2f MB) | gzip -9 %s bytes (%.2f MB) |\n|---|---|---|\n' \
  "$raw" "$(echo "$raw/1000000" | bc -l)" "$gz" "$(echo "$gz/1000000" | bc -l)"
echo

echo "### build.rs"
echo
cargo build --quiet 2>/dev/null || true # the debug build script, up to date
script="$(ls -t target/debug/build/tollgate-*/build-script-build 2>/dev/null | head -1 || true)"
if [[ -n "$script" ]]; then
  out="$(mktemp -d)"
  start=$(date +%s%N)
  OUT_DIR="$out" CARGO_MANIFEST_DIR="$root" "$script" >/dev/null
  echo "build.rs (debug build script, as cargo runs it): $((($(date +%s%N) - start) / 1000000)) ms, tables $(du -sb "$out" | cut -f1) bytes"
  rm -rf "$out"
else
  echo "build.rs: run a debug \`cargo build\` first to time it"
fi
