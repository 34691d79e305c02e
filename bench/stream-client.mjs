// Streaming client of the benchmark (scripts/bench.sh): times first byte and end of SSE streams.
//
//   node bench/stream-client.mjs '{"url":…,"bodyFile":…,"headers":{…},"concurrency":16,"durationMs":5000}'
//
// `concurrency` loops each send one streamed POST after another over keep-alive connections until
// `durationMs` has passed (or `maxRequests` were sent). For each request it records, from the
// moment the request is written: the response headers (`headers`), the first body byte (`ttfb`,
// the first SSE event a user sees) and the end of the body (`total`). A request counts as failed
// unless it answers 200 and its body ends with `data: [DONE]`. Prints one JSON line: counts and
// the p50/p90/p99 of each time, in microseconds.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const opts = JSON.parse(process.argv[2] ?? '{}');
const { url, bodyFile, headers = {}, concurrency = 1, durationMs = 5000, maxRequests = 1_000_000 } = opts;
if (!url || !bodyFile) throw new Error('url and bodyFile are required');
const body = readFileSync(bodyFile);
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, noDelay: true });
const DONE = Buffer.from('data: [DONE]');

const times = { headers: [], ttfb: [], total: [] };
let sent = 0;
let failed = 0;
let firstFailure = null;

function once() {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let tHeaders = 0;
    let tFirst = 0;
    let tail = Buffer.alloc(0);
    const fail = (why) => {
      failed++;
      firstFailure ??= why;
      resolve();
    };
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': body.length, ...headers },
      },
      (res) => {
        tHeaders = performance.now();
        res.on('data', (chunk) => {
          if (!tFirst) tFirst = performance.now();
          tail = Buffer.concat([tail, chunk]).subarray(-64);
        });
        res.on('end', () => {
          const tEnd = performance.now();
          if (res.statusCode !== 200) return fail(`status ${res.statusCode}: ${tail.toString()}`);
          if (!tail.includes(DONE)) return fail(`stream did not end with [DONE]: …${tail.toString()}`);
          times.headers.push(tHeaders - t0);
          times.ttfb.push(tFirst - t0);
          times.total.push(tEnd - t0);
          resolve();
        });
        res.on('error', (e) => fail(`response error: ${e.message}`));
      },
    );
    req.on('error', (e) => fail(`request error: ${e.message}`));
    req.setTimeout(30_000, () => req.destroy(new Error('timeout after 30 s')));
    req.end(body);
  });
}

const started = performance.now();
const deadline = started + durationMs;
async function loop() {
  while (performance.now() < deadline && sent < maxRequests) {
    sent++;
    await once();
  }
}
await Promise.all(Array.from({ length: concurrency }, loop));
const elapsed = performance.now() - started;
agent.destroy();

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] * 1000);
};
const summary = (xs) => ({ p50_us: pct(xs, 50), p90_us: pct(xs, 90), p99_us: pct(xs, 99) });
process.stdout.write(
  `${JSON.stringify({
    requests: sent,
    ok: times.total.length,
    failed,
    first_failure: firstFailure,
    elapsed_us: Math.round(elapsed * 1000),
    headers: summary(times.headers),
    ttfb: summary(times.ttfb),
    total: summary(times.total),
  })}\n`,
);
