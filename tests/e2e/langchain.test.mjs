// LangChain pointed at the gateway, unmodified (docs/clients.md). JavaScript (@langchain/openai,
// @langchain/anthropic): ChatOpenAI invoke, stream with usage, bindTools with a tool call round trip,
// withStructuredOutput, useResponsesApi; ChatAnthropic invoke and stream; OpenAIEmbeddings with its default
// encoding (the openai SDK asks base64 and decodes it). Python (langchain-openai, langchain-anthropic, through
// tests/e2e/langchain_check.py): ChatOpenAI invoke / stream (stream_usage=True), ChatAnthropic invoke / stream,
// OpenAIEmbeddings with its defaults (token id arrays). For each: the answer and the usage LangChain reports
// against the gateway's usage row, and the balance moving by exactly the row's cost; errors (invalid key,
// out of credit, a rate limit) reach LangChain as the SDK's own error type with the gateway's message.
//
// Each call carries its own `X-Session-Id` (the client's default headers): that is how a call's rows are found.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ChatAnthropic } from '@langchain/anthropic';
import { AIMessage, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { z } from 'zod';
import { ROOT, randomToken, sleep, startGateway, startMockOpenAI } from './harness.mjs';
import { USAGE, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const EMBED_PRICE = 20_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', azure: 'azure-mock', openai: 'sk-openai-mock' };
const CREDIT = 100_000_000;
const WEATHER_JSON = { city: 'Paris', temperature: 21 };
const python = join(ROOT, '.tools', 'py', 'bin', 'python');

let gw;
let mock;
let chat;
let key;
let tenantId;
let poorKey;

const session = () => `lc-js-${randomToken(6)}`;
const authOf = (k) => ({ authorization: `Bearer ${k}` });

const balance = () => gw.balanceOf(key);

/** The `n` usage rows of a session (oldest first), once all of them are written. */
const sessionRows = (sid, n) => gw.sessionRows(key, tenantId, sid, n);

/** Checks a session's single row: status ok, billed at the model's prices, and its usage = LangChain's. */
async function checkRow(sid, usage, price = 'chat') {
  const [row] = await sessionRows(sid, 1);
  assert.equal(row.status, 'ok', JSON.stringify(row));
  if (price === 'chat') assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
  else assert.equal(row.cost, Math.ceil((row.prompt_tokens * EMBED_PRICE) / 1e6));
  if (usage) {
    assert.deepEqual(
      [usage.input_tokens, usage.output_tokens, usage.total_tokens],
      [row.prompt_tokens, row.completion_tokens, row.prompt_tokens + row.completion_tokens],
      `LangChain usage ${JSON.stringify(usage)} vs row ${JSON.stringify(row)}`,
    );
  }
  return row;
}

/** Runs `call(sid)`; its rows (`n`) must account for the balance change exactly. */
async function billed(n, call) {
  const sid = session();
  const before = await balance();
  const result = await call(sid);
  const rows = await sessionRows(sid, n);
  assert.equal(before - (await balance()), rows.reduce((s, r) => s + r.cost, 0), 'the balance went down by the rows’ cost');
  return { sid, result, rows };
}

const chatOpenAI = (sid, model, extra = {}) =>
  new ChatOpenAI({
    model,
    apiKey: extra.apiKey ?? key,
    maxRetries: 0,
    configuration: { baseURL: `${gw.url}/v1`, defaultHeaders: { 'X-Session-Id': sid } },
    ...extra,
  });

const chatAnthropic = (sid, extra = {}) =>
  new ChatAnthropic({
    model: 'claude',
    apiKey: extra.apiKey ?? key,
    anthropicApiUrl: gw.url,
    maxRetries: 0,
    maxTokens: 200,
    clientOptions: { defaultHeaders: { 'X-Session-Id': sid } },
    ...extra,
  });

before(async () => {
  mock = await startMockProviders({ keys: KEYS, chunkDelayMs: 2 });
  chat = await startMockOpenAI({ chunkDelayMs: 2 });
  // Structured output: the plain upstream answers a json_schema request with a matching object.
  chat.setBehavior(({ body }, res) => {
    if (body?.response_format?.type !== 'json_schema') return false;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-json',
        object: 'chat.completion',
        created: 1,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: JSON.stringify(WEATHER_JSON) }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 42, completion_tokens: 11, total_tokens: 53 },
      }),
    );
    return true;
  });
  gw = await startGateway({
    vars: { PROVIDER_ANTHROPIC_KEY: KEYS.anthropic, PROVIDER_AZURE_KEY: KEYS.azure, PROVIDER_OPENAI_KEY: KEYS.openai },
  });
  await gw.adminOk('PUT', '/admin/providers/anthropic', { kind: 'anthropic', base_url: `${mock.url}/anthropic/v1`, api_key_secret: 'PROVIDER_ANTHROPIC_KEY' });
  await gw.adminOk('PUT', '/admin/providers/azure', { kind: 'azure', base_url: `${mock.url}/azure`, api_key_secret: 'PROVIDER_AZURE_KEY', config: { deployment: 'dep-1' } });
  await gw.adminOk('PUT', '/admin/providers/media', { kind: 'openai', base_url: `${mock.url}/openai/v1`, api_key_secret: 'PROVIDER_OPENAI_KEY' });
  await gw.adminOk('PUT', '/admin/providers/plain', { kind: 'openai', base_url: chat.url });
  const prices = { input_price: PRICE_IN, output_price: PRICE_OUT };
  await gw.adminOk('PUT', '/admin/models/gpt-azure', { provider: 'azure', upstream_model: 'gpt-5', ...prices });
  await gw.adminOk('PUT', '/admin/models/claude', { provider: 'anthropic', upstream_model: 'claude-sonnet-4-5', ...prices, max_output_tokens: 777 });
  await gw.adminOk('PUT', '/admin/models/plain', { provider: 'plain', upstream_model: 'gpt-4o-mini', ...prices });
  // /v1/messages translated to chat: the gateway writes the Messages events itself.
  await gw.adminOk('PUT', '/admin/models/claude-translated', { provider: 'azure', upstream_model: 'gpt-5', ...prices });
  await gw.adminOk('PUT', '/admin/models/text-embedding-3-small', { provider: 'media', input_price: EMBED_PRICE, output_price: 0, kind: 'embedding' });
  const t = await gw.newTenant({ name: 'langchain', credit: CREDIT });
  key = t.key.key;
  tenantId = t.tenant.id;
  poorKey = (await gw.newTenant({ name: 'poor', credit: 0 })).key.key;
});

after(async () => {
  await gw?.kill();
  await mock?.close();
  await chat?.close();
});

const messages = () => [new SystemMessage('You are terse.'), new HumanMessage('hello from langchain')];

describe('LangChain JS: ChatOpenAI', () => {
  test('invoke: the answer, usage_metadata = the row, the balance', async () => {
    const { sid, result } = await billed(1, (sid) => chatOpenAI(sid, 'gpt-azure').invoke(messages()));
    assert.equal(result.content, 'mock reply to hello from langchain');
    const row = await checkRow(sid, result.usage_metadata);
    assert.equal(row.prompt_tokens, USAGE.azure(4).prompt_tokens);
  });

  test('stream: chunks, usage on the last chunk (stream_options.include_usage) = the row', async () => {
    const { sid, result } = await billed(1, async (sid) => {
      let text = '';
      let agg;
      let chunks = 0;
      for await (const c of await chatOpenAI(sid, 'gpt-azure', { streamUsage: true }).stream(messages())) {
        text += c.content;
        agg = agg ? agg.concat(c) : c;
        chunks += 1;
      }
      return { text, chunks, usage: agg.usage_metadata };
    });
    assert.equal(result.text, 'mock reply to hello from langchain');
    assert.ok(result.chunks >= 5);
    assert.ok(result.usage, 'no usage in the stream');
    await checkRow(sid, result.usage);
  });

  test('bindTools: the tool call, then the ToolMessage round trip to the answer (two rows)', async () => {
    const getWeather = tool(async ({ location }) => JSON.stringify({ location, temperature: 21 }), {
      name: 'get_weather',
      description: 'The weather in a city',
      schema: z.object({ location: z.string() }),
    });
    const { result, rows } = await billed(2, async (sid) => {
      const model = chatOpenAI(sid, 'gpt-azure').bindTools([getWeather]);
      const history = [new HumanMessage('what is the weather in Paris?')];
      const first = await model.invoke(history);
      assert.equal(first.tool_calls.length, 1);
      assert.deepEqual([first.tool_calls[0].name, first.tool_calls[0].args], ['get_weather', { location: 'Paris' }]);
      history.push(first, await getWeather.invoke(first.tool_calls[0]));
      assert.ok(history.at(-1) instanceof ToolMessage);
      const second = await model.invoke(history);
      return { first, second };
    });
    assert.ok(result.first instanceof AIMessage);
    assert.equal(result.second.content, 'mock reply to tool result {"location":"Paris","temperature":21}');
    for (const [i, msg] of [result.first, result.second].entries()) {
      assert.deepEqual([msg.usage_metadata.input_tokens, msg.usage_metadata.output_tokens], [rows[i].prompt_tokens, rows[i].completion_tokens]);
    }
  });

  test('withStructuredOutput: json_schema reaches the provider; the parsed object', async () => {
    const schema = z.object({ city: z.string(), temperature: z.number() });
    const { sid, result } = await billed(1, (sid) => chatOpenAI(sid, 'plain').withStructuredOutput(schema, { includeRaw: true }).invoke('weather in Paris'));
    assert.deepEqual(result.parsed, WEATHER_JSON);
    await checkRow(sid, result.raw.usage_metadata);
    assert.equal(chat.requests.at(-1).body.response_format.type, 'json_schema');
  });

  test('useResponsesApi: invoke and stream through /v1/responses', async () => {
    const plain = await billed(1, (sid) => chatOpenAI(sid, 'gpt-azure', { useResponsesApi: true }).invoke(messages()));
    const text = (m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join(''));
    assert.equal(text(plain.result), 'mock reply to hello from langchain');
    const row = await checkRow(plain.sid, plain.result.usage_metadata);
    assert.equal(row.api, 'responses');

    const streamed = await billed(1, async (sid) => {
      let agg;
      for await (const c of await chatOpenAI(sid, 'gpt-azure', { useResponsesApi: true }).stream(messages())) agg = agg ? agg.concat(c) : c;
      return agg;
    });
    assert.equal(text(streamed.result), 'mock reply to hello from langchain');
    await checkRow(streamed.sid, streamed.result.usage_metadata);
  });
});

describe('LangChain JS: ChatAnthropic', () => {
  const textOf = (m) => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text ?? '').join(''));
  const streamOf = async (sid, extra) => {
    let agg;
    for await (const c of await chatAnthropic(sid, extra).stream(messages())) agg = agg ? agg.concat(c) : c;
    return agg;
  };

  test('invoke and stream on /v1/messages (native)', async () => {
    const plain = await billed(1, (sid) => chatAnthropic(sid).invoke(messages()));
    assert.equal(plain.result.content, 'mock reply to hello from langchain');
    const row = await checkRow(plain.sid, plain.result.usage_metadata);
    assert.equal(row.api, 'messages');

    const streamed = await billed(1, (sid) => streamOf(sid));
    assert.equal(textOf(streamed.result), 'mock reply to hello from langchain');
    // LangChain JS adds message_start's output_tokens (1, as in Anthropic's streams; relayed unchanged) to
    // message_delta's, which is already the cumulative count: it reports one output token more than billed.
    const srow = await checkRow(streamed.sid, null);
    const u = streamed.result.usage_metadata;
    assert.deepEqual([u.input_tokens, u.output_tokens], [srow.prompt_tokens, srow.completion_tokens + 1]);
  });

  test('invoke and stream on /v1/messages translated to chat: the output count from message_delta', async () => {
    const plain = await billed(1, (sid) => chatAnthropic(sid, { model: 'claude-translated' }).invoke(messages()));
    assert.equal(plain.result.content, 'mock reply to hello from langchain');
    await checkRow(plain.sid, plain.result.usage_metadata);
    const streamed = await billed(1, (sid) => streamOf(sid, { model: 'claude-translated' }));
    assert.equal(textOf(streamed.result), 'mock reply to hello from langchain');
    // LangChain JS takes the input from message_start: translated, that is the gateway's own prompt count
    // at the start (the provider's count arrives at the end, in message_delta, which LangChain JS reads only
    // for the output); the row has the provider's count (docs/clients.md, known limits).
    const row = await checkRow(streamed.sid, null);
    assert.equal(streamed.result.usage_metadata.output_tokens, row.completion_tokens);
    assert.ok(streamed.result.usage_metadata.input_tokens > 0);
  });
});

describe('LangChain JS: OpenAIEmbeddings', () => {
  test('embedDocuments / embedQuery with the default encoding (base64 on the wire, decoded by the SDK)', async () => {
    const docs = ['LangChain document one.', 'Document two.'];
    const embedder = (sid) =>
      new OpenAIEmbeddings({ model: 'text-embedding-3-small', apiKey: key, maxRetries: 0, configuration: { baseURL: `${gw.url}/v1`, defaultHeaders: { 'X-Session-Id': sid } } });
    const many = await billed(1, (sid) => embedder(sid).embedDocuments(docs));
    // The mock's vector for input i: [i + 0.5, -length / 4, 0.25], exact in f32.
    assert.deepEqual(many.result, docs.map((d, i) => [i + 0.5, -d.length / 4, 0.25]));
    assert.equal(mock.requests.at(-1).body.encoding_format, 'base64');
    await checkRow(many.sid, null, 'embedding');

    const one = await billed(1, (sid) => embedder(sid).embedQuery('a query'));
    assert.deepEqual(one.result, [0.5, -'a query'.length / 4, 0.25]);
  });
});

describe('LangChain JS: errors keep the SDK’s error types and the gateway’s message', () => {
  test('invalid key (401), out of credit (402), rate limit (429)', async () => {
    const errorOf = async (p) => {
      try {
        await p;
      } catch (e) {
        return e;
      }
      assert.fail('no error');
    };
    const e401 = await errorOf(chatOpenAI(session(), 'gpt-azure', { apiKey: 'tg-bogus' }).invoke('hi'));
    assert.ok(e401 instanceof OpenAI.AuthenticationError, e401?.constructor?.name);
    assert.equal(e401.lc_error_code, 'MODEL_AUTHENTICATION');
    assert.equal(e401.code, 'invalid_api_key');

    const e402 = await errorOf(chatOpenAI(session(), 'gpt-azure', { apiKey: poorKey }).invoke('hi'));
    assert.ok(e402 instanceof OpenAI.APIError, e402?.constructor?.name);
    assert.equal(e402.status, 402);
    assert.equal(e402.code, 'insufficient_quota');
    assert.ok(e402.message.includes(e402.error.message), e402.message);

    const a402 = await errorOf(chatAnthropic(session(), { apiKey: poorKey }).invoke('hi'));
    assert.equal(a402.status, 402, a402?.message);
    assert.equal(a402.error.type, 'error');
    assert.equal(a402.error.error.type, 'billing_error');
    assert.ok(a402.message.includes(a402.error.error.message), a402.message);

    const a401 = await errorOf(chatAnthropic(session(), { apiKey: 'tg-bogus' }).invoke('hi'));
    assert.equal(a401.status, 401);
    assert.equal(a401.constructor.name, Anthropic.AuthenticationError.name);
    assert.equal(a401.lc_error_code, 'MODEL_AUTHENTICATION');

    const limited = await gw.newTenant({ name: 'limited', credit: CREDIT });
    await gw.adminOk('PUT', `/admin/keys/${limited.key.id}/limits`, { rpm: 1 });
    await chatOpenAI(session(), 'gpt-azure', { apiKey: limited.key.key }).invoke('first');
    const e429 = await errorOf(chatOpenAI(session(), 'gpt-azure', { apiKey: limited.key.key }).invoke('second'));
    assert.ok(e429 instanceof OpenAI.RateLimitError, e429?.constructor?.name);
    assert.equal(e429.lc_error_code, 'MODEL_RATE_LIMIT');
    assert.equal(e429.code, 'rate_limit_exceeded');
  });
});

describe('LangChain Python', () => {
  test('ChatOpenAI, ChatAnthropic, OpenAIEmbeddings (token ids) and the errors', async () => {
    assert.ok(existsSync(python), 'run scripts/setup.sh first: .tools/py is missing');
    // tiktoken's cl100k_base file under the name tiktoken caches it by, from tiktoken-rs's asset (same bytes).
    const cache = mkdtempSync(join(tmpdir(), 'tollgate-tiktoken-'));
    const registry = join(process.env.CARGO_HOME ?? join(homedir(), '.cargo'), 'registry', 'src');
    const asset = readdirSync(registry)
      .map((d) => join(registry, d, 'tiktoken-rs-0.12.1', 'assets', 'cl100k_base.tiktoken'))
      .find((p) => existsSync(p));
    assert.ok(asset, 'tiktoken-rs 0.12.1 assets not found in the cargo registry');
    const url = 'https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken';
    copyFileSync(asset, join(cache, createHash('sha1').update(url).digest('hex')));
    const before = await balance();
    let stdout;
    try {
      ({ stdout } = await promisify(execFile)(
        python,
        [join(ROOT, 'tests', 'e2e', 'langchain_check.py'), gw.url, key, poorKey, 'gpt-azure', 'claude', 'claude-translated', 'text-embedding-3-small'],
        { timeout: 120_000, env: { ...process.env, TIKTOKEN_CACHE_DIR: cache, LANGSMITH_TRACING: 'false' } },
      ));
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
    const seen = JSON.parse(stdout.trim().split('\n').pop());
    const { calls, errors } = seen;
    for (const name of ['openai_invoke', 'openai_stream', 'anthropic_invoke', 'anthropic_translated_stream']) {
      assert.equal(calls[name].text, 'mock reply to hello from langchain python', name);
      const u = calls[name].usage;
      await checkRow(calls[name].session, { input_tokens: u.input, output_tokens: u.output, total_tokens: u.total });
    }
    // langchain-anthropic takes a stream's usage from message_delta alone, whose counts are cumulative. The
    // gateway's own message_delta (translated, above) carries input and cache counts; the mock Anthropic's
    // (relayed unchanged) carries output_tokens only, so LangChain reports no input there.
    assert.equal(calls.anthropic_stream.text, 'mock reply to hello from langchain python');
    const nativeRow = await checkRow(calls.anthropic_stream.session, null);
    assert.deepEqual([calls.anthropic_stream.usage.input, calls.anthropic_stream.usage.output], [0, nativeRow.completion_tokens]);
    // Token id arrays: the row counts exactly their length.
    const embRow = await checkRow(calls.embeddings.session, null, 'embedding');
    assert.ok(embRow.prompt_tokens > 0);
    const tokenCalls = mock.requests.filter((r) => r.url.endsWith('/embeddings') && Array.isArray(r.body?.input?.[0]));
    assert.equal(tokenCalls.length, 1, 'one embeddings call with token id arrays');
    // Billed from the provider's usage (the mock reports 3 tokens per input), as every embeddings call.
    assert.equal(embRow.prompt_tokens, 3 * tokenCalls[0].body.input.length);
    // The mock's vector for input i starts with i + 0.5 and ends with 0.25 (its middle depends on the ids).
    assert.deepEqual(calls.embeddings.vectors.map((v) => [v[0], v[2]]), [[0.5, 0.25], [1.5, 0.25]]);

    // The SDK's error carries the gateway's own answer: the same status, code and message as a raw request.
    const raw = async (path, k, body) => {
      const res = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { ...authOf(k), 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
    const chatBody = { model: 'gpt-azure', messages: [{ role: 'user', content: 'hi' }] };
    const msgBody = { model: 'claude', max_tokens: 200, messages: [{ role: 'user', content: 'hi' }] };
    for (const [seenErr, answer] of [
      [errors.openai_invalid_key, await raw('/v1/chat/completions', 'tg-bogus', chatBody)],
      [errors.openai_no_credit, await raw('/v1/chat/completions', poorKey, chatBody)],
    ]) {
      assert.deepEqual([seenErr.status, seenErr.code, seenErr.message], [answer.status, answer.body.error.code, answer.body.error.message]);
    }
    assert.deepEqual([errors.openai_invalid_key.status, errors.openai_no_credit.status], [401, 402]);
    for (const [seenErr, answer] of [
      [errors.anthropic_invalid_key, await raw('/v1/messages', 'tg-bogus', msgBody)],
      [errors.anthropic_no_credit, await raw('/v1/messages', poorKey, msgBody)],
    ]) {
      assert.deepEqual([seenErr.status, seenErr.message], [answer.status, answer.body.error.message]);
    }
    assert.deepEqual([errors.anthropic_invalid_key.status, errors.anthropic_no_credit.status, errors.anthropic_no_credit.type], [401, 402, 'billing_error']);

    // Every successful Python call's row accounts for the balance change.
    let total = 0;
    for (const c of Object.values(calls)) total += (await sessionRows(c.session, 1))[0].cost;
    assert.equal(before - (await balance()), total);
  });
});
