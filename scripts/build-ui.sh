#!/usr/bin/env bash
# Builds the browser console (ui/) into ui/dist, which wrangler.toml serves as static assets
# (`[assets] directory = "ui/dist"`): Preact + uPlot bundled by esbuild (it comes with wrangler), no
# CDN at run time. Skipped when ui/dist is newer than every input. Called by scripts/build.sh.
#
#   TOLLGATE_FORCE_BUILD=1   rebuild even when up to date
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out=ui/dist
stamp="$out/.stamp"
inputs=(ui/src ui/index.html ui/operator.html package-lock.json scripts/build-ui.sh)
if [[ "${TOLLGATE_FORCE_BUILD:-}" != 1 && -f "$stamp" ]] &&
  [[ -z "$(find "${inputs[@]}" -newer "$stamp" -print -quit)" ]]; then
  exit 0
fi

esbuild="${ESBUILD_BIN:-}"
[[ -x "$esbuild" ]] || esbuild="$root/node_modules/@esbuild/linux-x64/bin/esbuild"
[[ -x "$esbuild" ]] || esbuild="$root/node_modules/esbuild/bin/esbuild"
[[ -x "$esbuild" ]] || { echo "build-ui: esbuild missing (run scripts/setup.sh)" >&2; exit 1; }

# Build into a fresh directory, then swap it in: concurrent builds and running wranglers never see
# a half-written tree.
stage="$(mktemp -d "$root/ui/.dist.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage/console/assets" "$stage/console/operator"
"$esbuild" ui/src/user.jsx ui/src/operator.jsx \
  --bundle --minify --format=esm --target=es2020 \
  --jsx=automatic --jsx-import-source=preact \
  --loader:.js=jsx \
  --legal-comments=linked \
  --outdir="$stage/console/assets" --log-level=warning
cp ui/index.html "$stage/console/index.html"
cp ui/operator.html "$stage/console/operator/index.html"
touch "$stage/.stamp"
old="$root/ui/.dist.old.$$"
if [[ -d "$out" ]]; then mv "$out" "$old"; fi
mv "$stage" "$out"
rm -rf "$old"
trap - EXIT
echo "build-ui: $out ready ($(du -sh "$out/console/assets" | cut -f1) of assets)" >&2
