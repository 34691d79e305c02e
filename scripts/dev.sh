#!/usr/bin/env bash
# Runs Tollgate locally: set-up, build, local D1 migrations, `wrangler dev`, a seeded demo tenant and key.
# Ctrl-C stops everything.
#
#   bash scripts/dev.sh        (or: npm run dev)
#   PORT=8888 bash scripts/dev.sh
#
# Secrets live in .dev.vars (created on first run with a random ADMIN_TOKEN, KEY_PEPPER and
# PLUGIN_SETTINGS_KEY; an older file gets the missing ones added; start-up stops, naming it, when
# one is missing or the admin token is shorter than 32 bytes).
# Local state (D1, KV) lives in .wrangler/state; the demo key is saved in .wrangler/tollgate-demo.json.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'dev: %s\n' "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

# shellcheck source=scripts/setup.sh
source scripts/setup.sh

port="${PORT:-8787}"
url="http://127.0.0.1:$port"
demo_file=.wrangler/tollgate-demo.json
log_file=.wrangler/tollgate-dev.log

# --- .dev.vars -----------------------------------------------------------------------------------
random_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; } # 64 hex characters
if [[ ! -f .dev.vars ]]; then
  umask_was="$(umask)"
  umask 077
  cat >.dev.vars <<EOF
# Local secrets for \`wrangler dev\` (never commit this file). In production: \`wrangler secret put NAME\`.

# Bearer token for the admin API (/admin/*); at least 32 bytes.
ADMIN_TOKEN=$(random_secret)
# HMAC key for API-key digests. Changing it invalidates every issued key.
KEY_PEPPER=$(random_secret)
# Master secret sealing tenants' plugin settings. Changing it makes stored settings unreadable.
PLUGIN_SETTINGS_KEY=$(random_secret)
# Local development only: providers and webhooks may live on localhost / private hosts and plain
# http (e.g. Ollama at http://localhost:11434). Never set this in production.
ALLOW_PRIVATE_UPSTREAMS=true

# To route real models through OpenAI, uncomment and set (then restart scripts/dev.sh):
# the dev script registers provider "openai" and models gpt-4o-mini, gpt-4o and gpt-4.1-mini.
# Provider keys are secrets named PROVIDER_* (docs/configuration.md, "Secrets and destinations").
# PROVIDER_OPENAI_API_KEY=sk-...
# Any OpenAI-compatible endpoint works; the default is https://api.openai.com/v1.
# OPENAI_BASE_URL=https://api.openai.com/v1
EOF
  umask "$umask_was"
  say "created .dev.vars with a random ADMIN_TOKEN, KEY_PEPPER and PLUGIN_SETTINGS_KEY"
fi

# dev_var NAME: the value of NAME in .dev.vars (last assignment wins; surrounding quotes removed).
dev_var() {
  local line value=""
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      value="${BASH_REMATCH[2]}"
      value="${value%"${value##*[![:space:]]}"}"
      if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    fi
  done <.dev.vars
  printf '%s' "$value"
}
# An older .dev.vars lacks what later versions need: add it (never changes an existing value).
add_dev_var() { # add_dev_var NAME VALUE COMMENT
  if [[ -z "$(dev_var "$1")" ]]; then
    printf '\n# %s (added by scripts/dev.sh)\n%s=%s\n' "$3" "$1" "$2" >>.dev.vars
    say "added $1 to .dev.vars"
  fi
}
add_dev_var PLUGIN_SETTINGS_KEY "$(random_secret)" "Master secret sealing tenants' plugin settings"
add_dev_var ALLOW_PRIVATE_UPSTREAMS true "Local development only: providers and webhooks on localhost"

# Every secret the gateway needs, checked before anything starts.
admin_token="$(dev_var ADMIN_TOKEN)"
[[ -n "$admin_token" ]] || die ".dev.vars has no ADMIN_TOKEN: add one (e.g. ADMIN_TOKEN=$(random_secret))"
((${#admin_token} >= 32)) ||
  die "ADMIN_TOKEN in .dev.vars is ${#admin_token} bytes; the gateway requires at least 32 (e.g. ADMIN_TOKEN=$(random_secret))"
[[ -n "$(dev_var KEY_PEPPER)" ]] || die ".dev.vars has no KEY_PEPPER: add one (e.g. KEY_PEPPER=$(random_secret))"
[[ -n "$(dev_var PLUGIN_SETTINGS_KEY)" ]] ||
  die ".dev.vars has no PLUGIN_SETTINGS_KEY: add one (e.g. PLUGIN_SETTINGS_KEY=$(random_secret))"
openai_key="$(dev_var PROVIDER_OPENAI_API_KEY)"
if [[ -z "$openai_key" && -n "$(dev_var OPENAI_API_KEY)" ]]; then
  say "WARNING: .dev.vars sets OPENAI_API_KEY, but provider secrets are named PROVIDER_* now: rename it to PROVIDER_OPENAI_API_KEY"
fi
openai_base="${OPENAI_BASE_URL:-$(dev_var OPENAI_BASE_URL)}"
openai_base="${openai_base:-https://api.openai.com/v1}"

# --- build and migrate -----------------------------------------------------------------------------
bash scripts/build.sh || die "build failed (see the output above)"

mkdir -p .wrangler
# CI=true and no stdin: wrangler applies without its confirmation prompt.
if ! migrate_out="$(CI=true wrangler d1 migrations apply DB --local </dev/null 2>&1)"; then
  printf '%s\n' "$migrate_out" >&2
  die "applying D1 migrations failed"
fi

# --- wrangler dev ----------------------------------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  die "port $port is already in use (another scripts/dev.sh?); choose another with PORT=<port>"
fi

wrangler_pid=""
tail_pid=""
# shellcheck disable=SC2317  # invoked by the traps below
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$tail_pid" ]]; then kill "$tail_pid" 2>/dev/null || true; fi
  if [[ -n "$wrangler_pid" ]] && kill -0 "$wrangler_pid" 2>/dev/null; then
    say "stopping wrangler"
    kill -TERM -- "-$wrangler_pid" 2>/dev/null || true
    for _ in {1..50}; do
      kill -0 "$wrangler_pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  # Whatever is left of the group (workerd).
  if [[ -n "$wrangler_pid" ]]; then kill -KILL -- "-$wrangler_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting wrangler dev on $url (log: $log_file)"
: >"$log_file"
# setsid: its own process group (pgid = its pid), so that cleanup stops wrangler and workerd together.
setsid wrangler dev --ip 127.0.0.1 --port "$port" --show-interactive-dev-session=false \
  </dev/null >>"$log_file" 2>&1 &
wrangler_pid=$!

# Wait for GET /healthz -> 200.
deadline=$((SECONDS + 180))
code=""
until [[ "$code" == 200 ]]; do
  if ! kill -0 "$wrangler_pid" 2>/dev/null; then
    tail -n 80 "$log_file" >&2
    die "wrangler dev exited during startup (full log: $log_file)"
  fi
  if ((SECONDS > deadline)); then
    tail -n 80 "$log_file" >&2
    die "no 200 from $url/healthz after 180 s (last status: ${code:-none}; full log: $log_file)"
  fi
  sleep 0.5
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/healthz" || true)"
done

# --- seed ------------------------------------------------------------------------------------------
# api METHOD PATH [JSON] [BEARER]: calls the gateway; sets api_status (000 when unreachable) and api_body.
api_status=""
api_body=""
api() {
  local method="$1" path="$2" body="${3:-}" bearer="${4:-$admin_token}" out
  local args=(-s -S --max-time 30 -X "$method" -H "Authorization: Bearer $bearer" -w '\n%{http_code}')
  if [[ -n "$body" ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  if out="$(curl "${args[@]}" "$url$path" 2>&1)"; then
    api_status="${out##*$'\n'}"
    api_body="${out%$'\n'*}"
  else
    api_status=000
    api_body="$out"
  fi
}
api_ok() { [[ "$api_status" == 2?? ]]; }
# json_get FIELD: reads a JSON object on stdin and prints FIELD (fails when not there).
json_get() {
  python3 -c 'import json,sys
v = json.load(sys.stdin).get(sys.argv[1])
if v is None or v == "": sys.exit(1)
print(v)' "$1" 2>/dev/null
}
seed_warn() { # seed_warn WHAT: reports the failed call (api_status/api_body)
  say "WARNING: $1 failed (HTTP $api_status): ${api_body:0:500}"
}

demo_key=""
demo_state="" # reused | created | failed
if [[ -f "$demo_file" ]] && saved_key="$(json_get key <"$demo_file")"; then
  api GET /v1/models "" "$saved_key"
  if [[ "$api_status" == 200 ]]; then
    demo_key="$saved_key"
    demo_state=reused
  fi
fi

if [[ -z "$demo_key" ]]; then
  demo_state=failed
  api POST /admin/tenants '{"name":"demo","credit":10000000}'
  if ! api_ok || ! tenant_id="$(json_get id <<<"$api_body")"; then
    seed_warn "POST /admin/tenants"
  else
    api POST "/admin/tenants/$tenant_id/keys" '{"name":"demo"}'
    if ! api_ok || ! demo_key="$(json_get key <<<"$api_body")"; then
      demo_key=""
      seed_warn "POST /admin/tenants/$tenant_id/keys"
    else
      key_id="$(json_get id <<<"$api_body" || true)"
      python3 -c 'import json,sys
json.dump({"url": sys.argv[1], "tenant_id": sys.argv[2], "key_id": sys.argv[3], "key": sys.argv[4]},
          open(sys.argv[5], "w"), indent=2)' "$url" "$tenant_id" "$key_id" "$demo_key" "$demo_file"
      demo_state=created
    fi
  fi
  if [[ "$demo_state" == failed ]]; then
    say "the gateway keeps running without a demo key; once the admin API works, restart scripts/dev.sh"
  fi
fi

# Providers and models are PUT on every start (idempotent), so adding PROVIDER_OPENAI_API_KEY later just works.
openai_models=""
if [[ -n "$openai_key" ]]; then
  provider_json="$(python3 -c 'import json,sys
print(json.dumps({"kind": "openai", "base_url": sys.argv[1], "api_key_secret": "PROVIDER_OPENAI_API_KEY"}))' "$openai_base")"
  api PUT /admin/providers/openai "$provider_json"
  if ! api_ok; then
    seed_warn "PUT /admin/providers/openai"
  else
    while read -r model in_price out_price; do
      api PUT "/admin/models/$model" \
        "{\"provider\":\"openai\",\"upstream_model\":\"$model\",\"input_price\":$in_price,\"output_price\":$out_price}"
      if api_ok; then
        openai_models+="${openai_models:+, }$model"
      else
        seed_warn "PUT /admin/models/$model"
      fi
    done <<'EOF'
gpt-4o-mini 150000 600000
gpt-4o 2500000 10000000
gpt-4.1-mini 400000 1600000
EOF
  fi
fi

# --- banner ----------------------------------------------------------------------------------------
key_shown="${demo_key:-<API key>}"
case "$demo_state" in
  created) key_note="tenant \"demo\" with 10.00 credit, just created; saved in $demo_file" ;;
  reused) key_note="tenant \"demo\", reused from $demo_file; delete that file to seed a new one" ;;
  *) key_note="seeding failed (see the warning above); create a tenant and key with the admin API" ;;
esac
cat <<EOF

==========================================================================================
 Tollgate is running at $url   (Ctrl-C stops it)

 Demo API key:  ${demo_key:-none}
                ($key_note)
 Admin token:   ADMIN_TOKEN in $root/.dev.vars
                (Authorization: Bearer <ADMIN_TOKEN> on /admin/*); for the docs' curl examples:
                export ADMIN_TOKEN="\$(sed -n 's/^ADMIN_TOKEN=//p' $root/.dev.vars)"
 User center:   $url/console/   (sign in with the demo API key above)
 Operator:      $url/console/operator/   (sign in with the ADMIN_TOKEN)
 Models:        tollgate-echo (built in)${openai_models:+, $openai_models (OpenAI at $openai_base)}
$([[ -z "$openai_key" ]] && echo " Real models:   set PROVIDER_OPENAI_API_KEY in .dev.vars and restart")

 Stream a reply:

   curl -N $url/v1/chat/completions \\
     -H "Authorization: Bearer $key_shown" \\
     -H "Content-Type: application/json" \\
     -d '{"model":"tollgate-echo","stream":true,"messages":[{"role":"user","content":"Hello, Tollgate!"}]}'

 Python (pip install openai):

   from openai import OpenAI
   client = OpenAI(base_url="$url/v1", api_key="$key_shown")
   for chunk in client.chat.completions.create(
           model="tollgate-echo", stream=True,
           messages=[{"role": "user", "content": "Hello, Tollgate!"}]):
       if chunk.choices:
           print(chunk.choices[0].delta.content or "", end="", flush=True)

 Node (the openai package is in this repo's devDependencies):

   import OpenAI from "openai";
   const client = new OpenAI({ baseURL: "$url/v1", apiKey: "$key_shown" });
   const stream = await client.chat.completions.create({
     model: "tollgate-echo", stream: true,
     messages: [{ role: "user", content: "Hello, Tollgate!" }],
   });
   for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
==========================================================================================
 wrangler output follows (also in $log_file):

EOF

tail -n 0 -f "$log_file" &
tail_pid=$!
set +e
wait "$wrangler_pid"
status=$?
set -e
wrangler_pid_done="$wrangler_pid"
wrangler_pid=""
say "wrangler dev (pid $wrangler_pid_done) exited with status $status"
# Reap what may remain of its process group.
kill -KILL -- "-$wrangler_pid_done" 2>/dev/null || true
exit "$status"
