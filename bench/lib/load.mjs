// Load generators: wrk, bench/stream-client.mjs, one HTTP request, the request bodies.
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import http from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BENCH, WRK_LUA } from './config.mjs';
import { runToEnd } from './procs.mjs';

// ---------------------------------------------------------------------------------------------
// Load generators
// ---------------------------------------------------------------------------------------------

export async function runWrk({ url, bodyFile, headers, concurrency, durationS }) {
  const headerArgs = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  const out = await runToEnd(
    'wrk',
    ['-t1', `-c${concurrency}`, `-d${durationS}s`, '--timeout', '10s', '-s', WRK_LUA, url, '--', bodyFile, ...headerArgs],
    { timeoutMs: (durationS + 60) * 1000 },
  );
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`wrk printed no BENCH_JSON line:\n${out}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  return {
    requests: r.requests,
    answered: r.requests - r.errors.status,
    errors,
    errorDetail: r.errors,
    seconds: r.duration_us / 1e6,
    rps: r.requests / (r.duration_us / 1e6),
    p50: r.p50_us / 1000,
    p90: r.p90_us / 1000,
    p99: r.p99_us / 1000,
  };
}

export async function runStreamClient({ url, bodyFile, headers, concurrency, durationS }) {
  const args = JSON.stringify({ url, bodyFile, headers, concurrency, durationMs: durationS * 1000 });
  const out = await runToEnd(process.execPath, [join(BENCH, 'stream-client.mjs'), args], {
    timeoutMs: (durationS + 60) * 1000,
  });
  const r = JSON.parse(out.trim().split('\n').pop());
  const ms = (x) => (x === null ? null : x / 1000);
  return {
    requests: r.requests,
    answered: r.ok,
    errors: r.failed,
    errorDetail: r.first_failure,
    seconds: r.elapsed_us / 1e6,
    rps: r.ok / (r.elapsed_us / 1e6),
    ttfbP50: ms(r.ttfb.p50_us),
    ttfbP90: ms(r.ttfb.p90_us),
    ttfbP99: ms(r.ttfb.p99_us),
    p50: ms(r.total.p50_us),
    p90: ms(r.total.p90_us),
    p99: ms(r.total.p99_us),
  };
}

/** One HTTP request; resolves { status, headers, body, ms }. */
export function request(url, { method = 'POST', headers = {}, body = null, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          ms: performance.now() - t0,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${url}`)));
    req.end(body);
  });
}
