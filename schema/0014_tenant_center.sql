-- The user center's plan upgrade requests (docs/console.md, "Plan upgrades").
--
-- A tenant asks for a plan; the operator approves or declines. At most one request per tenant is
-- pending (the partial unique index). Approval is one D1 batch: the request moves from `pending`
-- to `approved` stamped with a fresh `decision_id`, and the tenant's plan is assigned only by the
-- statement that finds that stamp, so a retried or concurrent approval changes nothing.
CREATE TABLE plan_requests (
  id            TEXT PRIMARY KEY,              -- preq_<ulid>
  tenant_id     TEXT NOT NULL REFERENCES tenants(id),
  plan_id       TEXT NOT NULL,                 -- no foreign key: a plan may be deleted meanwhile
  from_plan_id  TEXT,                          -- the tenant's plan when it asked
  note          TEXT,
  status        TEXT NOT NULL DEFAULT 'pending', -- pending | approved | declined | cancelled
  decision_id   TEXT,
  created_at    INTEGER NOT NULL,
  decided_at    INTEGER
);
CREATE UNIQUE INDEX plan_requests_one_pending ON plan_requests(tenant_id) WHERE status = 'pending';
CREATE INDEX plan_requests_status ON plan_requests(status, created_at);
CREATE INDEX plan_requests_tenant ON plan_requests(tenant_id, created_at);

-- Alert rules a tenant manages itself in the user center (docs/alerts.md, "Rules a tenant
-- manages"): the same rules and crossing check as the operator's, marked `owner = 'tenant'`.
-- `channel = 'notice'` rules send no webhook: their crossing is recorded as a delivery with status
-- `notice`, which the user center shows and the retry sweep never picks up.
ALTER TABLE alert_rules ADD COLUMN owner TEXT NOT NULL DEFAULT 'operator';    -- operator | tenant
ALTER TABLE alert_rules ADD COLUMN channel TEXT NOT NULL DEFAULT 'webhook';   -- webhook | notice
