// What one D1 or KV operation costs on the local stack (workerd under Miniflare, local D1 and KV),
// to tell Tollgate's own CPU from the storage simulation's in the benchmark's figures.
//
//   node bench/storage-probe.mjs            (after scripts/setup.sh; needs wrk; ~1 minute)
//
// A JavaScript worker with one route per operation (none, KV get, KV put, D1 select, D1 insert,
// D1 batch of three statements, fetch of the mock upstream) is loaded at each route in turn with
// `wrk -c1` for BENCH_PROBE_S seconds (default 4); the workerd process's CPU (utime+stime from /proc)
// divided by the requests gives the CPU per request, and the difference to the empty route what
// the operation adds. Prints a markdown table. Not part of the test suite; figures only.

import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';

import { ROOT } from '../tests/e2e/harness.mjs';

const SECONDS = Number(process.env.BENCH_PROBE_S ?? 4);
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const script = `
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    const id = crypto.randomUUID();
    switch (path) {
      case '/none':
        return new Response('ok');
      case '/kv-get':
        return new Response(String((await env.KV.get('key:bench', 'json'))?.n ?? 'none'));
      case '/kv-put':
        await env.KV.put('session:' + id, JSON.stringify({ n: 1, id }), { expirationTtl: 3600 });
        return new Response('ok');
      case '/d1-select': {
        const row = await env.DB.prepare('SELECT name, price FROM models WHERE name = ?1').bind('m').first();
        return new Response(String(row?.price));
      }
      case '/d1-insert': {
        const row = await env.DB.prepare('INSERT INTO rows (id, n) VALUES (?1, ?2) RETURNING id').bind(id, 1).first();
        return new Response(String(row?.id));
      }
      case '/d1-batch': {
        await env.DB.batch([
          env.DB.prepare('DELETE FROM rows WHERE id = ?1').bind(id),
          env.DB.prepare('INSERT OR IGNORE INTO rows (id, n) VALUES (?1, ?2)').bind(id, 2),
          env.DB.prepare('SELECT id, n FROM rows WHERE id = ?1').bind(id),
        ]);
        return new Response('ok');
      }
      case '/fetch': {
        const res = await fetch(env.UPSTREAM, { method: 'POST', headers: { 'content-type': 'application/json' },
          body: '{"model":"m","messages":[{"role":"user","content":"hi"}]}' });
        return new Response(await res.arrayBuffer(), { headers: { 'content-type': 'application/json' } });
      }
      default:
        return new Response('not found', { status: 404 });
    }
  },
};`;

const mock = spawn(process.execPath, [join(ROOT, 'bench', 'mock-upstream.mjs'), '0'], {
  stdio: ['ignore', 'pipe', 'inherit'],
  detached: true,
});
const mockPort = await new Promise((resolve) => mock.stdout.once('data', (d) => resolve(JSON.parse(d).port)));
const mf = new Miniflare(
  convertV4MiniflareOptions({
    modules: true,
    script,
    compatibilityDate: '2025-11-01',
    d1Databases: ['DB'],
    kvNamespaces: ['KV'],
    bindings: { UPSTREAM: `http://127.0.0.1:${mockPort}/v1/chat/completions` },
    cf: false,
  }),
);
try {
  const url = await mf.ready;
  const db = await mf.getD1Database('DB');
  await db.exec('CREATE TABLE models (name TEXT PRIMARY KEY, price INTEGER)');
  await db.exec('CREATE TABLE rows (id TEXT PRIMARY KEY, n INTEGER)');
  await db.prepare("INSERT INTO models VALUES ('m', 150000)").run();
  await (await mf.getKVNamespace('KV')).put('key:bench', '{"n":1}');

  const workerd = execFileSync('ps', ['-eo', 'pid=,ppid=,comm='], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === String(process.pid) && f[2] === 'workerd')
    .map((f) => Number(f[0]));
  const ticks = () =>
    workerd.reduce((sum, pid) => {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return sum + Number(f[11]) + Number(f[12]);
    }, 0);

  const rows = [];
  for (const route of ['none', 'kv-get', 'kv-put', 'd1-select', 'd1-insert', 'd1-batch', 'fetch']) {
    const target = new URL(route, url).href;
    execFileSync('wrk', ['-t1', '-c1', '-d1s', target]); // warm-up
    const before = ticks();
    const out = execFileSync('wrk', ['-t1', '-c1', `-d${SECONDS}s`, target], { encoding: 'utf8' });
    await new Promise((r) => setTimeout(r, 200));
    const cpuMs = ((ticks() - before) / CLK_TCK) * 1000;
    const requests = Number(/(\d+) requests in/.exec(out)[1]);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    if (non2xx) throw new Error(`${route}: ${non2xx} failed responses`);
    const latency = /Latency\s+(\S+)/.exec(out)[1];
    rows.push({ route, requests, cpuMsPerReq: cpuMs / requests, latency });
  }
  const floor = rows[0].cpuMsPerReq;
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`| route | requests | workerd CPU ms/req | added over /none | mean latency (wrk) |`);
  console.log('|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.route} | ${r.requests} | ${r.cpuMsPerReq.toFixed(2)} | ${r.route === 'none' ? '' : (r.cpuMsPerReq - floor).toFixed(2)} | ${r.latency} |`,
    );
  }
  console.log(`\nload average at the end: ${load}`);
} finally {
  await mf.dispose();
  try {
    process.kill(-mock.pid, 'SIGKILL');
  } catch {}
}
