// End to end: what a wallet settlement does besides the charge (`WALLETS=true`, docs/money.md
// "Wallets"). A stream without max_tokens that outruns its reservation is extended in the wallet
// (or cut cleanly when the credit is gone); an alert threshold crossed by a wallet settlement fires
// exactly one signed webhook (and again after a top-up); session totals follow the wallet's rows;
// a media request's usage row carries its units as without wallets.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { sleep, startGateway, startMockOpenAI } from './harness.mjs';
import { startMockProviders } from './mock-providers.mjs';

const PRICE_IN = 1_000_000; // 1 micro-unit per prompt token
const PRICE_OUT = 2_000_000; // 2 per completion token
const PROMPT = 9;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);
const WEBHOOK_SECRET = 'whsec_e2e_wallet_0123456789abcdef';
const CHAR_PRICE = 15_000_000;

let gw;
let mock;
let media;
let hooks;

const adminOk = (...args) => gw.adminOk(...args);

/** Waits until the wallet has exported every row and holds no reservation. */
async function quiet(tenantId, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await adminOk('GET', `/admin/tenants/${tenantId}/wallet`);
    if (v.outbox_pending === 0 && v.open_reservations === 0) return v;
    if (Date.now() > deadline) throw new Error(`wallet never quiet: ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

async function until(what, fn, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function startReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body: JSON.parse(Buffer.concat(parts).toString('utf8')) });
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    to: (path) => received.filter((e) => e.path === path),
    close: () => new Promise((r) => server.close(r)),
  };
}

async function chat(key, { content = 'hello there', session, maxTokens } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key.key}`,
      'content-type': 'application/json',
      ...(session ? { 'x-session-id': session } : {}),
    },
    body: JSON.stringify({
      model: 'tollgate-echo',
      messages: [{ role: 'user', content }],
      ...(maxTokens ? { max_tokens: maxTokens } : {}),
    }),
  });
  const text = await res.text();
  return { status: res.status, text, requestId: res.headers.get('x-request-id'), cost: Number(res.headers.get('x-tollgate-cost')) };
}

const cron = async () => {
  const res = await fetch(`${gw.url}/__scheduled?cron=*/5+*+*+*+*`);
  assert.equal(res.status, 200, await res.text());
};

before(async () => {
  hooks = await startReceiver();
  mock = await startMockOpenAI({ promptTokens: PROMPT, chunkDelayMs: 5 });
  media = await startMockProviders({ keys: {} });
  gw = await startGateway({
    vars: { WALLETS: 'true', PROVIDER_MOCK_KEY: 'sk-mock', WEBHOOK_SECRET, SESSION_TTL_SECONDS: '600' },
  });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await adminOk('PUT', '/admin/models/mock-small', {
    provider: 'mock',
    upstream_model: 'gpt-4o-mini',
    input_price: PRICE_IN,
    output_price: PRICE_OUT,
    max_output_tokens: 3,
    encoding: 'o200k_base',
  });
  await adminOk('PUT', '/admin/providers/openai', { kind: 'openai', base_url: `${media.url}/openai/v1` });
  await adminOk('PUT', '/admin/models/emb-openai', {
    provider: 'openai',
    upstream_model: 'text-embedding-3-small',
    input_price: 2_000_000,
    output_price: 0,
    kind: 'embedding',
  });
  await adminOk('PUT', '/admin/models/tts-1', { provider: 'openai', input_price: 0, output_price: 0, kind: 'tts', character_price: CHAR_PRICE });
});

after(async () => {
  await gw?.kill();
  await mock?.close();
  await media?.close();
  await hooks?.close();
});

describe('stream reservation extension in the wallet', () => {
  const long = [{ role: 'user', content: 'a b c d e f g h' }];

  test('no max_tokens and enough credit: the wallet extends the reservation, output runs to the end', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'extend', credit: 1_000_000 });
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-small', stream: true, messages: long })
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'mock reply to a b c d e f g h');
    const row = await gw.usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'ok');
    assert.equal(row.from_wallet, 1);
    const initial = costOf(row.local_prompt_tokens, 3);
    assert.equal(row.reserved, initial + 1024 * 2, 'one extension block of 1024 tokens, held by the wallet');
    assert.equal(row.cost, costOf(PROMPT, 11));
    await quiet(tenant.id);
    const billing = await adminOk('GET', `/admin/tenants/${tenant.id}/billing`);
    assert.equal(billing.balance, 1_000_000 - row.cost);
    assert.equal(billing.reserved, 0);
  });

  test('no max_tokens and no credit for more: the wallet refuses, clean cut at the cover', async () => {
    const prompt = 3 + 1 + 8 + 3;
    const initial = costOf(prompt, 3);
    const { tenant, key } = await gw.newTenant({ name: 'cut', credit: initial + 50 });
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-small', stream: true, stream_options: { include_usage: true }, messages: long })
      .withResponse();
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'length');
    assert.equal(text, 'mock reply to');
    const row = await gw.usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'truncated');
    assert.equal(row.reserved, initial);
    assert.equal(row.cost, costOf(prompt, 3));
    await quiet(tenant.id);
    const billing = await adminOk('GET', `/admin/tenants/${tenant.id}/billing`);
    assert.equal(billing.balance, initial + 50 - row.cost);
  });
});

describe('settlement side effects with wallets', () => {
  test('balance below: a wallet settlement that crosses fires one webhook; a top-up re-arms it', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'alerts', credit: 100 });
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'balance_below', threshold: 60, webhook_url: `${hooks.url}/balance`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 83 left
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 66 left
    await sleep(500);
    assert.equal(hooks.to('/balance').length, 0);
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 49 left: crossed
    await until('the balance webhook', () => hooks.to('/balance').length >= 1);
    assert.equal(hooks.to('/balance')[0].body.value, 49);
    assert.equal((await chat(key, { maxTokens: 5 })).status, 200); // 32 left: still below
    await quiet(tenant.id);
    // The scheduled check reads the wallet's balance (not D1's from before the claim): no re-arm.
    await cron();
    await sleep(500);
    assert.equal(hooks.to('/balance').length, 1, 'one webhook for one crossing');
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).state, 'fired');
    // A top-up through the wallet; the scheduled check re-arms; the next crossing fires again.
    await adminOk('POST', `/admin/tenants/${tenant.id}/credit`, { amount: 100 });
    await cron();
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).state, 'armed');
    for (let i = 0; i < 5; i++) assert.equal((await chat(key, { maxTokens: 5 })).status, 200);
    await until('the second crossing', () => hooks.to('/balance').length >= 2);
    await sleep(500);
    assert.equal(hooks.to('/balance').length, 2);
    assert.equal(hooks.to('/balance')[1].body.id, `${rule.id}-2`);
    await adminOk('DELETE', `/admin/alerts/${rule.id}`);
  });

  test('monthly spend: one webhook for the crossing, however many settlements follow', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'spend', credit: 100_000_000 });
    const rule = await adminOk(
      'POST',
      `/admin/tenants/${tenant.id}/alerts`,
      { kind: 'monthly_spend_above', threshold: 40, webhook_url: `${hooks.url}/spend`, signing_secret: 'WEBHOOK_SECRET' },
      201,
    );
    const first = await chat(key); // 17
    const second = await chat(key); // 34
    assert.equal(first.status + second.status, 400);
    await sleep(500);
    assert.equal(hooks.to('/spend').length, 0);
    const burst = await Promise.all([1, 2, 3, 4].map(() => chat(key)));
    assert.ok(burst.every((r) => r.status === 200));
    await until('the spend webhook', () => hooks.to('/spend').length >= 1);
    await quiet(tenant.id);
    await cron();
    await sleep(500);
    const got = hooks.to('/spend');
    assert.equal(got.length, 1);
    assert.ok(got[0].body.value > 40);
    assert.equal((await adminOk('GET', `/admin/alerts/${rule.id}`)).fire_count, 1);
    await adminOk('DELETE', `/admin/alerts/${rule.id}`);
  });

  test('session totals (user center) equal the sum of the wallet\'s usage rows', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'sessions', credit: 1_000_000 });
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const r = await chat(key, { session: 'wallet-conv-1', content: `turn ${i} of the talk` });
      assert.equal(r.status, 200);
      ids.push(r.requestId);
    }
    const rows = [];
    for (const id of ids) rows.push(await gw.usageRow(id));
    await quiet(tenant.id);
    const want = {
      request_count: 3,
      prompt_tokens: rows.reduce((s, r) => s + r.prompt_tokens, 0),
      completion_tokens: rows.reduce((s, r) => s + r.completion_tokens, 0),
      cost: rows.reduce((s, r) => s + r.cost, 0),
    };
    const s = await until('the session totals', async () => {
      const res = await fetch(`${gw.url}/v1/sessions/wallet-conv-1`, { headers: { authorization: `Bearer ${key.key}` } });
      const body = await res.json();
      return res.status === 200 && body.request_count === 3 ? body : null;
    });
    assert.deepEqual(
      { request_count: s.request_count, prompt_tokens: s.prompt_tokens, completion_tokens: s.completion_tokens, cost: s.cost },
      want,
    );
    // The KV copy (refreshed by the export) says the same as D1.
    const [d1] = gw.d1('SELECT request_count, prompt_tokens, completion_tokens, cost FROM sessions WHERE tenant_id = ? AND id = ?', tenant.id, 'wallet-conv-1');
    assert.deepEqual({ ...d1 }, want);
  });

  test('an embeddings and a speech request export rows with their units, as without wallets', async () => {
    const { tenant, key } = await gw.newTenant({ name: 'media', credit: 10_000_000 });
    const client = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const { response: embResponse } = await client.embeddings
      .create({ model: 'emb-openai', input: ['The food was delicious', 'and the waiter...'], encoding_format: 'float' })
      .withResponse();
    const input = 'Hello there, how are you?';
    const speech = fetch(`${gw.url}/v1/audio/speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', input, voice: 'alloy' }),
    });
    await sleep(300);
    media.releaseSpeech();
    const speechRes = await speech;
    assert.equal(speechRes.status, 200);
    await speechRes.arrayBuffer();
    const emb = await gw.usageRow(embResponse.headers.get('x-request-id'));
    const tts = await gw.usageRow(speechRes.headers.get('x-request-id'));
    assert.deepEqual([emb.from_wallet, emb.api, emb.unit, emb.quantity, emb.unit_price, emb.cost], [1, 'embeddings', 'tokens', 6, null, 12]);
    assert.deepEqual(
      [tts.from_wallet, tts.api, tts.unit, tts.quantity, tts.unit_price, tts.cost],
      [1, 'speech', 'characters', input.length, CHAR_PRICE, input.length * 15],
    );
    // The report (the tenant's request listing) shows the units.
    const listed = await (await fetch(`${gw.url}/v1/usage?model=tts-1`, { headers: { authorization: `Bearer ${key.key}` } })).json();
    const item = listed.data.find((r) => r.request_id === tts.request_id);
    assert.deepEqual([item.api, item.unit, item.quantity, item.unit_price], ['speech', 'characters', input.length, CHAR_PRICE]);
    await quiet(tenant.id);
    const billing = await adminOk('GET', `/admin/tenants/${tenant.id}/billing`);
    assert.equal(billing.balance, 10_000_000 - emb.cost - tts.cost);
  });
});
