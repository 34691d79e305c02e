// End to end: the ledger. Concurrent streams against an exact balance, abnormal endings, the
// stream output guard (extension and clean cut), Idempotency-Key, price versions, multiplier,
// plans and redemption codes. Built worker under wrangler dev, mock OpenAI upstream, openai SDK.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { sleep, startGateway, startGatewayEarly, startMockOpenAI, stopEarly } from './harness.mjs';

const PRICE_IN = 1_000_000; // 1 micro-unit per prompt token
const PRICE_OUT = 2_000_000; // 2 per completion token
const PROMPT = 9; // o200k: 3 framing + "user" + "hello there" (2) + 3 priming
const costOf = (prompt, completion, bps = 10_000) =>
  Math.ceil(((prompt * PRICE_IN + completion * PRICE_OUT) * bps) / 1e10);

let gw;
let mock;

const adminOk = (...args) => gw.adminOk(...args);

const usageRow = (requestId) => gw.usageRow(requestId);

const newTenant = (credit, name = 't') => gw.newTenant({ name, credit });

const tenantState = (id) => adminOk('GET', `/admin/tenants/${id}/billing`);
const hello = [{ role: 'user', content: 'hello there' }];
const post = (path, key, body, headers = {}) =>
  fetch(gw.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** Waits until the tenant has nothing reserved (every request settled). */
async function settled(tenantId) {
  for (let i = 0; i < 150; i++) {
    const s = await tenantState(tenantId);
    if (s.reserved === 0 && s.allowance_reserved === 0) {
      await gw.exported(tenantId); // D1's usage rows complete (a wallet exports them)
      return s;
    }
    await sleep(100);
  }
  throw new Error('reservations never settled');
}

/** The WALLETS=false gateway of the plans test, started in the first `before` beside the main one. */
let d1Gateway;

before(async () => {
  mock = await startMockOpenAI({ promptTokens: PROMPT, chunkDelayMs: 15 });
  d1Gateway = startGatewayEarly({ vars: { PROVIDER_MOCK_KEY: 'sk-mock', WALLETS: 'false' } });
  gw = await startGateway({ vars: { PROVIDER_MOCK_KEY: 'sk-mock', UPSTREAM_CONNECT_TIMEOUT_MS: '3000' } });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  for (const [name, upstream, max] of [
    ['mock-model', 'gpt-4o-mini', 1000],
    ['mock-small', 'gpt-4o-mini', 3],
    ['mock-500', 'mock-500', 1000],
    ['mock-drop', 'mock-drop', 1000],
    ['mock-nousage', 'mock-nousage', 1000],
  ]) {
    await adminOk('PUT', `/admin/models/${name}`, {
      provider: 'mock',
      upstream_model: upstream,
      input_price: PRICE_IN,
      output_price: PRICE_OUT,
      max_output_tokens: max,
      encoding: 'o200k_base',
    });
  }
});

after(async () => {
  await gw?.kill();
  await stopEarly();
  await mock?.close();
});

describe('reservations under concurrency', () => {
  test('50 concurrent SDK streams against a balance covering exactly N: at most N served', async () => {
    // "hello there" → "mock reply to hello there": 5 completion tokens; max_tokens 5 makes the
    // reservation equal the cost: 9 + 5 × 2 = 19 micro-units.
    const perRequest = costOf(PROMPT, 5);
    assert.equal(perRequest, 19);
    const N = 20;
    const { tenant, client } = await newTenant(perRequest * N, 'race');
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, async () => {
        try {
          const { data: stream, response } = await client.chat.completions
            .create({ model: 'mock-model', stream: true, max_tokens: 5, messages: hello })
            .withResponse();
          let text = '';
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
          assert.equal(text, 'mock reply to hello there');
          return { ok: true, id: response.headers.get('x-request-id') };
        } catch (e) {
          assert.equal(e.status, 402, String(e));
          assert.equal(e.code, 'insufficient_quota');
          return { ok: false };
        }
      }),
    );
    const served = outcomes.filter((o) => o.ok);
    assert.ok(served.length >= 1 && served.length <= N, `served ${served.length}`);
    const state = await settled(tenant.id);
    const rows = await Promise.all(served.map((o) => usageRow(o.id)));
    const spent = rows.reduce((s, r) => s + r.cost, 0);
    assert.ok(state.balance >= 0);
    assert.equal(perRequest * N - state.balance, spent, 'balance decrease = sum of usage costs');
    assert.equal(spent, perRequest * served.length);
    for (const r of rows) assert.equal(r.status, 'ok');
    // Only served requests have rows.
    const all = gw.d1('SELECT COUNT(*) AS n, SUM(cost) AS c FROM usage WHERE tenant_id = ?', tenant.id)[0];
    assert.equal(all.n, served.length);
    assert.equal(all.c, spent);
  });
});

describe('abnormal endings', () => {
  test('upstream error before the first token: nothing charged', async () => {
    const { tenant, client } = await newTenant(1_000_000, 'err-early');
    let requestId;
    await assert.rejects(
      (async () => {
        const { response } = await client.chat.completions
          .create({ model: 'mock-500', stream: true, messages: hello })
          .withResponse();
        requestId = response.headers.get('x-request-id');
      })(),
      (e) => {
        requestId = e.headers?.get?.('x-request-id') ?? e.headers?.['x-request-id'];
        return e.status === 502;
      },
    );
    const row = await usageRow(requestId);
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.cost, 0);
    assert.equal((await settled(tenant.id)).balance, 1_000_000);
  });

  test('upstream error mid-stream: prompt + delivered output charged, local counts', async () => {
    const { tenant, key } = await newTenant(1_000_000, 'err-mid');
    const res = await post('/v1/chat/completions', key.key, {
      model: 'mock-drop', stream: true, messages: [{ role: 'user', content: 'one two three four five' }],
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    const delivered = [...body.matchAll(/"content":"([^"]*)"/g)].map((m) => m[1]).join('');
    assert.ok(delivered.length > 0, body);
    assert.match(body, /"error"/);
    const row = await usageRow(res.headers.get('x-request-id'));
    assert.equal(row.status, 'upstream_error');
    assert.equal(row.usage_source, 'local');
    assert.ok(row.completion_tokens > 0);
    assert.equal(row.cost, costOf(row.prompt_tokens, row.completion_tokens));
    assert.equal((await settled(tenant.id)).balance, 1_000_000 - row.cost);
  });

  test('upstream reports no usage: local counts, marked local', async () => {
    const { client } = await newTenant(1_000_000, 'nousage');
    const { data, response } = await client.chat.completions
      .create({ model: 'mock-nousage', messages: hello })
      .withResponse();
    assert.equal(data.choices[0].message.content, 'mock reply to hello there');
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.usage_source, 'local');
    assert.equal(row.prompt_tokens, PROMPT);
    assert.equal(row.completion_tokens, 5);
    assert.equal(row.cost, costOf(PROMPT, 5));
  });
});

describe('stream output guard', () => {
  // "mock reply to a b c d e f g h": 11 tokens; the model's max_output_tokens is 3.
  const long = [{ role: 'user', content: 'a b c d e f g h' }];

  test('no max_tokens and enough credit: the reservation is extended, output runs to the end', async () => {
    const { tenant, client } = await newTenant(1_000_000, 'extend');
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-small', stream: true, messages: long })
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, 'mock reply to a b c d e f g h');
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'ok');
    const initial = costOf(row.local_prompt_tokens, 3);
    assert.equal(row.reserved, initial + 1024 * 2, 'one extension block of 1024 tokens');
    assert.equal(row.cost, costOf(PROMPT, 11));
    assert.equal((await settled(tenant.id)).balance, 1_000_000 - row.cost);
  });

  test('no max_tokens and no credit for more: clean cut with finish_reason length and usage', async () => {
    const prompt = 3 + 1 + 8 + 3;
    const initial = costOf(prompt, 3);
    const { tenant, client } = await newTenant(initial + 50, 'cut');
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-small', stream: true, stream_options: { include_usage: true }, messages: long })
      .withResponse();
    let text = '';
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(finish, 'length');
    assert.equal(text, 'mock reply to');
    assert.deepEqual([usage.prompt_tokens, usage.completion_tokens], [prompt, 3]);
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'truncated');
    assert.equal(row.completion_tokens, 3);
    assert.equal(row.cost, costOf(prompt, 3));
    assert.equal(row.reserved, initial);
    assert.equal((await settled(tenant.id)).balance, initial + 50 - row.cost);
  });

  test('a provider that ignores max_tokens is cut at the client cap', async () => {
    const { client } = await newTenant(1_000_000, 'cap');
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock-model', stream: true, max_tokens: 2, messages: long })
      .withResponse();
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, 'mock reply');
    assert.equal(finish, 'length');
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.status, 'truncated');
    assert.equal(row.cost, costOf(row.local_prompt_tokens, 2));
  });
});

describe('Idempotency-Key', () => {
  test('a retried plain request is replayed, not charged twice', async () => {
    const { tenant, client } = await newTenant(1_000_000, 'idem');
    // The openai SDK sends no Idempotency-Key by itself; per-request headers are kept on its retries.
    const opts = { headers: { 'Idempotency-Key': 'order-42' } };
    const a = await client.chat.completions.create({ model: 'mock-model', messages: hello }, opts).withResponse();
    const b = await client.chat.completions.create({ model: 'mock-model', messages: hello }, opts).withResponse();
    assert.equal(b.data.id, a.data.id);
    assert.equal(b.response.headers.get('idempotent-replayed'), 'true');
    assert.equal(b.response.headers.get('x-request-id'), a.response.headers.get('x-request-id'));
    const row = await usageRow(a.response.headers.get('x-request-id'));
    assert.equal(row.idempotency_key, 'order-42');
    assert.equal((await settled(tenant.id)).balance, 1_000_000 - row.cost);
    assert.equal(gw.d1('SELECT COUNT(*) AS n FROM usage WHERE tenant_id = ?', tenant.id)[0].n, 1);
  });

  test('same key, different body: 409 idempotency_key_reused, not retried', async () => {
    const { client } = await newTenant(1_000_000, 'idem2');
    const retrying = new OpenAI({ apiKey: client.apiKey, baseURL: client.baseURL, maxRetries: 2 });
    await retrying.chat.completions.create({ model: 'mock-model', messages: hello }, { headers: { 'Idempotency-Key': 'k1' } });
    const before = mock.requests.length;
    await assert.rejects(
      retrying.chat.completions.create(
        { model: 'mock-model', messages: [{ role: 'user', content: 'other' }] },
        { headers: { 'Idempotency-Key': 'k1' } },
      ),
      (e) => e.status === 409 && e.code === 'idempotency_key_reused',
    );
    assert.equal(mock.requests.length, before);
  });

  test('concurrent duplicates: one runs, the SDK retries the 409s into replays, charged once', async () => {
    const { tenant, key } = await newTenant(1_000_000, 'idem3');
    mock.setBehavior(async (req) => {
      if (req.body?.messages?.[0]?.content === 'slow one') await sleep(600);
      return false;
    });
    try {
      const c = new OpenAI({ apiKey: key.key, baseURL: `${gw.url}/v1`, maxRetries: 5 });
      const body = { model: 'mock-model', messages: [{ role: 'user', content: 'slow one' }] };
      // Raw duplicates first: the second sees the first in progress.
      const [r1, r2] = await Promise.all([
        post('/v1/chat/completions', key.key, body, { 'idempotency-key': 'dup-raw' }),
        sleep(150).then(() => post('/v1/chat/completions', key.key, body, { 'idempotency-key': 'dup-raw' })),
      ]);
      assert.equal(r1.status, 200);
      assert.equal(r2.status, 409);
      assert.equal((await r2.json()).error.code, 'idempotency_key_in_progress');
      // Through the SDK: all three calls succeed with the one completion.
      const results = await Promise.all(
        [0, 1, 2].map((i) => sleep(i * 50).then(() => c.chat.completions.create(body, { headers: { 'Idempotency-Key': 'dup-sdk' } }))),
      );
      assert.equal(new Set(results.map((r) => r.id)).size, 1);
      await settled(tenant.id);
      const rows = gw.d1("SELECT cost FROM usage WHERE tenant_id = ? AND idempotency_key = 'dup-sdk'", tenant.id);
      assert.equal(rows.length, 1);
      const spent = gw.d1('SELECT SUM(cost) AS c FROM usage WHERE tenant_id = ?', tenant.id)[0].c;
      assert.equal((await tenantState(tenant.id)).balance, 1_000_000 - spent);
    } finally {
      mock.setBehavior(null);
    }
  });

  test('a completed stream is not replayed (409 idempotency_key_used); an uncharged failure frees the key', async () => {
    const { key } = await newTenant(1_000_000, 'idem4');
    const body = { model: 'mock-model', stream: true, messages: hello };
    const first = await post('/v1/chat/completions', key.key, body, { 'idempotency-key': 's1' });
    await first.text();
    await usageRow(first.headers.get('x-request-id'));
    for (let i = 0; i < 50; i++) {
      const again = await post('/v1/chat/completions', key.key, body, { 'idempotency-key': 's1' });
      const err = await again.json();
      if (err.error.code === 'idempotency_key_in_progress') { await sleep(100); continue; }
      assert.equal(again.status, 409);
      assert.equal(err.error.code, 'idempotency_key_used');
      assert.equal(again.headers.get('x-should-retry'), 'false');
      break;
    }
    const failing = { model: 'mock-500', messages: hello };
    const f1 = await post('/v1/chat/completions', key.key, failing, { 'idempotency-key': 'f1' });
    assert.equal(f1.status, 502);
    await usageRow(f1.headers.get('x-request-id'));
    await sleep(200);
    const f2 = await post('/v1/chat/completions', key.key, failing, { 'idempotency-key': 'f1' });
    assert.equal(f2.status, 502, 'the retry ran again instead of being refused');
  });
});

describe('prices, multiplier, plans', () => {
  test('price changes create versions; usage rows reference the version they were billed at', async () => {
    const body = (input, output, extra = {}) => ({
      provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: input, output_price: output,
      max_output_tokens: 100, encoding: 'o200k_base', ...extra,
    });
    const v1 = await adminOk('PUT', '/admin/models/versioned', body(PRICE_IN, PRICE_OUT));
    const same = await adminOk('PUT', '/admin/models/versioned', body(PRICE_IN, PRICE_OUT));
    assert.equal(same.price_version, v1.price_version, 'unchanged prices: no new version');
    const { client } = await newTenant(1_000_000, 'prices');
    const a = await client.chat.completions.create({ model: 'versioned', messages: hello }).withResponse();
    const v2 = await adminOk('PUT', '/admin/models/versioned', body(3_000_000, 4_000_000, { cached_input_price: 500_000, reasoning_price: 8_000_000 }));
    assert.notEqual(v2.price_version, v1.price_version);
    // Cached and reasoning tokens from the provider, each at its own price.
    mock.setBehavior((req, res) => {
      if (req.body?.messages?.[0]?.content !== 'detailed') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: 'chatcmpl-detailed', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 6, total_tokens: 16,
          prompt_tokens_details: { cached_tokens: 4 }, completion_tokens_details: { reasoning_tokens: 5 } },
      }));
      return true;
    });
    let b;
    try {
      b = await client.chat.completions
        .create({ model: 'versioned', messages: [{ role: 'user', content: 'detailed' }] })
        .withResponse();
    } finally {
      mock.setBehavior(null);
    }
    const rowA = await usageRow(a.response.headers.get('x-request-id'));
    const rowB = await usageRow(b.response.headers.get('x-request-id'));
    assert.equal(rowA.price_version, v1.price_version);
    assert.equal(rowA.cost, costOf(PROMPT, 5));
    assert.equal(rowB.price_version, v2.price_version);
    assert.deepEqual([rowB.cached_prompt_tokens, rowB.reasoning_tokens], [4, 5]);
    // 6 uncached × 3 + 4 cached × 0.5 + 1 output × 4 + 5 reasoning × 8 = 18 + 2 + 4 + 40
    assert.equal(rowB.cost, 64);
    const list = await adminOk('GET', '/admin/models/versioned/prices');
    assert.equal(list.current_version, v2.price_version);
    assert.deepEqual(list.data.map((v) => v.version), [v2.price_version, v1.price_version]);
    assert.equal(list.data[1].input_price, PRICE_IN, 'history is never rewritten');
    assert.equal((await gw.admin('GET', '/admin/models/nope/prices')).status, 404);
  });

  test('tenant multiplier in basis points, rounded up once', async () => {
    const { tenant, client } = await newTenant(1_000_000, 'reseller');
    await adminOk('PUT', `/admin/tenants/${tenant.id}/pricing`, { price_multiplier_bps: 12_345 });
    const { response } = await client.chat.completions.create({ model: 'mock-model', messages: hello }).withResponse();
    const row = await usageRow(response.headers.get('x-request-id'));
    assert.equal(row.multiplier_bps, 12_345);
    assert.equal(row.cost, costOf(PROMPT, 5, 12_345)); // 19 × 1.2345 = 23.4555 → 24
    assert.equal(row.cost, 24);
    assert.equal(response.headers.get('x-tollgate-cost'), '24');
    assert.equal((await gw.admin('PUT', `/admin/tenants/${tenant.id}/pricing`, { price_multiplier_bps: 0 })).status, 400);
  });

  /** The allowance first, then the balance; with `monthBoundary`, D1's cron reset of the month. */
  async function planScenario(monthBoundary) {
    await adminOk('PUT', '/admin/plans/starter', { name: 'Starter', allowance: 50 });
    const { tenant, client } = await newTenant(1_000, 'planned');
    const assigned = await adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'starter' });
    assert.equal(assigned.allowance_remaining, 50);
    const now = new Date();
    assert.equal(assigned.allowance_period, Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    assert.equal(assigned.allowance_resets_at, Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    const costs = [];
    for (let i = 0; i < 3; i++) {
      const { response } = await client.chat.completions
        .create({ model: 'mock-model', max_tokens: 5, messages: hello })
        .withResponse();
      costs.push(await usageRow(response.headers.get('x-request-id')));
    }
    // 19 each: 19 + 19 from the allowance, then 12 from the allowance and 7 from the balance.
    assert.deepEqual(costs.map((r) => r.allowance_cost), [19, 19, 12]);
    const s = await settled(tenant.id);
    assert.equal(s.allowance_remaining, 0);
    assert.equal(s.balance, 1_000 - 7);
    // A request needing more than allowance + balance is refused.
    await assert.rejects(
      client.chat.completions.create({ model: 'mock-model', max_tokens: 1000, messages: hello }),
      (e) => e.status === 402,
    );

    if (monthBoundary) await nextMonthReset(tenant, client, now);

    assert.equal((await gw.admin('DELETE', '/admin/plans/starter')).status, 409);
    await adminOk('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: null });
    await adminOk('DELETE', '/admin/plans/starter');
    assert.equal((await gw.admin('PUT', `/admin/tenants/${tenant.id}/plan`, { plan_id: 'nope' })).status, 400);
  }

  async function nextMonthReset(tenant, client, now) {
    // The month boundary: the scheduled tasks, run as of the first hour of next month, start a
    // new period with the plan's full allowance; running them again changes nothing.
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    const cron = await adminOk('POST', '/admin/cron', { time: nextMonth + 3_600_000 });
    assert.ok(cron.done.some((line) => /reset [1-9]\d* plan/.test(line)), JSON.stringify(cron.done));
    let state = await settled(tenant.id);
    assert.equal(state.allowance_remaining, 50);
    assert.equal(state.allowance_period, nextMonth);
    assert.equal(state.balance, 1_000 - 7, 'the balance is not touched by a reset');
    // The new period's allowance pays for the next request; a second run does not refill it.
    const { response } = await client.chat.completions
      .create({ model: 'mock-model', max_tokens: 5, messages: hello })
      .withResponse();
    assert.equal((await usageRow(response.headers.get('x-request-id'))).allowance_cost, 19);
    await adminOk('POST', '/admin/cron', { time: nextMonth + 7_200_000 });
    state = await settled(tenant.id);
    assert.equal(state.allowance_remaining, 50 - 19);
    assert.equal(state.balance, 1_000 - 7);
  }

  test('plans: the monthly allowance is used first, then the balance', async () => {
    // In the tenant's wallet (WALLETS on by default).
    await planScenario(false);
    // The month boundary as D1's cron sweep decides it (`POST /admin/cron {time}` resets plans in
    // D1 as of a given time): a D1-only mechanism, so on a gateway of its own with WALLETS=false.
    // (The wallet refills lazily on its first command of a new UTC month: tested with the wallet's
    // test clock in wallet-money.test.mjs, 'the wallet refills the allowance on the first command…'.)
    const walletGw = gw;
    gw = await d1Gateway; // PROVIDER_MOCK_KEY, WALLETS=false
    try {
      await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
      await adminOk('PUT', '/admin/models/mock-model', {
        provider: 'mock', upstream_model: 'gpt-4o-mini', input_price: PRICE_IN, output_price: PRICE_OUT,
        max_output_tokens: 1000, encoding: 'o200k_base',
      });
      await planScenario(true);
    } finally {
      await gw.kill();
      gw = walletGw;
    }
  });
});

describe('redemption codes', () => {
  test('generated once, digests stored, each code credits exactly once under concurrency', async () => {
    const batch = await adminOk('POST', '/admin/redemption-codes', { count: 3, amount: 500_000 }, 201);
    assert.equal(batch.codes.length, 3);
    assert.match(batch.codes[0], /^TG-[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/);
    const stored = gw.d1('SELECT digest FROM redemption_codes WHERE batch_id = ?', batch.batch_id);
    assert.equal(stored.length, 3);
    for (const { digest } of stored) for (const c of batch.codes) assert.ok(!digest.includes(c.replaceAll('-', '')));
    const a = await newTenant(0, 'redeem-a');
    const b = await newTenant(0, 'redeem-b');
    const code = batch.codes[0];
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post('/v1/redeem', (i % 2 ? a : b).key.key, { code })),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 1, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 409).length, 19);
    const balances = [(await tenantState(a.tenant.id)).balance, (await tenantState(b.tenant.id)).balance];
    assert.equal(balances[0] + balances[1], 500_000);
    // Typing forgiveness: lowercase, no dashes.
    const second = await post('/v1/redeem', a.key.key, { code: batch.codes[1].toLowerCase().replaceAll('-', '') });
    assert.equal(second.status, 200, await second.clone().text());
    assert.equal((await second.json()).amount, 500_000);
    const bad = await post('/v1/redeem', a.key.key, { code: 'TG-0000-0000-0000-0000' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, 'invalid_redemption_code');
    const ledger = await adminOk('GET', `/admin/tenants/${a.tenant.id}/ledger`);
    assert.ok(ledger.data.every((e) => e.reason.startsWith('redemption code')));
  });

  test('expired codes are refused', async () => {
    const batch = await adminOk('POST', '/admin/redemption-codes', { count: 1, amount: 10, expires_at: Date.now() + 1500 }, 201);
    const t = await newTenant(0, 'late');
    await sleep(2000);
    const res = await post('/v1/redeem', t.key.key, { code: batch.codes[0] });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.code, 'redemption_code_expired');
    assert.equal((await gw.admin('POST', '/admin/redemption-codes', { count: 0, amount: 10 })).status, 400);
  });
});
