// Checks the mock upstream of harness.mjs against the official OpenAI SDK, so e2e tests can trust it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { startMockOpenAI } from './harness.mjs';

let mock;
let client;
before(async () => {
  mock = await startMockOpenAI({ chunkDelayMs: 1 });
  client = new OpenAI({ baseURL: mock.url, apiKey: 'sk-mock', maxRetries: 0, timeout: 2000 });
});
after(async () => {
  await mock?.close();
});

const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hello there' }], ...extra });

test('plain completion with usage', async () => {
  const r = await client.chat.completions.create(ask('gpt-4o-mini'));
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'gpt-4o-mini');
  assert.equal(r.choices[0].message.content, 'mock reply to hello there');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: 42, completion_tokens: 5, total_tokens: 47 });
  const last = mock.requests.at(-1);
  assert.equal(last.headers.authorization, 'Bearer sk-mock');
  assert.equal(last.body.model, 'gpt-4o-mini');
});

test('stream with include_usage: role chunk, one chunk per word, finish, usage', async () => {
  mock.promptTokens = 7;
  try {
    const stream = await client.chat.completions.create(
      ask('gpt-4o', { stream: true, stream_options: { include_usage: true } }),
    );
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'mock reply to hello there');
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.deepEqual(chunks.at(-1).usage, { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    assert.equal(chunks.length, 1 + 5 + 1 + 1);
  } finally {
    mock.promptTokens = 42;
  }
});

test('stream without include_usage and mock-nousage send no usage', async () => {
  for (const [model, opts] of [['gpt-4o', {}], ['mock-nousage', { stream_options: { include_usage: true } }]]) {
    const stream = await client.chat.completions.create(ask(model, { stream: true, ...opts }));
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.every((c) => !c.usage), model);
  }
  const plain = await client.chat.completions.create(ask('mock-nousage'));
  assert.equal(plain.usage, undefined);
});

test('failure modes: mock-500, mock-400, mock-hang, mock-drop', async () => {
  await assert.rejects(client.chat.completions.create(ask('mock-500')), (e) => e.status === 500);
  await assert.rejects(
    client.chat.completions.create(ask('mock-400')),
    (e) => e.status === 400 && e.error?.message === 'bad param from upstream' && e.type === 'invalid_request_error',
  );
  await assert.rejects(
    new OpenAI({ baseURL: mock.url, apiKey: 'k', maxRetries: 0, timeout: 300 }).chat.completions.create(ask('mock-hang')),
    (e) => e.constructor.name === 'APIConnectionTimeoutError',
  );
  const stream = await client.chat.completions.create(ask('mock-drop', { stream: true }));
  const got = [];
  await assert.rejects(async () => {
    for await (const c of stream) got.push(c);
  });
  assert.equal(got.length, 3);
});

test('setBehavior overrides and resets; GET /models lists models', async () => {
  mock.setBehavior((req, res) => {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}');
    return true;
  });
  await assert.rejects(client.chat.completions.create(ask('gpt-4o')), (e) => e.status === 503);
  mock.setBehavior(null);
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === 'gpt-4o-mini'));
});
