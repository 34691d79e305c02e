// End to end for the agent APIs: OpenAI's Responses API (`POST /v1/responses`, the `openai` SDK's
// `responses.create`) and Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`,
// the `@anthropic-ai/sdk` client): translated to the chat pipeline on an OpenAI-compatible provider
// (the `hf` mock) and, for Responses, on an Anthropic one; passed through natively on an Anthropic
// provider (Messages) and an OpenAI provider with `responses_api` (Responses) — byte-level checks of
// the native path are in native.test.mjs. Each answer is checked against its usage row (api,
// tokens, cost) and the tenant's balance change.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { ROOT, startGateway } from './harness.mjs';

const require = createRequire(import.meta.url);
import { OPENAI_USAGE, RESPONSES_REASONING_TOKENS, THINKING, startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000;
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const KEYS = { anthropic: 'sk-ant-mock', hf: 'hf_mock', openai: 'sk-openai-mock' };
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
  gw = await startGateway({
    vars: { PROVIDER_ANTHROPIC_KEY: KEYS.anthropic, PROVIDER_HF_KEY: KEYS.hf, PROVIDER_OPENAI_KEY: KEYS.openai },
  });
  await gw.adminOk('PUT', '/admin/providers/openai', {
    kind: 'openai',
    base_url: `${mock.url}/openai/v1`,
    api_key_secret: 'PROVIDER_OPENAI_KEY',
    config: { responses_api: true },
  });
  await gw.adminOk('PUT', '/admin/providers/anthropic', {
    kind: 'anthropic',
    base_url: `${mock.url}/anthropic/v1`,
    api_key_secret: 'PROVIDER_ANTHROPIC_KEY',
  });
  await gw.adminOk('PUT', '/admin/providers/hf', { kind: 'huggingface', base_url: `${mock.url}/hf`, api_key_secret: 'PROVIDER_HF_KEY' });
  for (const [name, upstream] of [
    ['anthropic', 'claude-sonnet-4-5'],
    ['hf', 'tgi'],
    ['openai', 'gpt-5'],
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
      // A native answer (anthropic) names the provider's model; a translated one the public name.
      assert.equal(data.model, name === 'anthropic' ? 'claude-sonnet-4-5' : model);
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

test('the Anthropic Python SDK (plain and stream) once', async () => {
  const { execFile } = require('node:child_process');
  const python = join(ROOT, '.tools', 'py', 'bin', 'python');
  const before = await balance();
  const stdout = await new Promise((resolve, reject) =>
    execFile(python, [join(ROOT, 'tests', 'e2e', 'anthropic_sdk_check.py'), gw.url, key, 'hf-model'], { timeout: 60_000 }, (e, out, err) =>
      e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out),
    ),
  );
  const seen = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(seen.plain_text, 'mock reply to hello there');
  assert.equal(seen.stream_text, 'mock reply to stream this please');
  assert.equal(seen.plain_output_tokens, OPENAI_USAGE.hf(5)[2]);
  assert.equal(seen.stream_output_tokens, OPENAI_USAGE.hf(6)[2]);
  const row = await gw.usageRow(seen.plain_request_id);
  assert.equal(row.api, 'messages');
  assert.equal(row.cost, costOf(...[OPENAI_USAGE.hf(5)[0], OPENAI_USAGE.hf(5)[2]]));
  // Both requests settled: the balance went down by both costs.
  const both = costOf(OPENAI_USAGE.hf(5)[0], OPENAI_USAGE.hf(5)[2]) + costOf(OPENAI_USAGE.hf(6)[0], OPENAI_USAGE.hf(6)[2]);
  for (let i = 0; i < 100 && before - (await balance()) !== both; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(before - (await balance()), both);
});

describe('agent CLIs through the gateway (offline, docs/testing.md)', () => {
  const { spawn } = require('node:child_process');
  const run = (cmd, args, env, cwd) =>
    new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out, err });
      });
    });

  /** Every usage row of `tenantId` once `n` are settled, and the tenant's balance change. */
  async function rowsOf(tenantId, cliKey, before) {
    let rows = [];
    for (let i = 0; i < 100; i++) {
      const reserved = await gw.openReservations(tenantId);
      rows = gw.d1('SELECT * FROM usage WHERE tenant_id = ? ORDER BY created_at', tenantId);
      if (rows.length > 0 && reserved === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${cliKey}` } });
    const spent = before - (await res.json()).balance;
    return { rows, spent };
  }

  test('Claude Code `claude -p` (POST /v1/messages?beta=true, streamed)', async () => {
    const { tenant, key: k } = await gw.newTenant({ name: 'claude-cli', credit: 10_000_000 });
    const scratch = mkdtempSync(join(tmpdir(), 'tg-claude-'));
    const r = await run(join(ROOT, 'node_modules/.bin/claude'), ['-p', 'say hi, no tools', '--model', 'hf-model'], {
      HOME: scratch,
      ANTHROPIC_BASE_URL: gw.url,
      ANTHROPIC_API_KEY: k.key,
      DISABLE_TELEMETRY: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    }, scratch);
    assert.equal(r.code, 0, r.err);
    // Claude Code puts its context (environment, tools) in the user turn before the prompt; the mock
    // replies to the whole last user text.
    assert.match(r.out.trim(), /^mock reply to [\s\S]*say hi, no tools$/);
    const { rows, spent } = await rowsOf(tenant.id, k.key, 10_000_000);
    assert.ok(rows.length >= 1);
    for (const row of rows) assert.equal(row.api, 'messages');
    const answer = rows.find((row) => row.status === 'ok' && row.stream === 1);
    assert.ok(answer, JSON.stringify(rows));
    // The mock reports one output token per word of its reply.
    assert.equal(answer.usage_source, 'upstream');
    assert.equal(answer.completion_tokens, OPENAI_USAGE.hf(r.out.trim().split(/\s+/).length)[2]);
    assert.equal(spent, rows.reduce((s, row) => s + row.cost, 0));
  });

  test('Claude Code `claude -p` through a native Anthropic upstream', async () => {
    const { tenant, key: k } = await gw.newTenant({ name: 'claude-cli-native', credit: 10_000_000 });
    const scratch = mkdtempSync(join(tmpdir(), 'tg-claude-'));
    const r = await run(join(ROOT, 'node_modules/.bin/claude'), ['-p', 'say hi, no tools', '--model', 'anthropic-model'], {
      HOME: scratch,
      ANTHROPIC_BASE_URL: gw.url,
      ANTHROPIC_API_KEY: k.key,
      DISABLE_TELEMETRY: '1',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    }, scratch);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out.trim(), /^mock reply to [\s\S]*say hi, no tools$/);
    const upstream = mock.requests.filter((q) => q.url.startsWith('/anthropic/v1/messages') && q.body?.stream).at(-1);
    assert.equal(upstream.body.model, 'claude-sonnet-4-5');
    assert.ok(upstream.headers['anthropic-beta'], 'Claude Code betas passed through');
    assert.equal(upstream.headers['x-api-key'], KEYS.anthropic);
    const { rows, spent } = await rowsOf(tenant.id, k.key, 10_000_000);
    for (const row of rows) assert.equal(row.api, 'messages');
    const answer = rows.find((row) => row.status === 'ok' && row.stream === 1);
    assert.ok(answer, JSON.stringify(rows));
    assert.equal(answer.usage_source, 'upstream');
    const thinking = ['enabled', 'adaptive'].includes(upstream.body.thinking?.type) ? THINKING.tokens : 0;
    assert.equal(answer.completion_tokens, r.out.trim().split(/\s+/).length + thinking);
    assert.equal(spent, rows.reduce((s, row) => s + row.cost, 0));
  });

  test('Codex CLI `codex exec` through a native Responses upstream', async () => {
    const { tenant, key: k } = await gw.newTenant({ name: 'codex-cli-native', credit: 10_000_000 });
    const scratch = mkdtempSync(join(tmpdir(), 'tg-codex-'));
    mkdirSync(join(scratch, '.codex'));
    writeFileSync(
      join(scratch, '.codex/config.toml'),
      `model = "openai-model"\nmodel_provider = "tg"\n\n[model_providers.tg]\nname = "Tollgate"\nbase_url = "${gw.url}/v1"\nenv_key = "TG_KEY"\nwire_api = "responses"\n`,
    );
    const r = await run(join(ROOT, 'node_modules/.bin/codex'), ['exec', '--skip-git-repo-check', 'say hi, no tools'], {
      HOME: scratch,
      CODEX_HOME: join(scratch, '.codex'),
      TG_KEY: k.key,
    }, scratch);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /mock reply to say hi, no tools/);
    const upstream = mock.requests.filter((q) => q.url === '/openai/v1/responses').at(-1);
    assert.equal(upstream.body.model, 'gpt-5');
    assert.equal(upstream.headers.authorization, `Bearer ${KEYS.openai}`);
    const { rows, spent } = await rowsOf(tenant.id, k.key, 10_000_000);
    for (const row of rows) assert.equal(row.api, 'responses');
    const reasoning = upstream.body.reasoning?.effort ? RESPONSES_REASONING_TOKENS : 0;
    const expected = OPENAI_USAGE.responses(7, reasoning);
    assert.ok(
      rows.some((row) => row.status === 'ok' && row.prompt_tokens === expected[0] && row.completion_tokens === expected[2]),
      JSON.stringify(rows),
    );
    assert.equal(spent, rows.reduce((s, row) => s + row.cost, 0));
  });

  test('Codex CLI `codex exec` (POST /v1/responses, streamed)', async () => {
    const { tenant, key: k } = await gw.newTenant({ name: 'codex-cli', credit: 10_000_000 });
    const scratch = mkdtempSync(join(tmpdir(), 'tg-codex-'));
    mkdirSync(join(scratch, '.codex'));
    writeFileSync(
      join(scratch, '.codex/config.toml'),
      `model = "hf-model"\nmodel_provider = "tg"\n\n[model_providers.tg]\nname = "Tollgate"\nbase_url = "${gw.url}/v1"\nenv_key = "TG_KEY"\nwire_api = "responses"\n`,
    );
    const r = await run(join(ROOT, 'node_modules/.bin/codex'), ['exec', '--skip-git-repo-check', 'say hi, no tools'], {
      HOME: scratch,
      CODEX_HOME: join(scratch, '.codex'),
      TG_KEY: k.key,
    }, scratch);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /mock reply to say hi, no tools/);
    const { rows, spent } = await rowsOf(tenant.id, k.key, 10_000_000);
    assert.ok(rows.length >= 1);
    for (const row of rows) assert.equal(row.api, 'responses');
    assert.ok(rows.some((row) => row.status === 'ok' && row.completion_tokens === OPENAI_USAGE.hf(7)[2]), JSON.stringify(rows));
    assert.equal(spent, rows.reduce((s, row) => s + row.cost, 0));
  });
});

describe('GET /v1/models per client family', () => {
  test('the Anthropic SDK gets Anthropic list and object shapes, paged', async () => {
    const page = await anthropic.models.list({ limit: 1 });
    assert.deepEqual(
      page.data.map((m) => [m.type, m.id]),
      [['model', 'anthropic-model']],
    );
    assert.match(page.data[0].created_at, /^\d{4}-\d\d-\d\dT/);
    assert.equal(page.has_more, true);
    const one = await anthropic.models.retrieve('hf-model');
    assert.equal(one.type, 'model');
    assert.equal(one.display_name, 'hf-model');
    await assert.rejects(anthropic.models.retrieve('no-such-model'), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.error?.error?.type, 'not_found_error');
      return true;
    });
  });

  test('the OpenAI SDK still gets the OpenAI list', async () => {
    const list = await client.models.list();
    const byId = Object.fromEntries(list.data.map((m) => [m.id, m]));
    for (const id of ['anthropic-model', 'hf-model']) {
      assert.equal(byId[id].object, 'model');
      assert.equal(byId[id].owned_by, 'tollgate');
      assert.equal(byId[id].type, undefined);
    }
  });
});
