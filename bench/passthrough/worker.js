// A JavaScript worker that forwards every request to UPSTREAM unchanged, streaming both ways.
// scripts/bench.sh runs it under the same wrangler dev / workerd as Tollgate: it is the floor of
// any gateway on that local stack, so that Tollgate's own cost can be told from the runtime's.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/healthz') return Response.json({ status: 'ok', service: 'passthrough' });
    const upstream = new URL(url.pathname + url.search, env.UPSTREAM);
    return fetch(upstream, { method: request.method, headers: request.headers, body: request.body });
  },
};
