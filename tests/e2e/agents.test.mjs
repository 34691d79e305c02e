// End to end for the agent APIs: OpenAI's Responses API (`POST /v1/responses`, the `openai` SDK's
// `responses.create`) and Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`,
// the `@anthropic-ai/sdk` client), both translated to the chat pipeline: an Anthropic provider (its
// native wire, mock-providers.mjs) and an OpenAI-compatible one (the `hf` mock). Each answer is
// checked against its usage row (api, tokens, cost) and the tenant's balance change.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway } from './harness.mjs';
import { OPENAI_USAGE, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', hf: 'hf_mock' };
const WEATHER = {
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
};

let gw;
let mock;
let client;
let anthropic;
let key;

const balance = async () => {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).balance;
};

/** The usage row of a request, checked for its api, tokens and cost, and the balance it took. */
async function checkRow(requestId, api, [prompt, , completion], before) {
  const row = await gw.usageRow(requestId);
  assert.equal(row.api, api);
  assert.equal(row.status, 'ok');
  assert.equal(row.prompt_tokens, prompt);
  assert.equal(row.completion_tokens, completion);
  assert.equal(row.cost, costOf(prompt, completion));
  assert.equal(before - (await balance()), row.cost, 'the balance went down by the row cost');
  return row;
}

before(async () => {
  mock = await startMockProviders({ keys: KEYS });
  gw = await startGateway({ vars: { PROVIDER_ANTHROPIC_KEY: KEYS.anthropic, PROVIDER_HF_KEY: KEYS.hf } });
  await gw.adminOk('PUT', '/admin/providers/anthropic', {
    kind: 'anthropic',
    base_url: `${mock.url}/anthropic/v1`,
    api_key_secret: 'PROVIDER_ANTHROPIC_KEY',
  });
  await gw.adminOk('PUT', '/admin/providers/hf', { kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' });
  for (const [name, upstream] of [
    ['anthropic', 'claude-sonnet-4-5'],
    ['hf', 'tgi'],
  ]) {
    await gw.adminOk('PUT', `/admin/models/${name}-model`, {
      provider: name,
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: 777,
    });
  }
  let issued;
  ({ client, key: issued } = await gw.newTenant({ name: 'agents', credit: 100_000_000 }));
  key = issued.key;
  anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('POST /v1/responses (openai SDK)', () => {
  test('plain: output_text, usage, the usage row with api=responses', async () => {
    const before = await balance();
    const { data, response } = await client.responses.create({ model: 'hf-model', input: 'hello there' }).withResponse();
    assert.equal(data.object, 'response');
    assert.equal(data.status, 'completed');
    assert.equal(data.model, 'hf-model');
    assert.equal(data.output_text, 'mock reply to hello there');
    const expected = OPENAI_USAGE.hf(5);
    assert.equal(data.usage.input_tokens, expected[0]);
    assert.equal(data.usage.output_tokens, expected[2]);
    const row = await checkRow(response.headers.get('x-request-id'), 'responses', expected, before);
    assert.equal(response.headers.get('x-tollgate-cost'), String(row.cost));
  });

  test('stream: text deltas and response.completed with the usage', async () => {
    const before = await balance();
    const { data: stream, response } = await client.responses
      .create({ model: 'anthropic-model', input: [{ role: 'user', content: 'stream this please' }], stream: true })
      .withResponse();
    let text = '';
    let completed;
    const types = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.equal(text, 'mock reply to stream this please');
    const expected = OPENAI_USAGE.anthropic(6);
    assert.equal(completed.usage.input_tokens, expected[0]);
    assert.equal(completed.usage.output_tokens, expected[2]);
    const row = await checkRow(response.headers.get('x-request-id'), 'responses', expected, before);
    assert.equal(row.stream, 1);
  });

  test('tools: a function_call item', async () => {
    const data = await client.responses.create({
      model: 'hf-model',
      input: 'weather in Paris?',
      tools: [{ type: 'function', ...WEATHER }],
    });
    const call = data.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(data.output));
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), { location: 'Paris' });
  });

  test('an error is OpenAI-shaped: unknown model 404, a field Tollgate cannot serve 400', async () => {
    await assert.rejects(client.responses.create({ model: 'no-such-model', input: 'x' }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.error?.code ?? e.code, 'model_not_found');
      return true;
    });
    await assert.rejects(client.responses.create({ model: 'hf-model', input: 'x', previous_response_id: 'resp_1' }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.param, 'previous_response_id');
      return true;
    });
  });
});

describe('POST /v1/messages (@anthropic-ai/sdk)', () => {
  for (const model of ['anthropic-model', 'hf-model']) {
    const name = model.replace('-model', '');
    test(`${name}: messages.create, its usage and the row with api=messages`, async () => {
      const before = await balance();
      const { data, response } = await anthropic.messages
        .create({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hello there' }] })
        .withResponse();
      assert.equal(data.type, 'message');
      assert.equal(data.role, 'assistant');
      assert.equal(data.model, model);
      assert.equal(data.stop_reason, 'end_turn');
      assert.equal(data.content[0].text, 'mock reply to hello there');
      const expected = OPENAI_USAGE[name](5);
      assert.equal(data.usage.output_tokens, expected[2]);
      await checkRow(response.headers.get('x-request-id'), 'messages', expected, before);
    });
  }

  test('messages.stream: text, final message and usage', async () => {
    const before = await balance();
    const stream = anthropic.messages.stream({ model: 'hf-model', max_tokens: 100, messages: [{ role: 'user', content: 'stream this please' }] });
    let text = '';
    stream.on('text', (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    assert.equal(text, 'mock reply to stream this please');
    assert.equal(final.content[0].text, text);
    assert.equal(final.stop_reason, 'end_turn');
    const expected = OPENAI_USAGE.hf(6);
    assert.equal(final.usage.output_tokens, expected[2]);
    const { response } = await stream.withResponse();
    await checkRow(response.headers.get('x-request-id'), 'messages', expected, before);
  });

  test('tool use, and the tool result sent back', async () => {
    const tools = [{ name: WEATHER.name, description: WEATHER.description, input_schema: WEATHER.parameters }];
    const messages = [{ role: 'user', content: 'weather in Paris?' }];
    const first = await anthropic.messages.create({ model: 'anthropic-model', max_tokens: 100, tools, messages });
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use.input, { location: 'Paris' });
    const second = await anthropic.messages.create({
      model: 'anthropic-model',
      max_tokens: 100,
      tools,
      messages: [
        ...messages,
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '15 degrees' }] },
      ],
    });
    assert.equal(second.content[0].text, 'mock reply to tool result 15 degrees');
  });

  test('countTokens answers the local count and charges nothing', async () => {
    const before = await balance();
    const short = await anthropic.messages.countTokens({ model: 'hf-model', messages: [{ role: 'user', content: 'hi' }] });
    const long = await anthropic.messages.countTokens({
      model: 'hf-model',
      messages: [{ role: 'user', content: 'hi '.repeat(200) }],
    });
    assert.ok(short.input_tokens > 0);
    assert.ok(long.input_tokens > short.input_tokens + 100, `${short.input_tokens} < ${long.input_tokens}`);
    assert.equal(await balance(), before);
  });

  test('errors are Anthropic-shaped: bad key 401 authentication_error, unknown model 404', async () => {
    const bad = new Anthropic({ apiKey: 'tg-nope', baseURL: gw.url, maxRetries: 0 });
    await assert.rejects(bad.messages.create({ model: 'hf-model', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.error?.type, 'error');
      assert.equal(e.error?.error?.type, 'authentication_error');
      return true;
    });
    const res = await fetch(`${gw.url}/v1/messages?beta=true`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'no-such-model', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 404);
    const body = await res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'not_found_error');
    assert.equal(body.request_id, res.headers.get('x-request-id'));
  });
});
