// Processes: helpers started in their own process groups (all stopped on exit), and /proc readings (CPU of process trees, the machine's busy time, load).
// Part of Tollgate's benchmark: bench/run.mjs orchestrates.

import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ROOT, sleep } from '../../tests/e2e/harness.mjs';
import { OUT_DIR, env, log, preciseNow } from './config.mjs';

// ---------------------------------------------------------------------------------------------
// Processes: started in their own groups, all stopped on exit
// ---------------------------------------------------------------------------------------------

const groups = new Set(); // pgids of long-running helpers we started (mock, portkey)
export const gateways = new Set(); // harness gateways (their kill() stops their group)
export const stateDirs = new Set(); // D1/KV state directories created here

function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
  } catch {}
}

export async function stopAll() {
  for (const gw of gateways) await gw.kill().catch(() => {});
  gateways.clear();
  for (const pgid of groups) killGroup(pgid, 'SIGTERM');
  if (groups.size) await sleep(500);
  for (const pgid of groups) killGroup(pgid, 'SIGKILL');
  groups.clear();
  if (env.TOLLGATE_E2E_KEEP !== '1') for (const dir of stateDirs) rmSync(dir, { recursive: true, force: true });
  stateDirs.clear();
}
process.on('exit', () => {
  for (const pgid of groups) killGroup(pgid, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping everything`);
    stopAll().finally(() => process.exit(130));
  });
}

/** Starts a long-running helper in its own process group; resolves with it once `ready(output)` holds. */
export async function startHelper(name, cmd, args, { cwd = ROOT, envExtra = {}, ready, timeoutMs = 60_000, pollMs = 50, readyLine = null }) {
  const logFile = join(OUT_DIR, `${name}.log`);
  const spawnedAt = preciseNow();
  const child = spawn(cmd, args, {
    cwd,
    env: { ...env, ...envExtra },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  groups.add(child.pid);
  let output = '';
  let readyLineAt = null;
  const onData = (d) => {
    output += d;
    if (readyLine && readyLineAt === null && readyLine.test(output)) readyLineAt = preciseNow();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let exited = false;
  child.on('exit', () => (exited = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await ready(output);
    if (value) {
      return {
        pid: child.pid,
        value,
        timings: { spawnedAt, readyAt: readyLineAt, firstAnsweredAt: preciseNow() },
        output: () => output,
        async stop() {
          killGroup(child.pid, 'SIGTERM');
          for (let i = 0; i < 50 && !exited; i++) await sleep(100);
          killGroup(child.pid, 'SIGKILL');
          groups.delete(child.pid);
          writeFileSync(logFile, output);
        },
      };
    }
    if (exited || Date.now() > deadline) {
      writeFileSync(logFile, output);
      killGroup(child.pid, 'SIGKILL');
      groups.delete(child.pid);
      throw new Error(`${name} did not start (${exited ? 'exited' : 'timeout'}); output:\n${output.slice(-3000)}`);
    }
    await sleep(pollMs);
  }
}

/** Runs a command to completion (bounded); resolves with its stdout. */
export function runToEnd(cmd, args, { timeoutMs }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${err}\n${out}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU of process trees, the machine's busy time, load
// ---------------------------------------------------------------------------------------------

export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const BOOT_TIME_S = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))[1]);

/** Fields of /proc/<pid>/stat (null when the process is gone). */
export function procStat(pid) {
  let s;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = s.lastIndexOf(')');
  const f = s.slice(close + 2).split(' '); // f[0] is field 3 (state)
  return {
    pid: Number(pid),
    comm: s.slice(s.indexOf('(') + 1, close),
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]), // utime + stime
    childTicks: Number(f[13]) + Number(f[14]), // cutime + cstime (waited-for children)
    startedAtMs: (BOOT_TIME_S + Number(f[19]) / CLK_TCK) * 1000,
  };
}

/** Every process of the tree rooted at `root`, root included. */
export function processTree(root) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(name);
    if (st) all.push(st);
  }
  const byParent = new Map();
  for (const p of all) {
    if (!byParent.has(p.ppid)) byParent.set(p.ppid, []);
    byParent.get(p.ppid).push(p);
  }
  const rootStat = all.find((p) => p.pid === root);
  if (!rootStat) return [];
  const out = [];
  const queue = [rootStat];
  while (queue.length) {
    const p = queue.shift();
    out.push(p);
    queue.push(...(byParent.get(p.pid) ?? []));
  }
  return out;
}

/** Busy jiffies of the whole machine (all CPUs): user, nice, system, irq, softirq, steal. */
export function machineBusyTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
}
export const loadAvg = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
export const NCPU = os.cpus().length;
