// The user center: a tenant signs in with one of its API keys and sees its balance, charts,
// request log, top-ups, plan, keys and plugins.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, onSessionEnd, setCsrf, money, parseMoney, tokens, isoDay, isoTime, DAY_MS, dayStart } from './api.js';
import { DayChart, toSeries } from './chart.jsx';
import { Notice, Tabs, Field, useHashTab } from './ui.jsx';
import { RequestLog, RequestTable } from './requests.jsx';
import './style.css';

const TABS = [
  ['overview', 'Overview'],
  ['requests', 'Requests'],
  ['topup', 'Top up'],
  ['plan', 'Plan'],
  ['keys', 'Keys'],
  ['alerts', 'Alerts'],
  ['plugins', 'Plugins'],
];

function SignIn({ onSignedIn, ended = '' }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(ended);
  const submit = async (e) => {
    e.preventDefault();
    setError('');
    try {
      const s = await api('login', { method: 'POST', body: { key } });
      setKey('');
      onSignedIn(s);
    } catch (err) {
      setError(err.message);
    }
  };
  return (
    <main class="signin">
      <h1>Tollgate</h1>
      <p class="muted">Sign in with one of your API keys. The key is exchanged for a short session; this page does not keep it.</p>
      <form onSubmit={submit} data-testid="signin-form">
        <Field label="API key">
          <input type="password" name="key" autocomplete="off" value={key} onInput={(e) => setKey(e.target.value)} placeholder="tg-…" required />
        </Field>
        <button type="submit">Sign in</button>
      </form>
      {error && <Notice kind="error">{error}</Notice>}
      <p class="muted small"><a href="/console/operator/">Operator console</a></p>
    </main>
  );
}

function Balance({ me }) {
  const b = me.balance;
  const p = me.plan;
  return (
    <section class="cards" data-testid="balance">
      <div class="card">
        <h3>Spendable</h3>
        <p class="big" data-testid="balance-spendable">{money(b.balance)}</p>
        <p class="muted small">Reserved for requests in flight: {money(b.reserved)}</p>
      </div>
      <div class="card">
        <h3>Plan allowance left</h3>
        {p.id ? (
          <>
            <p class="big">{money(p.allowance_remaining)}</p>
            <p class="muted small">of {money(p.allowance)} ({p.id}); resets {p.allowance_resets_at ? isoTime(p.allowance_resets_at) : 'at the next month'}</p>
          </>
        ) : (
          <p class="muted">No plan</p>
        )}
      </div>
      <div class="card">
        <h3>This month ({b.month.period})</h3>
        <p class="big" data-testid="month-spend">{money(b.month.cost)}</p>
        <p class="muted small">{tokens(b.month.total_tokens)} tokens in {tokens(b.month.requests)} requests</p>
      </div>
    </section>
  );
}

function RangePicker({ range, setRange }) {
  const set = (k) => (e) => setRange({ ...range, [k]: e.target.value });
  return (
    <div class="row">
      <Field label="From (UTC day)"><input type="date" value={range.start} onInput={set('start')} /></Field>
      <Field label="To (UTC day, inclusive)"><input type="date" value={range.end} onInput={set('end')} /></Field>
      <Field label="By">
        <select value={range.by} onChange={set('by')} data-testid="chart-by">
          <option value="model">model</option>
          <option value="key">key</option>
          <option value="session">session</option>
        </select>
      </Field>
    </div>
  );
}

const DIM_COLUMN = { model: 'model', key: 'key_id', session: 'session_id' };

function defaultRange() {
  const today = dayStart(Date.now());
  return { start: isoDay(today - 13 * DAY_MS), end: isoDay(today), by: 'model' };
}

function Overview({ me }) {
  const [range, setRange] = useState(defaultRange);
  const [report, setReport] = useState(null);
  const [day, setDay] = useState(null);
  const [dayRows, setDayRows] = useState(null);
  const [error, setError] = useState('');
  const startMs = Date.parse(range.start);
  const endMs = Date.parse(range.end) + DAY_MS;
  useEffect(() => {
    if (!(endMs > startMs)) {
      setError('Choose a "From" day on or before the "To" day.');
      setReport(null);
      return;
    }
    api('usage', { query: { group_by: `day,${range.by}`, start: startMs, end: endMs } })
      .then((r) => { setReport(r); setError(''); })
      .catch((e) => setError(e.message));
  }, [range.start, range.end, range.by]);
  useEffect(() => {
    if (day === null) return;
    api('usage', { query: { start: day, end: day + DAY_MS, limit: 200 } })
      .then((r) => setDayRows(r))
      .catch((e) => setError(e.message));
  }, [day]);
  const dim = DIM_COLUMN[range.by];
  const spend = report && toSeries(report.rows, dim, 'cost', startMs, endMs);
  const toks = report && toSeries(report.rows, dim, 'total_tokens', startMs, endMs);
  return (
    <>
      <Balance me={me} />
      <section>
        <h2>Spend and tokens per day</h2>
        <RangePicker range={range} setRange={setRange} />
        {error && <Notice kind="error">{error}</Notice>}
        {report && (
          <>
            <p class="muted small" data-testid="range-totals">
              {tokens(report.totals.requests)} requests, {tokens(report.totals.total_tokens)} tokens, {money(report.totals.cost)} in this range. Click a day to see its requests.
            </p>
            <div class="charts">
              <DayChart title={`Spend by ${range.by}`} testId="chart-spend" days={spend.days} groups={spend.groups} format={(v) => money(v, Math.abs(v) >= 10000)} onPick={setDay} />
              <DayChart title={`Tokens by ${range.by}`} testId="chart-tokens" days={toks.days} groups={toks.groups} format={(v) => tokens(v)} onPick={setDay} />
            </div>
            <table class="days" data-testid="days">
              <thead><tr><th>Day</th><th>Spend</th><th>Tokens</th><th /></tr></thead>
              <tbody>
                {spend.days.map((d, i) => {
                  const cost = spend.groups.reduce((a, g) => a + g.values[i], 0);
                  const count = toks.groups.reduce((a, g) => a + g.values[i], 0);
                  if (cost === 0 && count === 0) return null;
                  return (
                    <tr key={d}>
                      <td>{isoDay(d * 1000)}</td>
                      <td>{money(cost)}</td>
                      <td>{tokens(count)}</td>
                      <td><button class="link" onClick={() => setDay(d * 1000)}>Requests of the day</button></td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </>
        )}
      </section>
      {day !== null && dayRows && (
        <section data-testid="day-detail">
          <h2>Requests on {isoDay(day)} <button class="link" onClick={() => setDay(null)}>close</button></h2>
          <RequestTable rows={dayRows.data} />
          {dayRows.has_more && <p class="muted small" data-testid="day-more">The newest 200 requests of the day; the Requests tab pages through all of them (From and To: {isoDay(day)}).</p>}
        </section>
      )}
    </>
  );
}

function TopUp({ me, refresh }) {
  const [code, setCode] = useState('');
  const [msg, setMsg] = useState(null);
  const [amount, setAmount] = useState('10.00');
  // "15", "15.5" or "15.50" → 1550 cents (exact, no floats); null when not such an amount.
  const m = /^\s*(\d{1,7})(?:\.(\d{1,2}))?\s*$/.exec(amount);
  const cents = m ? Number(m[1]) * 100 + Number((m[2] || '').padEnd(2, '0') || 0) : null;
  const redeem = async (e) => {
    e.preventDefault();
    try {
      const r = await api('redeem', { method: 'POST', body: { code } });
      setMsg({ kind: 'ok', text: `Redeemed ${money(r.amount)}. New balance: ${money(r.balance)}.` });
      setCode('');
      refresh();
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
  };
  const checkout = async (e) => {
    e.preventDefault();
    try {
      if (cents === null || cents < stripe.min_cents || cents > stripe.max_cents) {
        throw new Error(`Amount: from ${money(stripe.min_cents * stripe.micro_units_per_cent, true)} to ${money(stripe.max_cents * stripe.micro_units_per_cent, true)}, with at most two decimals.`);
      }
      const r = await api('checkout', { method: 'POST', body: { amount_cents: cents } });
      location.assign(r.url);
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
  };
  const stripe = me.stripe;
  return (
    <section>
      <h2>Top up</h2>
      {msg && <Notice kind={msg.kind}>{msg.text}</Notice>}
      <div class="cards">
        <form class="card" onSubmit={redeem} data-testid="redeem-form">
          <h3>Redeem a code</h3>
          <Field label="Code"><input name="code" value={code} onInput={(e) => setCode(e.target.value)} required /></Field>
          <button type="submit">Redeem</button>
        </form>
        <form class="card" onSubmit={checkout} data-testid="checkout-form">
          <h3>Pay by card</h3>
          {stripe.enabled ? (
            <>
              <Field label={`Amount (${stripe.currency.toUpperCase()})`}>
                <input name="amount" inputMode="decimal" value={amount} onInput={(e) => setAmount(e.target.value)} placeholder="10.00" />
              </Field>
              <p class="muted small" data-testid="checkout-credit">Credit: {cents === null ? '–' : money(cents * stripe.micro_units_per_cent)}</p>
              <button type="submit">Continue to Stripe Checkout</button>
            </>
          ) : (
            <p class="muted">Card payments are not configured on this gateway.</p>
          )}
        </form>
      </div>
    </section>
  );
}

function Plan({ me, refresh }) {
  const [plans, setPlans] = useState(null);
  const [requests, setRequests] = useState(null);
  const [note, setNote] = useState('');
  const [msg, setMsg] = useState(null);
  const loadRequests = () => api('plan-requests').then((r) => setRequests(r.data)).catch(() => setRequests([]));
  useEffect(() => {
    api('plans').then((r) => setPlans(r.data)).catch(() => setPlans([]));
    loadRequests();
  }, []);
  const pending = (requests || []).find((r) => r.status === 'pending');
  const ask = async (planId) => {
    try {
      await api('plan-requests', { method: 'POST', body: { plan_id: planId, note: note || undefined } });
      setMsg({ kind: 'ok', text: `Requested plan ${planId}. The operator will approve or decline it.` });
      setNote('');
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
    loadRequests();
  };
  const cancel = async (id) => {
    try {
      await api(`plan-requests/${id}/cancel`, { method: 'POST' });
      setMsg({ kind: 'ok', text: 'Request cancelled.' });
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
    loadRequests();
    refresh();
  };
  return (
    <section>
      <h2>Plan</h2>
      <p data-testid="plan-current">Current plan: <b>{me.plan.id || 'none (prepaid balance only)'}</b>{me.plan.id ? `, monthly allowance ${money(me.plan.allowance)}, ${money(me.plan.allowance_remaining)} left` : ''}.</p>
      <p class="muted small">Price multiplier: {(Number(me.plan.price_multiplier_bps || 10000) / 100).toFixed(2)} % of list price.</p>
      {msg && <Notice kind={msg.kind}>{msg.text}</Notice>}
      <h3>Available plans</h3>
      {plans && plans.length === 0 && <p class="muted">The operator has not published plans.</p>}
      {plans && plans.length > 0 && (
        <>
          <table data-testid="plan-table">
            <thead><tr><th>Plan</th><th>Name</th><th class="num">Monthly allowance</th><th /></tr></thead>
            <tbody>{plans.map((p) => (
              <tr key={p.id} data-plan={p.id}><td>{p.id}</td><td>{p.name}</td><td class="num">{money(p.allowance)}</td>
                <td>{p.id === me.plan.id ? <span class="muted">current</span>
                  : <button type="button" disabled={!!pending} onClick={() => ask(p.id)} data-testid="request-plan">Request this plan</button>}</td></tr>
            ))}</tbody>
          </table>
          {!pending && <Field label="Note to the operator (optional)"><input name="plan_note" maxLength={500} value={note} onInput={(e) => setNote(e.target.value)} /></Field>}
        </>
      )}
      {pending && (
        <p data-testid="plan-pending">Your request for plan <b>{pending.plan_id}</b> ({isoTime(pending.created_at)}) is waiting for the operator.{' '}
          <button class="link" type="button" onClick={() => cancel(pending.id)} data-testid="cancel-plan-request">Cancel it</button></p>
      )}
      {requests && requests.length > 0 && (
        <>
          <h3>Your plan requests</h3>
          <table data-testid="plan-requests">
            <thead><tr><th>Requested</th><th>Plan</th><th>From</th><th>Status</th><th>Decided</th></tr></thead>
            <tbody>{requests.map((r) => (
              <tr key={r.id} data-request={r.id}><td>{isoTime(r.created_at)}</td><td>{r.plan_id}</td><td>{r.from_plan_id || '–'}</td>
                <td data-testid="plan-request-status">{r.status}</td><td>{r.decided_at ? isoTime(r.decided_at) : ''}</td></tr>
            ))}</tbody>
          </table>
        </>
      )}
    </section>
  );
}

// The tenant's own alerts (balance below X → an in-app notice here; the operator's webhook rules
// are not listed) and the notices they raised.
function Alerts() {
  const [state, setState] = useState(null);
  const [amount, setAmount] = useState('');
  const [msg, setMsg] = useState(null);
  const load = () => api('alerts').then(setState).catch((e) => setMsg({ kind: 'error', text: e.message }));
  useEffect(() => { load(); }, []);
  const create = async (e) => {
    e.preventDefault();
    try {
      const micros = parseMoney(amount);
      if (micros === null || micros <= 0) throw new Error('Threshold: an amount like 5.00.');
      await api('alerts', { method: 'POST', body: { threshold: micros } });
      setMsg({ kind: 'ok', text: `You will be notified here when your balance falls below ${money(micros)}.` });
      setAmount('');
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
    load();
  };
  const remove = async (id) => {
    try {
      await api(`alerts/${id}`, { method: 'DELETE' });
      setMsg({ kind: 'ok', text: 'Alert deleted.' });
    } catch (err) {
      setMsg({ kind: 'error', text: err.message });
    }
    load();
  };
  return (
    <section>
      <h2>Alerts</h2>
      {msg && <Notice kind={msg.kind}>{msg.text}</Notice>}
      <form class="row" onSubmit={create} data-testid="alert-form">
        <Field label="Notify me when my balance falls below"><input name="threshold" value={amount} onInput={(e) => setAmount(e.target.value)} placeholder="5.00" required /></Field>
        <button type="submit">Add alert</button>
      </form>
      <p class="muted small">Checked after every request and by the gateway's scheduled run; each alert notifies once per crossing and re-arms when the balance is back above it.</p>
      {state && state.data.length > 0 && (
        <table data-testid="alert-table">
          <thead><tr><th>Balance below</th><th>State</th><th class="num">Notified</th><th>Created</th><th /></tr></thead>
          <tbody>{state.data.map((r) => (
            <tr key={r.id} data-alert={r.id}><td class="num">{money(r.threshold)}</td><td data-testid="alert-state">{r.state}</td><td class="num">{r.fire_count}</td><td>{isoTime(r.created_at)}</td>
              <td><button type="button" class="danger" onClick={() => remove(r.id)} data-testid="delete-alert">Delete</button></td></tr>
          ))}</tbody>
        </table>
      )}
      <h3>Notices</h3>
      {state && state.notices.length === 0 && <p class="muted">No notices.</p>}
      {state && state.notices.length > 0 && (
        <ul data-testid="notices">{state.notices.map((n) => <li key={n.id} data-testid="notice">{isoTime(n.created_at)}: balance {money(n.value)} is below {money(n.threshold)}.</li>)}</ul>
      )}
    </section>
  );
}

function Keys({ me }) {
  const [keys, setKeys] = useState(null);
  const [name, setName] = useState('');
  const [created, setCreated] = useState(null);
  const [error, setError] = useState('');
  const load = () => api('keys').then((r) => setKeys(r.data)).catch((e) => setError(e.message));
  useEffect(() => { if (me.keys_managed_by_tenant) load(); }, []);
  if (!me.keys_managed_by_tenant) {
    return <section><h2>Keys</h2><p class="muted">The operator manages the keys of this gateway. You are signed in with key <span class="mono">{me.key_id}</span>.</p></section>;
  }
  const create = async (e) => {
    e.preventDefault();
    try {
      setCreated(await api('keys', { method: 'POST', body: { name } }));
      setName('');
      load();
    } catch (err) { setError(err.message); }
  };
  const revoke = async (id) => {
    try { await api(`keys/${id}`, { method: 'DELETE' }); load(); } catch (err) { setError(err.message); }
  };
  return (
    <section>
      <h2>Keys</h2>
      {error && <Notice kind="error">{error}</Notice>}
      {created && <Notice kind="ok">New key (shown once, copy it now): <code data-testid="new-key">{created.key}</code></Notice>}
      <form class="row" onSubmit={create}>
        <Field label="Name"><input value={name} onInput={(e) => setName(e.target.value)} required /></Field>
        <button type="submit">Create key</button>
      </form>
      {keys && (
        <table>
          <thead><tr><th>Id</th><th>Name</th><th>Created</th><th>Revoked</th><th /></tr></thead>
          <tbody>{keys.map((k) => (
            <tr key={k.id}>
              <td class="mono">{k.id}</td><td>{k.name}</td><td>{isoTime(k.created_at)}</td><td>{k.revoked_at ? isoTime(k.revoked_at) : ''}</td>
              <td>{!k.revoked_at && k.id !== me.key_id && <button class="danger" onClick={() => revoke(k.id)}>Revoke</button>}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}

function Plugins() {
  const [list, setList] = useState(null);
  useEffect(() => { api('plugins').then((r) => setList(r.data)).catch(() => setList([])); }, []);
  return (
    <section>
      <h2>Plugins</h2>
      <p class="muted small">Enabled for your account. A chat request uses them as tools (<code>"plugins": ["id"]</code>), or call one directly with its command as the last user message. Front ends read the same list from <code>GET /v1/plugins</code>.</p>
      {list && list.length === 0 && <p class="muted">No plugins are enabled for you.</p>}
      {list && list.map((p) => (
        <div class="card" key={p.identifier}>
          <h3>{p.title} <span class="mono muted">{p.identifier}</span></h3>
          <p>{p.description}</p>
          <ul>{p.apis.map((a) => <li key={a.name}><b>{a.name}</b>: {a.description} — <code>{a.command_example}</code></li>)}</ul>
        </div>
      ))}
    </section>
  );
}

function App() {
  const [session, setSession] = useState(undefined);
  const [ended, setEnded] = useState('');
  const [me, setMe] = useState(null);
  useEffect(() => onSessionEnd((message) => { setCsrf(''); setMe(null); setEnded(message); setSession(null); }), []);
  const [tab, setTab] = useHashTab('overview');
  const [flash, setFlash] = useState(null);
  const refresh = () => api('me').then(setMe).catch(() => setSession(null));
  useEffect(() => {
    api('session')
      .then((s) => { setCsrf(s.csrf_token); setSession(s.signed_in ? s : null); })
      .catch(() => setSession(null));
    const q = new URLSearchParams(location.search);
    if (q.get('checkout') === 'success') setFlash({ kind: 'ok', text: 'Payment received: your balance updates as soon as Stripe confirms it.' });
    if (q.get('checkout') === 'cancelled') setFlash({ kind: 'error', text: 'Payment cancelled.' });
  }, []);
  useEffect(() => { if (session) refresh(); }, [session]);
  if (session === undefined) return <p class="muted">Loading…</p>;
  if (session === null) return <SignIn ended={ended} onSignedIn={(s) => { setCsrf(s.csrf_token); setEnded(''); setSession(s); }} />;
  const signOut = async () => {
    await api('logout', { method: 'POST' }).catch(() => {});
    setCsrf('');
    setMe(null);
    setSession(null);
  };
  return (
    <>
      <header>
        <b>Tollgate</b>
        <span class="muted">{me ? `${me.tenant_name || me.tenant_id}` : ''}</span>
        <Tabs tabs={TABS} tab={tab} setTab={setTab} />
        <button class="link" onClick={signOut} data-testid="signout">Sign out</button>
      </header>
      <main>
        {flash && <Notice kind={flash.kind}>{flash.text}</Notice>}
        {!me && <p class="muted">Loading…</p>}
        {me && tab === 'overview' && <Overview me={me} />}
        {me && tab === 'requests' && <RequestLog path="usage" />}
        {me && tab === 'topup' && <TopUp me={me} refresh={refresh} />}
        {me && tab === 'plan' && <Plan me={me} refresh={refresh} />}
        {me && tab === 'keys' && <Keys me={me} />}
        {me && tab === 'alerts' && <Alerts />}
        {me && tab === 'plugins' && <Plugins />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));
