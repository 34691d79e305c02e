// End to end: how a request ends when the provider or the client does something other than a clean
// answer — a client that leaves (its usage is still read), slow and silent providers (one timeout for
// a plain request, no second route once it may have been served), answers too large or unreadable,
// redirects (never followed), streams without usage, the wall-clock deadline below the
// stale-reservation sweep, idempotent replays of a non-OpenAI adapter.
//
// Pass/fail never depends on how long something took: every test asserts the usage row, the route
// that was called or the bytes received.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { freePort, sleep, startGateway, startGatewayEarly, stopEarly } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const MAX_OUTPUT = 200;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const hello = [{ role: 'user', content: 'hello there' }];

/**
 * An OpenAI-compatible upstream whose behaviour is chosen by the upstream model name; `/elsewhere`
 * counts what reaches the target of its redirect (which must be nothing).
 */
async function startOddUpstream() {
  const seen = [];
  const redirected = [];
  const sockets = new Set();
  const timers = new Set();
  const wait = (ms) =>
    new Promise((r) => {
      const t = setTimeout(() => {
        timers.delete(t);
        r();
      }, ms);
      timers.add(t);
    });
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      if (req.url.startsWith('/elsewhere')) {
        redirected.push({ url: req.url, headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {}
      const model = String(body.model ?? '');
      seen.push(model);
      const created = 1700000000;
      const chunk = (choices, extra = {}) =>
        `data: ${JSON.stringify({ id: 'chatcmpl-odd', object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
      const content = (text) => chunk([{ index: 0, delta: { content: text }, finish_reason: null }]);
      const open = () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
      };
      const gone = () => res.destroyed || res.socket?.destroyed;
      const plain = (text) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'chatcmpl-odd',
            object: 'chat.completion',
            created,
            model,
            choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 42, completion_tokens: 3, total_tokens: 45 },
          }),
        );
      };
      switch (model) {
        case 'ok':
          if (!body.stream) return plain('all is well');
          open();
          res.write(content('all is well'));
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.end('data: [DONE]\n\n');
          return;
        case 'late':
          await wait(1500);
          return plain('worth the wait');
        case 'silent':
          return; // never answers; close() drops the socket
        case 'slow-usage': {
          // Keeps generating after the client left, then reports its usage.
          open();
          for (let i = 1; i <= 8; i++) {
            if (gone()) return;
            res.write(content(` w${i}`));
            await wait(100);
          }
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.write(chunk([], { usage: { prompt_tokens: 42, completion_tokens: 777, total_tokens: 819 } }));
          res.end('data: [DONE]\n\n');
          return;
        }
        case 'slow-nousage': {
          // One word, a pause, then 39 more; never any usage.
          open();
          res.write(content(' w1'));
          await wait(400);
          for (let i = 2; i <= 40; i++) {
            if (gone()) return;
            res.write(content(` w${i}`));
            await wait(5);
          }
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.end('data: [DONE]\n\n');
          return;
        }
        case 'nousage':
          open();
          for (const w of ['one', ' two', ' three']) res.write(content(w));
          res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
          res.end('data: [DONE]\n\n');
          return;
        case 'endless':
          // Generates until the gateway hangs up.
          open();
          for (let i = 1; !gone(); i++) {
            res.write(content(` w${i}`));
            await wait(100);
          }
          return;
        case 'big-declared':
        case 'big-chunked': {
          const size = 9 * 1024 * 1024;
          const piece = Buffer.alloc(64 * 1024, 0x20);
          res.writeHead(200, {
            'content-type': 'application/json',
            ...(model === 'big-declared' ? { 'content-length': String(size) } : {}),
          });
          for (let sent = 0; sent < size && !gone(); sent += piece.length) {
            if (!res.write(piece)) await new Promise((r) => res.once('drain', r).once('close', r));
          }
          res.end();
          return;
        }
        case 'garbage':
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html><body>Service temporarily unavailable</body></html>');
          return;
        case 'redirect': {
          const { port } = server.address();
          res.writeHead(307, { location: `http://127.0.0.1:${port}/elsewhere/v1/chat/completions` });
          res.end();
          return;
        }
        default:
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: `no such mock model ${model}`, type: 'invalid_request_error' } }));
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    seen,
    redirected,
    close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Registers provider `m` (and friends) and one model per upstream behaviour. */
async function setUp(gw, odd, extra = async () => {}) {
  await gw.adminOk('PUT', '/admin/providers/m', { kind: 'openai', base_url: odd.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  // The same upstream with a short timeout of its own for plain requests.
  await gw.adminOk('PUT', '/admin/providers/m-quick', {
    kind: 'openai',
    base_url: odd.url,
    api_key_secret: 'PROVIDER_MOCK_KEY',
    config: { first_byte_timeout_ms: 500 },
  });
  const model = (name, upstream, provider = 'm') =>
    gw.adminOk('PUT', `/admin/models/${name}`, {
      provider,
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: MAX_OUTPUT,
      encoding: 'o200k_base',
    });
  for (const upstream of ['ok', 'late', 'silent', 'slow-usage', 'slow-nousage', 'nousage', 'endless', 'big-declared', 'big-chunked', 'garbage', 'redirect']) {
    await model(`relay-${upstream}`, upstream);
  }
  await model('relay-timeout', 'silent', 'm-quick');
  await gw.adminOk('PUT', '/admin/routes/relay-timeout', { routes: [{ provider: 'm', upstream_model: 'ok' }] });
  await extra(model);
}

const post = (gw, key, body, headers = {}, signal) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal,
  });

/** Reads `res`'s body until `text` has arrived. */
async function readUntil(res, text) {
  const reader = res.body.getReader();
  let received = '';
  while (!received.includes(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    received += Buffer.from(value).toString();
  }
  return received;
}

/**
 * A raw HTTP/1.1 client on a TCP socket: writes the request, then `onOpen(socket)` and
 * `onData(received, socket)` decide how it reads and when it hangs up. Resolves with the request id
 * from the response headers once they have arrived (`id: null` if the socket closed before).
 */
function rawRequest(gw, key, body, { onOpen = () => {}, onData = () => {} } = {}) {
  const json = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const socket = net.connect(gw.port, '127.0.0.1');
    let received = '';
    let id = null;
    socket.on('connect', () => {
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
      );
      onOpen(socket);
    });
    socket.on('data', (d) => {
      received += d.toString();
      const m = /x-request-id: (\S+)/i.exec(received);
      if (m && !id) {
        id = m[1];
        resolve({ id, socket });
      }
      onData(received, socket);
    });
    socket.on('close', () => (id ? null : resolve({ id: null, socket })));
    socket.on('error', reject);
  });
}

/** The second suite's gateway (stale-reservation sweep of 4 s), started beside the first one. */
let deadlineGateway;
before(() => {
  deadlineGateway = startGatewayEarly({ vars: { PROVIDER_MOCK_KEY: 'sk-mock', STALE_RESERVATION_SECONDS: '4' } });
});
after(() => stopEarly());

describe('gateway with default deadlines', () => {
  let gw;
  let odd;
  let providers;
  let client;
  let key;
  let tenant;
  let deadPort;

  before(async () => {
    odd = await startOddUpstream();
    providers = await startMockProviders({ keys: { anthropic: 'sk-ant-mock' } });
    deadPort = await freePort(); // nothing listens here: connection refused
    gw = await startGateway({
      vars: {
        PROVIDER_MOCK_KEY: 'sk-mock',
        PROVIDER_ANTHROPIC_KEY: 'sk-ant-mock',
        UPSTREAM_CONNECT_TIMEOUT_MS: '500',
        CLIENT_ABORT_DRAIN_MS: '4000',
        ROUTE_FAILURE_THRESHOLD: '2',
      },
    });
    await setUp(gw, odd, async (model) => {
      await gw.adminOk('PUT', '/admin/providers/dead', { kind: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1` });
      await model('relay-dead', 'ok', 'dead');
      await gw.adminOk('PUT', '/admin/routes/relay-dead', { routes: [{ provider: 'm', upstream_model: 'ok' }] });
      await gw.adminOk('PUT', '/admin/providers/anth', {
        kind: 'anthropic',
        base_url: `${providers.url}/anthropic/v1`,
        api_key_secret: 'PROVIDER_ANTHROPIC_KEY',
      });
      await model('relay-claude', 'claude-sonnet-4-5', 'anth');
    });
    ({ tenant, key, client } = await gw.newTenant({ name: 'relay', credit: 100_000_000 }));
  });

  after(async () => {
    await gw?.kill();
    await odd?.close();
    await providers?.close();
  });

  describe('a client that leaves', () => {
    test("the provider is still read after the client left: the row has the provider's usage", async () => {
      const controller = new AbortController();
      const res = await post(gw, key.key, { model: 'relay-slow-usage', stream: true, messages: hello }, {}, controller.signal);
      assert.equal(res.status, 200);
      const id = res.headers.get('x-request-id');
      await readUntil(res, ' w1');
      controller.abort();
      const row = await gw.usageRow(id, 30_000);
      assert.equal(row.status, 'client_abort');
      assert.equal(row.usage_source, 'upstream');
      assert.equal(row.prompt_tokens, 42);
      assert.equal(row.completion_tokens, 777);
      // The full cost, also beyond the reservation (docs/money.md).
      assert.equal(row.cost, costOf(42, 777));
    });

    test('no usage from the provider: everything it sent is counted, forwarded or not', async () => {
      const controller = new AbortController();
      const res = await post(gw, key.key, { model: 'relay-slow-nousage', stream: true, messages: hello }, {}, controller.signal);
      const id = res.headers.get('x-request-id');
      await readUntil(res, ' w1');
      controller.abort();
      const row = await gw.usageRow(id, 30_000);
      assert.equal(row.status, 'client_abort');
      assert.equal(row.usage_source, 'local');
      // 40 pieces " wN" (at least a token each) although the client saw only the first.
      assert.ok(row.completion_tokens >= 40, `counted ${row.completion_tokens}`);
      assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
    });

    test('a provider still generating at the drain deadline: the reservation is charged', async () => {
      const controller = new AbortController();
      const res = await post(gw, key.key, { model: 'relay-endless', stream: true, messages: hello }, {}, controller.signal);
      const id = res.headers.get('x-request-id');
      await readUntil(res, ' w1');
      controller.abort();
      const row = await gw.usageRow(id, 30_000);
      assert.equal(row.status, 'client_abort');
      assert.equal(row.error_code, 'drain_deadline');
      assert.equal(row.completion_tokens, MAX_OUTPUT);
      assert.equal(row.cost, row.reserved);
      assert.ok(row.cost > 0);
    });

    test('a raw socket closed after some bytes is seen at the next chunk', async () => {
      const { id } = await rawRequest(gw, key.key, { model: 'relay-endless', stream: true, messages: hello }, {
        onData: (received, socket) => {
          if (received.includes(' w2')) socket.destroy();
        },
      });
      const row = await gw.usageRow(id, 30_000);
      assert.equal(row.status, 'client_abort');
      assert.equal(row.error_code, 'drain_deadline');
    });

    test('a half-closed socket that then hangs up is a client abort too', async () => {
      // Its own tenant: the row is found by key even if the gateway hung up before any header.
      const half = await gw.newTenant({ name: 'half-close', credit: 10_000_000 });
      const { socket } = await rawRequest(gw, half.key.key, { model: 'relay-endless', stream: true, messages: hello }, {
        onOpen: (s) => s.end(),
        onData: (received, s) => {
          if (received.includes(' w2')) s.destroy();
        },
      });
      socket.destroy();
      let rows = [];
      for (let i = 0; i < 150 && rows.length === 0; i++) {
        rows = gw.d1('SELECT * FROM usage WHERE key_id = ?', half.key.id);
        if (rows.length === 0) await sleep(200);
      }
      assert.equal(rows.length, 1);
      assert.equal(rows[0].status, 'client_abort');
    });
  });

  describe('streams without usage', () => {
    test('include_usage still ends with a usage chunk, from local counts', async () => {
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'relay-nousage', stream: true, stream_options: { include_usage: true }, messages: hello })
        .withResponse();
      let text = '';
      let usage = null;
      let last = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
        last = chunk;
      }
      assert.equal(text, 'one two three');
      assert.ok(usage, 'a usage chunk');
      assert.equal(last.usage, usage, 'the usage chunk is the last one');
      assert.deepEqual(last.choices, []);
      const row = await gw.usageRow(response.headers.get('x-request-id'));
      assert.equal(row.usage_source, 'local');
      assert.equal(usage.prompt_tokens, row.local_prompt_tokens);
      assert.equal(usage.completion_tokens, row.local_completion_tokens);
      assert.equal(usage.completion_tokens, 3);
    });
  });

  describe('plain requests: one timeout, no second route once sent', () => {
    test('a plain answer slower than the header timeout is awaited', async () => {
      // UPSTREAM_CONNECT_TIMEOUT_MS is 500 here; the answer comes after 1.5 s.
      const { data } = await client.chat.completions.create({ model: 'relay-late', messages: hello }).withResponse();
      assert.equal(data.choices[0].message.content, 'worth the wait');
    });

    test("no answer within the route's timeout: 504, not retried elsewhere, the reservation charged", async () => {
      const before = odd.seen.length;
      const res = await post(gw, key.key, { model: 'relay-timeout', messages: hello });
      assert.equal(res.status, 504);
      assert.equal(res.headers.get('x-should-retry'), 'false');
      const body = await res.json();
      assert.equal(body.error.code, 'upstream_timeout');
      assert.deepEqual(odd.seen.slice(before), ['silent'], 'the fallback route was not called');
      const row = await gw.usageRow(res.headers.get('x-request-id'));
      assert.equal(row.status, 'upstream_timeout');
      assert.equal(row.http_status, 504);
      assert.equal(row.provider, 'm-quick');
      assert.equal(row.routes_tried, null);
      assert.equal(row.completion_tokens, MAX_OUTPUT);
      assert.equal(row.cost, row.reserved);
      assert.equal(row.cost, costOf(row.local_prompt_tokens, MAX_OUTPUT));
    });

    test("timeouts do not open the route's breaker for everyone", async () => {
      // The threshold is 2 and the route already timed out once: two more, and it is still tried.
      for (let i = 0; i < 2; i++) {
        const before = odd.seen.length;
        const res = await post(gw, key.key, { model: 'relay-timeout', messages: hello });
        assert.equal(res.status, 504);
        assert.deepEqual(odd.seen.slice(before), ['silent']);
        const row = await gw.usageRow(res.headers.get('x-request-id'));
        assert.equal(row.routes_tried, null, 'no "(circuit open)" skip');
      }
    });

    test('a retry with the same Idempotency-Key replays the charged timeout, not charged twice', async () => {
      const body = { model: 'relay-timeout', messages: [{ role: 'user', content: 'idempotent timeout' }] };
      const first = await post(gw, key.key, body, { 'idempotency-key': 'timeout-1' });
      assert.equal(first.status, 504);
      const firstBody = await first.text();
      const id = first.headers.get('x-request-id');
      await gw.usageRow(id);
      const before = odd.seen.length;
      const again = await post(gw, key.key, body, { 'idempotency-key': 'timeout-1' });
      assert.equal(again.status, 504);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(await again.text(), firstBody);
      assert.equal(odd.seen.length, before, 'the provider was not called again');
      assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE idempotency_key = ?', 'timeout-1')[0].n, 1);
    });

    test('an unreachable provider falls back to the next route, free', async () => {
      const { data, response } = await client.chat.completions.create({ model: 'relay-dead', messages: hello }).withResponse();
      assert.equal(data.choices[0].message.content, 'all is well');
      const row = await gw.usageRow(response.headers.get('x-request-id'));
      assert.equal(row.status, 'ok');
      assert.equal(row.provider, 'm');
      assert.deepEqual(JSON.parse(row.routes_tried), ['dead/ok']);
    });
  });

  describe('answers the gateway cannot use', () => {
    for (const [model, what] of [
      ['relay-big-declared', 'a declared length over 8 MiB'],
      ['relay-big-chunked', 'a chunked body over 8 MiB'],
      ['relay-garbage', 'a 2xx that is not a completion'],
    ]) {
      test(`${what}: 502 upstream_unusable, the reservation charged`, async () => {
        const res = await post(gw, key.key, { model, messages: hello });
        assert.equal(res.status, 502);
        const body = await res.json();
        assert.equal(body.error.code, 'upstream_unusable');
        assert.equal(body.error.type, 'upstream_error');
        assert.equal(res.headers.get('x-should-retry'), 'false');
        const row = await gw.usageRow(res.headers.get('x-request-id'));
        assert.equal(row.status, 'upstream_unusable');
        assert.equal(row.http_status, 502);
        assert.equal(row.cost, row.reserved);
        assert.ok(row.cost > 0);
      });
    }

    test('a streamed 2xx with nothing parseable (an HTML page): upstream_unusable, the reservation charged', async () => {
      const res = await post(gw, key.key, { model: 'relay-garbage', stream: true, messages: hello });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /"code":"upstream_unusable"/);
      assert.doesNotMatch(text, /\[DONE\]/);
      const row = await gw.usageRow(res.headers.get('x-request-id'));
      assert.equal(row.status, 'upstream_unusable');
      assert.equal(row.error_code, 'upstream_unusable');
      assert.equal(row.cost, row.reserved);
      assert.ok(row.cost > 0);
    });
  });

  describe('redirects', () => {
    test('a 307 from the provider is an upstream error; its target receives nothing', async () => {
      const res = await post(gw, key.key, { model: 'relay-redirect', messages: hello });
      assert.equal(res.status, 502);
      const body = await res.json();
      assert.equal(body.error.code, 'upstream_redirect');
      assert.deepEqual(odd.redirected, []);
      const row = await gw.usageRow(res.headers.get('x-request-id'));
      assert.equal(row.status, 'upstream_error');
      assert.equal(row.cost, 0);
      const stream = await post(gw, key.key, { model: 'relay-redirect', stream: true, messages: hello });
      assert.equal(stream.status, 502);
      await stream.text();
      assert.deepEqual(odd.redirected, []);
    });
  });

  describe('idempotent replays of a non-OpenAI adapter', () => {
    test('the replay is the OpenAI body the client received, byte for byte', async () => {
      const body = { model: 'relay-claude', messages: hello };
      const first = await post(gw, key.key, body, { 'idempotency-key': 'claude-1' });
      assert.equal(first.status, 200);
      const firstBody = await first.text();
      assert.equal(JSON.parse(firstBody).object, 'chat.completion');
      await gw.usageRow(first.headers.get('x-request-id'));
      const again = await post(gw, key.key, body, { 'idempotency-key': 'claude-1' });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(await again.text(), firstBody);
    });
  });

  test('every reservation of this tenant was settled', async () => {
    for (let i = 0; i < 100 && (await gw.openReservations()) > 0; i++) await sleep(200);
    assert.equal(await gw.openReservations(), 0);
    const t = await gw.adminOk('GET', `/admin/tenants/${tenant.id}`);
    const spent = gw.d1('SELECT SUM(cost) AS c FROM usage WHERE tenant_id = ?', tenant.id)[0].c;
    assert.equal(t.balance, 100_000_000 - spent);
  });
});

describe('gateway whose stale-reservation sweep is 4 s (deadline 3 s)', () => {
  let gw;
  let odd;
  let client;
  let key;

  before(async () => {
    odd = await startOddUpstream();
    gw = await deadlineGateway; // PROVIDER_MOCK_KEY, STALE_RESERVATION_SECONDS=4
    await setUp(gw, odd);
    ({ key, client } = await gw.newTenant({ name: 'deadline', credit: 100_000_000 }));
  });

  after(async () => {
    await gw?.kill();
    await odd?.close();
  });

  test('a stream that would outlive the sweep ends cleanly at the deadline and is settled', { timeout: 60_000 }, async () => {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'relay-endless', stream: true, stream_options: { include_usage: true }, messages: hello })
      .withResponse();
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(text.startsWith(' w1'));
    assert.equal(finish, 'length');
    const row = await gw.usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'truncated');
    assert.equal(row.error_code, 'stream_deadline');
    assert.equal(row.usage_source, 'local');
    assert.equal(usage.completion_tokens, row.completion_tokens);
    assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
  });

  test('a client that does not read: the deadline still ends and settles the stream', { timeout: 60_000 }, async () => {
    const { id, socket } = await rawRequest(gw, key.key, { model: 'relay-endless', stream: true, messages: hello }, {
      // Reads the headers, then nothing more.
      onData: (received, s) => /x-request-id/i.test(received) && s.pause(),
    });
    assert.ok(id, 'response headers');
    try {
      const row = await gw.usageRow(id, 30_000);
      assert.equal(row.status, 'truncated');
      assert.equal(row.error_code, 'stream_deadline');
      assert.equal(socket.destroyed, false, 'settled while the client was still connected');
    } finally {
      socket.destroy();
    }
  });

  test('a plain request without a route timeout stops at the deadline, charged', { timeout: 60_000 }, async () => {
    const quick = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 60_000 });
    let id = null;
    await assert.rejects(quick.chat.completions.create({ model: 'relay-silent', messages: hello }), (e) => {
      assert.equal(e.status, 504, String(e));
      assert.equal(e.code, 'upstream_timeout');
      id = e.headers?.get?.('x-request-id') ?? e.headers?.['x-request-id'];
      return true;
    });
    const row = await gw.usageRow(id);
    assert.equal(row.status, 'upstream_timeout');
    assert.equal(row.cost, row.reserved);
  });
});
