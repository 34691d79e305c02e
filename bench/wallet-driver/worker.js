// Bench-only JavaScript worker that calls a tenant's wallet (Tollgate's `TenantWallet` Durable
// Object, bound as WALLET from the worker named "tollgate" in the same workerd) the way the gateway
// does: one POST of a command envelope (src/edge/store/wallet/mod.rs `Envelope`) per call. It runs
// next to Tollgate in bench/miniflare-host.mjs so that "one wallet command, worker → object →
// answer" is timed inside the runtime, without the client's HTTP round trip.
//
// POST /time {"tenant_id", "key_id", "batches", "per_batch"}: reserve + release pairs, one at a
// time; answers the wall time of each batch divided by its commands (workerd's clock moves only
// between I/O events and in whole milliseconds, so a single command cannot be timed; a batch can).

const command = async (ns, tenantId, cmd) => {
  const stub = ns.get(ns.idFromName(tenantId));
  const res = await stub.fetch('https://wallet/command', {
    method: 'POST',
    body: JSON.stringify({ tenant_id: tenantId, command: cmd }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`wallet ${res.status}: ${text}`);
  const answer = JSON.parse(text);
  if (!('ok' in answer)) throw new Error(`wallet refused: ${text}`);
  return answer.ok;
};

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/healthz') return new Response('wallet-driver');
    if (url.pathname !== '/time' || request.method !== 'POST') return new Response('not found', { status: 404 });
    const { tenant_id: tenantId, key_id: keyId, batches = 50, per_batch: perBatch = 10 } = await request.json();
    const msPerCommand = [];
    let n = 0;
    const t0 = Date.now();
    for (let b = 0; b < batches; b++) {
      const start = Date.now();
      for (let i = 0; i < perBatch; i++) {
        const id = `bench-${t0}-${n++}`;
        await command(env.WALLET, tenantId, { op: 'reserve', request: { id, key_id: keyId, amount: 1, tokens: 1 } });
        await command(env.WALLET, tenantId, { op: 'release', request_id: id });
      }
      msPerCommand.push((Date.now() - start) / (2 * perBatch));
    }
    return Response.json({ commands: 2 * n, elapsedMs: Date.now() - t0, msPerCommand });
  },
};
