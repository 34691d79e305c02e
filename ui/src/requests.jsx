// The request log shared by the user center (GET /v1/usage through the session) and the operator
// console (GET /admin/usage): a page of 100 requests, newest first, filtered by the report API.
import { useEffect, useState } from 'preact/hooks';
import { api, apiUrl, money, tokens, isoTime, DAY_MS } from './api.js';
import { Notice, Field } from './ui.jsx';

/** `onFilter(column, value)`, when given, makes tenant, model, key and session cells filter the log. */
export function RequestTable({ rows, showTenant = false, onFilter = null }) {
  const cell = (column, value, shown = value) => (onFilter && value
    ? <button type="button" class="link mono" title={`Only ${value}`} data-filter={column} onClick={() => onFilter(column, value)}>{shown}</button>
    : shown || '');
  if (!rows.length) return <p class="muted">No requests.</p>;
  return (
    <table data-testid="request-table">
      <thead>
        <tr><th>Time (UTC)</th>{showTenant && <th>Tenant</th>}<th>Model</th><th>Key</th><th>Session</th><th>Status</th><th class="num">Prompt</th><th class="num">Completion</th><th class="num">Cost</th></tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={r.request_id} data-request={r.request_id} title={r.request_id}>
            <td>{isoTime(r.created_at)}</td>
            {showTenant && <td class="mono">{cell('tenant_id', r.tenant_id)}</td>}
            <td>{cell('model', r.model)}</td>
            <td class="mono" title={r.key_id || ''}>{cell('key_id', r.key_id, (r.key_id || '').slice(-8))}</td>
            <td class="mono">{cell('session_id', r.session_id)}</td>
            <td>{r.status}{r.error_code ? ` (${r.error_code})` : ''}</td>
            <td class="num">{tokens(r.prompt_tokens)}</td>
            <td class="num">{tokens(r.completion_tokens)}</td>
            <td class="num">{money(r.cost)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// Every way a request can end (usage.status; docs/money.md).
const STATUSES = ['ok', 'client_abort', 'upstream_error', 'truncated', 'upstream_timeout', 'upstream_unusable'];

/**
 * The request log over a report API (`usage` for a tenant, `admin/usage` for the operator, who
 * also filters and sees the tenant): filters, pages back and forth, and a CSV of the same filter.
 */
export function RequestLog({ path, admin = false }) {
  const [f, setF] = useState({ tenant_id: '', model: '', key_id: '', session_id: '', status: '', start: '', end: '' });
  // cursors[i] is the cursor of page i (page 0 has none): "Previous" walks back without losing rows.
  const [pages, setPages] = useState({ of: '', cursors: [''] });
  const [page, setPage] = useState(null);
  const [error, setError] = useState('');
  const query = {
    tenant_id: admin ? f.tenant_id.trim() : '',
    model: f.model.trim(),
    key_id: f.key_id.trim(),
    session_id: f.session_id.trim(),
    status: f.status,
    start: f.start ? Date.parse(f.start) : '',
    end: f.end ? Date.parse(f.end) + DAY_MS : '',
  };
  const queryKey = JSON.stringify(query);
  // Other filters start again at page 1.
  const cursors = pages.of === queryKey ? pages.cursors : [''];
  const setCursors = (list) => setPages({ of: queryKey, cursors: list });
  const cursor = cursors[cursors.length - 1];
  useEffect(() => {
    if (query.start !== '' && query.end !== '' && !(query.end > query.start)) {
      setError('"To" must be on or after "From".');
      setPage(null);
      return undefined;
    }
    let current = true; // a slower answer to an older query never replaces a newer one
    api(path, { query: { ...query, limit: 100, cursor } })
      .then((r) => { if (current) { setPage(r); setError(''); } })
      .catch((e) => { if (current) setError(e.message); });
    return () => { current = false; };
  }, [queryKey, cursor]);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const rows = page ? page.data : [];
  return (
    <section>
      <h2>Request log</h2>
      <form class="row" onSubmit={(e) => e.preventDefault()} data-testid="request-filters">
        {admin && <Field label="Tenant id"><input name="tenant_id" value={f.tenant_id} onChange={set('tenant_id')} /></Field>}
        <Field label="Model"><input name="model" value={f.model} onChange={set('model')} /></Field>
        <Field label="Key id"><input name="key_id" value={f.key_id} onChange={set('key_id')} /></Field>
        <Field label="Session"><input name="session_id" value={f.session_id} onChange={set('session_id')} /></Field>
        <Field label="Status">
          <select name="status" value={f.status} onChange={set('status')}>
            <option value="">any</option>
            {STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </Field>
        <Field label="From (UTC day)"><input type="date" name="start" value={f.start} onChange={set('start')} /></Field>
        <Field label="To (UTC day, inclusive)"><input type="date" name="end" value={f.end} onChange={set('end')} /></Field>
      </form>
      <p>
        <a class="button" data-testid="csv-download" href={apiUrl(path, { ...query, format: 'csv', limit: 1000 })} download="tollgate-usage.csv">Download CSV</a>
        <span class="muted small"> the newest 1,000 requests matching these filters; in the CSV, amounts (cost, prices) are integer micro-units: 1,000,000 = 1.00</span>
      </p>
      {error && <Notice kind="error">{error}</Notice>}
      {page && <RequestTable rows={rows} showTenant={admin} onFilter={(column, value) => setF({ ...f, [column]: value })} />}
      {page && rows.length > 0 && <p class="muted small">Click a model, key or session to see only its requests.</p>}
      {page && (cursors.length > 1 || page.has_more) && (
        <p class="row" data-testid="pager">
          <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))} data-testid="prev-page">Previous page</button>
          <span class="muted" data-testid="page-number">Page {cursors.length}</span>
          <button type="button" disabled={!page.has_more} onClick={() => setCursors([...cursors, page.next_cursor])} data-testid="next-page">Next page</button>
        </p>
      )}
    </section>
  );
}

