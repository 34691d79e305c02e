// A media stream whose client stops reading is settled at the request's wall-clock deadline (below the
// stale-reservation sweep), as a chat stream is (docs/media.md, "Timeouts"): the row says truncated /
// stream_deadline and bills what the stream's bill says. STALE_RESERVATION_SECONDS=4 puts the deadline 3 s after
// the start; the mock's stall-* speech model sends a first part and then nothing, and UPSTREAM_TIMEOUT_MS (the idle
// cut) is left at its default, far beyond.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startGateway } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

let gw;
let mock;

before(async () => {
  mock = await startMockProviders({ keys: {} });
  gw = await startGateway({ vars: { STALE_RESERVATION_SECONDS: '4' } });
  await gw.adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: `${mock.url}/openai/v1` });
  await gw.adminOk('PUT', '/admin/models/stall-tts', { provider: 'openai', input_price: 0, output_price: 0, kind: 'tts', character_price: 15_000_000 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

test('a speech stream nobody finishes is settled at the deadline (truncated, stream_deadline), billed its characters', { timeout: 60_000 }, async () => {
  const t = await gw.newTenant({ name: 'deadline', credit: 1_000_000 });
  const input = 'a client that stops reading';
  const res = await fetch(`${gw.url}/v1/audio/speech`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.key.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stall-tts', input, voice: 'alloy' }),
  });
  assert.equal(res.status, 200);
  // The body is left unread; the provider is silent; only the deadline can end the request.
  const row = await gw.usageRow(res.headers.get('x-request-id'), 30_000);
  assert.deepEqual([row.status, row.error_code], ['truncated', 'stream_deadline']);
  assert.deepEqual([row.unit, row.quantity, row.cost], ['characters', input.length, input.length * 15]);
  const bal = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${t.key.key}` } });
  assert.equal((await bal.json()).balance, 1_000_000 - input.length * 15);
  await res.body.cancel();
});
