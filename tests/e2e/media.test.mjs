// Media endpoints end to end (docs/media.md): the built worker under wrangler dev, mock providers on 127.0.0.1
// speaking each provider's media wire format (mock-providers.mjs), and the official `openai` npm SDK as the client.
// Each call checks its answer, its usage row (api, unit, quantity, unit_price, cost) and the tenant's balance.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { toFile } from 'openai';
import { startGateway } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

const KEYS = { gemini: 'AIza-mock', azure: 'azure-mock-key', hf: 'hf_mock' };
const TOKEN_PRICE = 2_000_000; // 2 micro-units per token
const CHAR_PRICE = 15_000_000; // tts-1: 15 micro-units per character
const IDLE_MS = 3000; // the gateway's UPSTREAM_TIMEOUT_MS in this file
const FIRST_BYTE_MS = 1500; // the `slow` provider's first_byte_timeout_ms

let gw;
let mock;
let t; // { tenant, key, client }

const vectorOf = (input, i) => [i + 0.5, -String(input).length / 4, 0.25];

async function balance() {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${t.key.key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).balance;
}

/** The usage row of the last response `raw` (an SDK `withResponse()` answer), after settlement. */
async function rowOf(response) {
  const id = response.headers.get('x-request-id');
  assert.ok(id, 'x-request-id header');
  return gw.usageRow(id);
}

before(async () => {
  mock = await startMockProviders({ keys: KEYS });
  gw = await startGateway({
    // UPSTREAM_TIMEOUT_MS is a media stream's idle timeout (as a chat stream's): the stall tests wait it out.
    vars: { PROVIDER_GEMINI_KEY: KEYS.gemini, PROVIDER_AZURE_KEY: KEYS.azure, PROVIDER_HF_KEY: KEYS.hf, UPSTREAM_TIMEOUT_MS: String(IDLE_MS) },
  });
  const providers = {
    openai: { kind: 'openai', base_url: `${mock.url}/openai/v1` },
    azure: { kind: 'azure', base_url: `${mock.url}/azure`, api_key_secret: 'PROVIDER_AZURE_KEY', config: { api_version: '2024-10-21' } },
    gemini: { kind: 'gemini', base_url: `${mock.url}/gemini/v1beta`, api_key_secret: 'PROVIDER_GEMINI_KEY' },
    ollama: { kind: 'ollama', base_url: `${mock.url}/ollama` },
    tei: { kind: 'huggingface', base_url: `${mock.url}/tei`, api_key_secret: 'PROVIDER_HF_KEY' },
    hfrouter: { kind: 'huggingface', base_url: `${mock.url}/hf/v1`, api_key_secret: 'PROVIDER_HF_KEY' },
  };
  for (const [name, p] of Object.entries(providers)) {
    await gw.adminOk('PUT', `/admin/providers/${name}`, p);
    const m = await gw.adminOk('PUT', `/admin/models/emb-${name}`, {
      provider: name,
      upstream_model: 'text-embedding-3-small',
      input_price: TOKEN_PRICE,
      output_price: 0,
      kind: 'embedding',
    });
    assert.equal(m.kind, 'embedding');
  }
  const tts = await gw.adminOk('PUT', '/admin/models/tts-1', {
    provider: 'openai',
    input_price: 0,
    output_price: 0,
    kind: 'tts',
    character_price: CHAR_PRICE,
  });
  assert.equal(tts.character_price, CHAR_PRICE);
  await gw.adminOk('PUT', '/admin/models/whisper-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'stt', minute_price: 6000 });
  await gw.adminOk('PUT', '/admin/models/gpt-4o-transcribe', {
    provider: 'openai',
    input_price: 2_500_000,
    audio_input_price: 6_000_000,
    output_price: 10_000_000,
    kind: 'stt',
  });
  await gw.adminOk('PUT', '/admin/models/dall-e-3', {
    provider: 'openai',
    input_price: 0,
    output_price: 0,
    kind: 'image',
    image_prices: [
      { size: '1024x1024', quality: 'standard', price: 40_000 },
      { size: '1024x1024', quality: 'hd', price: 80_000 },
    ],
  });
  await gw.adminOk('PUT', '/admin/models/gpt-image-1', {
    provider: 'openai',
    input_price: 5_000_000,
    image_input_price: 10_000_000,
    output_price: 40_000_000,
    kind: 'image',
  });
  await gw.adminOk('PUT', '/admin/models/gpt-4o-mini-tts', { provider: 'openai', input_price: 2_000_000, output_price: 10_000_000, kind: 'tts' });
  // The mock's silent-* models answer headers and then nothing, stall-* a first part and then nothing.
  await gw.adminOk('PUT', '/admin/providers/slow', { kind: 'openai', base_url: `${mock.url}/openai/v1`, config: { first_byte_timeout_ms: FIRST_BYTE_MS } });
  for (const name of ['silent-tts', 'stall-tts']) {
    await gw.adminOk('PUT', `/admin/models/${name}`, { provider: 'slow', input_price: 0, output_price: 0, kind: 'tts', character_price: CHAR_PRICE });
  }
  for (const name of ['silent-image', 'stall-image']) {
    await gw.adminOk('PUT', `/admin/models/${name}`, {
      provider: 'slow',
      input_price: 0,
      output_price: 0,
      kind: 'image',
      image_prices: [{ size: '*', quality: '*', price: 40_000 }],
    });
  }
  await gw.adminOk('PUT', '/admin/models/chat-model', { provider: 'openai', input_price: 1, output_price: 1 });
  t = await gw.newTenant({ name: 'media', credit: 10_000_000 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('embeddings', () => {
  test('float vectors, the usage row in tokens and the balance', async () => {
    const before = await balance();
    const input = ['The food was delicious', 'and the waiter...'];
    const { data, response } = await t.client.embeddings
      .create({ model: 'emb-openai', input, encoding_format: 'float' })
      .withResponse();
    assert.equal(data.object, 'list');
    assert.equal(data.model, 'emb-openai');
    assert.deepEqual(
      data.data.map((d) => d.embedding),
      input.map(vectorOf),
    );
    assert.deepEqual(data.usage, { prompt_tokens: 6, total_tokens: 6 });
    const up = mock.requests.at(-1);
    assert.equal(up.url, '/openai/v1/embeddings');
    assert.equal(up.body.model, 'text-embedding-3-small');
    assert.equal(up.body.encoding_format, 'float');
    const row = await rowOf(response);
    assert.equal(row.api, 'embeddings');
    assert.equal(row.unit, 'tokens');
    assert.equal(row.quantity, 6);
    assert.equal(row.unit_price, null);
    assert.equal(row.prompt_tokens, 6);
    assert.equal(row.usage_source, 'upstream');
    assert.equal(row.cost, 12);
    assert.equal(response.headers.get('x-tollgate-cost'), '12');
    assert.equal(await balance(), before - 12);
  });

  test('base64 (the SDK default, as LobeChat\'s knowledge base sends it with dimensions) decodes to the same floats', async () => {
    // The SDK asks for base64 when no encoding_format is given and decodes the little-endian f32 bytes.
    const chunks = ['chunk one of a document', 'chunk two'];
    const data = await t.client.embeddings.create({ model: 'emb-openai', input: chunks, dimensions: 1024 });
    assert.equal(mock.requests.at(-1).body.dimensions, 1024);
    assert.deepEqual(
      data.data.map((d) => Array.from(d.embedding)),
      chunks.map(vectorOf),
    );
    // And a raw client sees base64 strings.
    const raw = await fetch(`${gw.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'emb-openai', input: 'x', encoding_format: 'base64' }),
    });
    assert.equal(raw.status, 200);
    const body = await raw.json();
    const bytes = Buffer.from(body.data[0].embedding, 'base64');
    assert.deepEqual(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 3)), vectorOf('x', 0));
  });

  for (const [name, url, prompt, source] of [
    ['azure', /^\/azure\/openai\/deployments\/text-embedding-3-small\/embeddings\?api-version=2024-10-21$/, 3, 'upstream'],
    ['ollama', /^\/ollama\/api\/embed$/, 5, 'upstream'],
    ['gemini', /^\/gemini\/v1beta\/models\/text-embedding-3-small:batchEmbedContents/, null, 'local'],
    ['tei', /^\/tei\/embed$/, null, 'local'],
    ['hfrouter', /^\/hf\/v1\/embeddings$/, 3, 'upstream'],
  ]) {
    test(`${name}: its wire format, billed on its figures or the local count`, async () => {
      const before = await balance();
      const { data, response } = await t.client.embeddings
        .create({ model: `emb-${name}`, input: 'hello world', encoding_format: 'float' })
        .withResponse();
      assert.deepEqual(data.data[0].embedding, vectorOf('hello world', 0));
      assert.match(mock.requests.at(-1).url, url);
      const row = await rowOf(response);
      assert.equal(row.api, 'embeddings');
      assert.equal(row.usage_source, source);
      if (prompt !== null) assert.equal(row.prompt_tokens, prompt);
      assert.ok(row.prompt_tokens > 0);
      assert.equal(data.usage.prompt_tokens, row.prompt_tokens);
      assert.equal(row.cost, row.prompt_tokens * 2);
      assert.equal(await balance(), before - row.cost);
    });
  }

  test('bad input is an OpenAI 400 naming the param; nothing is charged', async () => {
    const before = await balance();
    await assert.rejects(t.client.embeddings.create({ model: 'emb-openai', input: '' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.type, 'invalid_request_error');
      assert.equal(e.error.param, 'input');
      return true;
    });
    await assert.rejects(t.client.embeddings.create({ model: 'emb-openai', input: 'x', encoding_format: 'int8' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.param, 'encoding_format');
      return true;
    });
    assert.equal(await balance(), before);
  });

  test('a model of another kind is refused on the endpoint (400 model_kind_mismatch)', async () => {
    await assert.rejects(t.client.embeddings.create({ model: 'chat-model', input: 'x' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.code, 'model_kind_mismatch');
      assert.equal(e.error.param, 'model');
      return true;
    });
    await assert.rejects(t.client.embeddings.create({ model: 'no-such-model', input: 'x' }), (e) => e.status === 404);
  });

  test('/v1/models lists each model\'s kind', async () => {
    const list = await t.client.models.list();
    const kinds = Object.fromEntries(list.data.map((m) => [m.id, m.kind]));
    assert.equal(kinds['emb-openai'], 'embedding');
    assert.equal(kinds['tts-1'], 'tts');
    assert.equal(kinds['chat-model'], 'chat');
  });
});

describe('speech', () => {
  test('the audio streams through as it arrives, billed per character (LobeChat\'s TTS call)', async () => {
    const before = await balance();
    const input = 'Hello there, how are you?';
    // LobeChat's OpenAI TTS: audio.speech.create({ input, model, voice, speed }), mp3 by default.
    const { data: resp, response } = await t.client.audio.speech
      .create({ model: 'tts-1', input, voice: 'alloy', speed: 1 })
      .withResponse();
    assert.equal(resp.headers.get('content-type'), 'audio/mpeg');
    const reader = resp.body.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0);
    assert.equal(mock.speechDone, false, 'the first bytes reached the client before the provider finished');
    mock.releaseSpeech();
    const parts = [Buffer.from(first.value)];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(Buffer.from(value));
    }
    assert.deepEqual(Buffer.concat(parts), mock.speechBytes(input));
    const up = mock.requests.at(-1);
    assert.equal(up.url, '/openai/v1/audio/speech');
    assert.deepEqual([up.body.model, up.body.voice, up.body.input, up.body.response_format], ['tts-1', 'alloy', input, 'mp3']);
    const row = await rowOf(response);
    assert.equal(row.api, 'speech');
    assert.equal(row.unit, 'characters');
    assert.equal(row.quantity, input.length);
    assert.equal(row.unit_price, CHAR_PRICE);
    assert.equal(row.cost, input.length * 15);
    assert.equal(row.status, 'ok');
    assert.equal(await balance(), before - row.cost);
    // The tenant's request listing (JSON and CSV) says what was metered.
    const listed = await fetch(`${gw.url}/v1/usage?model=tts-1`, { headers: { authorization: `Bearer ${t.key.key}` } });
    const item = (await listed.json()).data.find((r) => r.request_id === row.request_id);
    assert.deepEqual([item.api, item.unit, item.quantity, item.unit_price], ['speech', 'characters', input.length, CHAR_PRICE]);
    const csv = await (await fetch(`${gw.url}/v1/usage?model=tts-1&format=csv`, { headers: { authorization: `Bearer ${t.key.key}` } })).text();
    const [header, ...lines] = csv.trim().split(/\r?\n/);
    const cols = header.split(',');
    const line = lines.map((l) => l.split(',')).find((l) => l[cols.indexOf('request_id')] === row.request_id);
    assert.equal(line[cols.indexOf('unit')], 'characters');
    assert.equal(line[cols.indexOf('quantity')], String(input.length));
  });

  test('a wav request gets audio/wav; bad input is an OpenAI 400', async () => {
    const p = t.client.audio.speech.create({ model: 'tts-1', input: 'hi', voice: 'alloy', response_format: 'wav' });
    const resp = await p;
    mock.releaseSpeech();
    assert.equal(resp.headers.get('content-type'), 'audio/wav');
    assert.deepEqual(Buffer.from(await resp.arrayBuffer()), mock.speechBytes('hi'));
    await assert.rejects(t.client.audio.speech.create({ model: 'tts-1', input: '', voice: 'alloy' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.param, 'input');
      return true;
    });
    await assert.rejects(t.client.audio.speech.create({ model: 'emb-openai', input: 'x', voice: 'alloy' }), (e) => {
      assert.equal(e.error.code, 'model_kind_mismatch');
      return true;
    });
  });
});

/** A PCM WAV file of `seconds` of silence (16 kHz, mono, 16-bit): its duration is exact. */
function wav(seconds) {
  const data = Buffer.alloc(16_000 * 2 * seconds);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(16_000, 24);
  h.writeUInt32LE(32_000, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

describe('transcription', () => {
  test('per minute: the provider is asked for verbose_json, the client gets its format (json, text, verbose_json)', async () => {
    for (const format of ['json', 'text', 'verbose_json']) {
      const before = await balance();
      const file = await toFile(wav(2), 'speech.wav', { type: 'audio/wav' });
      const { data, response } = await t.client.audio.transcriptions
        .create({ file, model: 'whisper-1', response_format: format })
        .withResponse();
      assert.equal(mock.forms.at(-1).format, 'verbose_json');
      assert.equal(mock.forms.at(-1).model, 'whisper-1');
      if (format === 'text') assert.equal(String(data).trim(), 'Hello world.');
      else assert.equal(data.text, 'Hello world.');
      if (format === 'verbose_json') assert.equal(data.duration, 9.2);
      const row = await rowOf(response);
      assert.equal(row.api, 'transcriptions');
      assert.equal(row.unit, 'seconds');
      assert.equal(row.quantity, 10);
      assert.equal(row.unit_price, 6000);
      assert.equal(row.usage_source, 'upstream');
      assert.equal(row.cost, 1000); // 10 s at 6,000 per minute
      assert.equal(await balance(), before - 1000);
    }
  });

  test('on tokens (LobeChat\'s STT call): reported tokens, audio input priced apart', async () => {
    const before = await balance();
    // LobeChat's OpenAI STT: audio.transcriptions.create({ file, model }) with a recorded webm blob.
    const file = await toFile(Buffer.from('webm-bytes'.repeat(100)), 'recording.webm', { type: 'audio/webm' });
    const { data, response } = await t.client.audio.transcriptions
      .create({ file, model: 'gpt-4o-transcribe' })
      .withResponse();
    assert.equal(data.text, 'Hello world.');
    assert.equal(mock.forms.at(-1).format, 'json');
    const row = await rowOf(response);
    assert.equal(row.unit, 'tokens');
    assert.equal(row.quantity, 24);
    assert.equal(row.audio_input_tokens, 15);
    assert.equal(row.prompt_tokens, 20);
    assert.equal(row.completion_tokens, 4);
    // 5 text × 2.5 + 15 audio × 6 + 4 output × 10 = 142.5, rounded up once.
    assert.equal(row.cost, 143);
    assert.equal(await balance(), before - 143);
  });

  test('stream=true relays the provider\'s events and bills the done event\'s usage', async () => {
    const before = await balance();
    const file = await toFile(wav(1), 'a.wav', { type: 'audio/wav' });
    const { data: stream, response } = await t.client.audio.transcriptions
      .create({ file, model: 'gpt-4o-transcribe', stream: true })
      .withResponse();
    let text = '';
    let done = null;
    for await (const ev of stream) {
      if (ev.type === 'transcript.text.delta') text += ev.delta;
      if (ev.type === 'transcript.text.done') done = ev;
    }
    assert.equal(text, 'Hello world.');
    assert.equal(done.text, 'Hello world.');
    assert.equal(mock.forms.at(-1).stream, 'true');
    const row = await rowOf(response);
    assert.equal(row.cost, 143);
    assert.equal(row.audio_input_tokens, 15);
    assert.equal(await balance(), before - 143);
  });

  test('translations; bad form input is an OpenAI 400; a file over 25 MiB is 413', async () => {
    const file = await toFile(wav(1), 'a.wav', { type: 'audio/wav' });
    const tr = await t.client.audio.translations.create({ file, model: 'whisper-1' });
    assert.equal(tr.text, 'Hello world.');
    assert.match(mock.forms.at(-1).url, /\/audio\/translations$/);
    await assert.rejects(
      t.client.audio.transcriptions.create({ file: await toFile(wav(1), 'a.wav'), model: 'whisper-1', response_format: 'docx' }),
      (e) => e.status === 400 && e.error.param === 'response_format',
    );
    const big = await toFile(Buffer.alloc(25 * 1024 * 1024 + 1), 'big.wav', { type: 'audio/wav' });
    await assert.rejects(t.client.audio.transcriptions.create({ file: big, model: 'whisper-1' }), (e) => {
      assert.equal(e.status, 413);
      return true;
    });
  });
});

describe('images', () => {
  test('generation per image from the table (size × quality)', async () => {
    const before = await balance();
    const { data, response } = await t.client.images
      .generate({ model: 'dall-e-3', prompt: 'a lighthouse', size: '1024x1024', quality: 'hd', response_format: 'b64_json' })
      .withResponse();
    assert.equal(data.data.length, 1);
    assert.equal(data.data[0].b64_json, 'aW1hZ2U=');
    const row = await rowOf(response);
    assert.equal(row.api, 'images');
    assert.equal(row.unit, 'images');
    assert.equal(row.quantity, 1);
    assert.equal(row.unit_price, 80_000);
    assert.equal(row.cost, 80_000);
    assert.equal(await balance(), before - 80_000);
    await assert.rejects(
      t.client.images.generate({ model: 'dall-e-3', prompt: 'x', size: '512x512', quality: 'hd' }),
      (e) => e.status === 400 && e.error.code === 'unsupported_value',
    );
    await assert.rejects(t.client.images.generate({ model: 'dall-e-3', prompt: 'x', n: 11 }), (e) => e.status === 400 && e.error.param === 'n');
  });

  test('edit (multipart) on tokens: image input tokens priced apart', async () => {
    const before = await balance();
    const image = await toFile(Buffer.from('\x89PNG fake image'), 'in.png', { type: 'image/png' });
    const { data, response } = await t.client.images.edit({ model: 'gpt-image-1', image, prompt: 'add a hat' }).withResponse();
    assert.equal(data.data.length, 1);
    assert.equal(mock.forms.at(-1).files, 1);
    assert.equal(mock.forms.at(-1).model, 'gpt-image-1');
    const row = await rowOf(response);
    assert.equal(row.unit, 'tokens');
    assert.equal(row.image_input_tokens, 40);
    assert.equal(row.prompt_tokens, 50);
    assert.equal(row.completion_tokens, 272);
    // 10 text × 5 + 40 image × 10 + 272 output × 40
    assert.equal(row.cost, 11_330);
    assert.equal(await balance(), before - 11_330);
  });
});

/** The JSON events of an SSE body. */
function sseEvents(text) {
  return text
    .split(/\n\n/)
    .map((block) => block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'))
    .filter(Boolean)
    .map((d) => JSON.parse(d));
}

const post = (path, body, headers = {}) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.key.key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

describe('streamed images and speech', () => {
  test('images.generate stream: partial and completed events relayed, billed on the completed event\'s usage', async () => {
    const before = await balance();
    const { data: stream, response } = await t.client.images
      .generate({ model: 'gpt-image-1', prompt: 'a lighthouse at dusk', size: '1024x1024', quality: 'low', stream: true, partial_images: 2 })
      .withResponse();
    assert.match(response.headers.get('content-type'), /^text\/event-stream/);
    const seen = [];
    for await (const ev of stream) seen.push(ev);
    assert.deepEqual(
      seen.map((e) => e.type),
      ['image_generation.partial_image', 'image_generation.partial_image', 'image_generation.completed'],
    );
    assert.deepEqual(seen.slice(0, 2).map((e) => e.partial_image_index), [0, 1]);
    assert.equal(seen[2].b64_json, 'aW1hZ2U=');
    const up = mock.requests.at(-1);
    assert.deepEqual([up.body.stream, up.body.partial_images, up.body.model], [true, 2, 'gpt-image-1']);
    const row = await rowOf(response);
    assert.deepEqual([row.api, row.unit, row.status, row.usage_source], ['images', 'tokens', 'ok', 'upstream']);
    assert.deepEqual([row.prompt_tokens, row.image_input_tokens, row.completion_tokens], [50, 40, 272]);
    // 10 text × 5 + 40 image × 10 + 272 output × 40
    assert.equal(row.cost, 11_330);
    assert.equal(await balance(), before - 11_330);
  });

  test('a streamed per-image request is billed per completed image (n = 2); edits stream image_edit.* events', async () => {
    const before = await balance();
    const res = await post('/v1/images/generations', { model: 'dall-e-3', prompt: 'two cats', n: 2, size: '1024x1024', quality: 'standard', stream: true });
    assert.equal(res.status, 200);
    const events = sseEvents(await res.text());
    assert.deepEqual(events.map((e) => e.type), ['image_generation.completed', 'image_generation.completed']);
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.unit, row.quantity, row.unit_price, row.cost], ['images', 2, 40_000, 80_000]);
    assert.equal(await balance(), before - 80_000);

    const image = await toFile(Buffer.from('\x89PNG fake image'), 'in.png', { type: 'image/png' });
    const { data: stream, response } = await t.client.images
      .edit({ model: 'gpt-image-1', image, prompt: 'add a hat', stream: true, partial_images: 1 })
      .withResponse();
    const types = [];
    for await (const ev of stream) types.push(ev.type);
    assert.deepEqual(types, ['image_edit.partial_image', 'image_edit.completed']);
    assert.equal(mock.forms.at(-1).stream, true);
    const edit = await rowOf(response);
    assert.deepEqual([edit.api, edit.status, edit.completion_tokens, edit.cost], ['images', 'ok', 272, 11_330]);
  });

  test('speech stream_format sse: speech.audio.delta / done relayed, a token model billed on the done usage', async () => {
    const before = await balance();
    const input = 'Streamed speech, please.';
    const res = await post('/v1/audio/speech', { model: 'gpt-4o-mini-tts', input, voice: 'alloy', stream_format: 'sse' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const events = sseEvents(await res.text());
    assert.deepEqual(events.map((e) => e.type), ['speech.audio.delta', 'speech.audio.delta', 'speech.audio.done']);
    const audio = Buffer.concat(events.filter((e) => e.audio).map((e) => Buffer.from(e.audio, 'base64')));
    assert.deepEqual(audio, mock.speechBytes(input));
    assert.equal(mock.requests.at(-1).body.stream_format, 'sse');
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.api, row.unit, row.usage_source], ['speech', 'tokens', 'upstream']);
    assert.deepEqual([row.prompt_tokens, row.completion_tokens], [input.length, 101]);
    assert.equal(row.cost, input.length * 2 + 101 * 10);
    assert.equal(await balance(), before - row.cost);
    // A character-priced model streams events too, billed on its characters.
    const tts = await post('/v1/audio/speech', { model: 'tts-1', input: 'hi there', voice: 'alloy', stream_format: 'sse' });
    assert.equal(sseEvents(await tts.text()).at(-1).type, 'speech.audio.done');
    const r2 = await gw.usageRow(tts.headers.get('x-request-id'));
    assert.deepEqual([r2.unit, r2.quantity, r2.cost], ['characters', 8, 120]);
  });
});

describe('media stream timeouts (the chat streams\' clocks)', () => {
  test('a provider that never sends its first byte: 504 upstream_timeout, charged the reservation, no retry', async () => {
    const before = await balance();
    const input = 'nobody answers';
    const res = await post('/v1/audio/speech', { model: 'silent-tts', input, voice: 'alloy' });
    assert.equal(res.status, 504);
    assert.equal(res.headers.get('x-should-retry'), 'false');
    const body = await res.json();
    assert.equal(body.error.code, 'upstream_timeout');
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.status, row.unit, row.quantity], ['upstream_timeout', 'characters', input.length]);
    assert.equal(row.cost, input.length * 15);
    assert.equal(await balance(), before - row.cost);
    // An image stream likewise.
    const img = await post('/v1/images/generations', { model: 'silent-image', prompt: 'p', stream: true });
    assert.equal(img.status, 504);
    assert.equal((await img.json()).error.code, 'upstream_timeout');
    const r2 = await gw.usageRow(img.headers.get('x-request-id'));
    assert.deepEqual([r2.status, r2.cost], ['upstream_timeout', 40_000]);
  });

  test('a provider that stalls mid-body: the body is cut, the row says upstream_timeout, billed by the rules', async () => {
    const before = await balance();
    const input = 'half an answer';
    const res = await post('/v1/audio/speech', { model: 'stall-tts', input, voice: 'alloy' });
    assert.equal(res.status, 200);
    // The first part arrives, then the body ends when the gateway's idle timeout cuts it.
    const got = Buffer.from(await res.arrayBuffer());
    assert.deepEqual(got, mock.speechBytes(input).subarray(0, 32));
    const row = await gw.usageRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.status, row.error_code], ['upstream_timeout', 'upstream_timeout']);
    // Speech is billed on its input once the provider started producing it.
    assert.equal(row.cost, input.length * 15);
    // An image stream cut after a partial image, before any completed image: the reservation (one image).
    const img = await post('/v1/images/generations', { model: 'stall-image', prompt: 'p', stream: true, partial_images: 1 });
    assert.equal(img.status, 200);
    // The event stream ends with an error event (the SDKs raise it) rather than a silent end.
    const events = sseEvents(await img.text());
    assert.deepEqual(events.map((e) => e.type), ['image_generation.partial_image', 'error']);
    assert.equal(events[1].error.code, 'upstream_timeout');
    const r2 = await gw.usageRow(img.headers.get('x-request-id'));
    assert.deepEqual([r2.status, r2.error_code, r2.cost], ['upstream_timeout', 'upstream_timeout', 40_000]);
    assert.equal(await balance(), before - row.cost - 40_000);
  });
});
