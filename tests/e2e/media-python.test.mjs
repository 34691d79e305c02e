// The official OpenAI Python SDK on the media endpoints (docs/media.md): embeddings.create, images.generate,
// audio.speech.with_streaming_response.create streamed to a file, audio.transcriptions.create with a WAV made by
// the script (tests/e2e/python_media_check.py), against the mocks of mock-providers.mjs; each call billed exactly.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, startGateway } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

const python = join(ROOT, '.tools', 'py', 'bin', 'python');
let gw;
let mock;
let dir;

before(async () => {
  mock = await startMockProviders({ keys: {} });
  gw = await startGateway();
  dir = mkdtempSync(join(tmpdir(), 'tg-media-py-'));
  await gw.adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: `${mock.url}/openai/v1` });
  await gw.adminOk('PUT', '/admin/models/emb-openai', { provider: 'openai', upstream_model: 'text-embedding-3-small', input_price: 2_000_000, output_price: 0, kind: 'embedding' });
  await gw.adminOk('PUT', '/admin/models/dall-e-3', {
    provider: 'openai',
    input_price: 0,
    output_price: 0,
    kind: 'image',
    image_prices: [{ size: '1024x1024', quality: 'standard', price: 40_000 }],
  });
  await gw.adminOk('PUT', '/admin/models/tts-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'tts', character_price: 15_000_000 });
  await gw.adminOk('PUT', '/admin/models/whisper-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'stt', minute_price: 6000 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('openai (Python): embeddings, images, streamed speech to a file, transcription of a WAV — each billed exactly', async () => {
  assert.ok(existsSync(python), 'run scripts/setup.sh first: .tools/py is missing');
  const t = await gw.newTenant({ name: 'py-media', credit: 1_000_000 });
  // The mock holds the second half of each speech answer until released: release it while the script runs.
  const release = setInterval(() => mock.releaseSpeech(), 50);
  let stdout;
  try {
    ({ stdout } = await promisify(execFile)(python, [join(ROOT, 'tests', 'e2e', 'python_media_check.py'), `${gw.url}/v1`, t.key.key, dir], {
      timeout: 60_000,
    }));
  } finally {
    clearInterval(release);
  }
  const seen = JSON.parse(stdout.trim().split('\n').pop());
  // The file holds exactly the provider's audio.
  assert.equal(seen.speech_bytes, mock.speechBytes(seen.speech_input).toString('latin1'));

  const expected = {
    embeddings: { api: 'embeddings', unit: 'tokens', quantity: 6, cost: 12 },
    images: { api: 'images', unit: 'images', quantity: 1, cost: 40_000 },
    speech: { api: 'speech', unit: 'characters', quantity: seen.speech_input.length, cost: seen.speech_input.length * 15 },
    transcription: { api: 'transcriptions', unit: 'seconds', quantity: 10, cost: 1000 },
  };
  let total = 0;
  for (const [call, want] of Object.entries(expected)) {
    assert.ok(seen[call], `${call}: x-request-id`);
    const row = await gw.usageRow(seen[call]);
    assert.deepEqual({ api: row.api, unit: row.unit, quantity: row.quantity, cost: row.cost }, want, call);
    assert.equal(row.status, 'ok', call);
    total += row.cost;
  }
  // Five rows in all: the embeddings call made with the SDK's default encoding too (1 input, 3 tokens, 6).
  const auth = { authorization: `Bearer ${t.key.key}` };
  let rows = [];
  for (let i = 0; i < 150 && rows.length < 5; i++) {
    if (i) await new Promise((r) => setTimeout(r, 100));
    rows = (await (await fetch(`${gw.url}/v1/usage`, { headers: auth })).json()).data;
  }
  assert.equal(rows.length, 5);
  assert.equal(rows.reduce((sum, r) => sum + r.cost, 0), total + 6);
  const bal = await fetch(`${gw.url}/v1/balance`, { headers: auth });
  assert.equal((await bal.json()).balance, 1_000_000 - total - 6);
});
