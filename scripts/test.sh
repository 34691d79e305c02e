#!/usr/bin/env bash
# Tollgate's whole test suite, as CI runs it (bash .ci/run):
#   setup, cargo fmt --check, clippy (native and wasm32), native cargo test, token counts against OpenAI's
#   Python tiktoken (tests/python_reference.py), wasm tests (tests/wasm.rs),
#   release build, end-to-end tests (node --test tests/e2e/*.test.mjs against wrangler dev).
# Every stage runs even when an earlier one failed (except those that need a build); the summary at the
# end names the failed stages and the exit status is non-zero if any failed.
# Quiet stages (fmt, clippy, build) print their output only on failure; test stages stream theirs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log_dir="$root/target/test-logs"
results=()
failed=()
suite_start=$SECONDS

banner() { printf '\n==> %s\n' "$*"; }

# stage NAME quiet|stream CMD...: runs one stage and records its result.
stage() {
  local name="$1" mode="$2" start rc log
  shift 2
  start=$SECONDS
  log="$log_dir/${name//[^A-Za-z0-9_.-]/_}.log"
  banner "$name"
  set +e
  if [[ "$mode" == quiet ]]; then
    "$@" >"$log" 2>&1
    rc=$?
    if ((rc != 0)); then
      cat "$log"
    fi
  else
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  fi
  set -e
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    results+=("PASS  $name (${took}s)")
    printf -- '--- %s: ok (%ss)\n' "$name" "$took"
  else
    results+=("FAIL  $name (${took}s, exit $rc)")
    failed+=("$name")
    printf -- '--- %s: FAILED (exit %s, %ss; log: %s)\n' "$name" "$rc" "$took" "${log#"$root"/}"
  fi
  return 0
}
skip() {
  results+=("SKIP  $1 ($2)")
  printf '\n==> %s\n--- skipped: %s\n' "$1" "$2"
}

summary() {
  printf '\n==> Summary (%ss)\n' "$((SECONDS - suite_start))"
  printf '  %s\n' "${results[@]}"
  if ((${#failed[@]})); then
    local list
    printf -v list '%s, ' "${failed[@]}"
    printf '\ntest.sh: FAILED stage(s): %s\n' "${list%, }"
    exit 1
  fi
  printf '\ntest.sh: all stages passed\n'
}

banner "setup"
# shellcheck source=scripts/setup.sh
if ! source scripts/setup.sh; then
  printf 'test.sh: FAILED stage: setup (see above)\n'
  exit 1
fi
mkdir -p "$log_dir"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

stage "cargo fmt --check" quiet cargo fmt --all -- --check
stage "doc links" quiet node scripts/check-doc-links.mjs
stage "clippy (native)" quiet cargo clippy --all-targets -- -D warnings
stage "clippy (wasm32)" quiet cargo clippy --target wasm32-unknown-unknown --lib -- -D warnings
stage "cargo test (native)" stream cargo test
stage "token counts vs Python tiktoken" stream bash -c \
  '.tools/py/bin/python tests/python_reference.py target/python-counts.jsonl &&
   TOLLGATE_PY_COUNTS=target/python-counts.jsonl cargo test --test tokens_reference -- --ignored python_tiktoken_agrees'
stage "open-model token counts vs Hugging Face tokenizers" stream bash -c \
  '.tools/py/bin/python tests/python_reference_open.py target/python-open-counts.jsonl &&
   TOLLGATE_PY_OPEN_COUNTS=target/python-open-counts.jsonl cargo test --test tokens_open -- --ignored python_references_agree'
if [[ -f tests/wasm.rs ]]; then
  stage "cargo test (wasm32)" stream env CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test --target wasm32-unknown-unknown --test wasm
else
  skip "cargo test (wasm32)" "no tests/wasm.rs"
fi

stage "release build" quiet bash scripts/build.sh
if [[ " ${failed[*]} " == *" release build "* ]]; then
  skip "e2e (node --test)" "release build failed"
else
  shopt -s nullglob
  e2e_files=(tests/e2e/*.test.mjs)
  shopt -u nullglob
  if ((${#e2e_files[@]})); then
    stage "e2e (node --test)" stream bash scripts/e2e.sh
  else
    skip "e2e (node --test)" "no tests/e2e/*.test.mjs"
  fi
fi

summary
