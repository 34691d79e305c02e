#!/usr/bin/env bash
# Builds the worker: build/index.js + build/index_bg.wasm (worker-build --release), and the console's
# static assets (scripts/build-ui.sh → ui/dist). wrangler.toml's build command.
#
#   TOLLGATE_SKIP_BUILD=1   exit at once when build/index.js exists (tests build once, then start many wranglers)
#   TOLLGATE_FORCE_BUILD=1  build even when build/ is newer than every source file
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The browser console (static assets, ui/dist): fast when up to date, so it runs even when the
# worker build is skipped.
bash scripts/build-ui.sh

if [[ "${TOLLGATE_SKIP_BUILD:-}" == 1 && -f build/index.js ]]; then
  exit 0
fi

# Up to date when both outputs exist and no input changed since the last successful build started.
build_stamp=target/tollgate-build.stamp
if [[ "${TOLLGATE_FORCE_BUILD:-}" != 1 && -f build/index.js && -f build/index_bg.wasm && -f "$build_stamp" ]]; then
  inputs=(Cargo.toml Cargo.lock src)
  for extra in build.rs .cargo; do
    if [[ -e "$extra" ]]; then inputs+=("$extra"); fi
  done
  if [[ -z "$(find "${inputs[@]}" -newer "$build_stamp" -print -quit)" ]]; then
    exit 0
  fi
fi

if [[ -f .tools/env.sh ]]; then
  # shellcheck source=/dev/null
  source .tools/env.sh
else
  # shellcheck source=scripts/setup.sh
  source scripts/setup.sh
fi

start=$SECONDS
mkdir -p target
# The new stamp records when this build started (sources edited meanwhile make the next run rebuild);
# a unique name per build, since builds may overlap in a shared work tree.
new_stamp="$(mktemp "$build_stamp.XXXXXX")"
trap 'rm -f "$new_stamp"' EXIT
worker-build --release
mv -f "$new_stamp" "$build_stamp"
echo "build: build/index.js + build/index_bg.wasm ready in $((SECONDS - start)) s" >&2
