// The operator console: the admin token is exchanged for an operator session; every call goes to
// the admin API through /console/api/admin/… (the worker adds its own ADMIN_TOKEN).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, apiUrl, onSessionEnd, setCsrf, money, plainMoney, parseMoney, tokens, isoDay, isoTime, DAY_MS, dayStart } from './api.js';
import { DayChart, toSeries } from './chart.jsx';
import { Notice, Tabs, Field, useHashTab } from './ui.jsx';
import { RequestLog } from './requests.jsx';
import './style.css';

const TABS = [
  ['tenants', 'Tenants'],
  ['usage', 'Usage'],
  ['requests', 'Requests'],
  ['models', 'Models'],
  ['providers', 'Providers'],
  ['plans', 'Plans'],
  ['codes', 'Codes'],
  ['plugins', 'Plugins'],
  ['alerts', 'Alerts'],
];

const admin = (path, opts) => api(`admin/${path}`, opts);

function monthStart() {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function SignIn({ onSignedIn, ended = '' }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(ended);
  const submit = async (e) => {
    e.preventDefault();
    try {
      const s = await api('operator/login', { method: 'POST', body: { token } });
      setToken('');
      onSignedIn(s);
    } catch (err) {
      setError(err.message);
    }
  };
  return (
    <main class="signin">
      <h1>Tollgate operator</h1>
      <p class="muted">Sign in with the admin token (ADMIN_TOKEN). It is exchanged for a short session and not kept by this page.</p>
      <form onSubmit={submit} data-testid="operator-signin-form">
        <Field label="Admin token"><input type="password" name="token" autocomplete="off" value={token} onInput={(e) => setToken(e.target.value)} required /></Field>
        <button type="submit">Sign in</button>
      </form>
      {error && <Notice kind="error">{error}</Notice>}
      <p class="muted small"><a href="/console/">User center</a></p>
    </main>
  );
}

function TenantDetail({ tenant, plans, onChange, say }) {
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  const [keyName, setKeyName] = useState('');
  const [keyLimits, setKeyLimits] = useState(NO_LIMITS);
  const [limitsOf, setLimitsOf] = useState(null);
  const [newKey, setNewKey] = useState(null);
  const [keys, setKeys] = useState([]);
  const [billing, setBilling] = useState(null);
  const [ledger, setLedger] = useState([]);
  const [plan, setPlan] = useState('');
  const [mult, setMult] = useState('');
  const load = () => {
    admin(`tenants/${tenant.id}/keys`).then((r) => setKeys(r.data)).catch(() => {});
    admin(`tenants/${tenant.id}/billing`).then((b) => { setBilling(b); setPlan(b.plan_id || ''); setMult(String(b.price_multiplier_bps)); }).catch(() => {});
    admin(`tenants/${tenant.id}/ledger`).then((r) => setLedger(r.data || [])).catch(() => {});
  };
  useEffect(load, [tenant.id]);
  const act = (fn) => async (e) => {
    e?.preventDefault?.();
    try { await fn(); load(); onChange(); } catch (err) { say('error', err.message); }
  };
  const credit = act(async () => {
    const micros = parseMoney(amount);
    if (micros === null || micros === 0) throw new Error('Enter an amount like 12.50 (negative to debit).');
    await admin(`tenants/${tenant.id}/credit`, { method: 'POST', body: { amount: micros, reason: reason || undefined } });
    say('ok', `${micros > 0 ? 'Credited' : 'Debited'} ${money(Math.abs(micros))} ${micros > 0 ? 'to' : 'from'} ${tenant.name}.`);
    setAmount(''); setReason('');
  });
  const createKey = act(async () => {
    const limits = parseLimits(keyLimits); // before the key exists: a typo creates nothing
    const k = await admin(`tenants/${tenant.id}/keys`, { method: 'POST', body: { name: keyName } });
    setNewKey(k.key); setKeyName(''); setKeyLimits(NO_LIMITS);
    if (Object.keys(limits).length) {
      try {
        await admin(`keys/${k.id}/limits`, { method: 'PUT', body: limits });
      } catch (err) {
        throw new Error(`Key ${k.id} was created, but its limits were not saved (${err.message}): set them with "Limits" below.`);
      }
    }
    say('ok', `Key ${k.id} created${Object.keys(limits).length ? ' with its limits' : ''}: copy it now, it is shown only once.`);
  });
  const revoke = (id) => act(async () => { await admin(`keys/${id}`, { method: 'DELETE' }); say('ok', `Key ${id} revoked.`); })();
  const toggle = act(async () => {
    await admin(`tenants/${tenant.id}`, { method: 'PATCH', body: { disabled: !tenant.disabled_at } });
  });
  const savePlan = act(async () => {
    await admin(`tenants/${tenant.id}/plan`, { method: 'PUT', body: { plan_id: plan || null } });
    say('ok', 'Plan saved.');
  });
  const saveMult = act(async () => {
    await admin(`tenants/${tenant.id}/pricing`, { method: 'PUT', body: { price_multiplier_bps: Number(mult) } });
    say('ok', 'Multiplier saved.');
  });
  return (
    <section class="card" data-testid="tenant-detail">
      <h2>{tenant.name} <span class="mono muted">{tenant.id}</span></h2>
      <div class="cards">
        <form class="card" onSubmit={credit} data-testid="credit-form">
          <h3>Credit or debit</h3>
          <Field label="Amount (e.g. 25.00; negative debits)"><input name="amount" value={amount} onInput={(e) => setAmount(e.target.value)} required /></Field>
          <Field label="Reason"><input name="reason" value={reason} onInput={(e) => setReason(e.target.value)} /></Field>
          <button type="submit">Apply</button>
        </form>
        <form class="card" onSubmit={createKey} data-testid="key-form">
          <h3>Keys</h3>
          <Field label="New key name"><input name="key_name" value={keyName} onInput={(e) => setKeyName(e.target.value)} required /></Field>
          <LimitFields value={keyLimits} onChange={setKeyLimits} />
          <button type="submit">Create key</button>
          {newKey && <Notice kind="ok">Shown once: <code data-testid="created-key">{newKey}</code></Notice>}
        </form>
        <div class="card">
          <h3>Plan and pricing</h3>
          <form class="row" onSubmit={savePlan}>
            <Field label="Plan">
              <select value={plan} onChange={(e) => setPlan(e.target.value)}>
                <option value="">none</option>
                {plans.map((p) => <option key={p.id} value={p.id}>{p.id}</option>)}
              </select>
            </Field>
            <button type="submit">Save</button>
          </form>
          <form class="row" onSubmit={saveMult}>
            <Field label="Multiplier (bps, 10000 = list)"><input type="number" min="1" value={mult} onInput={(e) => setMult(e.target.value)} /></Field>
            <button type="submit">Save</button>
          </form>
          {billing && <p class="muted small">Allowance left {money(billing.allowance_remaining)}{billing.allowance_resets_at ? `, resets ${isoTime(billing.allowance_resets_at)}` : ''}</p>}
          <button class={tenant.disabled_at ? '' : 'danger'} onClick={toggle}>{tenant.disabled_at ? 'Re-enable tenant' : 'Disable tenant'}</button>
        </div>
      </div>
      <table>
        <thead><tr><th>Key id</th><th>Name</th><th>Created</th><th>Revoked</th><th /></tr></thead>
        <tbody>{keys.map((k) => (
          <tr key={k.id}><td class="mono">{k.id}</td><td>{k.name}</td><td>{isoTime(k.created_at)}</td><td>{k.revoked_at ? isoTime(k.revoked_at) : ''}</td>
            <td>{!k.revoked_at && <><button class="small" type="button" onClick={() => setLimitsOf(k.id)} data-testid="key-limits">Limits</button>{' '}
              <button class="danger small" onClick={() => revoke(k.id)}>Revoke</button></>}</td></tr>
        ))}</tbody>
      </table>
      {limitsOf && <KeyLimits key={limitsOf} keyId={limitsOf} say={say} onClose={() => setLimitsOf(null)} />}
      <h3>Ledger</h3>
      <table>
        <thead><tr><th>Time</th><th class="num">Amount</th><th>Reason</th></tr></thead>
        <tbody>{ledger.slice(0, 20).map((l) => <tr key={l.id}><td>{isoTime(l.created_at)}</td><td class="num">{money(l.amount)}</td><td>{l.reason}</td></tr>)}</tbody>
      </table>
      {ledger.length > 20 && <p class="muted small">The newest 20 entries.</p>}
    </section>
  );
}

const NO_LIMITS = { rpm: '', tpm: '', budget: '', budget_period: 'month' };

/** The limit fields of a form → the body of PUT …/limits (an empty field clears that limit). */
function parseLimits(f, clearEmpty = false) {
  const out = {};
  for (const k of ['rpm', 'tpm']) {
    const v = f[k].trim();
    if (v === '') { if (clearEmpty) out[k] = null; continue; }
    if (!/^[1-9]\d{0,12}$/.test(v)) throw new Error(`${k.toUpperCase()}: a whole number of at least 1, or empty for no limit.`);
    out[k] = Number(v);
  }
  const b = f.budget.trim();
  if (b === '') {
    if (clearEmpty) out.budget = null;
  } else {
    const micros = parseMoney(b);
    if (micros === null || micros < 0) throw new Error('Budget: an amount like 25.00, or empty for no budget.');
    out.budget = micros;
    out.budget_period = f.budget_period;
  }
  return out;
}

function LimitFields({ value, onChange }) {
  const set = (k) => (e) => onChange({ ...value, [k]: e.target.value });
  return (
    <div class="row">
      <Field label="Requests per minute"><input name="rpm" inputMode="numeric" value={value.rpm} onInput={set('rpm')} placeholder="no limit" /></Field>
      <Field label="Tokens per minute"><input name="tpm" inputMode="numeric" value={value.tpm} onInput={set('tpm')} placeholder="no limit" /></Field>
      <Field label="Budget"><input name="budget" inputMode="decimal" value={value.budget} onInput={set('budget')} placeholder="no budget" /></Field>
      <Field label="Budget period (UTC)">
        <select name="budget_period" value={value.budget_period} onChange={set('budget_period')}>
          <option value="day">day</option><option value="week">week</option><option value="month">month</option><option value="total">total</option>
        </select>
      </Field>
    </div>
  );
}

// One key's RPM/TPM limits and budget (GET/PUT /admin/keys/{id}/limits), with what it spent.
function KeyLimits({ keyId, say, onClose }) {
  const [form, setForm] = useState(null);
  const [usage, setUsage] = useState(null);
  const load = () => admin(`keys/${keyId}/limits`).then((r) => {
    const l = r.limits || {};
    setForm({
      rpm: l.rpm == null ? '' : String(l.rpm),
      tpm: l.tpm == null ? '' : String(l.tpm),
      budget: l.budget == null ? '' : plainMoney(l.budget),
      budget_period: l.budget_period || 'month',
    });
    setUsage(r.usage || null);
  }).catch((e) => say('error', e.message));
  useEffect(() => { load(); }, [keyId]);
  const save = async (e) => {
    e.preventDefault();
    try {
      await admin(`keys/${keyId}/limits`, { method: 'PUT', body: parseLimits(form, true) });
      say('ok', `Limits of key ${keyId} saved.`);
      load();
    } catch (err) { say('error', err.message); }
  };
  if (!form) return null;
  return (
    <form class="card" onSubmit={save} data-testid="key-limits-form">
      <h3>Limits of key <span class="mono">{keyId}</span> <button type="button" class="link" onClick={onClose}>close</button></h3>
      <LimitFields value={form} onChange={setForm} />
      {usage && <p class="muted small" data-testid="key-spent">Spent this budget period: {money(usage.spent)}{usage.held ? `, held by requests in flight: ${money(usage.held)}` : ''}.</p>}
      <button type="submit">Save limits</button>
    </form>
  );
}

function Tenants({ say }) {
  const [list, setList] = useState(null);
  const [spend, setSpend] = useState({});
  const [plans, setPlans] = useState([]);
  const [name, setName] = useState('');
  const [credit, setCredit] = useState('');
  const [selected, setSelected] = useState(null);
  const load = () => {
    admin('tenants').then((r) => setList(r.data)).catch((e) => say('error', e.message));
    admin('usage', { query: { group_by: 'tenant', start: monthStart() } })
      .then((r) => setSpend(Object.fromEntries(r.rows.map((row) => [row.tenant_id, row]))))
      .catch(() => {});
    admin('plans').then((r) => setPlans(r.data || [])).catch(() => {});
  };
  useEffect(load, []);
  const create = async (e) => {
    e.preventDefault();
    try {
      const micros = credit ? parseMoney(credit) : 0;
      if (micros === null || micros < 0) throw new Error('Initial credit: a positive amount like 10.00.');
      const t = await admin('tenants', { method: 'POST', body: { name, credit: micros } });
      say('ok', `Tenant ${t.name} created.`);
      setName(''); setCredit('');
      setSelected(t.id);
      load();
    } catch (err) { say('error', err.message); }
  };
  const current = list && list.find((t) => t.id === selected);
  return (
    <>
      <section>
        <h2>Tenants</h2>
        <form class="row" onSubmit={create} data-testid="tenant-form">
          <Field label="Name"><input name="name" value={name} onInput={(e) => setName(e.target.value)} required /></Field>
          <Field label="Initial credit"><input name="credit" value={credit} onInput={(e) => setCredit(e.target.value)} placeholder="0.00" /></Field>
          <button type="submit">Create tenant</button>
        </form>
        {list && (
          <table data-testid="tenant-table">
            <thead><tr><th>Name</th><th>Id</th><th class="num">Balance</th><th class="num">Reserved</th><th class="num">Month spend</th><th class="num">Month tokens</th><th>Status</th><th /></tr></thead>
            <tbody>{list.map((t) => (
              <tr key={t.id} data-tenant={t.name}>
                <td>{t.name}</td><td class="mono">{t.id}</td>
                <td class="num" data-testid="tenant-balance">{money(t.balance)}</td><td class="num">{money(t.reserved)}</td>
                <td class="num">{money(spend[t.id]?.cost || 0)}</td><td class="num">{tokens(spend[t.id]?.total_tokens || 0)}</td>
                <td>{t.disabled_at ? <span class="pill open">disabled</span> : <span class="pill closed">active</span>}</td>
                <td><button class="link" onClick={() => setSelected(t.id)}>Manage</button></td>
              </tr>
            ))}</tbody>
          </table>
        )}
      </section>
      {current && <TenantDetail tenant={current} plans={plans} onChange={load} say={say} />}
    </>
  );
}

function Usage() {
  const today = dayStart(Date.now());
  const [range, setRange] = useState({ start: isoDay(today - 13 * DAY_MS), end: isoDay(today), by: 'tenant', per: 'day' });
  const [report, setReport] = useState(null);
  const [listing, setListing] = useState(null);
  const startMs = Date.parse(range.start);
  const endMs = Date.parse(range.end) + DAY_MS;
  const [error, setError] = useState('');
  useEffect(() => {
    if (!(endMs > startMs)) {
      setError('Choose a "From" day on or before the "To" day.');
      setReport(null);
      setListing(null);
      return;
    }
    setError('');
    admin('usage', { query: { group_by: `day,${range.by}`, start: startMs, end: endMs } }).then(setReport).catch((e) => setError(e.message));
    admin('usage', { query: { start: startMs, end: endMs, limit: 1000 } }).then((r) => setListing(r.data)).catch((e) => setError(e.message));
  }, [range.start, range.end, range.by]);
  const dim = { tenant: 'tenant_id', model: 'model', key: 'key_id', session: 'session_id' }[range.by];
  // Tenants by name in the legends (with the end of the id: names need not be unique).
  const [names, setNames] = useState({});
  useEffect(() => {
    admin('tenants').then((r) => setNames(Object.fromEntries((r.data || []).map((t) => [t.id, t.name])))).catch(() => {});
  }, []);
  const label = range.by === 'tenant' ? (id) => (names[id] ? `${names[id]} (…${id.slice(-6)})` : id) : undefined;
  const spend = report && toSeries(report.rows, dim, 'cost', startMs, endMs, label);
  const toks = report && toSeries(report.rows, dim, 'total_tokens', startMs, endMs, label);
  // Drift: provider-reported vs Tollgate's own counts, per model, over requests the provider
  // reported usage for (the newest 1000 of the range).
  const drift = {};
  for (const r of listing || []) {
    if (r.usage_source !== 'upstream') continue;
    const d = (drift[r.model] ||= { requests: 0, provider: 0, local: 0 });
    d.requests += 1;
    d.provider += Number(r.prompt_tokens) + Number(r.completion_tokens);
    d.local += Number(r.local_prompt_tokens) + Number(r.local_completion_tokens);
  }
  const set = (k) => (e) => setRange({ ...range, [k]: e.target.value });
  return (
    <section>
      <h2>Usage across tenants</h2>
      <div class="row">
        <Field label="From (UTC day)"><input type="date" value={range.start} onInput={set('start')} /></Field>
        <Field label="To (UTC day, inclusive)"><input type="date" value={range.end} onInput={set('end')} /></Field>
        <Field label="By"><select value={range.by} onChange={set('by')} data-testid="op-usage-by"><option>tenant</option><option>model</option><option>key</option><option>session</option></select></Field>
        <Field label="CSV per"><select value={range.per} onChange={set('per')} data-testid="op-usage-per"><option>day</option><option>week</option><option>month</option></select></Field>
        <a class="button" data-testid="op-usage-csv" href={apiUrl('admin/usage', { group_by: `${range.per},${range.by}`, start: startMs, end: endMs, format: 'csv' })} download={`tollgate-usage-by-${range.per}-${range.by}.csv`}>CSV</a>
        <span class="muted small">CSV amounts are integer micro-units (1,000,000 = 1.00)</span>
      </div>
      {error && <Notice kind="error">{error}</Notice>}
      {report && (
        <div class="charts">
          <DayChart title={`Spend by ${range.by}`} testId="op-chart-spend" days={spend.days} groups={spend.groups} format={(v) => money(v, Math.abs(v) >= 10000)} />
          <DayChart title={`Tokens by ${range.by}`} testId="op-chart-tokens" days={toks.days} groups={toks.groups} format={(v) => tokens(v)} />
        </div>
      )}
      <h2>Drift: provider-reported vs local token counts</h2>
      <table data-testid="drift">
        <thead><tr><th>Model</th><th class="num">Requests</th><th class="num">Provider tokens</th><th class="num">Local tokens</th><th class="num">Drift</th></tr></thead>
        <tbody>{Object.entries(drift).map(([m, d]) => (
          <tr key={m}><td>{m}</td><td class="num">{d.requests}</td><td class="num">{tokens(d.provider)}</td><td class="num">{tokens(d.local)}</td>
            <td class="num">{d.provider ? `${(((d.local - d.provider) * 100) / d.provider).toFixed(2)} %` : '–'}</td></tr>
        ))}</tbody>
      </table>
      {listing && Object.keys(drift).length === 0 && <p class="muted">No provider-reported usage in this range.</p>}
    </section>
  );
}

/** A read-only table of whatever rows an admin list route returns. */
function JsonTable({ rows, columns }) {
  if (!rows) return <p class="muted">Loading…</p>;
  if (!rows.length) return <p class="muted">None.</p>;
  const cols = columns || Object.keys(rows[0]);
  const cell = (c, v) => {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number' && MONEY_COLUMNS.has(c)) return money(v);
    if (typeof v === 'number' && /(^|_)at$/.test(c)) return isoTime(v);
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  const head = (c) => (MONEY_COLUMNS.has(c) ? c : /(^|_)at$/.test(c) ? `${c} (UTC)` : c);
  return (
    <table>
      <thead><tr>{cols.map((c) => <th key={c}>{head(c)}</th>)}</tr></thead>
      <tbody>{rows.map((r, i) => <tr key={i}>{cols.map((c) => <td key={c} class={typeof r[c] === 'number' ? 'num' : ''}>{cell(c, r[c])}</td>)}</tr>)}</tbody>
    </table>
  );
}

// Columns of admin lists that hold micro-units (shown as 12.345678); `*_at` columns are UTC ms.
const MONEY_COLUMNS = new Set(['amount', 'allowance', 'balance', 'reserved', 'debt', 'price_per_call', 'cost']);

// A model's price history (GET /admin/models/{model}/prices, newest first): each version is in
// force from its creation until the next version's; the model's current version is marked.
function PriceHistory({ history }) {
  if (!history) return null;
  const rows = history.data || [];
  if (!rows.length) return <p class="muted">No price versions.</p>;
  const price = (v) => (v === null || v === undefined ? <span class="muted">same</span> : tokens(v));
  return (
    <table data-testid="price-history">
      <thead><tr><th>Version</th><th class="num">Input</th><th class="num">Cached input</th><th class="num">Output</th><th class="num">Reasoning</th><th>Effective from</th><th>Until</th><th>Cache writes 5m / 1h</th><th>Long context</th><th /></tr></thead>
      <tbody>{rows.map((v, i) => {
        const until = i > 0 ? rows[i - 1].created_at : null;
        const current = v.version === history.current_version;
        return (
          <tr key={v.version} data-version={v.version} class={current ? 'current' : ''}>
            <td>{v.version}</td><td class="num">{tokens(v.input_price)}</td><td class="num">{price(v.cached_input_price)}</td>
            <td class="num">{tokens(v.output_price)}</td><td class="num">{price(v.reasoning_price)}</td>
            <td data-testid="effective-from">{isoTime(v.created_at)}</td>
            <td data-testid="effective-until">{until === null ? '' : isoTime(until)}</td>
            <td data-testid="cache-writes">{price(v.cache_write_5m_price)} / {price(v.cache_write_1h_price)}</td>
            <td data-testid="long-context">{v.long_context_threshold == null ? <span class="muted">none</span> : <>above {tokens(v.long_context_threshold)}: {tokens(v.long_input_price)} in, {tokens(v.long_output_price)} out</>}</td>
            <td>{current && <span class="pill closed" data-testid="current-price">current</span>}</td>
          </tr>
        );
      })}</tbody>
    </table>
  );
}

function Models() {
  const [models, setModels] = useState(null);
  const [prices, setPrices] = useState(null);
  const [routes, setRoutes] = useState(null);
  const [model, setModel] = useState(null);
  useEffect(() => { admin('models').then((r) => setModels(r.data)).catch(() => setModels([])); }, []);
  useEffect(() => {
    if (!model) return;
    admin(`models/${model}/prices`).then((r) => setPrices(r)).catch(() => setPrices({ data: [] }));
    api(`routes/${model}`).then((r) => setRoutes([r.primary, ...(r.routes || [])])).catch(() => setRoutes([]));
  }, [model]);
  return (
    <section>
      <h2>Models and prices <span class="muted small">(micro-units per 1M tokens)</span></h2>
      {models && (
        <table>
          <thead><tr><th>Model</th><th>Provider</th><th>Upstream</th><th class="num">Input</th><th class="num">Output</th><th>Price version</th><th /></tr></thead>
          <tbody>{models.map((m) => (
            <tr key={m.name} data-model={m.name}><td>{m.name}</td><td>{m.provider}</td><td>{m.upstream_model}</td><td class="num">{tokens(m.input_price)}</td><td class="num">{tokens(m.output_price)}</td><td data-testid="model-price-version">{m.price_version ? `v${m.price_version} since ${isoTime(m.price_since)}` : '–'}</td>
              <td><button class="link" onClick={() => setModel(m.name)}>Prices and routes</button></td></tr>
          ))}</tbody>
        </table>
      )}
      {model && (
        <>
          <h3>Price history of {model} <span class="muted small">(micro-units per 1M tokens; each usage row names the version it was billed at)</span></h3>
          <PriceHistory history={prices} />
          <h3>Routes of {model} and their circuit breakers</h3>
          {routes && (
            <table data-testid="routes">
              <thead><tr><th>Route</th><th class="num">Priority</th><th class="num">Weight</th><th>Breaker</th><th class="num">Consecutive failures</th><th>Opened</th></tr></thead>
              <tbody>{routes.map((r) => (
                <tr key={r.breaker.route}><td>{r.breaker.route}</td><td class="num">{r.priority}</td><td class="num">{r.weight ?? ''}</td>
                  <td><span class={`pill ${r.breaker.state === 'closed' ? 'closed' : 'open'}`} data-testid="breaker">{r.breaker.state}</span></td>
                  <td class="num">{r.breaker.consecutive_failures}</td><td>{r.breaker.opened_at ? isoTime(r.breaker.opened_at) : ''}</td></tr>
              ))}</tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

function ListPage({ title, path, columns, pick = (r) => r.data }) {
  const [rows, setRows] = useState(null);
  useEffect(() => { admin(path).then((r) => setRows(pick(r))).catch(() => setRows([])); }, [path]);
  return <section><h2>{title}</h2><JsonTable rows={rows} columns={columns} /></section>;
}

function Plans({ say }) {
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [allowance, setAllowance] = useState('');
  const [n, setN] = useState(0);
  const save = async (e) => {
    e.preventDefault();
    try {
      const micros = parseMoney(allowance);
      if (micros === null || micros < 0) throw new Error('Allowance: an amount like 20.00.');
      await admin(`plans/${id}`, { method: 'PUT', body: { name, allowance: micros } });
      say('ok', `Plan ${id} saved.`);
      setN(n + 1);
    } catch (err) { say('error', err.message); }
  };
  return (
    <>
      <section>
        <h2>Plans</h2>
        <form class="row" onSubmit={save}>
          <Field label="Id"><input value={id} onInput={(e) => setId(e.target.value)} required /></Field>
          <Field label="Name"><input value={name} onInput={(e) => setName(e.target.value)} required /></Field>
          <Field label="Monthly allowance"><input value={allowance} onInput={(e) => setAllowance(e.target.value)} placeholder="20.00" required /></Field>
          <button type="submit">Save plan</button>
        </form>
      </section>
      <ListPage key={n} title="" path="plans" />
      <PlanRequests say={say} />
    </>
  );
}

// Tenants' plan upgrade requests (GET /admin/plan-requests): pending ones first, to approve (the
// plan is assigned once) or decline.
function PlanRequests({ say }) {
  const [rows, setRows] = useState(null);
  const load = () => admin('plan-requests').then((r) => setRows(r.data || [])).catch(() => setRows([]));
  useEffect(() => { load(); }, []);
  const decide = async (id, action) => {
    try {
      await admin(`plan-requests/${id}/${action}`, { method: 'POST' });
      say('ok', `Request ${id} ${action === 'approve' ? 'approved' : 'declined'}.`);
    } catch (err) { say('error', err.message); }
    load();
  };
  if (!rows) return null;
  const ordered = [...rows].sort((a, b) => (a.status === 'pending' ? 0 : 1) - (b.status === 'pending' ? 0 : 1));
  return (
    <section>
      <h2>Plan requests</h2>
      {ordered.length === 0 ? <p class="muted">No tenant has asked for a plan.</p> : (
        <table data-testid="plan-request-table">
          <thead><tr><th>Requested</th><th>Tenant</th><th>From</th><th>Plan</th><th>Note</th><th>Status</th><th /></tr></thead>
          <tbody>{ordered.map((r) => (
            <tr key={r.id} data-request={r.id} data-tenant={r.tenant_name}>
              <td>{isoTime(r.created_at)}</td><td>{r.tenant_name}</td><td>{r.from_plan_id || '–'}</td><td>{r.plan_id}</td><td>{r.note || ''}</td>
              <td data-testid="plan-request-status">{r.status}</td>
              <td>{r.status === 'pending' && (
                <>
                  <button type="button" onClick={() => decide(r.id, 'approve')} data-testid="approve-plan-request">Approve</button>{' '}
                  <button type="button" class="link" onClick={() => decide(r.id, 'decline')} data-testid="decline-plan-request">Decline</button>
                </>
              )}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}

function Codes({ say }) {
  const [count, setCount] = useState('10');
  const [amount, setAmount] = useState('5.00');
  const [until, setUntil] = useState('');
  const [batch, setBatch] = useState(null);
  const [n, setN] = useState(0);
  const generate = async (e) => {
    e.preventDefault();
    try {
      const micros = parseMoney(amount);
      if (!micros || micros <= 0) throw new Error('Amount: a positive amount like 5.00.');
      if (!/^\d{1,4}$/.test(count.trim()) || Number(count) < 1 || Number(count) > 1000) throw new Error('How many: a whole number from 1 to 1000.');
      // Valid through the chosen UTC day: it expires at the next day's 00:00 UTC.
      const expires = until ? Date.parse(until) + DAY_MS : undefined;
      const r = await admin('redemption-codes', { method: 'POST', body: { count: Number(count), amount: micros, expires_at: expires } });
      setBatch(r);
      setN(n + 1);
    } catch (err) { say('error', err.message); }
  };
  const codes = batch ? (batch.data || batch.codes || []) : [];
  // One line per code: the amount as a decimal (1.00 = 1,000,000 micro-units) so that a spreadsheet
  // reads the value a person redeems, and the micro-units the API speaks; the expiry as
  // "YYYY-MM-DD HH:MM:SS" in UTC (the column says so; a trailing Z stops spreadsheets reading a date).
  const csv = codes.length
    ? 'data:text/csv;charset=utf-8,' + encodeURIComponent(
      'code,amount,amount_micro_units,batch_id,expires_at_utc\r\n'
        + codes.map((c) => {
          const micros = c.amount ?? batch.amount;
          return [c.code ?? c, plainMoney(micros), micros, batch.batch_id || '', batch.expires_at ? isoTime(batch.expires_at).slice(0, 19) : ''].join(',');
        }).join('\r\n') + '\r\n')
    : null;
  return (
    <>
      <section>
        <h2>Redemption codes</h2>
        <form class="row" onSubmit={generate} data-testid="codes-form">
          <Field label="How many"><input type="number" min="1" max="1000" value={count} onInput={(e) => setCount(e.target.value)} /></Field>
          <Field label="Amount each"><input name="amount" value={amount} onInput={(e) => setAmount(e.target.value)} /></Field>
          <Field label="Valid through (UTC day, optional)"><input type="date" name="valid_through" value={until} onInput={(e) => setUntil(e.target.value)} /></Field>
          <button type="submit">Generate batch</button>
        </form>
        {codes.length > 0 && (
          <Notice kind="ok">
            {codes.length} codes generated (shown only now). <a href={csv} download="redemption-codes.csv" data-testid="codes-csv">Download CSV</a>
            <pre data-testid="codes">{codes.map((c) => c.code ?? c).join('\n')}</pre>
          </Notice>
        )}
      </section>
      <ListPage key={n} title="Issued codes" path="redemption-codes" />
    </>
  );
}

const ALERT_KINDS = {
  balance_below: 'balance falls below',
  monthly_spend_above: "this month's spend exceeds",
  monthly_tokens_above: "this month's tokens exceed",
};

/** An alert threshold as a person reads it: tokens for token rules, money otherwise. */
function threshold(rule) {
  return rule.kind === 'monthly_tokens_above' ? `${tokens(rule.threshold)} tokens` : money(rule.threshold);
}

function Alerts({ say }) {
  const [tenants, setTenants] = useState([]);
  const [tenant, setTenant] = useState('');
  const [rules, setRules] = useState(null);
  const [deliveries, setDeliveries] = useState(null);
  const [form, setForm] = useState({ kind: 'balance_below', threshold: '', webhook_url: '', signing_secret: '' });
  useEffect(() => { admin('tenants').then((r) => setTenants(r.data)).catch((e) => say('error', e.message)); }, []);
  const load = () => {
    if (tenant) admin(`tenants/${tenant}/alerts`).then((r) => setRules(r.data)).catch((e) => { setRules([]); say('error', e.message); });
  };
  useEffect(() => { setRules(null); setDeliveries(null); load(); }, [tenant]);
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const create = async (e) => {
    e.preventDefault();
    try {
      let value;
      if (form.kind === 'monthly_tokens_above') {
        if (!/^\d{1,15}$/.test(form.threshold.trim())) throw new Error('Threshold: a whole number of tokens.');
        value = Number(form.threshold.trim());
      } else {
        value = parseMoney(form.threshold);
        if (value === null || value < 0) throw new Error('Threshold: an amount like 5.00.');
      }
      await admin(`tenants/${tenant}/alerts`, {
        method: 'POST',
        body: { kind: form.kind, threshold: value, webhook_url: form.webhook_url.trim(), signing_secret: form.signing_secret.trim() },
      });
      say('ok', 'Alert rule created.');
      setForm({ ...form, threshold: '' });
      load();
    } catch (err) { say('error', err.message); }
  };
  const remove = async (id) => {
    try {
      await admin(`alerts/${id}`, { method: 'DELETE' });
      say('ok', `Alert rule ${id} deleted.`);
      setDeliveries(null);
    } catch (err) { say('error', err.message); }
    load();
  };
  return (
    <section>
      <h2>Alert rules and deliveries</h2>
      <Field label="Tenant">
        <select value={tenant} onChange={(e) => setTenant(e.target.value)} data-testid="alert-tenant">
          <option value="">choose…</option>
          {tenants.map((t) => <option key={t.id} value={t.id}>{t.name}</option>)}
        </select>
      </Field>
      {tenant && (
        <form class="card" onSubmit={create} data-testid="op-alert-form">
          <h3>New rule: a signed webhook when the tenant's…</h3>
          <div class="row">
            <Field label="When"><select name="kind" value={form.kind} onChange={set('kind')}>
              {Object.entries(ALERT_KINDS).map(([k, label]) => <option key={k} value={k}>{label}</option>)}
            </select></Field>
            <Field label={form.kind === 'monthly_tokens_above' ? 'Threshold (tokens)' : 'Threshold (e.g. 5.00)'}><input name="threshold" value={form.threshold} onInput={set('threshold')} required /></Field>
            <Field label="Webhook URL (https)"><input name="webhook_url" type="url" value={form.webhook_url} onInput={set('webhook_url')} placeholder="https://…" required /></Field>
            <Field label="Signing secret (name of a WEBHOOK_… secret)"><input name="signing_secret" value={form.signing_secret} onInput={set('signing_secret')} placeholder="WEBHOOK_ALERTS" required /></Field>
          </div>
          <button type="submit">Create rule</button>
          <p class="muted small">The secret itself is a Worker secret (<code>wrangler secret put WEBHOOK_ALERTS</code>; locally a line in .dev.vars); see docs/alerts.md.</p>
        </form>
      )}
      {rules && rules.length === 0 && <p class="muted">No alert rules for this tenant.</p>}
      {rules && rules.length > 0 && (
        <table data-testid="op-alert-table">
          <thead><tr><th>Rule</th><th>Owner</th><th>When</th><th class="num">Threshold</th><th>State</th><th class="num">Fired</th><th /></tr></thead>
          <tbody>{rules.map((r) => (
            <tr key={r.id} data-alert={r.id}><td class="mono">{r.id}</td><td>{r.owner || 'operator'}{r.channel === 'notice' ? ' (in-app notice)' : ''}</td>
              <td>{ALERT_KINDS[r.kind] || r.kind}</td><td class="num" data-testid="op-alert-threshold">{threshold(r)}</td><td>{r.state}</td><td class="num">{r.fire_count}</td>
              <td><button class="link" type="button" onClick={() => admin(`alerts/${r.id}/deliveries`).then((d) => setDeliveries(d.data)).catch(() => setDeliveries([]))}>Deliveries</button>{' '}
                <button class="danger small" type="button" onClick={() => remove(r.id)}>Delete</button></td></tr>
          ))}</tbody>
        </table>
      )}
      {deliveries && <JsonTable rows={deliveries} columns={['id', 'status', 'attempts', 'last_status', 'last_error', 'next_attempt_at']} />}
    </section>
  );
}

function App() {
  const [session, setSession] = useState(undefined);
  const [ended, setEnded] = useState('');
  useEffect(() => onSessionEnd((message) => { setCsrf(''); setEnded(message); setSession(null); }), []);
  const [tab, setTab] = useHashTab('tenants');
  const [notice, setNotice] = useState(null);
  useEffect(() => {
    api('operator/session').then((s) => { setCsrf(s.csrf_token); setSession(s.signed_in ? s : null); }).catch(() => setSession(null));
  }, []);
  if (session === undefined) return <p class="muted">Loading…</p>;
  if (session === null) return <SignIn ended={ended} onSignedIn={(s) => { setCsrf(s.csrf_token); setEnded(''); setSession(s); }} />;
  const say = (kind, text) => setNotice({ kind, text });
  const signOut = async () => {
    await api('operator/logout', { method: 'POST' }).catch(() => {});
    setCsrf('');
    setSession(null);
  };
  return (
    <>
      <header>
        <b>Tollgate operator</b>
        <Tabs tabs={TABS} tab={tab} setTab={(t) => { setNotice(null); setTab(t); }} />
        <button class="link" onClick={signOut} data-testid="signout">Sign out</button>
      </header>
      <main>
        {notice && <Notice kind={notice.kind}>{notice.text}</Notice>}
        {tab === 'tenants' && <Tenants say={say} />}
        {tab === 'usage' && <Usage />}
        {tab === 'requests' && <RequestLog path="admin/usage" admin />}
        {tab === 'models' && <Models />}
        {tab === 'providers' && <ListPage title="Providers" path="providers" />}
        {tab === 'plans' && <Plans say={say} />}
        {tab === 'codes' && <Codes say={say} />}
        {tab === 'plugins' && <ListPage title="Plugins" path="plugins" pick={(r) => (r.data || []).map((p) => ({ id: p.id ?? p.identifier, title: p.manifest?.title ?? p.title, price_per_call: p.price_per_call, apis: (p.manifest?.apis ?? p.apis ?? []).map((a) => a.name).join(', ') }))} />}
        {tab === 'alerts' && <Alerts say={say} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));
