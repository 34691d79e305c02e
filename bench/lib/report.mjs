// Statistics and the report: medians and spreads, versions and machine, the markdown of BENCHMARKS.md.
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT } from '../../tests/e2e/harness.mjs';
import { CFG, MODEL, MODEL_NOCOUNT, PEER_DIR } from './config.mjs';
import { CLK_TCK, gateways } from './procs.mjs';
import { request } from './load.mjs';

// ---------------------------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------------------------

export function median(xs) {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const spread = (xs) => {
  const s = xs.filter((x) => x !== null && Number.isFinite(x));
  return s.length ? [Math.min(...s), Math.max(...s)] : null;
};

export function fmt(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  const d = a >= 100 ? 0 : a >= 10 ? 1 : digits;
  return x.toFixed(d);
}
/** Median, with the min–max over repetitions when there are several. */
function fmtSpread(xs, digits = 2) {
  const m = median(xs);
  const sp = spread(xs);
  if (m === null) return '–';
  if (!sp || xs.length < 2) return fmt(m, digits);
  return `${fmt(m, digits)} <sub>${fmt(sp[0], digits)}–${fmt(sp[1], digits)}</sub>`;
}

export function versions() {
  const pkg = (p) => {
    try {
      return JSON.parse(readFileSync(p, 'utf8')).version;
    } catch {
      return null;
    }
  };
  const nm = join(ROOT, 'node_modules');
  const peer = join(PEER_DIR, 'node_modules');
  let wrk = null;
  try {
    wrk = execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    wrk = `${e.stdout ?? ''}`;
  }
  let commit = null;
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim() !== '';
  } catch {}
  return {
    commit: commit && (dirty ? `${commit} (+ uncommitted changes in src)` : commit),
    node: process.version,
    wrangler: pkg(join(nm, 'wrangler', 'package.json')),
    workerd: pkg(join(nm, '@cloudflare', 'workerd-linux-64', 'package.json')),
    portkey: pkg(join(peer, '@portkey-ai', 'gateway', 'package.json')),
    hono: pkg(join(peer, 'hono', 'package.json')),
    honoNodeServer: pkg(join(peer, '@hono', 'node-server', 'package.json')),
    wrk: (/wrk (\S+)/.exec(wrk) ?? [])[1] ?? null,
  };
}

export function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
  };
}

export function wasmSize() {
  const file = join(ROOT, 'build', 'index_bg.wasm');
  const raw = readFileSync(file);
  return { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length };
}

const TARGET_LABEL = {
  direct: 'direct (mock)',
  passthrough: 'JS pass-through worker (workerd port)',
  'passthrough-mf': 'JS pass-through worker (Miniflare)',
  tollgate: 'Tollgate (wrangler dev)',
  'tollgate-workerd': 'Tollgate (workerd port)',
  'tollgate-mf': 'Tollgate (Miniflare)',
  portkey: 'Portkey',
};

/** Per scenario, concurrency and target: the list of per-rep results. */
function collect(runs, scenario, c, target) {
  return runs.filter((r) => r.scenario === scenario && r.concurrency === c && r.target === target);
}

/** Per rep: value(target) - value(direct) of the same rep. */
function pairedDiff(runs, scenario, c, target, field) {
  const out = [];
  for (const r of collect(runs, scenario, c, target)) {
    const d = runs.find((x) => x.scenario === scenario && x.concurrency === c && x.target === 'direct' && x.rep === r.rep);
    if (d && r[field] !== null && d[field] !== null) out.push(r[field] - d[field]);
  }
  return out;
}

/** Per rep: added(target) / added(portkey). */
function pairedRatio(runs, scenario, c, target, field) {
  const a = pairedDiff(runs, scenario, c, target, field);
  const b = pairedDiff(runs, scenario, c, 'portkey', field);
  const out = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (b[i] > 0) out.push(a[i] / b[i]);
  return out;
}

function cpuRatio(runs, scenario, c, target, field = 'cpuMsPerReq') {
  const out = [];
  for (const r of collect(runs, scenario, c, target)) {
    const p = runs.find((x) => x.scenario === scenario && x.concurrency === c && x.target === 'portkey' && x.rep === r.rep);
    if (p && r[field] && p[field]) out.push(r[field] / p[field]);
  }
  return out;
}

/** The rows of scripts/bench-pipeline.sh's table: platform, request, microseconds. */
function ownCpuRows(markdown) {
  if (!markdown) return [];
  return markdown
    .split('\n')
    .map((l) => /^\| (native|wasm[^|]*) \| ([^|]+) \| ([\d.]+) µs \|$/.exec(l.trim()))
    .filter(Boolean)
    .map((m) => ({ platform: m[1].trim(), request: m[2].trim(), us: Number(m[3]) }));
}

function targetsEvaluation(results) {
  const { runs, coldStarts } = results;
  const rows = [];
  const has = (t) => results.config.targets.includes(t);
  const tg = ['tollgate-mf', 'tollgate-workerd', 'tollgate'].find(has) ?? 'tollgate';
  const verdict = (ok) => (ok === null ? 'not measured' : ok ? '**met**' : '**not met**');
  // Issue 13's targets (wallets on the hot path).
  if (has('portkey')) {
    const rps = median(cpuRatio(runs, 'plain', 16, tg, 'rps'));
    const ours = median(collect(runs, 'plain', 16, tg).map((r) => r.rps));
    const theirs = median(collect(runs, 'plain', 16, 'portkey').map((r) => r.rps));
    rows.push([
      "plain c=16 throughput ≥ Portkey's",
      `${fmt(ours, 0)} vs ${fmt(theirs, 0)} req/s (ratio ${fmt(rps)})`,
      verdict(rps === null ? null : rps >= 1),
    ]);
  }
  {
    const added = median(pairedDiff(runs, 'plain', 1, tg, 'p50'));
    rows.push(['added p50, plain, c=1: ≤ 1.5 ms', `${fmt(added)} ms`, verdict(added === null ? null : added <= 1.5)]);
  }
  if (has('portkey')) {
    for (const c of CFG.concurrencies) {
      const ratio = median(cpuRatio(runs, 'plain', c, tg));
      const ours = median(collect(runs, 'plain', c, tg).map((r) => r.cpuMsPerReq));
      const theirs = median(collect(runs, 'plain', c, 'portkey').map((r) => r.cpuMsPerReq));
      rows.push([
        `CPU per plain request, c=${c}: ≤ Portkey's`,
        `${fmt(ours)} vs ${fmt(theirs)} ms (ratio ${fmt(ratio)})`,
        verdict(ratio === null ? null : ratio <= 1),
      ]);
    }
  }
  {
    const added = median(pairedDiff(runs, 'ttfb', 1, tg, 'ttfbP50'));
    rows.push(['stream TTFB added, p50, c=1: ≤ 1.5 ms', `${fmt(added)} ms`, verdict(added === null ? null : added <= 1.5)]);
  }
  if (results.d1Probe) {
    const d = results.d1Probe;
    const typical = median(d.warm);
    rows.push([
      'D1 statements per warm plain request: 0',
      `${fmt(typical, 0)} (median; ${d.warm.filter((n) => n === 0).length} of ${d.warm.length} warm requests at 0, the others refresh the ` +
        `isolate's caches; first request of a fresh key: ${d.first})${results.config.wallets ? '' : ', wallets off'}`,
      verdict(typical === 0),
    ]);
  }
  if (has('portkey')) {
    for (const c of CFG.concurrencies) {
      const ours = median(pairedDiff(runs, 'plain', c, tg, 'p50'));
      const theirs = median(pairedDiff(runs, 'plain', c, 'portkey', 'p50'));
      const ratio = median(pairedRatio(runs, 'plain', c, tg, 'p50'));
      rows.push([
        `added p50 latency, plain, c=${c}: ≤ ½ of Portkey's`,
        `${fmt(ours)} ms vs ${fmt(theirs)} ms (ratio ${fmt(ratio)})`,
        verdict(ratio === null ? null : ratio <= 0.5),
      ]);
    }
  }
  for (const c of CFG.concurrencies) {
    const runsC = collect(runs, 'prompt2k', c, tg);
    const worker = median(runsC.map((r) => r.cpuMsPerReqByRole.worker ?? null));
    rows.push([
      `worker CPU per request, 2,000-token prompt, c=${c}: ≤ 1 ms`,
      `${fmt(worker)} ms (user workerd: worker, runtime, local D1/KV simulation)`,
      verdict(worker === null ? null : worker <= 1),
    ]);
  }
  const own = ownCpuRows(results.pipeline);
  const ownWasm = own.find((r) => r.platform.startsWith('wasm') && r.request === 'plain, 2,000-token prompt');
  if (ownWasm) {
    rows.push([
      "Tollgate's own CPU per request, 2,000-token prompt (pure core in wasm, counting included): ≤ 1 ms",
      `${fmt(ownWasm.us / 1000)} ms (scripts/bench-pipeline.sh)`,
      verdict(ownWasm.us <= 1000),
    ]);
  }
  for (const c of CFG.concurrencies) {
    const added = median(pairedDiff(runs, 'ttfb', c, tg, 'ttfbP50'));
    rows.push([
      `stream TTFB added over direct, p50, c=${c}: ≤ 1 ms`,
      `${fmt(added)} ms`,
      verdict(added === null ? null : added <= 1),
    ]);
  }
  if (has('portkey')) {
    for (const c of CFG.concurrencies) {
      const ratio = median(pairedRatio(runs, 'stream', c, tg, 'p50'));
      const ours = median(pairedDiff(runs, 'stream', c, tg, 'p50'));
      const theirs = median(pairedDiff(runs, 'stream', c, 'portkey', 'p50'));
      rows.push([
        `whole-stream added p50, c=${c}: ≤ ½ of Portkey's`,
        `${fmt(ours)} ms vs ${fmt(theirs)} ms (ratio ${fmt(ratio)})`,
        verdict(ratio === null ? null : ratio <= 0.5),
      ]);
    }
  }
  if (coldStarts.length) {
    const fromWorkerd = median(coldStarts.map((c) => c.fromWorkerdStartMs));
    rows.push([
      'cold start to first answered request: ≤ 50 ms',
      `${fmt(fromWorkerd)} ms from workerd start (/healthz)`,
      verdict(fromWorkerd === null ? null : fromWorkerd <= 50),
    ]);
    const firstChat = median(coldStarts.filter((c) => c.model === MODEL).map((c) => c.firstChatMs));
    rows.push([
      'first chat completion of a fresh isolate (counting model): ≤ 50 ms',
      `${fmt(firstChat)} ms`,
      verdict(firstChat === null ? null : firstChat <= 50),
    ]);
  }
  return { via: TARGET_LABEL[tg], rows };
}

export function renderMarkdown(results) {
  const { config, versions: v, machine: m, runs, coldStarts, wasm, meteringCheck, prompt2kTokens } = results;
  const L = [];
  const targets = config.targets;
  const reps = config.reps;
  L.push('## Gateway benchmark', '');
  L.push(
    `Generated by \`bash scripts/bench.sh\` on ${results.startedAt} (UTC), ${config.quick ? '**quick mode** (not for comparison), ' : ''}` +
      `${reps} repetition${reps > 1 ? 's' : ''} of ${config.durationS} s per run (stream TTFB: ${config.ttfbDurationS} s), ` +
      `in ${fmt(results.elapsedS / 60, 1)} min. Figures: median of the repetitions, ` +
      `<sub>min–max</sub> when there are several; ms unless marked.`,
    '',
  );
  L.push(
    `- **Machine**: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}. ` +
      `Load average (1/5/15 min) at start ${results.loadStart.join(' / ')}, at end ${results.loadEnd.join(' / ')}. ` +
      `Everything (client, mock, gateways, other work on the machine) shares these cores: see the _load_ and ` +
      `_foreign CPU_ columns (the share of the machine's CPU used by processes outside the benchmark during each run).`,
  );
  L.push(
    `- **Versions**: Tollgate ${v.commit ?? '?'} (release build), workerd ${v.workerd}, wrangler ${v.wrangler}, ` +
      `Node ${v.node}; Portkey \`@portkey-ai/gateway\` ${v.portkey} with hono ${v.hono} and ` +
      `@hono/node-server ${v.honoNodeServer} (bench/peer); wrk ${v.wrk}.`,
  );
  L.push(
    `- **Wasm** \`build/index_bg.wasm\`: ${(wasm.raw / 1024).toFixed(0)} KiB raw, ${(wasm.gzip / 1024).toFixed(0)} KiB gzip (level 9).`,
  );
  if (meteringCheck) {
    L.push(
      `- **Metering was on**: ${meteringCheck.usageRows} usage rows in D1 for ${meteringCheck.answered} requests ` +
        `the load generators counted as answered by Tollgate (requests still in flight when a run stopped are ` +
        `settled too, as client_abort or ok; statuses: ${Object.entries(meteringCheck.byStatus)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}); ${meteringCheck.openReservations} reservations still open at the end.`,
    );
  }
  if (prompt2kTokens !== null) {
    L.push(`- The 2,000-token prompt (bench/fixtures/prompt-2k.txt) counts as ${prompt2kTokens} prompt tokens (o200k_base, framing included) in Tollgate's usage row.`);
  }
  L.push('');

  const cols = (scenario) => {
    const lat = scenario === 'ttfb';
    return lat
      ? ['target', 'c', 'TTFB p50', 'TTFB p99', 'total p50', 'total p99', 'added TTFB p50', 'added total p50', 'req/s', 'load', 'foreign CPU']
      : ['target', 'c', 'p50', 'p90', 'p99', 'req/s', 'added p50', 'vs Portkey (added p50)', 'CPU ms/req', 'vs Portkey (CPU)', 'load', 'foreign CPU'];
  };
  const titles = {
    plain: 'Plain chat completion (small prompt, JSON reply; wrk)',
    stream: 'Streamed chat completion, whole stream (20 content chunks + usage chunk; wrk)',
    ttfb: 'Streamed chat completion: time to first byte and to the end (bench/stream-client.mjs)',
    prompt2k: 'Plain chat completion with a 2,000-token prompt (counting included; wrk)',
  };
  for (const scenario of config.scenarios) {
    L.push(`### ${titles[scenario]}`, '');
    const head = cols(scenario);
    L.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
    for (const c of CFG.concurrencies) {
      for (const t of targets) {
        const rs = collect(runs, scenario, c, t);
        if (!rs.length) continue;
        const g = (f) => rs.map((r) => r[f]);
        const errs = rs.reduce((a, r) => a + r.errors, 0);
        const name = TARGET_LABEL[t] + (errs ? ` (**${errs} errors**)` : '');
        const load = fmt(median(g('load1')), 2);
        const foreign = `${fmt(median(g('foreignCpuPct')), 0)} %`;
        if (scenario === 'ttfb') {
          L.push(
            `| ${name} | ${c} | ${fmtSpread(g('ttfbP50'))} | ${fmtSpread(g('ttfbP99'))} | ${fmtSpread(g('p50'))} | ${fmtSpread(g('p99'))} | ` +
              `${t === 'direct' ? '' : fmtSpread(pairedDiff(runs, scenario, c, t, 'ttfbP50'))} | ` +
              `${t === 'direct' ? '' : fmtSpread(pairedDiff(runs, scenario, c, t, 'p50'))} | ${fmt(median(g('rps')), 0)} | ${load} | ${foreign} |`,
          );
        } else {
          const isGw = t !== 'direct';
          const roles = rs[0].cpuMsPerReqByRole;
          const roleNote =
            t.startsWith('tollgate') && Object.keys(roles).length > 1
              ? ` <sub>${Object.keys(roles)
                  .sort()
                  .map((role) => `${role} ${fmt(median(rs.map((r) => r.cpuMsPerReqByRole[role] ?? null)))}`)
                  .join(', ')}</sub>`
              : '';
          L.push(
            `| ${name} | ${c} | ${fmtSpread(g('p50'))} | ${fmtSpread(g('p90'))} | ${fmtSpread(g('p99'))} | ${fmt(median(g('rps')), 0)} | ` +
              `${isGw ? fmtSpread(pairedDiff(runs, scenario, c, t, 'p50')) : ''} | ` +
              `${isGw && t !== 'portkey' && targets.includes('portkey') ? fmtSpread(pairedRatio(runs, scenario, c, t, 'p50')) : ''} | ` +
              `${fmtSpread(g('cpuMsPerReq'))}${t === 'direct' ? ' <sub>mock</sub>' : roleNote} | ` +
              `${isGw && t !== 'portkey' && targets.includes('portkey') ? fmtSpread(cpuRatio(runs, scenario, c, t)) : ''} | ${load} | ${foreign} |`,
          );
        }
      }
    }
    L.push('');
  }

  if (results.d1Probe || results.walletBench || results.tenantsBench) {
    L.push(`### Tenant wallets (${config.wallets ? 'WALLETS=true' : 'WALLETS=false'}; docs/scale.md)`, '');
    const d = results.d1Probe;
    if (d) {
      L.push(
        `- **D1 statements per plain request** (wrangler dev's Tollgate as a test deployment, ` +
          '`x-tollgate-d1-statements`, one request at a time, a fresh tenant and key): first request ' +
          `${d.first} (key and model read into the isolate's caches${config.wallets ? ", the tenant's move into its wallet" : ''}), ` +
          `then ${d.warm.join(', ')} (waiting for the wallet's export after each; a non-zero warm request is the refresh of the ` +
          "isolate's caches every `CONFIG_CACHE_TTL_MS`, 10 s: model row, routes, plugins).",
      );
    }
    const w = results.walletBench;
    if (w) {
      L.push(
        `- **One wallet, one tenant, c = 16** (Tollgate (Miniflare), plain requests to the instant mock, ${fmt(w.loadS, 1)} s): ` +
          `${w.answered} answered${w.errors ? ` (**${w.errors} errors**)` : ''}, gateway ${fmt(w.gatewayRps, 0)} req/s ` +
          `(p50 ${fmt(w.p50)} / p99 ${fmt(w.p99)} ms); **${fmt(w.pairsPerS, 0)} reserve + settle pairs/s** until the last ` +
          `settlement; export to D1 best second **${fmt(w.exportRowsPerS, 0)} rows/s**, at most ${w.maxPending} rows pending, ` +
          `every row in D1 ${fmt(w.exportLagMs, 0)} ms after the load ended.`,
      );
      if (w.command) {
        L.push(
          `- **One wallet command, worker → object → answer** (bench/wallet-driver in the same workerd, reserve and ` +
            `release one at a time, ${w.command.commands} commands): mean **${fmt(w.command.meanMs, 3)} ms**; p50 of ` +
            `10-command batches ${fmt(w.command.p50Ms, 3)} ms, p90 ${fmt(w.command.p90Ms, 3)} ms (the runtime's clock ` +
            'moves in whole ms between I/O events, so single commands are not timed).',
        );
      }
    }
    const t = results.tenantsBench;
    if (t) {
      L.push(
        `- **${t.tenants} tenants × ${t.clients} concurrent clients** (keep-alive, plain requests, ${config.durationS} s): ` +
          `**${fmt(t.rps, 0)} req/s**, p50 ${fmt(t.p50)} ms, p99 ${fmt(t.p99)} ms${t.errors ? `, **${t.errors} errors** (${t.firstError})` : ''}; ` +
          `every usage row in D1 ${t.exportLagMs === null ? '**not within 120 s**' : `${fmt(t.exportLagMs, 0)} ms`} after the load ended ` +
          `(${t.rowsExported} rows for ${t.answered} answered).`,
      );
    }
    L.push('');
  }

  if (results.pipeline) {
    L.push(
      "### Tollgate's own CPU per request (scripts/bench-pipeline.sh)",
      '',
      'The pure core\'s work for one chat completion, timed in-process (release builds; median of 7 rounds of ' +
        '100 ms): parse the request, count the prompt (o200k_base), price the reservation, build the upstream ' +
        'request, parse the reply or decode and meter the 23-event stream, bill. The rest of the worker CPU in the ' +
        'tables above is the runtime\'s: JS glue, fetch, and the local D1/KV simulation.',
      '',
      results.pipeline.trim(),
      '',
    );
  }

  if (coldStarts.length) {
    L.push('### Cold start (wrangler dev restarted on the same D1/KV state)', '');
    L.push(
      '| worker, first chat model | from wrangler spawn | from workerd start | from "Ready on" line | workerd CPU until then | first chat completion | warm chat completion |',
      '|---|---|---|---|---|---|---|',
    );
    const coldLabel = {
      [MODEL]: `Tollgate, ${MODEL} (o200k count)`,
      [MODEL_NOCOUNT]: `Tollgate, ${MODEL_NOCOUNT} (estimate, no tokenizer)`,
      passthrough: 'JS pass-through worker (reference)',
    };
    for (const model of [MODEL, MODEL_NOCOUNT, 'passthrough']) {
      const cs = coldStarts.filter((c) => c.model === model);
      if (!cs.length) continue;
      const g = (f) => cs.map((c) => c[f]);
      L.push(
        `| ${coldLabel[model]} | ${fmtSpread(g('fromSpawnMs'))} | ${fmtSpread(g('fromWorkerdStartMs'))} | ` +
          `${fmtSpread(g('fromReadyLineMs'))} | ${fmtSpread(g('workerdCpuMsAtFirstAnswer'))} | ${fmtSpread(g('firstChatMs'))} | ${fmtSpread(g('warmChatMs'))} |`,
      );
    }
    L.push(
      '',
      'The first three columns time the first answered `GET /healthz` (probed every 2 ms from the spawn); ' +
        `workerd's start comes from /proc (resolution ${1000 / CLK_TCK} ms). "first chat completion" is the ` +
        'first `POST /v1/chat/completions` of that fresh isolate, sent right after; "warm" the median of the next five.',
      '',
    );
  }

  const ev = targetsEvaluation(results);
  L.push(`### Targets (Tollgate measured through the ${ev.via})`, '');
  L.push('| target | measured | |', '|---|---|---|');
  for (const r of ev.rows) L.push(`| ${r.join(' | ')} |`);
  L.push('');

  L.push('### Method', '');
  L.push(
    '- One command: `bash scripts/bench.sh` (`BENCH_QUICK=1` for a short development run). It installs wrk ' +
      '(apt-get) and Portkey (`npm ci` in bench/peer) when missing, builds the worker (release), and runs ' +
      'bench/run.mjs, which starts everything on 127.0.0.1 and stops it at the end.',
    '- Upstream: bench/mock-upstream.mjs, a Node http server in its own process answering at once (plain: one ' +
      'JSON body; stream: 23 SSE events, each its own write, then `[DONE]`). **direct** is the client calling it ' +
      'without a gateway.',
    '- **Tollgate** runs the release build with full metering: key digest check (isolate cache, else KV, else ' +
      'D1), model row (isolate cache), o200k_base count of the prompt, ' +
      (config.wallets
        ? "**with `WALLETS=true`** one call to the tenant's wallet (a SQLite-backed Durable Object in the same " +
          'workerd) before the upstream call (reservation: revocation, tenant, limits, balance), upstream call, ' +
          'relay, and after the response one wallet call (settlement and usage row in the wallet\'s outbox); the ' +
          "wallet's alarm exports the rows to D1 in batches (0 D1 statements on a warm request). "
        : 'one D1 batch before the upstream call (reservation, which re-checks revocation, tenant and balance), ' +
          'upstream call, relay, and after the response one D1 batch (settlement: usage row, session, alert ' +
          'rules). ') +
      '**Tollgate (Miniflare)** runs it in ' +
      'workerd through Miniflare\'s API (bench/miniflare-host.mjs: the runtime without wrangler dev\'s proxy, ' +
      'inspector and watchers) on a copy of the configured D1/KV state; **Tollgate (workerd port)** runs it ' +
      'under `wrangler dev` and sends requests to the user workerd\'s own entry socket; **Tollgate (wrangler ' +
      'dev)** goes through wrangler\'s port and its proxy worker in a second workerd process. The JS ' +
      'pass-through worker (bench/passthrough) runs the same ways: the floor of each local stack.',
    '- **Portkey**: `node build/start-server.js --port=N --headless` from bench/peer, requests with ' +
      '`x-portkey-provider: openai` and `x-portkey-custom-host: <mock>/v1`: a pass-through with no metering ' +
      'or keys of its own.',
    '- Load: `wrk -t1 -cC -dDs` with bench/wrk-post.lua (POST body, latency percentiles, error counts; a ' +
      'non-2xx answer is an error) for plain, stream and prompt2k; bench/stream-client.mjs (node:http, ' +
      'keep-alive) for time to first body byte and to the end of a stream. A warm-up run precedes each ' +
      'scenario; the order of the targets rotates per repetition; added latency and ratios are computed ' +
      'pair by pair within a repetition, then the median is taken.',
    '- CPU per request: utime+stime from /proc/<pid>/stat of every process of the target\'s tree, before and ' +
      'after the run (300 ms after the load stops, so settlements are included), divided by answered requests. ' +
      'For Tollgate the total is split by process: _worker_ is the user workerd (Tollgate\'s wasm, the runtime, ' +
      'and — locally only — the D1/SQLite and KV simulation), _proxy_ wrangler\'s proxy workerd, _wrangler_ its ' +
      'Node process. For direct the column is the mock\'s CPU.',
    '- Local D1 and KV are simulated inside the user workerd (SQLite and files behind JavaScript wrapper ' +
      'workers): no network time, but each operation costs the worker process CPU (`node bench/storage-probe.mjs` ' +
      'measures it), whereas deployed D1 is a network round trip whose CPU is not the worker\'s. The worker CPU ' +
      'here is therefore an upper bound of the deployed worker\'s, and its latency misses the storage round trips.',
    '- Timing is never asserted by the tests; this is a measurement, re-run it on a quiet machine to compare.',
    '',
  );
  return L.join('\n');
}

export function writeBenchmarksMd(markdown) {
  const file = join(ROOT, 'BENCHMARKS.md');
  const START = '<!-- gateway-bench:start -->';
  const END = '<!-- gateway-bench:end -->';
  const block = `${START}\n${markdown}\n${END}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\n';
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + END.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
}
