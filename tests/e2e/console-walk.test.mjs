// A new operator's and user's first hour with the console, in a real browser (playwright-core and
// Debian's Chromium, as console.test.mjs), in a browser whose time zone is not UTC:
// - the request log filters status through the report API, so a filtered page never loses rows
//   past the first 100, pages back and forth, and its CSV link carries the same filter;
// - the charts label UTC days in UTC;
// - every page fits a 375 px wide phone (no sideways scrolling of the page);
// - the operator issues a key with a budget and an RPM limit, edits them, sets an alert rule, and
//   reads codes and lists as money and UTC times (never raw micro-units or epoch milliseconds).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CHROMIUM, launchChromium, sleep, startGateway, startMockOpenAI } from './harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = join(ROOT, 'target', 'screenshots');
// More requests than one page of the request log (100), all after the one that failed.
const OK_REQUESTS = 101;

let gw;
let mock;
let browser;
let walk; // { tenant, key }
let failedId;

async function chat(key, model, extra = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hello from the walk' }], ...extra }),
  });
  const body = await res.text();
  return { status: res.status, id: res.headers.get('x-request-id'), body };
}

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** A page that records uncaught errors; signed in to the user center or the operator console. */
async function signedIn(kind, { width = 1280 } = {}) {
  await browser.clearCookies(); // the profile persists: each page signs in afresh
  const page = await browser.newPage();
  await page.setViewportSize({ width, height: 800 });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  if (kind === 'user') {
    await page.goto(`${gw.url}/console/`);
    await page.fill('input[name=key]', walk.key.key);
    await page.click('[data-testid=signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=balance-spendable]');
  } else {
    await page.goto(`${gw.url}/console/operator/`);
    await page.fill('input[name=token]', gw.adminToken);
    await page.click('[data-testid=operator-signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=tenant-table]');
  }
  return page;
}

const rowIds = (page) => page.$$eval('[data-testid=request-table] tbody tr', (trs) => trs.map((tr) => tr.dataset.request));

describe('console walk', { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, () => {
  before(async () => {
    mock = await startMockOpenAI({ chunkDelayMs: 1 });
    gw = await startGateway({ vars: { WEBHOOK_WALK: 'walk-signing-secret-0123456789' } });
    await gw.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url });
    await gw.adminOk('PUT', '/admin/models/mock-500', { provider: 'mock', upstream_model: 'mock-500', input_price: 1_000_000, output_price: 1_000_000 });
    walk = await gw.newTenant({ name: 'walk', credit: 10_000_000 });
    // The oldest request fails upstream; then more successful ones than a page holds.
    const failed = await chat(walk.key.key, 'mock-500');
    assert.equal(failed.status, 502, failed.body);
    failedId = failed.id;
    await gw.usageRow(failedId);
    const ids = [];
    for (let i = 0; i < OK_REQUESTS; i += 20) {
      const batch = await Promise.all(Array.from({ length: Math.min(20, OK_REQUESTS - i) }, () => chat(walk.key.key, 'tollgate-echo')));
      for (const r of batch) {
        assert.equal(r.status, 200, r.body);
        ids.push(r.id);
      }
    }
    // Every row exported to D1 (one query a poll, not one per request).
    const deadline = Date.now() + 30_000;
    while (gw.d1('SELECT COUNT(*) AS n FROM usage WHERE tenant_id = ?', walk.tenant.id)[0].n < OK_REQUESTS + 1) {
      assert.ok(Date.now() < deadline, 'usage rows exported');
      await sleep(200);
    }
    assert.equal(new Set(ids).size, OK_REQUESTS);
    browser = await launchChromium({
      // Not UTC (UTC-5 in December): a day drawn in the browser's zone would be the day before.
      timezoneId: 'America/New_York',
      viewport: { width: 1280, height: 800 },
    });
  });

  after(async () => {
    await browser?.close();
    await gw?.kill();
    await mock?.close();
  });

  test('the report API filters by status (listing, grouped, CSV) and refuses an unknown status', async () => {
    const get = async (q) => {
      const res = await fetch(`${gw.url}/v1/usage?${q}`, { headers: { authorization: `Bearer ${walk.key.key}` } });
      return { status: res.status, text: await res.text() };
    };
    let r = await get('status=upstream_error');
    assert.equal(r.status, 200, r.text);
    const failed = JSON.parse(r.text);
    assert.deepEqual(failed.data.map((row) => [row.request_id, row.status]), [[failedId, 'upstream_error']]);
    r = await get('status=ok&group_by=model');
    const grouped = JSON.parse(r.text);
    assert.equal(grouped.totals.requests, OK_REQUESTS);
    assert.deepEqual(grouped.rows.map((row) => row.model), ['tollgate-echo']);
    assert.equal(grouped.filters.status, 'ok');
    r = await get('status=upstream_error&format=csv');
    const lines = r.text.trim().split('\r\n');
    assert.equal(lines.length, 2, r.text);
    assert.ok(lines[1].startsWith(`${failedId},`), lines[1]);
    r = await get('status=failed');
    assert.equal(r.status, 400);
    const err = JSON.parse(r.text).error;
    assert.equal(err.param, 'status');
    assert.equal(err.type, 'invalid_request_error');
    assert.match(err.message, /client_abort/);
  });

  test('request log: a status filter finds a request beyond the first page; pages go back and forth; the CSV has the filter', async () => {
    const page = await signedIn('user');
    // Keyboard: the tabs are links; Enter on a focused one opens it, and it says it is current.
    await page.focus('[data-testid=tab-requests]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid=request-filters]');
    assert.equal(await page.getAttribute('[data-testid=tab-requests]', 'aria-current'), 'page');
    assert.equal(await page.getAttribute('[data-testid=tab-overview]', 'aria-current'), null);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 100);
    const first = await rowIds(page);
    // The failed request is the oldest: on page 2 of the unfiltered log, found at once when filtered.
    await page.selectOption('[data-testid=request-filters] select[name=status]', 'upstream_error');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 1);
    assert.deepEqual(await rowIds(page), [failedId]);
    assert.match(await page.textContent('[data-testid=request-table] tbody tr'), /upstream_error/);
    assert.equal(await page.locator('[data-testid=pager]').count(), 0, 'one page, no pager');
    const href = await page.getAttribute('[data-testid=csv-download]', 'href');
    assert.match(href, /status=upstream_error/);
    const csv = await page.evaluate((u) => fetch(u).then((r) => r.text()), href);
    const records = csv.trim().split('\r\n');
    assert.equal(records.length, 2, csv);
    assert.ok(records[1].startsWith(`${failedId},`));
    // Clicking the request's key shows only that key's requests, its full id in the filter.
    await page.click('[data-testid=request-table] tbody tr [data-filter=key_id]');
    await page.waitForFunction((id) => document.querySelector('[data-testid=request-filters] input[name=key_id]').value === id, walk.key.id);
    assert.match(await page.getAttribute('[data-testid=csv-download]', 'href'), new RegExp(`key_id=${walk.key.id}`));
    await page.fill('[data-testid=request-filters] input[name=key_id]', '');
    await page.press('[data-testid=request-filters] input[name=key_id]', 'Enter');
    // Every status a request can end with is offered.
    const options = await page.$$eval('[data-testid=request-filters] select[name=status] option', (os) => os.map((o) => o.value));
    assert.deepEqual(options, ['', 'ok', 'client_abort', 'upstream_error', 'truncated', 'upstream_timeout', 'upstream_unusable']);

    // Unfiltered: page 1 (100), page 2 (the other 2), back to page 1: every request once.
    await page.selectOption('[data-testid=request-filters] select[name=status]', '');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 100);
    assert.deepEqual(await rowIds(page), first);
    await page.click('[data-testid=next-page]');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid=request-table] tbody tr').length === n, OK_REQUESTS + 1 - 100);
    const second = await rowIds(page);
    assert.equal(await page.textContent('[data-testid=page-number]'), 'Page 2');
    assert.equal(await page.isDisabled('[data-testid=next-page]'), true);
    assert.equal(new Set([...first, ...second]).size, OK_REQUESTS + 1, 'no row lost or repeated across pages');
    await page.click('[data-testid=prev-page]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 100);
    assert.deepEqual(await rowIds(page), first);
    assert.equal(await page.isDisabled('[data-testid=prev-page]'), true);
    // A filter change starts again at page 1.
    await page.click('[data-testid=next-page]');
    await page.waitForFunction(() => document.querySelector('[data-testid=page-number]')?.textContent === 'Page 2');
    await page.selectOption('[data-testid=request-filters] select[name=status]', 'ok');
    await page.waitForFunction(() => document.querySelector('[data-testid=page-number]')?.textContent === 'Page 1');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 100);
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('a session that ends (expired, revoked, cookie gone) brings back the sign-in form with the reason', async () => {
    for (const [kind, form, tab] of [['user', 'signin-form', 'requests'], ['operator', 'operator-signin-form', 'usage']]) {
      const page = await signedIn(kind);
      await browser.clearCookies();
      await page.click(`[data-testid=tab-${tab}]`);
      await page.waitForSelector(`[data-testid=${form}]`);
      assert.match(await page.textContent('[data-testid=notice-error]'), /Not signed in/);
      assert.deepEqual(page.errors, []);
      await page.close();
    }
  });

  test('charts name UTC days in a browser whose zone is not UTC', async () => {
    const page = await signedIn('user');
    await page.waitForSelector('[data-testid=chart-spend] .u-over');
    // Hover the right end of the chart: the cursor snaps to the last day of the range, today (UTC).
    const box = await page.locator('[data-testid=chart-spend] .u-over').boundingBox();
    await page.mouse.move(box.x + box.width - 2, box.y + box.height / 2);
    const today = new Date().toISOString().slice(0, 10);
    await page.waitForFunction(
      (day) => document.querySelector('[data-testid=chart-spend] .u-legend')?.textContent.includes(`Day (UTC)${day}`),
      today,
      { timeout: 5000 },
    );
    await shot(page, 'user-overview-utc');
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('every page fits a 375 px wide screen', async () => {
    const user = await signedIn('user', { width: 375 });
    for (const tab of ['overview', 'requests', 'topup', 'plan', 'keys', 'alerts', 'plugins']) {
      await user.click(`[data-testid=tab-${tab}]`);
      await user.waitForLoadState('networkidle');
      const [scroll, inner] = await user.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
      assert.ok(scroll <= inner, `user center ${tab}: ${scroll} px wide in a ${inner} px screen`);
    }
    await shot(user, 'user-requests-375');
    await user.close();
    const op = await signedIn('operator', { width: 375 });
    await op.click('[data-testid=tenant-table] button.link');
    await op.waitForSelector('[data-testid=tenant-detail]');
    for (const tab of ['tenants', 'usage', 'requests', 'models', 'providers', 'plans', 'codes', 'plugins', 'alerts']) {
      await op.click(`[data-testid=tab-${tab}]`);
      await op.waitForLoadState('networkidle');
      const [scroll, inner] = await op.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
      assert.ok(scroll <= inner, `operator ${tab}: ${scroll} px wide in a ${inner} px screen`);
    }
    await shot(op, 'operator-tenants-375');
    assert.deepEqual([...user.errors, ...op.errors], []);
    await op.close();
  });

  test("the operator's day: a key with a budget and an RPM limit, its limits edited, an alert rule, codes and lists in money and UTC", async () => {
    const op = await signedIn('operator');
    await op.click('[data-testid=tenant-table] tr[data-tenant=walk] button.link');
    const form = op.locator('[data-testid=key-form]');
    // Nonsense is refused before a key is created.
    await form.locator('input[name=key_name]').fill('budgeted');
    await form.locator('input[name=rpm]').fill('two');
    await form.locator('button[type=submit]').click();
    await op.waitForSelector('[data-testid=notice-error]');
    assert.match(await op.textContent('[data-testid=notice-error]'), /RPM/);
    assert.equal((await gw.adminOk('GET', `/admin/tenants/${walk.tenant.id}/keys`)).data.length, 1, 'no key created');
    // RPM 2 and a budget of 0.000100 a day.
    await form.locator('input[name=rpm]').fill('2');
    await form.locator('input[name=budget]').fill('0.0001');
    await form.locator('select[name=budget_period]').selectOption('day');
    await form.locator('button[type=submit]').click();
    await op.waitForSelector('[data-testid=created-key]');
    // The refusal's notice gives way to the success's.
    await op.waitForSelector('[data-testid=notice-ok]:has-text("with its limits")');
    assert.equal(await op.locator('[data-testid=notice-error]').count(), 0);
    const key = await op.textContent('[data-testid=created-key]');
    const keyId = /^tg-([^-]+)-/.exec(key)[1];
    const limits = await gw.adminOk('GET', `/admin/keys/${keyId}/limits`);
    assert.equal(limits.limits.rpm, 2);
    assert.equal(limits.limits.budget, 100);
    assert.equal(limits.limits.budget_period, 'day');
    // The budget holds: a chat request reserves more than 0.000100.
    const refused = await chat(key, 'tollgate-echo');
    assert.equal(refused.status, 402, refused.body);
    assert.equal(JSON.parse(refused.body).error.code, 'budget_exceeded');

    // The key's limits, read back into the editor; the RPM limit cleared, the budget raised.
    await op.waitForSelector(`[data-testid=tenant-detail] tr:has-text("${keyId}") [data-testid=key-limits]`);
    await op.click(`[data-testid=tenant-detail] tr:has-text("${keyId}") [data-testid=key-limits]`);
    const editor = op.locator('[data-testid=key-limits-form]');
    await editor.waitFor();
    await op.waitForFunction(() => document.querySelector('[data-testid=key-limits-form] input[name=budget]')?.value === '0.000100');
    assert.equal(await editor.locator('input[name=rpm]').inputValue(), '2');
    assert.equal(await editor.locator('select[name=budget_period]').inputValue(), 'day');
    await shot(op, 'operator-key-limits');
    await editor.locator('input[name=rpm]').fill('');
    await editor.locator('input[name=budget]').fill('1.50');
    await editor.locator('button[type=submit]').click();
    await op.waitForSelector('[data-testid=notice-ok]:has-text("Limits of key")');
    const edited = await gw.adminOk('GET', `/admin/keys/${keyId}/limits`);
    assert.equal(edited.limits.rpm ?? null, null);
    assert.equal(edited.limits.budget, 1_500_000);
    assert.equal((await chat(key, 'tollgate-echo')).status, 200);

    // An alert rule: a signed webhook when the balance falls below 5.00.
    await op.click('[data-testid=tab-alerts]');
    await op.selectOption('[data-testid=alert-tenant]', walk.tenant.id);
    const alert = op.locator('[data-testid=op-alert-form]');
    await alert.locator('select[name=kind]').selectOption('balance_below');
    await alert.locator('input[name=threshold]').fill('5.00');
    await alert.locator('input[name=webhook_url]').fill('http://127.0.0.1:9/hooks/tollgate');
    await alert.locator('input[name=signing_secret]').fill('WEBHOOK_WALK');
    await alert.locator('button[type=submit]').click();
    await op.waitForSelector('[data-testid=op-alert-threshold]');
    assert.equal(await op.textContent('[data-testid=op-alert-threshold]'), '5.000000');
    await shot(op, 'operator-alerts');
    const rules = (await gw.adminOk('GET', `/admin/tenants/${walk.tenant.id}/alerts`)).data;
    assert.deepEqual(rules.map((r) => [r.kind, r.threshold, r.signing_secret]), [['balance_below', 5_000_000, 'WEBHOOK_WALK']]);

    // The request log across tenants: one tenant's failed requests, and the CSV of that filter.
    await op.click('[data-testid=tab-requests]');
    await op.fill('[data-testid=request-filters] input[name=tenant_id]', walk.tenant.id);
    await op.press('[data-testid=request-filters] input[name=tenant_id]', 'Enter');
    await op.selectOption('[data-testid=request-filters] select[name=status]', 'upstream_error');
    await op.waitForFunction((id) => {
      const rows = [...document.querySelectorAll('[data-testid=request-table] tbody tr')];
      return rows.length === 1 && rows[0].dataset.request === id;
    }, failedId);
    assert.match(await op.textContent('[data-testid=request-table] tbody tr'), new RegExp(walk.tenant.id));
    const logCsv = await op.evaluate((u) => fetch(u).then((r) => r.text()), await op.getAttribute('[data-testid=csv-download]', 'href'));
    assert.equal(logCsv.trim().split('\r\n').length, 2, logCsv);
    await shot(op, 'operator-requests');

    // The usage report: tenants by name in the charts' legends; by session and month, as CSV.
    await op.click('[data-testid=tab-usage]');
    await op.waitForFunction(
      (label) => document.querySelector('[data-testid=op-chart-spend] .u-legend')?.textContent.includes(label),
      `walk (…${walk.tenant.id.slice(-6)})`,
    );
    await op.selectOption('[data-testid=op-usage-by]', 'session');
    await op.selectOption('[data-testid=op-usage-per]', 'month');
    const usageHref = await op.getAttribute('[data-testid=op-usage-csv]', 'href');
    assert.match(decodeURIComponent(usageHref), /group_by=month,session/);
    const usageCsv = await op.evaluate((u) => fetch(u).then((r) => r.text()), usageHref);
    assert.ok(usageCsv.startsWith('period,period_start,session_id,'), usageCsv);

    // Codes: the CSV a spreadsheet reads has decimal amounts; the issued list shows money and UTC.
    await op.click('[data-testid=tab-codes]');
    await op.fill('[data-testid=codes-form] input[type=number]', '2');
    // Valid through a UTC day a month ahead: they expire at the next day's 00:00 UTC.
    const through = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    const expiresAt = Date.parse(through) + 86_400_000;
    await op.fill('[data-testid=codes-form] input[name=valid_through]', through);
    await op.click('[data-testid=codes-form] button[type=submit]');
    await op.waitForSelector('[data-testid=codes-csv]');
    const csv = decodeURIComponent((await op.getAttribute('[data-testid=codes-csv]', 'href')).replace(/^data:text\/csv;charset=utf-8,/, ''));
    const [header, ...records] = csv.trim().split('\r\n');
    assert.equal(header, 'code,amount,amount_micro_units,batch_id,expires_at_utc');
    assert.equal(records.length, 2);
    const expiresIso = new Date(expiresAt).toISOString().replace('T', ' ').slice(0, 19);
    for (const r of records) assert.match(r, new RegExp(`^[^,]+,5\\.000000,5000000,[^,]+,${expiresIso}$`));
    const issued = (await gw.adminOk('GET', '/admin/redemption-codes')).data;
    assert.deepEqual(issued.map((c) => c.expires_at), [expiresAt, expiresAt]);
    await op.waitForFunction(() => [...document.querySelectorAll('section table tbody tr')].length === 2);
    const listed = await op.$$eval('section table', (ts) => ts[ts.length - 1].innerText);
    assert.match(listed, /5\.000000/);
    assert.match(listed, /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z/);
    assert.doesNotMatch(listed, /\b5000000\b|\b1\d{12}\b/, 'raw micro-units or epoch ms');
    await shot(op, 'operator-codes-walk');
    assert.deepEqual(op.errors, []);
    await op.close();
  });
});
