// A first-party plugin Worker: unit conversion. The gateway calls it through a service binding
// with POST {api, arguments, settings}; it answers JSON {content}. To let the tests check what a
// plugin receives, the answer also reports the request it got (method, path, headers, body).

const FACTORS = { km: 1000, m: 1, mi: 1609.344, ft: 0.3048 };

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const raw = await request.text();
    let body;
    try {
      body = JSON.parse(raw);
    } catch {
      return new Response('expected a JSON body', { status: 400 });
    }
    const { api, arguments: args = {}, settings = null } = body;
    if (request.method !== 'POST' || api !== 'convert') {
      return new Response(`unknown api ${api}`, { status: 404 });
    }
    if (!settings || settings.token !== 'units-token-1234') {
      return new Response('unauthorized: missing or wrong plugin token', { status: 401 });
    }
    const from = FACTORS[args.from];
    const to = FACTORS[args.to];
    if (!from || !to) return new Response('unknown unit', { status: 422 });
    const value = Math.round(((args.value * from) / to) * 1000) / 1000;
    const received = {
      method: request.method,
      path: url.pathname,
      headers: Object.fromEntries(request.headers),
      body,
    };
    return Response.json({
      content: `**${args.value} ${args.from} = ${value} ${args.to}**\n\nreceived: ${JSON.stringify(received)}`,
    });
  },
};
