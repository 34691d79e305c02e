// End to end: usage reports (JSON and CSV, grouping, pagination, filters), balance, session
// history, and daily rollups giving the same reports as raw rows.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startGateway, startMockOpenAI } from './harness.mjs';

let gw;
let mock;
let a; // { tenant, keys: [k1, k2] }
let b;
const requestIds = [];

const adminOk = (...args) => gw.adminOk(...args);

const newTenant = (name, credit, keys = 1) => gw.newTenant({ name, credit, keys });

async function chat(key, { model = 'tollgate-echo', session, content = 'hello there', stream = false } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key.key}`,
      'content-type': 'application/json',
      ...(session ? { 'x-session-id': session } : {}),
    },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content }] }),
  });
  await res.text();
  assert.equal(res.status, 200);
  return res.headers.get('x-request-id');
}

/** GET as a tenant; returns { status, json, text, headers }. */
async function tenantGet(key, path, headers = {}) {
  const res = await fetch(gw.url + path, { headers: { authorization: `Bearer ${key.key}`, ...headers } });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text, headers: res.headers };
}

async function waitForRows(tenantId, n) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const [{ c }] = gw.d1('SELECT COUNT(*) AS c FROM usage WHERE tenant_id = ?', tenantId);
    if (c >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${c} of ${n} usage rows for ${tenantId}`);
    await sleep(100);
  }
}

/** A strict RFC 4180 parser (CRLF records), independent of the gateway's encoder. */
function parseCsv(text) {
  const records = [];
  let record = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
      } else if (c === '"') {
        quoted = false;
        i += 1;
      } else {
        field += c;
        i += 1;
      }
    } else if (c === '"') {
      quoted = true;
      i += 1;
    } else if (c === ',') {
      record.push(field);
      field = '';
      i += 1;
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i += 2;
    } else {
      field += c;
      i += 1;
    }
  }
  assert.equal(field, '', 'CSV ends with CRLF');
  assert.equal(record.length, 0);
  return records;
}

const sum = (rows, f) => rows.reduce((acc, r) => acc + r[f], 0);

function assertTotalsAreSums(report) {
  for (const f of ['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost']) {
    assert.ok(Number.isInteger(report.totals[f]), f);
    assert.equal(report.totals[f], sum(report.rows, f), `totals.${f} = sum of rows`);
  }
}

before(async () => {
  mock = await startMockOpenAI({ promptTokens: 11, chunkDelayMs: 1 });
  gw = await startGateway({ vars: { PROVIDER_MOCK_KEY: 'sk-mock' } });
  await adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  // An odd price so costs round per request.
  await adminOk('PUT', '/admin/models/mock-model', {
    provider: 'mock',
    upstream_model: 'gpt-4o-mini',
    input_price: 1_234_567,
    output_price: 7_654_321,
  });
  a = await newTenant('alpha', 50_000_000, 2);
  b = await newTenant('beta', 50_000_000, 1);
  const [k1, k2] = a.keys;
  requestIds.push(await chat(k1, { session: 'sess-one', content: 'first' }));
  requestIds.push(await chat(k1, { session: 'sess-one', content: 'second message here', stream: true }));
  requestIds.push(await chat(k1, { session: 'sess-two', model: 'mock-model' }));
  requestIds.push(await chat(k2, { session: 'sess-two', model: 'mock-model', stream: true }));
  requestIds.push(await chat(k2, { content: 'a somewhat longer prompt for the echo model' }));
  requestIds.push(await chat(k2, { model: 'mock-model', content: 'x' }));
  requestIds.push(await chat(k1, { session: 'sess-one' }));
  await chat(b.keys[0], { session: 'sess-one', content: 'other tenant' });
  await waitForRows(a.tenant.id, 7);
  await waitForRows(b.tenant.id, 1);
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('request listings', () => {
  test('pages through every row of the tenant, newest first, by cursor', async () => {
    const [k1] = a.keys;
    const seen = [];
    let cursor = null;
    let pages = 0;
    for (;;) {
      const q = `/v1/usage?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const { status, json } = await tenantGet(k1, q);
      assert.equal(status, 200, JSON.stringify(json));
      pages += 1;
      seen.push(...json.data.map((r) => r.request_id));
      for (const row of json.data) {
        assert.equal(row.tenant_id, undefined, 'tenant rows omit operator columns');
        assert.equal(typeof row.stream, 'boolean');
        assert.equal(row.provider, undefined);
      }
      if (!json.has_more) {
        assert.equal(json.next_cursor, null);
        break;
      }
      cursor = json.next_cursor;
      assert.equal(cursor, json.data.at(-1).request_id);
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...requestIds].sort().reverse());
  });

  test('filters by key, session, model and time; tenants see only their own rows', async () => {
    const [k1, k2] = a.keys;
    const byKey = (await tenantGet(k1, `/v1/usage?key_id=${k2.id}`)).json.data;
    assert.equal(byKey.length, 3);
    assert.ok(byKey.every((r) => r.key_id === k2.id));
    const bySession = (await tenantGet(k1, '/v1/usage?session_id=sess-one')).json.data;
    assert.equal(bySession.length, 3, 'tenant beta also has a sess-one, not listed here');
    const byModel = (await tenantGet(k1, '/v1/usage?model=mock-model')).json.data;
    assert.equal(byModel.length, 3);
    const future = await tenantGet(k1, `/v1/usage?start=${new Date(Date.now() + 3600_000).toISOString()}`);
    assert.equal(future.json.data.length, 0);
    const past = await tenantGet(k1, '/v1/usage?start=2020-01-01&end=2020-01-02T00:00:00Z');
    assert.equal(past.json.data.length, 0);
    const epoch = await tenantGet(k1, `/v1/usage?start=0&end=${Date.now() + 60_000}`);
    assert.equal(epoch.json.data.length, 7);
    const other = (await tenantGet(b.keys[0], '/v1/usage')).json.data;
    assert.equal(other.length, 1);
    // Another tenant's key filter finds nothing; a tenant cannot ask for another tenant.
    assert.equal((await tenantGet(b.keys[0], `/v1/usage?key_id=${k1.id}`)).json.data.length, 0);
    const refused = await tenantGet(b.keys[0], `/v1/usage?tenant_id=${a.tenant.id}`);
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, 'tenant_id');
  });

  test('bad parameters are OpenAI-shaped 400s; no key is 401', async () => {
    const [k1] = a.keys;
    for (const q of ['start=yesterday', 'group_by=colour', 'limit=0', 'format=xml', 'start=2026-01-02&end=2026-01-01']) {
      const r = await tenantGet(k1, `/v1/usage?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(r.json.error.type, 'invalid_request_error');
    }
    const anon = await fetch(`${gw.url}/v1/usage`);
    assert.equal(anon.status, 401);
  });

  test('CSV listing with a header row and an x-next-cursor header', async () => {
    const [k1] = a.keys;
    const r = await tenantGet(k1, '/v1/usage?limit=4', { accept: 'text/csv' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/csv/);
    const records = parseCsv(r.text);
    assert.equal(records[0][0], 'request_id');
    assert.equal(records.length, 5);
    assert.equal(r.headers.get('x-next-cursor'), records[4][0]);
    const json = (await tenantGet(k1, '/v1/usage?limit=4')).json.data;
    const header = records[0];
    records.slice(1).forEach((rec, i) => {
      const row = Object.fromEntries(header.map((h, j) => [h, rec[j]]));
      assert.equal(row.request_id, json[i].request_id);
      assert.equal(Number(row.cost), json[i].cost);
      assert.equal(row.session_id, json[i].session_id ?? '');
    });
  });

  test('session history lists the requests of one session', async () => {
    const [k1] = a.keys;
    const r = await tenantGet(k1, '/v1/sessions/sess-two/requests');
    assert.equal(r.status, 200);
    assert.equal(r.json.data.length, 2);
    assert.ok(r.json.data.every((row) => row.session_id === 'sess-two' && row.model === 'mock-model'));
    const session = await tenantGet(k1, '/v1/sessions/sess-two');
    assert.equal(session.json.request_count, 2);
    assert.equal(session.json.cost, sum(r.json.data, 'cost'));
    assert.equal((await tenantGet(k1, '/v1/sessions/bad%20id/requests')).status, 400);
    assert.equal((await tenantGet(k1, '/v1/sessions/nope/requests')).json.data.length, 0);
  });
});

const GROUPINGS = ['model', 'key', 'session', 'day', 'week', 'month', 'model,day', 'key,model,month', 'session,week'];

describe('grouped reports', () => {
  test('every grouping: totals are the exact sums of the rows and of the usage table', async () => {
    const [k1] = a.keys;
    const [expected] = gw.d1(
      `SELECT COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens,
              SUM(completion_tokens) AS completion_tokens, SUM(cost) AS cost
       FROM usage WHERE tenant_id = ?`,
      a.tenant.id,
    );
    assert.ok(expected.cost > 0);
    for (const g of GROUPINGS) {
      const { status, json } = await tenantGet(k1, `/v1/usage?group_by=${g}`);
      assert.equal(status, 200, `${g}: ${JSON.stringify(json)}`);
      assertTotalsAreSums(json);
      for (const f of ['requests', 'prompt_tokens', 'completion_tokens', 'cost']) {
        assert.equal(json.totals[f], expected[f], `${g} totals.${f}`);
      }
    }
  });

  test('group by model matches per-model sums; by session counts each session', async () => {
    const [k1] = a.keys;
    const byModel = (await tenantGet(k1, '/v1/usage?group_by=model')).json;
    const dbModels = gw.d1(
      `SELECT model, COUNT(*) AS requests, SUM(cost) AS cost FROM usage WHERE tenant_id = ?
       GROUP BY model ORDER BY model`,
      a.tenant.id,
    );
    assert.deepEqual(
      byModel.rows.map((r) => ({ model: r.model, requests: r.requests, cost: r.cost })),
      dbModels.map((r) => ({ ...r })),
    );
    const bySession = (await tenantGet(k1, '/v1/usage?group_by=session')).json;
    const counts = Object.fromEntries(bySession.rows.map((r) => [r.session_id ?? 'none', r.requests]));
    assert.equal(counts['sess-one'], 3);
    assert.equal(counts['sess-two'], 2);
  });

  test('day, week and month buckets are labelled in UTC', async () => {
    const [k1] = a.keys;
    const now = new Date();
    const day = now.toISOString().slice(0, 10);
    const byDay = (await tenantGet(k1, '/v1/usage?group_by=day')).json;
    assert.equal(byDay.rows.length, 1);
    assert.equal(byDay.rows[0].period, day);
    assert.equal(byDay.rows[0].period_start, Date.parse(`${day}T00:00:00Z`));
    const byMonth = (await tenantGet(k1, '/v1/usage?group_by=month')).json;
    assert.equal(byMonth.rows[0].period, day.slice(0, 7));
    const byWeek = (await tenantGet(k1, '/v1/usage?group_by=week')).json;
    const monday = new Date(Date.parse(`${day}T00:00:00Z`) - ((now.getUTCDay() + 6) % 7) * 86_400_000);
    assert.equal(byWeek.rows[0].period_start, monday.getTime());
    assert.match(byWeek.rows[0].period, /^\d{4}-W\d{2}$/);
  });

  test('grouped CSV has a header and the same rows as JSON', async () => {
    const [k1] = a.keys;
    const csv = await tenantGet(k1, '/v1/usage?group_by=model,day&format=csv');
    assert.match(csv.headers.get('content-type'), /^text\/csv/);
    const records = parseCsv(csv.text);
    assert.deepEqual(records[0], [
      'period', 'period_start', 'model', 'requests', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cost',
    ]);
    const json = (await tenantGet(k1, '/v1/usage?group_by=model,day')).json;
    assert.equal(records.length - 1, json.rows.length);
    records.slice(1).forEach((rec, i) => {
      assert.equal(rec[2], json.rows[i].model);
      assert.equal(Number(rec[7]), json.rows[i].cost);
    });
  });

  test('admin report across tenants, grouped by tenant, and filtered to one', async () => {
    const all = await gw.admin('GET', '/admin/usage?group_by=tenant');
    assert.equal(all.status, 200, all.text);
    assertTotalsAreSums(all.json);
    const ids = all.json.rows.map((r) => r.tenant_id);
    assert.ok(ids.includes(a.tenant.id) && ids.includes(b.tenant.id));
    const [{ c }] = gw.d1('SELECT COUNT(*) AS c FROM usage');
    assert.equal(all.json.totals.requests, c);
    const one = await gw.admin('GET', `/admin/usage?tenant_id=${b.tenant.id}&group_by=model`);
    assert.equal(one.json.totals.requests, 1);
    const rows = await gw.admin('GET', `/admin/usage?tenant_id=${a.tenant.id}&limit=2`);
    assert.equal(rows.json.data.length, 2);
    assert.equal(rows.json.data[0].tenant_id, a.tenant.id);
    assert.ok('upstream_model' in rows.json.data[0]);
    const single = await gw.admin('GET', `/admin/requests/${requestIds[0]}`);
    assert.equal(single.status, 200);
  });
});

describe('balance', () => {
  test('balance, reserved and this month agree with the admin view and the usage rows', async () => {
    const [k1] = a.keys;
    const r = await tenantGet(k1, '/v1/balance');
    assert.equal(r.status, 200);
    const t = await adminOk('GET', `/admin/tenants/${a.tenant.id}`);
    assert.equal(r.json.balance, t.balance);
    assert.equal(r.json.reserved, 0);
    assert.equal(r.json.total, t.balance);
    const [{ cost }] = gw.d1('SELECT SUM(cost) AS cost FROM usage WHERE tenant_id = ?', a.tenant.id);
    assert.equal(r.json.balance, 50_000_000 - cost);
    assert.equal(r.json.month.cost, cost);
    assert.equal(r.json.month.requests, 7);
    assert.equal(r.json.currency.micro_units_per_unit, 1_000_000);
    assert.match(r.json.balance_display, /^\d+\.\d{6}$/);
  });
});

// Last: the rollup moves today's rows into usage_daily (the scheduled run is dated two days ahead).
describe('daily rollups', () => {
  test('reports are identical before and after the rollup, and then read the rollup', async () => {
    const [k1] = a.keys;
    const queries = ['day', 'week', 'month', 'model', 'key', 'key,model,day', 'model&format=csv'].map(
      (g) => `/v1/usage?group_by=${g}`,
    );
    const adminQuery = '/admin/usage?group_by=tenant,model,day';
    const before = [];
    for (const q of queries) before.push((await tenantGet(k1, q)).text);
    const adminBefore = (await gw.admin('GET', adminQuery)).json;
    assert.equal(gw.d1('SELECT COUNT(*) AS c FROM usage_daily')[0].c, 0);

    const time = Date.now() + 2 * 86_400_000;
    // wrangler's /__scheduled always runs as of the real time; POST /admin/cron runs the same
    // tasks as of another time.
    const run = await gw.admin('POST', '/admin/cron', { time });
    assert.equal(run.status, 200, run.text);
    assert.ok(run.json.done.some((line) => /rolled up [1-9]/.test(line)), run.text);

    const daily = gw.d1('SELECT * FROM usage_daily WHERE tenant_id = ? ORDER BY key_id, model', a.tenant.id);
    assert.ok(daily.length >= 3, 'rows per key and model');
    assert.equal(sum(daily, 'requests'), 7);
    const [mark] = gw.d1("SELECT value FROM cron_state WHERE name = 'usage_daily_through'");
    assert.ok(mark.value * 86_400_000 > Date.now(), 'today is rolled up');

    for (let i = 0; i < queries.length; i++) {
      const after = (await tenantGet(k1, queries[i])).text;
      if (queries[i].includes('csv')) {
        assert.equal(after, before[i], queries[i]);
      } else {
        const [x, y] = [JSON.parse(before[i]), JSON.parse(after)];
        assert.equal(x.rollup_days, 0);
        assert.ok(y.rollup_days >= 1, `${queries[i]} read the rollup`);
        delete x.rollup_days;
        delete y.rollup_days;
        assert.deepEqual(y, x, queries[i]);
      }
    }
    const adminAfter = (await gw.admin('GET', adminQuery)).json;
    assert.ok(adminAfter.rollup_days >= 1);
    assert.deepEqual(adminAfter.rows, adminBefore.rows);
    assert.deepEqual(adminAfter.totals, adminBefore.totals);
    // Session reports never use rollups and still agree.
    const sessions = (await tenantGet(k1, '/v1/usage?group_by=session')).json;
    assert.equal(sessions.rollup_days, 0);
    assert.equal(sessions.totals.requests, 7);

    // A second run changes nothing (idempotent).
    assert.equal((await gw.admin('POST', '/admin/cron', { time })).status, 200);
    const scheduled = await fetch(`${gw.url}/__scheduled?cron=*/5+*+*+*+*`);
    assert.equal(scheduled.status, 200, await scheduled.text());
    assert.deepEqual(gw.d1('SELECT * FROM usage_daily WHERE tenant_id = ? ORDER BY key_id, model', a.tenant.id), daily);
  });
});
