-- Reports, alerts and the scheduled handler (src/edge/reports.rs, alerts.rs, cron.rs).
-- Days are UTC days since 1970-01-01 (created_at / 86400000). Months are 'YYYY-MM' in UTC.

-- Raw usage by time alone (admin reports across tenants, daily rollups).
CREATE INDEX IF NOT EXISTS usage_created ON usage(created_at);
-- Request listings page by request id (a ULID, so newest first) within a tenant.
CREATE INDEX IF NOT EXISTS usage_tenant_request ON usage(tenant_id, request_id);

-- Daily rollups of closed days, written by the scheduled handler: one row per tenant, key,
-- model and day, the exact integer sums of that day's usage rows.
CREATE TABLE usage_daily (
  tenant_id         TEXT NOT NULL,
  key_id            TEXT NOT NULL,
  model             TEXT NOT NULL,
  day               INTEGER NOT NULL,
  requests          INTEGER NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost              INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, day, key_id, model)
);
CREATE INDEX usage_daily_day ON usage_daily(day);

-- Progress markers of the scheduled handler. 'usage_daily_through': every day before this one
-- is in usage_daily (reports read rollups for those days and raw rows for later ones).
CREATE TABLE cron_state (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);

-- Month-to-date totals per tenant, kept by a trigger so that alert checks read one row.
CREATE TABLE usage_monthly (
  tenant_id         TEXT NOT NULL,
  month             TEXT NOT NULL,           -- 'YYYY-MM' (UTC) of usage.created_at
  requests          INTEGER NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost              INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, month)
);

CREATE TRIGGER usage_month_totals AFTER INSERT ON usage BEGIN
  INSERT INTO usage_monthly (tenant_id, month, requests, prompt_tokens, completion_tokens, cost)
  VALUES (NEW.tenant_id, strftime('%Y-%m', NEW.created_at / 1000, 'unixepoch'), 1,
          NEW.prompt_tokens, NEW.completion_tokens, NEW.cost)
  ON CONFLICT (tenant_id, month) DO UPDATE SET
    requests = requests + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost;
END;

-- Totals of the usage already in the database when this migration runs.
INSERT INTO usage_monthly (tenant_id, month, requests, prompt_tokens, completion_tokens, cost)
SELECT tenant_id, strftime('%Y-%m', created_at / 1000, 'unixepoch'), COUNT(*),
       SUM(prompt_tokens), SUM(completion_tokens), SUM(cost)
FROM usage GROUP BY 1, 2;

-- Threshold alert rules. The signing secret itself is never stored: `secret_name` is the NAME of
-- a Worker secret (wrangler secret put NAME) that holds it.
CREATE TABLE alert_rules (
  id          TEXT PRIMARY KEY,              -- alr_<ulid>
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  kind        TEXT NOT NULL,                 -- monthly_tokens_above | monthly_spend_above | balance_below
  threshold   INTEGER NOT NULL CHECK (threshold >= 0),
  webhook_url TEXT NOT NULL,
  secret_name TEXT NOT NULL,
  fired       TEXT,                          -- NULL = armed; else the episode it fired for ('2026-11', 'below')
  fire_count  INTEGER NOT NULL DEFAULT 0,    -- crossings so far; event ids are <rule id>-<fire_count>
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE INDEX alert_rules_tenant ON alert_rules(tenant_id);

-- One row per crossing: the webhook body exactly as signed and sent, and its delivery state.
CREATE TABLE alert_deliveries (
  id              TEXT PRIMARY KEY,          -- the event id, <rule id>-<fire_count>
  rule_id         TEXT NOT NULL,
  tenant_id       TEXT NOT NULL,
  webhook_url     TEXT NOT NULL,
  secret_name     TEXT NOT NULL,
  payload         TEXT NOT NULL,
  status          TEXT NOT NULL,             -- pending | delivered | failed | cancelled
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,                   -- pending: when it may next be tried (also a lease)
  last_status     INTEGER,                   -- HTTP status of the last attempt (NULL: no response)
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  delivered_at    INTEGER
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(status, next_attempt_at);
CREATE INDEX alert_deliveries_rule ON alert_deliveries(rule_id, created_at);
