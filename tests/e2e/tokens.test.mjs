// End to end: POST /v1/tokens/count on the built worker (wrangler dev, local D1 + KV).
// Expected counts are the ones OpenAI's cookbook "How to count tokens with tiktoken" verified
// against the OpenAI API (usage.prompt_tokens) for the same messages and tools.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startGateway } from './harness.mjs';

let gw;
let key;

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_current_weather',
      description: 'Get the current weather in a given location',
      parameters: {
        type: 'object',
        properties: {
          location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
          unit: { type: 'string', description: 'The unit of temperature to return', enum: ['celsius', 'fahrenheit'] },
        },
        required: ['location'],
      },
    },
  },
];
const MESSAGES = [
  { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
  { role: 'user', content: "What's the weather like in San Francisco?" },
];

const adminOk = (...args) => gw.adminOk(...args);

async function count(body, k = key.key, method = 'POST') {
  const res = await fetch(`${gw.url}/v1/tokens/count`, {
    method,
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    body: method === 'POST' ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: await res.json() };
}

before(async () => {
  gw = await startGateway();
  // The provider is never called: counting is local.
  await adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: 'http://127.0.0.1:9/v1' });
  for (const [name, upstream] of [
    ['gpt-4o', 'gpt-4o'],
    ['gpt-4', 'gpt-4'],
    ['my-llama', 'llama-3.1-8b-instruct'],
    ['my-mystery', 'mystery-7b'],
  ]) {
    await adminOk('PUT', `/admin/models/${name}`, { provider: 'openai', upstream_model: upstream, input_price: 1, output_price: 1 });
  }
  const t = await gw.newTenant({ name: 'counter', credit: 1000 });
  key = t.key;
  key.tenant = t.tenant.id;
});

after(async () => {
  await gw?.kill();
});

test('counts messages and tools like the OpenAI API', async () => {
  const o200k = await count({ model: 'gpt-4o', messages: MESSAGES, tools: TOOLS });
  assert.equal(o200k.status, 200, JSON.stringify(o200k.json));
  assert.deepEqual(o200k.json, { object: 'tokens.count', model: 'gpt-4o', prompt_tokens: 101, encoding: 'o200k_base' });
  const cl100k = await count({ model: 'gpt-4', messages: MESSAGES, tools: TOOLS });
  assert.equal(cl100k.json.prompt_tokens, 105);
  assert.equal(cl100k.json.encoding, 'cl100k_base');
  // Without tools: 3 per message + role + content, + 3 priming.
  const plain = await count({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello world' }] });
  assert.equal(plain.json.prompt_tokens, 9);
});

test('the built-in echo model counts with o200k_base', async () => {
  const r = await count({ model: 'tollgate-echo', messages: [{ role: 'user', content: 'hello world' }] });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.prompt_tokens, 9);
  assert.equal(r.json.encoding, 'o200k_base');
});

test('open models count with their own tokenizer and chat template', async () => {
  // Hugging Face tokenizers on Llama 3's tokenizer.json, its chat template rendered by jinja2.
  const r = await count({ model: 'my-llama', messages: [{ role: 'user', content: 'Hello!' }] });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.encoding, 'llama3');
  assert.equal(r.json.prompt_tokens, 12);
});

test('models without a local tokenizer get a 400 that says so', async () => {
  const r = await count({ model: 'my-mystery', messages: MESSAGES });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'tokenizer_unavailable');
  assert.equal(r.json.error.param, 'model');
  assert.match(r.json.error.message, /no local tokenizer/);
  // An operator can declare the encoding, and then it counts.
  await adminOk('PUT', '/admin/models/my-mystery', {
    provider: 'openai', upstream_model: 'mystery-7b', input_price: 1, output_price: 1, encoding: 'qwen3',
  });
  const declared = await count({ model: 'my-mystery', messages: [{ role: 'user', content: 'Hello!' }] });
  assert.equal(declared.status, 200);
  assert.equal(declared.json.encoding, 'qwen3');
  assert.equal(declared.json.prompt_tokens, 10); // Qwen 3's template, as jinja2 renders it
});

test('errors: bad key, unknown model, bad body, wrong method; the balance is untouched', async () => {
  assert.equal((await count({ model: 'gpt-4o', messages: MESSAGES }, 'tg-nope')).status, 401);
  const unknown = await count({ model: 'gpt-9', messages: MESSAGES });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.error.code, 'model_not_found');
  const empty = await count({ model: 'gpt-4o', messages: [] });
  assert.equal(empty.status, 400);
  assert.equal(empty.json.error.param, 'messages');
  assert.equal((await count(null, key.key, 'GET')).status, 405);
  const tenant = await adminOk('GET', `/admin/tenants/${key.tenant}`);
  assert.equal(tenant.balance, 1000);
  assert.equal(tenant.reserved, 0);
});
