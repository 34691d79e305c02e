// A LobeChat session through one Tollgate key (docs/media.md, "LobeChat"): the requests a LobeChat deployment sends
// to its OpenAI provider, in the shapes of LobeChat's OpenAI runtime (lobehub/lobe-chat
// src/libs/agent-runtime/utils/openaiCompatibleFactory: chat with `stream: true`,
// `stream_options: {include_usage: true}`, `user` and an `Accept: */*` header; models.list; embeddings.create
// `{...payload, user}` for a knowledge-base file's chunks with `dimensions`; images.generate reading `data[].url`)
// and of lobehub/lobe-tts (OpenAITTS: a JSON `{input, model, voice}` POST to audio/speech; OpenAISTT: a form with
// `file` named `<ms>.webm` and `model`). Then the usage report (JSON and CSV) shows each line with its api and unit,
// and the balance is the credit minus the sum of the costs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { startGateway, startMockOpenAI } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

const CREDIT = 5_000_000;
let gw;
let chatMock;
let media;
let key;
let client;

before(async () => {
  chatMock = await startMockOpenAI({ chunkDelayMs: 5 });
  media = await startMockProviders({ keys: {} });
  gw = await startGateway();
  await gw.adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: chatMock.url });
  await gw.adminOk('PUT', '/admin/providers/media', { kind: 'openai', base_url: `${media.url}/openai/v1` });
  await gw.adminOk('PUT', '/admin/models/gpt-4o-mini', { provider: 'openai', input_price: 150_000, output_price: 600_000 });
  await gw.adminOk('PUT', '/admin/models/text-embedding-3-small', { provider: 'media', input_price: 20_000, output_price: 0, kind: 'embedding' });
  await gw.adminOk('PUT', '/admin/models/tts-1', { provider: 'media', input_price: 0, output_price: 0, kind: 'tts', character_price: 15_000_000 });
  await gw.adminOk('PUT', '/admin/models/whisper-1', { provider: 'media', input_price: 0, output_price: 0, kind: 'stt', minute_price: 6000 });
  await gw.adminOk('PUT', '/admin/models/dall-e-3', {
    provider: 'media',
    input_price: 0,
    output_price: 0,
    kind: 'image',
    image_prices: [
      { size: '1024x1024', quality: 'standard', price: 40_000 },
      { size: '1024x1024', quality: 'hd', price: 80_000 },
    ],
  });
  const t = await gw.newTenant({ name: 'lobechat', credit: CREDIT });
  key = t.key.key;
  // LobeChat's runtime: `new OpenAI({ apiKey, baseURL })` with the provider's base URL.
  client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await gw?.kill();
  await chatMock?.close();
  await media?.close();
});

/** A streamed chat completion read to its end, as LobeChat does: the text and the usage chunk. */
async function readReply(stream) {
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, usage };
}

test('a LobeChat session: models, chat, knowledge-base embeddings, TTS, STT, text-to-image — then the usage report', async () => {
  const user = 'lobe-user-7f3a';
  const ids = {};

  // 1. The model list (LobeChat filters out embedding / tts / whisper / dall-e ids for its chat picker; the kinds
  //    say which model serves what).
  const models = await client.models.list();
  const kinds = Object.fromEntries(models.data.map((m) => [m.id, m.kind]));
  assert.deepEqual(
    ['gpt-4o-mini', 'text-embedding-3-small', 'tts-1', 'whisper-1', 'dall-e-3'].map((m) => kinds[m]),
    ['chat', 'embedding', 'tts', 'stt', 'image'],
  );

  // 2. Chat, streamed with usage and the user id, as the runtime's chat() sends it.
  const { data: stream, response: chatResp } = await client.chat.completions
    .create(
      {
        model: 'gpt-4o-mini',
        messages: [{ role: 'system', content: 'You are LobeChat.' }, { role: 'user', content: 'hello lobe' }],
        temperature: 1,
        top_p: 1,
        frequency_penalty: 0,
        presence_penalty: 0,
        stream: true,
        stream_options: { include_usage: true },
        user,
      },
      { headers: { Accept: '*/*' } },
    )
    .withResponse();
  const { text, usage } = await readReply(stream);
  assert.equal(text, 'mock reply to hello lobe');
  assert.equal(usage.prompt_tokens, 42);
  const up = chatMock.requests.at(-1).body;
  assert.equal(up.user, user);
  assert.deepEqual(up.stream_options, { include_usage: true });
  ids.chat = chatResp.headers.get('x-request-id');

  // 3. Knowledge base: a file's chunks embedded in one call, with dimensions and user (the SDK asks base64).
  const chunks = ['LobeChat knowledge base, chunk 1.', 'Chunk 2 of the uploaded file.', 'Chunk 3.'];
  const { data: emb, response: embResp } = await client.embeddings
    .create({ model: 'text-embedding-3-small', input: chunks, dimensions: 1024, user })
    .withResponse();
  assert.equal(emb.data.length, 3);
  const embUp = media.requests.at(-1).body;
  assert.deepEqual([embUp.dimensions, embUp.user, embUp.input.length], [1024, user, 3]);
  ids.embeddings = embResp.headers.get('x-request-id');

  // 4. TTS, as lobe-tts's OpenAITTS sends it.
  const sentence = 'Hello from LobeChat text to speech.';
  const release = setInterval(() => media.releaseSpeech(), 50);
  let tts;
  try {
    tts = await fetch(`${gw.url}/v1/audio/speech`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ input: sentence, model: 'tts-1', voice: 'alloy' }),
    });
    assert.equal(tts.status, 200);
    assert.deepEqual(Buffer.from(await tts.arrayBuffer()), media.speechBytes(sentence));
  } finally {
    clearInterval(release);
  }
  assert.equal(tts.headers.get('content-type'), 'audio/mpeg');
  ids.speech = tts.headers.get('x-request-id');

  // 5. STT, as lobe-tts's OpenAISTT sends a recording: a form with the file and the model.
  const form = new FormData();
  form.append('file', new File([Buffer.from('webm recording '.repeat(200))], `${Date.now()}.webm`, { type: 'audio/webm' }));
  form.append('model', 'whisper-1');
  const stt = await fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: form });
  assert.equal(stt.status, 200);
  assert.equal((await stt.json()).text, 'Hello world.');
  ids.transcriptions = stt.headers.get('x-request-id');

  // 6. Text to image: images.generate(payload), LobeChat reads data[].url.
  const { data: img, response: imgResp } = await client.images
    .generate({ model: 'dall-e-3', prompt: 'a lobe-finned fish', n: 1, quality: 'standard', size: '1024x1024', style: 'vivid' })
    .withResponse();
  assert.deepEqual(img.data.map((o) => o.url), ['https://images.mock/img-0.png']);
  ids.images = imgResp.headers.get('x-request-id');

  // Every line settled, with its api and unit.
  const want = {
    chat: ['chat', 'tokens'],
    embeddings: ['embeddings', 'tokens'],
    speech: ['speech', 'characters'],
    transcriptions: ['transcriptions', 'seconds'],
    images: ['images', 'images'],
  };
  const rows = {};
  for (const [call, id] of Object.entries(ids)) {
    assert.ok(id, `${call}: x-request-id`);
    rows[call] = await gw.usageRow(id);
    assert.equal(rows[call].status, 'ok', call);
  }
  assert.deepEqual([rows.speech.quantity, rows.speech.cost], [sentence.length, sentence.length * 15]);
  assert.deepEqual([rows.transcriptions.quantity, rows.transcriptions.cost], [10, 1000]);
  assert.deepEqual([rows.images.quantity, rows.images.unit_price, rows.images.cost], [1, 40_000, 40_000]);
  assert.equal(rows.embeddings.prompt_tokens, 9);

  // The tenant's usage report: one line per call with its api and unit; the CSV says the same.
  const auth = { authorization: `Bearer ${key}` };
  const listed = (await (await fetch(`${gw.url}/v1/usage`, { headers: auth })).json()).data;
  assert.equal(listed.length, 5);
  for (const [call, [api, unit]] of Object.entries(want)) {
    const line = listed.find((r) => r.request_id === ids[call]);
    assert.deepEqual([line.api, line.unit, line.cost], [api, unit, rows[call].cost], call);
  }
  const csv = await (await fetch(`${gw.url}/v1/usage?format=csv`, { headers: auth })).text();
  const [header, ...records] = csv.trim().split(/\r?\n/);
  const cols = header.split(',');
  assert.equal(records.length, 5);
  let csvTotal = 0;
  for (const [call, [api, unit]] of Object.entries(want)) {
    const rec = records.map((l) => l.split(',')).find((l) => l[cols.indexOf('request_id')] === ids[call]);
    assert.deepEqual([rec[cols.indexOf('api')], rec[cols.indexOf('unit')]], [api, unit], call);
    csvTotal += Number(rec[cols.indexOf('cost')]);
  }
  // The balance is the credit minus the sum of the costs, to the micro-unit.
  const total = Object.values(rows).reduce((sum, r) => sum + r.cost, 0);
  assert.equal(csvTotal, total);
  const balance = (await (await fetch(`${gw.url}/v1/balance`, { headers: auth })).json()).balance;
  assert.equal(balance, CREDIT - total);
});

test('a LobeChat vision chat with its plugin tools, an aborted reply, and what the user center shows', async () => {
  const t = await gw.newTenant({ name: 'lobechat-vision', credit: CREDIT });
  const lobe = new OpenAI({ apiKey: t.key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const png = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
  // LobeChat's chat with an uploaded image and its built-in web-browsing plugin as a tool.
  const tools = [{
    type: 'function',
    function: {
      name: 'lobe-web-browsing____search____builtin',
      description: 'a web search',
      parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'] },
    },
  }];
  const body = (text) => ({
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are LobeChat.' },
      { role: 'user', content: [{ type: 'text', text }, { type: 'image_url', image_url: { url: png, detail: 'auto' } }] },
    ],
    tools,
    stream: true,
    stream_options: { include_usage: true },
    user: 'lobe-user-vision',
  });
  const { data: stream, response } = await lobe.chat.completions.create(body('what is in this picture'), { headers: { Accept: '*/*' } }).withResponse();
  const { text, usage } = await readReply(stream);
  assert.equal(text, 'mock reply to what is in this picture');
  assert.ok(usage && usage.total_tokens > 0);
  const up = chatMock.requests.at(-1).body;
  assert.deepEqual([up.tools[0].function.name, up.messages[1].content[1].image_url.url], [tools[0].function.name, png]);
  const done = await gw.usageRow(response.headers.get('x-request-id'));
  assert.equal(done.status, 'ok');

  // The user presses "stop" after the first words of a long reply.
  const controller = new AbortController();
  const long = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ');
  const { data: cut, response: cutResp } = await lobe.chat.completions
    .create(body(long), { headers: { Accept: '*/*' }, signal: controller.signal })
    .withResponse();
  await assert.rejects(async () => {
    for await (const chunk of cut) {
      if (chunk.choices[0]?.delta?.content) controller.abort();
    }
    if (controller.signal.aborted) throw new Error('aborted');
  });
  const aborted = await gw.usageRow(cutResp.headers.get('x-request-id'));
  // Charged once, for the prompt and what the provider produced (`ok` when the provider's end came
  // before the gateway saw the client leave).
  assert.ok(['client_abort', 'ok'].includes(aborted.status), JSON.stringify(aborted));
  assert.ok(aborted.cost > 0 && aborted.prompt_tokens > 0, JSON.stringify(aborted));

  // The user center (the console's JSON API with a session from the key): both requests with their
  // costs, and the balance is the credit minus them, to the micro-unit.
  const login = await fetch(`${gw.url}/console/api/login`, {
    method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: t.key.key }),
  });
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const consoleGet = async (path) => (await fetch(`${gw.url}/console/api/${path}`, { headers: { cookie } })).json();
  const log = await consoleGet('usage');
  assert.deepEqual(
    log.data.map((r) => [r.request_id, r.cost]).sort(),
    [[done.request_id, done.cost], [aborted.request_id, aborted.cost]].sort(),
  );
  const me = await consoleGet('me');
  assert.equal(me.balance.balance, CREDIT - done.cost - aborted.cost);
  assert.equal(me.balance.month.cost, done.cost + aborted.cost);
});
