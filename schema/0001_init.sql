-- Tollgate core schema. Money is integer micro-units (1,000,000 = one unit of currency).
-- Times are UTC milliseconds since the Unix epoch. IDs are lowercase ULIDs (sortable by time).

CREATE TABLE tenants (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  -- Spendable credit. Reservations are taken out of it up front (see reservations), so a
  -- request can only start when its worst case fits, and concurrent requests cannot overspend.
  balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
  created_at  INTEGER NOT NULL,
  disabled_at INTEGER
);

CREATE TABLE api_keys (
  id          TEXT PRIMARY KEY,            -- the <id> in tg-<id>-<secret>
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  name        TEXT NOT NULL,
  digest      TEXT NOT NULL,               -- hex HMAC-SHA256(KEY_PEPPER, full key); the key itself is never stored
  models      TEXT,                        -- JSON array of allowed model names; NULL = every model
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE providers (
  name           TEXT PRIMARY KEY,
  kind           TEXT NOT NULL,            -- adapter: openai, echo, ...
  base_url       TEXT NOT NULL,
  api_key_secret TEXT,                     -- name of the Worker secret holding the upstream key
  config         TEXT,                     -- adapter-specific JSON
  updated_at     INTEGER NOT NULL
);

CREATE TABLE models (
  name              TEXT PRIMARY KEY,      -- what clients send as "model"
  provider          TEXT NOT NULL REFERENCES providers(name),
  upstream_model    TEXT NOT NULL,
  input_price       INTEGER NOT NULL CHECK (input_price >= 0),   -- micro-units per 1M prompt tokens
  output_price      INTEGER NOT NULL CHECK (output_price >= 0),  -- micro-units per 1M completion tokens
  max_output_tokens INTEGER NOT NULL DEFAULT 4096 CHECK (max_output_tokens > 0),
  encoding          TEXT,                  -- tokenizer override: o200k_base, cl100k_base; NULL = by model name
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL
);

-- Credit held for requests in flight. Inserting a row takes its amount out of the tenant's
-- balance and deleting it gives the amount back (triggers below), so reserve, settle and
-- release are each a single statement or a single batch: atomic in D1.
CREATE TABLE reservations (
  id          TEXT PRIMARY KEY,            -- the request id
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  key_id      TEXT NOT NULL,
  amount      INTEGER NOT NULL CHECK (amount >= 0),
  created_at  INTEGER NOT NULL
);
CREATE INDEX reservations_created ON reservations(created_at);

CREATE TRIGGER reservation_take AFTER INSERT ON reservations BEGIN
  UPDATE tenants SET balance = balance - NEW.amount WHERE id = NEW.tenant_id;
END;
CREATE TRIGGER reservation_return AFTER DELETE ON reservations BEGIN
  UPDATE tenants SET balance = balance + OLD.amount WHERE id = OLD.tenant_id;
END;

-- One row per request, written once (request id is the primary key; inserts are INSERT OR IGNORE).
CREATE TABLE usage (
  request_id               TEXT PRIMARY KEY,
  tenant_id                TEXT NOT NULL,
  key_id                   TEXT NOT NULL,
  session_id               TEXT,
  model                    TEXT NOT NULL,
  provider                 TEXT NOT NULL,
  upstream_model           TEXT NOT NULL,
  stream                   INTEGER NOT NULL,
  prompt_tokens            INTEGER NOT NULL,   -- billed
  completion_tokens        INTEGER NOT NULL,   -- billed
  upstream_prompt_tokens   INTEGER,            -- as reported by the provider, NULL if it reported none
  upstream_completion_tokens INTEGER,
  local_prompt_tokens      INTEGER NOT NULL,   -- counted by Tollgate's tokenizer
  local_completion_tokens  INTEGER NOT NULL,
  usage_source             TEXT NOT NULL,      -- upstream | local
  input_price              INTEGER NOT NULL,
  output_price             INTEGER NOT NULL,
  reserved                 INTEGER NOT NULL,
  cost                     INTEGER NOT NULL,   -- charged, micro-units
  uncharged                INTEGER NOT NULL DEFAULT 0, -- cost above the reservation that could not be charged
  status                   TEXT NOT NULL,      -- ok | client_abort | upstream_error | truncated
  http_status              INTEGER NOT NULL,
  error_code               TEXT,
  latency_ms               INTEGER NOT NULL,
  ttfb_ms                  INTEGER,
  created_at               INTEGER NOT NULL
);
CREATE INDEX usage_tenant_time ON usage(tenant_id, created_at);
CREATE INDEX usage_key_time ON usage(key_id, created_at);
CREATE INDEX usage_session ON usage(tenant_id, session_id);

-- Charging a usage row takes its cost out of the balance. INSERT OR IGNORE of a row that already
-- exists fires nothing, so a retried settlement never charges twice.
CREATE TRIGGER usage_charge AFTER INSERT ON usage WHEN NEW.cost > 0 BEGIN
  UPDATE tenants SET balance = balance - NEW.cost WHERE id = NEW.tenant_id;
END;

-- Every credit change an operator makes. Inserting a row moves the balance (trigger), so a
-- top-up and its audit record are one statement.
CREATE TABLE credit_ledger (
  id          TEXT PRIMARY KEY,
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  amount      INTEGER NOT NULL,            -- positive: credit; negative: debit
  reason      TEXT,
  created_at  INTEGER NOT NULL
);
CREATE INDEX credit_ledger_tenant ON credit_ledger(tenant_id, created_at);

CREATE TRIGGER credit_apply AFTER INSERT ON credit_ledger BEGIN
  UPDATE tenants SET balance = balance + NEW.amount WHERE id = NEW.tenant_id;
END;

CREATE TABLE sessions (
  tenant_id         TEXT NOT NULL,
  id                TEXT NOT NULL,
  last_model        TEXT,
  request_count     INTEGER NOT NULL DEFAULT 0,
  prompt_tokens     INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  cost              INTEGER NOT NULL DEFAULT 0,
  created_at        INTEGER NOT NULL,
  last_seen         INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sessions_last_seen ON sessions(last_seen);

-- Session totals follow the usage rows: a row inserted once counts once.
CREATE TRIGGER usage_session AFTER INSERT ON usage WHEN NEW.session_id IS NOT NULL BEGIN
  INSERT INTO sessions (tenant_id, id, last_model, request_count, prompt_tokens, completion_tokens, cost, created_at, last_seen)
  VALUES (NEW.tenant_id, NEW.session_id, NEW.model, 1, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost, NEW.created_at, NEW.created_at)
  ON CONFLICT (tenant_id, id) DO UPDATE SET
    last_model = excluded.last_model,
    request_count = request_count + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost,
    last_seen = MAX(last_seen, excluded.last_seen);
END;
