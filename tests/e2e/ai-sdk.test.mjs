// The Vercel AI SDK (`ai` with @ai-sdk/openai, @ai-sdk/anthropic, @ai-sdk/openai-compatible) pointed at the
// gateway, unmodified, as its users write it (docs/clients.md): generateText / streamText on chat completions
// (`openai.chat(model)`), on the Responses API (`openai(model)`, the provider's default), on /v1/messages
// (`createAnthropic`) and through `createOpenAICompatible`; a tool with a zod schema over several steps;
// structured output (generateObject: `response_format` / `text.format` json_schema, strict); embed /
// embedMany; an abort mid-stream. For each: the answer and the usage the SDK reports against the gateway's
// usage rows, and the balance moving by exactly the rows' cost. Errors (invalid key, out of credit, a rate
// limit) must reach the SDK as its APICallError with the gateway's status and message.
//
// Each call carries its own `X-Session-Id` (the SDK's per-call `headers`), which is how the test finds the
// rows of a call (several for a multi-step tool loop).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, embed, embedMany, generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import { randomToken, sleep, startGateway, startMockOpenAI } from './harness.mjs';
import { USAGE, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', azure: 'azure-mock', openai: 'sk-openai-mock', hf: 'hf_mock' };
const CREDIT = 100_000_000;
// What the structured-output mock answers (a JSON object matching WEATHER_SCHEMA).
const WEATHER_JSON = { city: 'Paris', temperature: 21, conditions: ['sunny', 'mild'] };

let gw;
let mock;
let chat;
let key;
let tenantId;
let openai;
let anthropic;

const session = () => `ai-sdk-${randomToken(6)}`;

const balance = () => gw.balanceOf(key);

/** The `n` usage rows of a session (oldest first), once all of them are written. */
const sessionRows = (sid, n) => gw.sessionRows(key, tenantId, sid, n);

/**
 * Runs `call(sid)` and checks what it cost: `n` rows with status ok, each billed at the model's prices
 * for its tokens, and the balance down by exactly their sum. Returns { result, rows }.
 */
async function billed(n, call) {
  const sid = session();
  const before = await balance();
  const result = await call(sid, { 'X-Session-Id': sid });
  const rows = await sessionRows(sid, n);
  for (const row of rows) {
    assert.equal(row.status, 'ok', JSON.stringify(row));
    if (row.api !== 'embeddings') assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
  }
  const total = rows.reduce((s, r) => s + r.cost, 0);
  assert.equal(before - (await balance()), total, 'the balance went down by the rows’ cost');
  return { result, rows };
}

/** The SDK's usage equals the gateway's rows (summed over the steps of a call). */
function sameUsage(usage, rows) {
  const prompt = rows.reduce((s, r) => s + r.prompt_tokens, 0);
  const completion = rows.reduce((s, r) => s + r.completion_tokens, 0);
  assert.deepEqual(
    [usage.inputTokens, usage.outputTokens, usage.totalTokens],
    [prompt, completion, prompt + completion],
    `SDK usage ${JSON.stringify(usage)} vs rows ${JSON.stringify(rows.map((r) => [r.prompt_tokens, r.completion_tokens]))}`,
  );
}

/** streamText on `model`, billed as one request: the text is the mock's reply and the stream's usage = the row. */
async function streamedOnce(model, prompt) {
  const streamed = await billed(1, async (sid, headers) => {
    const r = streamText({ model, prompt, headers, maxRetries: 0 });
    let text = '';
    for await (const t of r.textStream) text += t;
    return { text, usage: await r.usage };
  });
  assert.equal(streamed.result.text, `mock reply to ${prompt}`);
  sameUsage(streamed.result.usage, streamed.rows);
}

/** The weather tool over two steps on `model` (call, result, answer): two rows, totalUsage = their sum. */
async function weatherInTwoSteps(model) {
  const { result, rows } = await billed(2, (sid, headers) =>
    generateText({
      model,
      prompt: 'what is the weather in Paris?',
      tools: { get_weather: weatherTool() },
      stopWhen: stepCountIs(3),
      headers,
      maxRetries: 0,
    }),
  );
  assert.equal(result.steps.length, 2);
  assert.equal(result.text, 'mock reply to tool result {"location":"Paris","temperature":21}');
  sameUsage(result.totalUsage, rows);
  return result;
}

before(async () => {
  mock = await startMockProviders({ keys: KEYS, chunkDelayMs: 2 });
  chat = await startMockOpenAI({ chunkDelayMs: 2 });
  // The plain chat upstream answers structured-output requests with JSON, and "slow" prompts with a long
  // stream (for the abort test), else its default.
  chat.setBehavior(async ({ body }, res) => {
    if (body?.response_format?.type === 'json_schema') {
      const content = JSON.stringify(WEATHER_JSON);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-json',
          object: 'chat.completion',
          created: 1,
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 42, completion_tokens: 17, total_tokens: 59 },
        }),
      );
      return true;
    }
    const last = body?.messages?.at(-1)?.content;
    if (body?.stream && JSON.stringify(last ?? '').includes('slow')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1, model: body.model, choices, ...extra })}\n\n`;
      const WORDS = 40;
      for (let i = 0; i < WORDS; i++) {
        res.write(chunk([{ index: 0, delta: { content: `w${i} ` }, finish_reason: null }]));
        await sleep(25);
      }
      res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
      res.write(chunk([], { usage: { prompt_tokens: 42, completion_tokens: WORDS, total_tokens: 42 + WORDS } }));
      res.end('data: [DONE]\n\n');
      return true;
    }
    return false;
  });
  gw = await startGateway({
    vars: { PROVIDER_ANTHROPIC_KEY: KEYS.anthropic, PROVIDER_AZURE_KEY: KEYS.azure, PROVIDER_OPENAI_KEY: KEYS.openai, PROVIDER_HF_KEY: KEYS.hf },
  });
  // A chat-only provider with tool calls: the Responses and Messages APIs are translated for it.
  await gw.adminOk('PUT', '/admin/providers/hf', { kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' });
  await gw.adminOk('PUT', '/admin/providers/anthropic', { kind: 'anthropic', base_url: `${mock.url}/anthropic/v1`, api_key_secret: 'PROVIDER_ANTHROPIC_KEY' });
  // Azure: chat completions on the deployment path, the Responses API natively on its v1 path.
  await gw.adminOk('PUT', '/admin/providers/azure', { kind: 'azure', base_url: `${mock.url}/azure`, api_key_secret: 'PROVIDER_AZURE_KEY', config: { deployment: 'dep-1' } });
  await gw.adminOk('PUT', '/admin/providers/media', { kind: 'openai', base_url: `${mock.url}/openai/v1`, api_key_secret: 'PROVIDER_OPENAI_KEY' });
  // A plain OpenAI-compatible chat server: the Responses API is translated to chat for it.
  await gw.adminOk('PUT', '/admin/providers/plain', { kind: 'openai', base_url: chat.url });
  const prices = { input_price: PRICE_IN, output_price: PRICE_OUT };
  await gw.adminOk('PUT', '/admin/models/gpt-azure', { provider: 'azure', upstream_model: 'gpt-5', ...prices });
  await gw.adminOk('PUT', '/admin/models/claude', { provider: 'anthropic', upstream_model: 'claude-sonnet-4-5', ...prices, max_output_tokens: 777 });
  await gw.adminOk('PUT', '/admin/models/plain', { provider: 'plain', upstream_model: 'gpt-4o-mini', ...prices });
  await gw.adminOk('PUT', '/admin/models/hf-model', { provider: 'hf', upstream_model: 'tgi', ...prices });
  await gw.adminOk('PUT', '/admin/models/text-embedding-3-small', { provider: 'media', input_price: 20_000, output_price: 0, kind: 'embedding' });
  const t = await gw.newTenant({ name: 'ai-sdk', credit: CREDIT });
  key = t.key.key;
  tenantId = t.tenant.id;
  // As the AI SDK's docs write it: the provider pointed at another base URL with another key.
  openai = createOpenAI({ baseURL: `${gw.url}/v1`, apiKey: key });
  anthropic = createAnthropic({ baseURL: `${gw.url}/v1`, apiKey: key });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
  await chat?.close();
});

const weatherTool = () =>
  tool({
    description: 'The weather in a city',
    inputSchema: z.object({ location: z.string().describe('the city') }),
    execute: async ({ location }) => ({ location, temperature: 21 }),
  });

describe('chat completions: openai.chat(model)', () => {
  test('generateText: the answer, its usage = the row, the balance', async () => {
    const { result, rows } = await billed(1, (sid, headers) =>
      generateText({ model: openai.chat('gpt-azure'), system: 'You are terse.', prompt: 'hello ai sdk', headers, maxRetries: 0 }),
    );
    assert.equal(result.text, 'mock reply to hello ai sdk');
    assert.equal(result.finishReason, 'stop');
    sameUsage(result.usage, rows);
    assert.equal(rows[0].prompt_tokens, USAGE.azure(5).prompt_tokens);
    assert.equal(result.response.headers['x-request-id'], rows[0].request_id);
  });

  test('streamText: deltas, usage from the stream = the row', async () => {
    const { result, rows } = await billed(1, async (sid, headers) => {
      const r = streamText({ model: openai.chat('gpt-azure'), prompt: 'stream from ai sdk', headers, maxRetries: 0 });
      let text = '';
      let deltas = 0;
      for await (const t of r.textStream) {
        text += t;
        deltas += 1;
      }
      return { text, deltas, usage: await r.usage, finishReason: await r.finishReason };
    });
    assert.equal(result.text, 'mock reply to stream from ai sdk');
    assert.ok(result.deltas >= 5, `${result.deltas} deltas`);
    assert.equal(result.finishReason, 'stop');
    sameUsage(result.usage, rows);
  });

  test('a tool with a zod schema over two steps: call, result, answer; two rows, totalUsage = their sum', async () => {
    const result = await weatherInTwoSteps(openai.chat('gpt-azure'));
    assert.deepEqual(result.steps[0].toolCalls.map((c) => [c.toolName, c.input]), [['get_weather', { location: 'Paris' }]]);
    assert.deepEqual(result.steps[0].toolResults[0].output, { location: 'Paris', temperature: 21 });
  });

  test('generateObject: response_format json_schema (strict) reaches the provider; the object parses', async () => {
    const { result, rows } = await billed(1, (sid, headers) =>
      generateObject({
        model: openai.chat('plain'),
        schema: z.object({ city: z.string(), temperature: z.number(), conditions: z.array(z.string()) }),
        prompt: 'weather in Paris as JSON',
        headers,
        maxRetries: 0,
      }),
    );
    assert.deepEqual(result.object, WEATHER_JSON);
    sameUsage(result.usage, rows);
    const sent = chat.requests.at(-1).body;
    assert.equal(sent.response_format.type, 'json_schema');
    assert.equal(sent.response_format.json_schema.strict, true);
    // The keys in the order the schema declared them (the model writes the object in that order).
    assert.deepEqual(Object.keys(sent.response_format.json_schema.schema.properties), ['city', 'temperature', 'conditions']);
  });
});

describe('Responses API: openai(model)', () => {
  for (const [label, model, api] of [
    ['native (Azure v1)', 'gpt-azure', 'responses'],
    ['translated to chat', 'plain', 'responses'],
  ]) {
    test(`generateText and streamText, ${label}`, async () => {
      const plain = await billed(1, (sid, headers) => generateText({ model: openai(model), prompt: 'hello responses', headers, maxRetries: 0 }));
      assert.equal(plain.result.text, 'mock reply to hello responses');
      assert.equal(plain.rows[0].api, api);
      sameUsage(plain.result.usage, plain.rows);

      await streamedOnce(openai(model), 'stream responses');
    });
  }

  for (const [label, model] of [
    ['native', 'gpt-azure'],
    ['translated to chat', 'hf-model'],
  ]) {
    test(`a tool over two steps (function_call_output sent back), ${label}`, async () => {
      await weatherInTwoSteps(openai(model));
    });
  }

  test('generateObject: text.format json_schema translated to response_format', async () => {
    const { result, rows } = await billed(1, (sid, headers) =>
      generateObject({
        model: openai('plain'),
        schema: z.object({ city: z.string(), temperature: z.number(), conditions: z.array(z.string()) }),
        prompt: 'weather in Paris as JSON',
        headers,
        maxRetries: 0,
      }),
    );
    assert.deepEqual(result.object, WEATHER_JSON);
    sameUsage(result.usage, rows);
    const format = chat.requests.at(-1).body.response_format;
    assert.equal(format.type, 'json_schema');
    // The keys in the order the schema declared them (the model writes the object in that order).
    assert.deepEqual(Object.keys(format.json_schema.schema.properties), ['city', 'temperature', 'conditions']);
  });
});

describe('Anthropic: createAnthropic({ baseURL })', () => {
  test('generateText and streamText on /v1/messages', async () => {
    const plain = await billed(1, (sid, headers) =>
      generateText({ model: anthropic('claude'), system: 'You are terse.', prompt: 'hello claude', headers, maxRetries: 0 }),
    );
    assert.equal(plain.result.text, 'mock reply to hello claude');
    assert.equal(plain.rows[0].api, 'messages');
    sameUsage(plain.result.usage, plain.rows);

    await streamedOnce(anthropic('claude'), 'stream claude');
  });

  for (const [label, model] of [
    ['native', 'claude'],
    ['translated to chat', 'hf-model'],
  ]) {
    test(`a tool over two steps (tool_result sent back), ${label}`, async () => {
      await weatherInTwoSteps(anthropic(model));
    });
  }
});

describe('createOpenAICompatible', () => {
  test('generateText and streamText with includeUsage', async () => {
    const compat = createOpenAICompatible({ name: 'tollgate', baseURL: `${gw.url}/v1`, apiKey: key, includeUsage: true });
    const plain = await billed(1, (sid, headers) => generateText({ model: compat.chatModel('plain'), prompt: 'hello compat', headers, maxRetries: 0 }));
    assert.equal(plain.result.text, 'mock reply to hello compat');
    sameUsage(plain.result.usage, plain.rows);

    await streamedOnce(compat.chatModel('plain'), 'stream compat');
  });
});

describe('embeddings', () => {
  test('embed and embedMany: the vectors, usage.tokens = the row', async () => {
    const model = openai.embedding('text-embedding-3-small');
    const one = await billed(1, (sid, headers) => embed({ model, value: 'sunny day at the beach', headers, maxRetries: 0 }));
    // The mock's vector for input i: [i + 0.5, -length / 4, 0.25].
    assert.deepEqual(one.result.embedding, [0.5, -'sunny day at the beach'.length / 4, 0.25]);
    assert.equal(one.result.usage.tokens, one.rows[0].prompt_tokens);

    const values = ['rainy day in the mountains', 'snowy night', 'a calm sea'];
    const many = await billed(1, (sid, headers) => embedMany({ model, values, headers, maxRetries: 0 }));
    assert.deepEqual(
      many.result.embeddings,
      values.map((v, i) => [i + 0.5, -v.length / 4, 0.25]),
    );
    assert.equal(many.result.usage.tokens, many.rows[0].prompt_tokens);
  });
});

describe('abort mid-stream', () => {
  test('AbortController after a few deltas: one usage row with the client_abort rule, billed once', async () => {
    const sid = session();
    const before = await balance();
    const controller = new AbortController();
    const r = streamText({
      model: openai.chat('plain'),
      prompt: 'a slow answer please',
      headers: { 'X-Session-Id': sid },
      abortSignal: controller.signal,
      maxRetries: 0,
    });
    let deltas = 0;
    await assert.rejects(async () => {
      for await (const _ of r.textStream) {
        deltas += 1;
        if (deltas === 3) controller.abort();
      }
      // Some SDK versions end the stream quietly on abort rather than throwing.
      if (controller.signal.aborted) throw new Error('aborted');
    });
    assert.equal(deltas >= 3, true);
    const [row] = await sessionRows(sid, 1);
    assert.equal(row.status, 'client_abort', JSON.stringify(row));
    // The provider was read on after the client left and reported its usage: 42 prompt, 40 words.
    assert.deepEqual([row.prompt_tokens, row.completion_tokens, row.cost], [42, 40, costOf(42, 40)]);
    assert.equal(before - (await balance()), row.cost);
    // Still exactly one row, and no reservation left open.
    await sleep(300);
    assert.equal((await sessionRows(sid, 1)).length, 1);
    assert.equal(await gw.openReservations(tenantId), 0);
  });
});

describe('provider options the SDK users set', () => {
  test('parallelToolCalls, store: false, user, include, reasoningEffort pass; metadata is refused as billable', async () => {
    const options = { parallelToolCalls: false, store: false, user: 'end-user-1', include: ['reasoning.encrypted_content'] };
    const responses = await billed(2, (sid, headers) =>
      generateText({
        model: openai('gpt-azure'),
        prompt: 'what is the weather in Paris?',
        tools: { get_weather: weatherTool() },
        stopWhen: stepCountIs(3),
        providerOptions: { openai: options },
        headers,
        maxRetries: 0,
      }),
    );
    assert.equal(responses.result.text, 'mock reply to tool result {"location":"Paris","temperature":21}');
    const sent = mock.requests.at(-1).body;
    assert.deepEqual(
      [sent.parallel_tool_calls, sent.store, sent.user, sent.include],
      [false, false, 'end-user-1', ['reasoning.encrypted_content']],
    );
    assert.deepEqual(sent.input.map((i) => i.type ?? i.role), ['user', 'function_call', 'function_call_output']);

    const chatCall = await billed(1, (sid, headers) =>
      generateText({
        model: openai.chat('gpt-azure'),
        // "no tools": the mock answers in text although tools are offered.
        prompt: 'hello options, no tools',
        providerOptions: { openai: { parallelToolCalls: false, store: false, user: 'end-user-1', reasoningEffort: 'low' } },
        tools: { get_weather: weatherTool() },
        headers,
        maxRetries: 0,
      }),
    );
    assert.equal(chatCall.result.text, 'mock reply to hello options, no tools');
    const chatSent = mock.requests.at(-1).body;
    assert.deepEqual([chatSent.parallel_tool_calls, chatSent.user, chatSent.reasoning_effort], [false, 'end-user-1', 'low']);

    const before = await balance();
    try {
      await generateText({ model: openai.chat('gpt-azure'), prompt: 'hi', providerOptions: { openai: { metadata: { a: 'b' } } }, maxRetries: 0 });
      assert.fail('metadata accepted');
    } catch (err) {
      assert.ok(APICallError.isInstance(err), String(err));
      assert.equal(err.statusCode, 400);
      const body = JSON.parse(err.responseBody);
      assert.deepEqual([body.error.code, body.error.param], ['unsupported_parameter', 'metadata']);
      assert.equal(err.message, body.error.message);
    }
    assert.equal(await balance(), before);
  });
});

describe('errors reach the SDK as APICallError with the gateway’s status and message', () => {
  async function callError(fn) {
    try {
      await fn();
    } catch (err) {
      // generateText wraps a failed call in a RetryError when retries are on; maxRetries: 0 throws it as is.
      assert.ok(APICallError.isInstance(err), `not an APICallError: ${err?.name}: ${err?.message}`);
      return err;
    }
    assert.fail('no error');
  }

  test('invalid key (401), out of credit (402), rate limit (429): chat, Responses, Anthropic', async () => {
    const bogus = createOpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'tg-bogus' });
    const e401 = await callError(() => generateText({ model: bogus.chat('gpt-azure'), prompt: 'hi', maxRetries: 0 }));
    assert.equal(e401.statusCode, 401);
    assert.equal(e401.message, JSON.parse(e401.responseBody).error.message);
    assert.equal(e401.isRetryable, false);

    const poor = await gw.newTenant({ name: 'poor', credit: 0 });
    const poorOpenAI = createOpenAI({ baseURL: `${gw.url}/v1`, apiKey: poor.key.key });
    for (const model of [poorOpenAI.chat('gpt-azure'), poorOpenAI('gpt-azure')]) {
      const e = await callError(() => generateText({ model, prompt: 'hi', maxRetries: 0 }));
      assert.equal(e.statusCode, 402);
      const body = JSON.parse(e.responseBody);
      assert.equal(body.error.code, 'insufficient_quota');
      assert.equal(e.message, body.error.message);
    }
    const poorClaude = createAnthropic({ baseURL: `${gw.url}/v1`, apiKey: poor.key.key });
    const e402a = await callError(() => generateText({ model: poorClaude('claude'), prompt: 'hi', maxRetries: 0 }));
    assert.equal(e402a.statusCode, 402);
    const body = JSON.parse(e402a.responseBody);
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'billing_error');
    assert.equal(e402a.message, body.error.message);

    // A key limited to one request a minute: the second is a 429 the SDK marks retryable.
    const limited = await gw.newTenant({ name: 'limited', credit: CREDIT });
    await gw.adminOk('PUT', `/admin/keys/${limited.key.id}/limits`, { rpm: 1 });
    const lim = createOpenAI({ baseURL: `${gw.url}/v1`, apiKey: limited.key.key });
    await generateText({ model: lim.chat('gpt-azure'), prompt: 'first', maxRetries: 0 });
    const e429 = await callError(() => generateText({ model: lim.chat('gpt-azure'), prompt: 'second', maxRetries: 0 }));
    assert.equal(e429.statusCode, 429);
    assert.equal(JSON.parse(e429.responseBody).error.code, 'rate_limit_exceeded');
    assert.equal(e429.message, JSON.parse(e429.responseBody).error.message);
    assert.equal(e429.isRetryable, true);
    assert.ok(Number(e429.responseHeaders['retry-after']) >= 1);
  });
});
