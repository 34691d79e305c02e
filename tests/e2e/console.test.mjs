// End to end in a real browser: the user center and the operator console (issue 16), driven with
// playwright-core and Debian's Chromium (/usr/bin/chromium; scripts/setup.sh installs it). A mock of
// Stripe's API on 127.0.0.1 serves the Checkout page and delivers the signed webhook twice.
// Screenshots of each page go to target/screenshots/.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CHROMIUM, freePort, launchChromium, startGateway } from './harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = join(ROOT, 'target', 'screenshots');
const WEBHOOK_SECRET = 'whsec_console_e2e';

let gw;
let stripe;
let browser; // the persistent browser context
let demo; // { tenant, key }

/** A signed Stripe-Signature header for `payload` at time `t` (seconds). */
function sign(payload, t = Math.floor(Date.now() / 1000), secret = WEBHOOK_SECRET) {
  const v1 = createHmac('sha256', secret).update(`${t}.${payload}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

/**
 * A mock of the part of Stripe the gateway uses: POST /v1/checkout/sessions (form body, bearer
 * secret key) returns a session whose `url` is this server's checkout page; paying there delivers
 * `checkout.session.completed` to the gateway's webhook twice, then redirects to success_url.
 */
async function startMockStripe() {
  const sessions = new Map();
  const deliveries = [];
  let gatewayUrl = '';
  let n = 0;
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString();
    const url = new URL(req.url, 'http://127.0.0.1');
    if (req.method === 'POST' && url.pathname === '/v1/checkout/sessions') {
      if (req.headers.authorization !== 'Bearer sk_test_console') {
        res.writeHead(401, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: { message: 'Invalid API Key provided' } }));
      }
      const form = Object.fromEntries(new URLSearchParams(body));
      const id = `cs_test_${++n}`;
      const session = {
        id,
        object: 'checkout.session',
        url: `http://127.0.0.1:${server.address().port}/pay/${id}`,
        amount_total: Number(form['line_items[0][price_data][unit_amount]']),
        currency: form['line_items[0][price_data][currency]'],
        client_reference_id: form.client_reference_id,
        metadata: { tenant_id: form['metadata[tenant_id]'] },
        success_url: form.success_url,
        payment_status: 'unpaid',
        form,
      };
      sessions.set(id, session);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(session));
    }
    const pay = /^\/pay\/(cs_test_\d+)$/.exec(url.pathname);
    if (pay && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(`<!doctype html><title>Mock Checkout</title><h1>Mock Stripe Checkout</h1>
        <form method="post"><button id="pay" type="submit">Pay</button></form>`);
    }
    if (pay && req.method === 'POST') {
      const session = sessions.get(pay[1]);
      session.payment_status = 'paid';
      const event = JSON.stringify({
        id: `evt_${session.id}`,
        object: 'event',
        type: 'checkout.session.completed',
        data: { object: { ...session, form: undefined } },
      });
      // Stripe delivers at least once: here, twice.
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${gatewayUrl}/stripe/webhook`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'stripe-signature': sign(event) },
          body: event,
        });
        deliveries.push({ status: r.status, body: await r.json(), event });
      }
      res.writeHead(303, { location: session.success_url.replace('{CHECKOUT_SESSION_ID}', session.id) });
      return res.end();
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    sessions,
    deliveries,
    setGateway: (u) => {
      gatewayUrl = u;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

async function chat(key, { session, content = 'Hello from the console test', stream = false } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(session ? { 'x-session-id': session } : {}),
    },
    body: JSON.stringify({ model: 'tollgate-echo', stream, messages: [{ role: 'user', content }] }),
  });
  await res.text();
  assert.equal(res.status, 200);
  const id = res.headers.get('x-request-id');
  await gw.usageRow(id);
  return id;
}

async function balanceOf(key) {
  const res = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(res.status, 200);
  return (await res.json()).balance;
}

const money = (micros) => {
  const whole = Math.floor(micros / 1e6).toLocaleString('en-US');
  return `${whole}.${String(micros % 1e6).padStart(6, '0')}`;
};

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

describe('browser console', { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, () => {
  before(async () => {
    stripe = await startMockStripe();
    gw = await startGateway({
      vars: {
        STRIPE_SECRET_KEY: 'sk_test_console',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_BASE: stripe.url,
        CONSOLE_TENANT_KEYS: 'true',
        ROUTE_FAILURE_THRESHOLD: '2',
        ROUTE_COOLDOWN_MS: '600000',
      },
    });
    stripe.setGateway(gw.url);
    demo = await gw.newTenant({ name: 'demo', credit: 10_000_000 });
    await chat(demo.key.key, { session: 'chat-1' });
    await chat(demo.key.key, { session: 'chat-1', stream: true, content: 'A second, streamed question' });
    await chat(demo.key.key, { session: 'chat-2', content: 'Another conversation entirely' });
    browser = await launchChromium({ viewport: { width: 1280, height: 860 } });
  });

  after(async () => {
    await browser?.close();
    await gw?.kill();
    await stripe?.close();
  });

  test('pages carry a strict CSP and no inline script', async () => {
    for (const path of ['/console/', '/console/operator/']) {
      const res = await fetch(gw.url + path);
      assert.equal(res.status, 200, path);
      const csp = res.headers.get('content-security-policy');
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      const html = await res.text();
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'an inline script');
      assert.doesNotMatch(html, /<style|style=/, 'an inline style');
    }
    // The API is unchanged: JSON, no console headers.
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal((await health.json()).status, 'ok');
  });

  test('user center: sign in, balance, charts, log filters, CSV, redeem, Stripe, sign out', async () => {
    const context = browser;
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // Console errors (a CSP violation would show here), except the network errors of the refusals
    // this test provokes on purpose.
    page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && errors.push(m.text()));
    await page.goto(`${gw.url}/console/`);
    await shot(page, 'user-signin');
    await page.fill('input[name=key]', demo.key.key);
    await page.click('[data-testid=signin-form] button[type=submit]');

    // Balance as the API reports it.
    const before = await balanceOf(demo.key.key);
    await page.waitForSelector('[data-testid=balance-spendable]');
    assert.equal(await page.textContent('[data-testid=balance-spendable]'), money(before));
    // The key is kept nowhere the page can read; the cookie is HttpOnly.
    const stored = await page.evaluate(() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)].join('|'));
    assert.ok(!stored.includes(demo.key.key), stored);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'tg_console');
    assert.ok(session, 'session cookie set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, 'Strict');
    assert.ok(!session.value.includes(demo.key.key));

    // Charts drawn from the three requests.
    await page.waitForSelector('[data-testid=chart-spend] canvas');
    await page.waitForSelector('[data-testid=chart-tokens] canvas');
    assert.match(await page.textContent('[data-testid=range-totals]'), /^3 requests/);
    await page.selectOption('[data-testid=chart-by]', 'session');
    await page.waitForFunction(() => document.querySelector('[data-testid=chart-spend] .u-legend')?.textContent.includes('chat-2'));
    // Drill into today.
    await page.click('[data-testid=days] button');
    await page.waitForSelector('[data-testid=day-detail] [data-testid=request-table]');
    assert.equal(await page.locator('[data-testid=day-detail] tbody tr').count(), 3);
    await shot(page, 'user-overview');

    // Request log and its filters.
    await page.click('[data-testid=tab-requests]');
    await page.waitForSelector('[data-testid=request-table] tbody tr');
    assert.equal(await page.locator('[data-testid=request-table] tbody tr').count(), 3);
    await page.fill('[data-testid=request-filters] input[name=session_id]', 'chat-1');
    await page.press('[data-testid=request-filters] input[name=session_id]', 'Enter');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=request-table] tbody tr').length === 2);
    await page.selectOption('[data-testid=request-filters] select[name=status]', 'truncated');
    await page.waitForSelector('text=No requests.');
    await page.selectOption('[data-testid=request-filters] select[name=status]', '');
    await page.waitForSelector('[data-testid=request-table] tbody tr');
    await shot(page, 'user-requests');

    // CSV of the filtered log, through the report API.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=csv-download]')]);
    const csv = readFileSync(await download.path(), 'utf8');
    const lines = csv.trim().split('\r\n');
    assert.match(lines[0], /^request_id,created_at,key_id,session_id,model/);
    assert.equal(lines.length, 3, csv); // header + the two chat-1 requests
    assert.ok(lines.slice(1).every((l) => l.includes(',chat-1,')), csv);

    // Redeem a code and watch the balance change.
    const codes = await gw.adminOk('POST', '/admin/redemption-codes', { count: 1, amount: 2_500_000 }, 201);
    const code = (codes.data ?? codes.codes)[0].code ?? (codes.data ?? codes.codes)[0];
    await page.click('[data-testid=tab-topup]');
    await page.fill('[data-testid=redeem-form] input[name=code]', code);
    await page.click('[data-testid=redeem-form] button[type=submit]');
    await page.waitForSelector('[data-testid=notice-ok]');
    const afterRedeem = await balanceOf(demo.key.key);
    assert.equal(afterRedeem, before + 2_500_000);
    assert.match(await page.textContent('[data-testid=notice-ok]'), new RegExp(`New balance: ${money(afterRedeem).replace('.', '\\.')}`));
    await page.click('[data-testid=tab-overview]');
    await page.waitForFunction((t) => document.querySelector('[data-testid=balance-spendable]')?.textContent === t, money(afterRedeem));

    // CSRF: the same request without the token, or from another origin, is refused.
    const noToken = await page.evaluate(async (c) => {
      const r = await fetch('/console/api/redeem', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: c }) });
      return [r.status, (await r.json()).error.code];
    }, 'ANY-CODE');
    assert.deepEqual(noToken, [403, 'csrf_check_failed']);
    const cookieHeader = `tg_console=${session.value}`;
    const session2 = await (await fetch(`${gw.url}/console/api/session`, { headers: { cookie: cookieHeader } })).json();
    assert.equal(session2.signed_in, true);
    const foreign = await fetch(`${gw.url}/console/api/redeem`, {
      method: 'POST',
      headers: { cookie: cookieHeader, origin: 'http://evil.example', 'x-csrf-token': session2.csrf_token, 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'X' }),
    });
    assert.equal(foreign.status, 403);
    assert.equal(await balanceOf(demo.key.key), afterRedeem);

    // Stripe Checkout against the mock; the webhook arrives twice and credits once.
    await page.click('[data-testid=tab-topup]');
    // The amount is in currency units (15.00), not cents; more than two decimals is refused here.
    await page.fill('[data-testid=checkout-form] input[name=amount]', '15.999');
    await page.click('[data-testid=checkout-form] button[type=submit]');
    await page.waitForSelector('[data-testid=notice-error]:has-text("two decimals")');
    assert.equal(stripe.sessions.size, 0);
    await page.fill('[data-testid=checkout-form] input[name=amount]', '15.00');
    assert.equal(await page.textContent('[data-testid=checkout-credit]'), 'Credit: 15.000000');
    await shot(page, 'user-topup');
    await page.click('[data-testid=checkout-form] button[type=submit]');
    await page.waitForURL(/\/pay\/cs_test_/);
    await page.click('#pay');
    await page.waitForURL(/\/console\/\?checkout=success/);
    await page.waitForSelector('[data-testid=notice-ok]');
    assert.equal(stripe.deliveries.length, 2);
    assert.deepEqual(stripe.deliveries.map((d) => d.status), [200, 200]);
    assert.equal(stripe.deliveries[0].body.credited, 15_000_000);
    assert.equal(stripe.deliveries[1].body.duplicate, true);
    const afterStripe = await balanceOf(demo.key.key);
    assert.equal(afterStripe, afterRedeem + 15_000_000);
    const [sent] = [...stripe.sessions.values()];
    assert.equal(sent.client_reference_id, demo.tenant.id);
    assert.equal(sent.amount_total, 1500);
    // A third delivery, a forged signature and a stale one change nothing.
    const event = stripe.deliveries[0].event;
    const again = await fetch(`${gw.url}/stripe/webhook`, { method: 'POST', headers: { 'stripe-signature': sign(event) }, body: event });
    assert.equal((await again.json()).duplicate, true);
    const forged = await fetch(`${gw.url}/stripe/webhook`, { method: 'POST', headers: { 'stripe-signature': sign(event, undefined, 'whsec_wrong') }, body: event.replace('cs_test_1', 'cs_test_9') });
    assert.equal(forged.status, 400);
    const stale = await fetch(`${gw.url}/stripe/webhook`, { method: 'POST', headers: { 'stripe-signature': sign(event.replace('cs_test_1', 'cs_test_8'), Math.floor(Date.now() / 1000) - 3600) }, body: event.replace('cs_test_1', 'cs_test_8') });
    assert.equal(stale.status, 400);
    assert.equal(await balanceOf(demo.key.key), afterStripe);
    // One payment record, credited once (to the tenant's wallet, whose ledger holds the credit:
    // D1's credit_ledger has no row for it, docs/money.md "Wallets").
    const payments = gw.d1('SELECT amount, via_wallet, wallet_credited_at FROM stripe_payments WHERE tenant_id = ?', demo.tenant.id);
    assert.deepEqual(payments.map((r) => [r.amount, r.via_wallet, r.wallet_credited_at !== null]), [[15_000_000, 1, true]]);
    await page.waitForFunction((t) => document.querySelector('[data-testid=balance-spendable]')?.textContent === t, money(afterStripe));

    // Plan, keys (the operator allows tenants to manage them here) and plugins pages.
    await page.click('[data-testid=tab-plan]');
    await page.waitForSelector('[data-testid=plan-current]');
    await shot(page, 'user-plan');
    await page.click('[data-testid=tab-keys]');
    await page.fill('form.row input', 'laptop');
    await page.click('form.row button[type=submit]');
    const created = await page.textContent('[data-testid=new-key]');
    assert.match(created, /^tg-/);
    assert.equal(await balanceOf(created), afterStripe, 'the new key belongs to the same tenant');
    await shot(page, 'user-keys');
    // Revoke it from the list: it stops working at once. The signed-in key has no Revoke button.
    assert.equal(await page.locator(`tr:has-text("${demo.key.id}") button.danger`).count(), 0);
    await page.click('tr:has-text("laptop") button.danger');
    await page.waitForFunction(() => [...document.querySelectorAll('tr')].some((r) => r.textContent.includes('laptop') && !r.querySelector('button.danger')));
    const revoked = await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${created}` } });
    assert.equal(revoked.status, 401);
    await page.click('[data-testid=tab-plugins]');
    await page.waitForSelector('text=Plugins');
    await shot(page, 'user-plugins');

    // Sign out: the cookie is gone and the session no longer works.
    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=signin-form]');
    assert.equal((await context.cookies()).find((c) => c.name === 'tg_console'), undefined);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('plan upgrade: the tenant asks in the user center, the operator approves it once', async () => {
    await gw.adminOk('PUT', '/admin/plans/basic', { name: 'Basic', allowance: 1_000_000 });
    await gw.adminOk('PUT', '/admin/plans/pro', { name: 'Pro', allowance: 5_000_000 });
    const t = await gw.newTenant({ name: 'upgrader', credit: 2_000_000 });
    await gw.adminOk('PUT', `/admin/tenants/${t.tenant.id}/plan`, { plan_id: 'basic' });
    const errors = [];
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${gw.url}/console/`);
    await page.fill('input[name=key]', t.key.key);
    await page.click('[data-testid=signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=balance-spendable]');
    await page.click('[data-testid=tab-plan]');
    await page.waitForSelector('tr[data-plan=pro] [data-testid=request-plan]');
    // The current plan cannot be requested; the others can.
    assert.equal(await page.locator('tr[data-plan=basic] [data-testid=request-plan]').count(), 0);
    await page.fill('input[name=plan_note]', 'We need more for the launch');
    await page.click('tr[data-plan=pro] [data-testid=request-plan]');
    await page.waitForSelector('[data-testid=plan-pending]');
    assert.match(await page.textContent('[data-testid=plan-pending]'), /plan pro/);
    assert.equal(await page.locator('tr[data-plan=pro] [data-testid=request-plan]').isDisabled(), true);
    await shot(page, 'user-plan');
    const [req] = gw.d1('SELECT * FROM plan_requests WHERE tenant_id = ?', t.tenant.id);
    assert.deepEqual([req.plan_id, req.from_plan_id, req.status, req.note], ['pro', 'basic', 'pending', 'We need more for the launch']);

    // The JSON API underneath: one pending request at a time, CSRF required, only the tenant's own.
    const login = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: t.key.key }),
    });
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const { csrf_token: csrf } = await login.json();
    const post = (path, body, headers = { 'x-csrf-token': csrf }) => fetch(`${gw.url}/console/api/${path}`, {
      method: 'POST', headers: { cookie, origin: gw.url, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
    });
    assert.equal((await post('plan-requests', { plan_id: 'pro' }, {})).status, 403);
    const again = await post('plan-requests', { plan_id: 'pro' });
    assert.equal(again.status, 409);
    assert.equal((await again.json()).error.code, 'plan_request_pending');
    const listed = await (await fetch(`${gw.url}/console/api/plan-requests`, { headers: { cookie } })).json();
    assert.deepEqual(listed.data.map((r) => r.id), [req.id]);
    const demoLogin = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: demo.key.key }),
    });
    const demoCookie = demoLogin.headers.get('set-cookie').split(';')[0];
    const { csrf_token: demoCsrf } = await demoLogin.json();
    const foreign = await fetch(`${gw.url}/console/api/plan-requests/${req.id}/cancel`, {
      method: 'POST', headers: { cookie: demoCookie, origin: gw.url, 'x-csrf-token': demoCsrf },
    });
    assert.equal(foreign.status, 404, "another tenant's request is not found");
    assert.deepEqual((await (await fetch(`${gw.url}/console/api/plan-requests`, { headers: { cookie: demoCookie } })).json()).data, []);

    // The operator sees it pending and approves it in the console.
    const op = await browser.newPage();
    op.on('pageerror', (e) => errors.push(String(e)));
    await op.goto(`${gw.url}/console/operator/`);
    await op.waitForSelector('[data-testid=operator-signin-form]');
    await op.fill('input[name=token]', gw.adminToken);
    await op.click('[data-testid=operator-signin-form] button[type=submit]');
    await op.waitForSelector('[data-testid=tenant-table]');
    await op.click('[data-testid=tab-plans]');
    await op.waitForSelector('tr[data-tenant=upgrader] [data-testid=approve-plan-request]');
    await shot(op, 'operator-plans');
    await op.click('tr[data-tenant=upgrader] [data-testid=approve-plan-request]');
    await op.waitForFunction(() => document.querySelector('tr[data-tenant=upgrader] [data-testid=plan-request-status]')?.textContent === 'approved');
    // The plan and allowance as the tenant's wallet holds them (D1 keeps the plan id only), once
    // every request has settled.
    const billing = async () => {
      for (let i = 0; i < 150; i++) {
        const b = await gw.adminOk('GET', `/admin/tenants/${t.tenant.id}/billing`);
        if (b.reserved === 0 && b.allowance_reserved === 0) return { plan_id: b.plan_id, allowance_remaining: b.allowance_remaining };
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('reservations never settled');
    };
    assert.deepEqual(await billing(), { plan_id: 'pro', allowance_remaining: 5_000_000 });

    // Exactly once: spend some allowance, then approve again (twice at once) and decline: all refused, nothing reset.
    await chat(t.key.key);
    const spent = await billing();
    assert.ok(spent.allowance_remaining < 5_000_000, `allowance drawn: ${spent.allowance_remaining}`);
    const twice = await Promise.all([0, 1].map(() => gw.admin('POST', `/admin/plan-requests/${req.id}/approve`)));
    assert.deepEqual(twice.map((r) => r.status), [409, 409]);
    assert.equal((await gw.admin('POST', `/admin/plan-requests/${req.id}/decline`)).status, 409);
    assert.deepEqual(await billing(), spent);
    const pending = await gw.adminOk('GET', '/admin/plan-requests?status=pending');
    assert.deepEqual(pending.data.filter((r) => r.tenant_id === t.tenant.id), []);

    // The tenant sees the decision; a new request can be declined, and declining changes no plan.
    await page.reload();
    await page.click('[data-testid=tab-plan]');
    await page.waitForSelector('tr[data-plan=basic] [data-testid=request-plan]');
    assert.equal(await page.textContent(`tr[data-request="${req.id}"] [data-testid=plan-request-status]`), 'approved');
    await page.click('tr[data-plan=basic] [data-testid=request-plan]');
    await page.waitForSelector('[data-testid=plan-pending]');
    const [second] = gw.d1("SELECT id FROM plan_requests WHERE tenant_id = ? AND status = 'pending'", t.tenant.id);
    await gw.adminOk('POST', `/admin/plan-requests/${second.id}/decline`);
    assert.deepEqual(await billing(), spent);
    // Sign both out: the later tests start from their sign-in forms.
    await op.click('[data-testid=signout]');
    await op.waitForSelector('[data-testid=operator-signin-form]');
    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=signin-form]');
    assert.deepEqual(errors, []);
    await op.close();
    await page.close();
  });

  test('tenant alerts: balance below X rules the tenant manages, notices in the user center, once per crossing', async () => {
    const t = await gw.newTenant({ name: 'alerter', credit: 3_000_000 });
    const errors = [];
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${gw.url}/console/`);
    await page.fill('input[name=key]', t.key.key);
    await page.click('[data-testid=signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=balance-spendable]');
    await page.click('[data-testid=tab-alerts]');
    for (const amount of ['2.50', '1.00']) {
      await page.fill('[data-testid=alert-form] input[name=threshold]', amount);
      await page.click('[data-testid=alert-form] button[type=submit]');
      await page.waitForFunction((a) => [...document.querySelectorAll('[data-testid=alert-table] tbody tr td:first-child')].some((td) => td.textContent === a), amount === '2.50' ? '2.500000' : '1.000000');
    }
    const rules = () => gw.d1('SELECT id, kind, threshold, owner, channel, webhook_url FROM alert_rules WHERE tenant_id = ? ORDER BY threshold', t.tenant.id);
    assert.deepEqual(rules().map((r) => [r.kind, r.threshold, r.owner, r.channel, r.webhook_url]), [
      ['balance_below', 1_000_000, 'tenant', 'notice', ''],
      ['balance_below', 2_500_000, 'tenant', 'notice', ''],
    ]);
    // Delete the 1.00 one from its row.
    await page.click(`tr[data-alert="${rules()[0].id}"] [data-testid=delete-alert]`);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=alert-table] tbody tr').length === 1);
    const [rule] = rules();
    assert.equal(rule.threshold, 2_500_000);

    // Scoped to the tenant: another tenant's session neither sees nor deletes it; writes need CSRF.
    const demoLogin = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST', headers: { origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ key: demo.key.key }),
    });
    const cookie = demoLogin.headers.get('set-cookie').split(';')[0];
    const { csrf_token: csrf } = await demoLogin.json();
    assert.deepEqual((await (await fetch(`${gw.url}/console/api/alerts`, { headers: { cookie } })).json()).data, []);
    const foreign = await fetch(`${gw.url}/console/api/alerts/${rule.id}`, { method: 'DELETE', headers: { cookie, origin: gw.url, 'x-csrf-token': csrf } });
    assert.equal(foreign.status, 404);
    const noCsrf = await fetch(`${gw.url}/console/api/alerts`, {
      method: 'POST', headers: { cookie, origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ threshold: 1 }),
    });
    assert.equal(noCsrf.status, 403);
    const webhook = await fetch(`${gw.url}/console/api/alerts`, {
      method: 'POST', headers: { cookie, origin: gw.url, 'x-csrf-token': csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ threshold: 1, webhook_url: 'http://127.0.0.1:1/steal' }),
    });
    assert.equal(webhook.status, 400, 'tenants get in-app notices, never a webhook the gateway would call');
    assert.equal(rules().length, 1);

    // The balance falls below 2.50: the scheduled check raises one notice, however often it runs.
    await gw.adminOk('POST', `/admin/tenants/${t.tenant.id}/credit`, { amount: -1_000_000, reason: 'test debit' });
    for (let i = 0; i < 2; i++) await gw.adminOk('POST', '/admin/cron', { time: Date.now() });
    const deliveries = gw.d1('SELECT status, next_attempt_at, attempts FROM alert_deliveries WHERE rule_id = ?', rule.id).map((r) => ({ ...r }));
    assert.deepEqual(deliveries, [{ status: 'notice', next_attempt_at: null, attempts: 0 }]);
    await page.click('[data-testid=tab-overview]');
    await page.click('[data-testid=tab-alerts]');
    await page.waitForSelector('[data-testid=notices] [data-testid=notice]');
    assert.equal(await page.locator('[data-testid=notice]').count(), 1);
    assert.match(await page.textContent('[data-testid=notice]'), /balance 2\.000000 is below 2\.500000/);
    assert.equal(await page.textContent('[data-testid=alert-state]'), 'fired');
    await shot(page, 'user-alerts');
    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=signin-form]');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a revoked key ends its console session', async () => {
    const t = await gw.newTenant({ name: 'revoked', credit: 1_000_000 });
    const login = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST',
      headers: { origin: gw.url, 'content-type': 'application/json' },
      body: JSON.stringify({ key: t.key.key }),
    });
    assert.equal(login.status, 200);
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const { csrf_token: csrf } = await login.json();
    assert.equal((await fetch(`${gw.url}/console/api/me`, { headers: { cookie } })).status, 200);
    // Another tenant's key cannot be revoked from this session.
    const other = await fetch(`${gw.url}/console/api/keys/${demo.key.id}`, {
      method: 'DELETE',
      headers: { cookie, origin: gw.url, 'x-csrf-token': csrf },
    });
    assert.equal(other.status, 404);
    assert.equal((await fetch(`${gw.url}/v1/balance`, { headers: { authorization: `Bearer ${demo.key.key}` } })).status, 200);
    await gw.adminOk('DELETE', `/admin/keys/${t.key.id}`);
    const after = await fetch(`${gw.url}/console/api/me`, { headers: { cookie } });
    assert.equal(after.status, 401);
    // Sign-in from another origin is refused outright.
    const foreign = await fetch(`${gw.url}/console/api/login`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'application/json' },
      body: JSON.stringify({ key: demo.key.key }),
    });
    assert.equal(foreign.status, 403);
    // A tenant cookie is not an operator session.
    assert.equal((await fetch(`${gw.url}/console/api/admin/tenants`, { headers: { cookie: cookie.replace('tg_console', 'tg_operator') } })).status, 401);
  });

  test('GET /v1/plugins lists the plugins enabled for the caller', async () => {
    const res = await fetch(`${gw.url}/v1/plugins`, { headers: { authorization: `Bearer ${demo.key.key}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data, []);
    assert.equal((await fetch(`${gw.url}/v1/plugins`)).status, 401);
  });

  test('operator console: sign in, create a tenant and a key, credit it, see it in the list', async () => {
    const context = browser;
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && errors.push(m.text()));
    await page.goto(`${gw.url}/console/operator/`);
    await shot(page, 'operator-signin');
    await page.fill('input[name=token]', 'wrong-token');
    await page.click('[data-testid=operator-signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=notice-error]');
    await page.fill('input[name=token]', gw.adminToken);
    await page.click('[data-testid=operator-signin-form] button[type=submit]');
    await page.waitForSelector('[data-testid=tenant-table]');
    const opCookie = (await context.cookies()).find((c) => c.name === 'tg_operator');
    assert.ok(opCookie?.httpOnly && opCookie.secure && opCookie.sameSite === 'Strict');
    assert.ok(!opCookie.value.includes(gw.adminToken));

    await page.fill('[data-testid=tenant-form] input[name=name]', 'acme');
    await page.fill('[data-testid=tenant-form] input[name=credit]', '1.00');
    await page.click('[data-testid=tenant-form] button[type=submit]');
    await page.waitForSelector('[data-testid=tenant-detail]');
    await page.fill('[data-testid=key-form] input[name=key_name]', 'acme-main');
    await page.click('[data-testid=key-form] button[type=submit]');
    const key = await page.textContent('[data-testid=created-key]');
    assert.match(key, /^tg-/);
    await page.fill('[data-testid=credit-form] input[name=amount]', '4.25');
    await page.fill('[data-testid=credit-form] input[name=reason]', 'welcome bonus');
    await page.click('[data-testid=credit-form] button[type=submit]');
    await page.waitForFunction(() => document.querySelector('tr[data-tenant=acme] [data-testid=tenant-balance]')?.textContent === '5.250000');
    assert.equal(await balanceOf(key), 5_250_000);
    // The initial credit is D1's (the tenant had no wallet yet); the operator's credit went to the
    // wallet it then took the tenant into (its own ledger, not D1's credit_ledger).
    const acme = gw.d1("SELECT l.amount, l.reason FROM credit_ledger l JOIN tenants t ON t.id = l.tenant_id WHERE t.name = 'acme' ORDER BY l.created_at");
    assert.deepEqual(acme.map((r) => [r.amount, r.reason]), [[1_000_000, 'initial credit']]);
    // The operator's list shows the wallet's balance, not D1's (frozen at the claim).
    const [acmeId] = gw.d1("SELECT id FROM tenants WHERE name = 'acme'").map((r) => r.id);
    assert.equal(gw.d1('SELECT balance FROM tenants WHERE id = ?', acmeId)[0].balance, 1_000_000);
    const listed = (await gw.adminOk('GET', '/admin/tenants')).data.find((t) => t.id === acmeId);
    assert.equal(listed.balance, 5_250_000);
    // The tenant page's ledger lists both: the wallet's credit first, then D1's history.
    const ledgerRows = () => {
      const h = [...document.querySelectorAll('[data-testid=tenant-detail] h3')].find((e) => e.textContent === 'Ledger');
      return [...(h?.nextElementSibling?.querySelectorAll('tbody tr') ?? [])]
        .map((tr) => [...tr.querySelectorAll('td')].slice(1).map((td) => td.textContent));
    };
    await page.waitForFunction(`(${ledgerRows})().length === 2`);
    assert.deepEqual(await page.evaluate(`(${ledgerRows})()`), [['4.250000', 'welcome bonus'], ['1.000000', 'initial credit']]);
    await shot(page, 'operator-tenants');

    // A model whose two routes both refuse connections: two failed requests open their breakers.
    const deadPort = await freePort();
    for (const name of ['deadend', 'deadend2']) {
      await gw.adminOk('PUT', `/admin/providers/${name}`, { kind: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1` });
    }
    await gw.adminOk('PUT', '/admin/models/dead-model', { provider: 'deadend', upstream_model: 'gone', input_price: 1000, output_price: 1000 });
    await gw.adminOk('PUT', '/admin/routes/dead-model', { routes: [{ provider: 'deadend2' }] });
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${demo.key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'dead-model', messages: [{ role: 'user', content: 'hi' }] }),
      });
      await r.text();
      assert.ok(r.status >= 500, `dead route answered ${r.status}`);
    }
    // A price change is a new price version; the old one stays in the history with its dates.
    await gw.adminOk('PUT', '/admin/models/dead-model', {
      provider: 'deadend',
      upstream_model: 'gone',
      input_price: 2500,
      output_price: 4000,
      cache_write_5m_price: 3000,
      long_context_threshold: 100_000,
      long_input_price: 5000,
      long_output_price: 8000,
    });
    const versions = gw.d1("SELECT id, input_price, created_at FROM price_versions WHERE model = 'dead-model' ORDER BY id DESC");
    assert.equal(versions.length, 2);
    await page.click('[data-testid=tab-models]');
    await page.click('tr[data-model=dead-model] button');
    await page.waitForSelector('[data-testid=routes] [data-testid=breaker]');
    const states = await page.locator('[data-testid=routes] [data-testid=breaker]').allTextContents();
    assert.deepEqual(states, ['open', 'open']);
    await page.waitForSelector('[data-testid=price-history] tbody tr');
    // The model list names each model's current version and since when it is in force.
    assert.equal(await page.textContent('tr[data-model=dead-model] [data-testid=model-price-version]'), `v${versions[0].id} since ${new Date(versions[0].created_at).toISOString().replace('T', ' ').slice(0, 19)}Z`);
    const history = await page.locator('[data-testid=price-history] tbody tr').evaluateAll((rows) =>
      rows.map((r) => ({
        version: Number(r.dataset.version),
        cells: [...r.querySelectorAll('td')].map((td) => td.textContent),
        current: !!r.querySelector('[data-testid=current-price]'),
      })));
    const iso = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
    assert.deepEqual(history.map((h) => h.version), versions.map((v) => v.id));
    assert.deepEqual(history.map((h) => h.current), [true, false]);
    assert.equal(history[0].cells[1], (2500).toLocaleString('en-US'));
    assert.equal(history[1].cells[1], (1000).toLocaleString('en-US'));
    // Effective from its creation; the older version ends when the newer one starts.
    assert.equal(history[0].cells[5], iso(versions[0].created_at));
    assert.equal(history[0].cells[6], '');
    assert.equal(history[1].cells[5], iso(versions[1].created_at));
    assert.equal(history[1].cells[6], iso(versions[0].created_at));
    // Cache-write prices (unset: the input price) and the long-context tier, in the same version.
    const n = (v) => v.toLocaleString('en-US');
    assert.equal(history[0].cells[7], `${n(3000)} / same`);
    assert.equal(history[0].cells[8], `above ${n(100_000)}: ${n(5000)} in, ${n(8000)} out`);
    assert.equal(history[1].cells[8], 'none');
    await shot(page, 'operator-models');
    await page.click('tr[data-model=tollgate-echo] button');
    await page.waitForFunction(() => document.querySelector('[data-testid=routes] td')?.textContent.startsWith('builtin/'));
    assert.equal(await page.textContent('[data-testid=routes] [data-testid=breaker]'), 'closed');

    for (const tab of ['usage', 'providers', 'plans', 'codes', 'plugins', 'alerts']) {
      await page.click(`[data-testid=tab-${tab}]`);
      await page.waitForSelector('main h2');
      if (tab === 'usage') await page.waitForSelector('[data-testid=op-chart-spend] canvas');
      await shot(page, `operator-${tab}`);
    }
    // Operator writes need the CSRF token too.
    const denied = await page.evaluate(async () => (await fetch('/console/api/admin/tenants', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' })).status);
    assert.equal(denied, 403);
    await page.click('[data-testid=signout]');
    await page.waitForSelector('[data-testid=operator-signin-form]');
    assert.deepEqual(errors, []);
    await page.close();
  });
});
