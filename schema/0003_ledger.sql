-- Ledger: versioned prices, per-tenant price multiplier, plans with a monthly allowance,
-- allowance-aware reservations that can be extended mid-stream, idempotency keys, redemption codes.
-- Money still moves only through triggers; every step stays one statement or one batch.

-- ---- price versions ------------------------------------------------------------------------
-- A model's prices are never rewritten: a change inserts a new version and points the model at it.
-- Usage rows reference the version they were billed at (usage.price_version).
CREATE TABLE price_versions (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  model              TEXT NOT NULL,
  input_price        INTEGER NOT NULL CHECK (input_price >= 0),         -- micro-units per 1M tokens
  cached_input_price INTEGER CHECK (cached_input_price >= 0),          -- NULL = input_price
  output_price       INTEGER NOT NULL CHECK (output_price >= 0),
  reasoning_price    INTEGER CHECK (reasoning_price >= 0),             -- NULL = output_price
  created_at         INTEGER NOT NULL
);
CREATE INDEX price_versions_model ON price_versions(model, id);

ALTER TABLE models ADD COLUMN price_version INTEGER REFERENCES price_versions(id);

-- Every existing model gets its current prices as version 1 of its history.
INSERT INTO price_versions (model, input_price, cached_input_price, output_price, reasoning_price, created_at)
SELECT name, input_price, NULL, output_price, NULL, updated_at FROM models ORDER BY name;
UPDATE models SET price_version = (SELECT MAX(v.id) FROM price_versions v WHERE v.model = models.name);

-- ---- usage rows --------------------------------------------------------------------------------
-- usage.input_price / usage.output_price (0001) are legacy: rows written from this migration on
-- store 0 there and reference price_versions instead.
ALTER TABLE usage ADD COLUMN price_version INTEGER;
ALTER TABLE usage ADD COLUMN cached_prompt_tokens INTEGER NOT NULL DEFAULT 0;   -- billed, part of prompt_tokens
ALTER TABLE usage ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;       -- billed, part of completion_tokens
ALTER TABLE usage ADD COLUMN multiplier_bps INTEGER NOT NULL DEFAULT 10000;     -- tenant multiplier applied
ALTER TABLE usage ADD COLUMN allowance_cost INTEGER NOT NULL DEFAULT 0;         -- part of cost drawn from the plan allowance
ALTER TABLE usage ADD COLUMN idempotency_key TEXT;

-- ---- tenants: multiplier and plan ----------------------------------------------------------------
CREATE TABLE plans (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  allowance   INTEGER NOT NULL CHECK (allowance >= 0),   -- micro-units of credit per UTC calendar month
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);

-- Reseller margin in basis points: 10000 = list price, 12500 = +25 %.
ALTER TABLE tenants ADD COLUMN price_multiplier_bps INTEGER NOT NULL DEFAULT 10000 CHECK (price_multiplier_bps > 0);
ALTER TABLE tenants ADD COLUMN plan_id TEXT REFERENCES plans(id);
-- What is left of this period's allowance, and the period it belongs to (UTC ms of the month's start).
ALTER TABLE tenants ADD COLUMN allowance_remaining INTEGER NOT NULL DEFAULT 0 CHECK (allowance_remaining >= 0);
ALTER TABLE tenants ADD COLUMN allowance_period INTEGER;

-- ---- reservations: allowance part --------------------------------------------------------------
-- `amount` (0001) stays the part taken from the balance; `allowance_amount` is the part taken from
-- the allowance of period `allowance_period`. Deleting the row returns the allowance part only
-- while that period is still current (a reset has refilled the allowance meanwhile).
ALTER TABLE reservations ADD COLUMN allowance_amount INTEGER NOT NULL DEFAULT 0 CHECK (allowance_amount >= 0);
ALTER TABLE reservations ADD COLUMN allowance_period INTEGER;

CREATE TRIGGER reservation_take_allowance AFTER INSERT ON reservations WHEN NEW.allowance_amount > 0 BEGIN
  UPDATE tenants SET allowance_remaining = allowance_remaining - NEW.allowance_amount WHERE id = NEW.tenant_id;
END;
CREATE TRIGGER reservation_return_allowance AFTER DELETE ON reservations WHEN OLD.allowance_amount > 0 BEGIN
  UPDATE tenants SET allowance_remaining = allowance_remaining + OLD.allowance_amount
  WHERE id = OLD.tenant_id AND allowance_period IS OLD.allowance_period;
END;
-- A stream's reservation can grow (one conditional UPDATE); the tenant pays the difference.
CREATE TRIGGER reservation_extend AFTER UPDATE OF amount, allowance_amount ON reservations BEGIN
  UPDATE tenants SET
    balance = balance - (NEW.amount - OLD.amount),
    allowance_remaining = allowance_remaining - (NEW.allowance_amount - OLD.allowance_amount)
  WHERE id = NEW.tenant_id;
END;

-- ---- charging: allowance first, then balance -------------------------------------------------------
-- Replaces 0001's usage_charge. The row records the split it was charged with; should neither
-- source cover the cost (cannot happen while the reservation was returned in the same batch), the
-- shortfall moves from cost to uncharged, so `cost` is always exactly what left the tenant.
DROP TRIGGER usage_charge;
CREATE TRIGGER usage_charge AFTER INSERT ON usage WHEN NEW.cost > 0 BEGIN
  UPDATE usage SET allowance_cost = MIN(NEW.cost, (SELECT allowance_remaining FROM tenants WHERE id = NEW.tenant_id))
  WHERE request_id = NEW.request_id;
  UPDATE usage SET
    cost = allowance_cost + MIN(NEW.cost - allowance_cost, (SELECT balance FROM tenants WHERE id = NEW.tenant_id)),
    uncharged = uncharged + (NEW.cost - allowance_cost) - MIN(NEW.cost - allowance_cost, (SELECT balance FROM tenants WHERE id = NEW.tenant_id))
  WHERE request_id = NEW.request_id;
  UPDATE tenants SET
    allowance_remaining = allowance_remaining - (SELECT allowance_cost FROM usage WHERE request_id = NEW.request_id),
    balance = balance - (SELECT cost - allowance_cost FROM usage WHERE request_id = NEW.request_id)
  WHERE id = NEW.tenant_id;
END;

-- ---- idempotency keys ----------------------------------------------------------------------------
-- One row per (tenant, Idempotency-Key), kept 24 hours. `state`: pending while the first request
-- runs, done when it completed (response kept for plain requests, replayed on retries).
CREATE TABLE idempotency_keys (
  tenant_id    TEXT NOT NULL,
  key          TEXT NOT NULL,
  body_digest  TEXT NOT NULL,               -- hex SHA-256 of the request body
  request_id   TEXT NOT NULL,
  state        TEXT NOT NULL,               -- pending | done
  stream       INTEGER NOT NULL,
  http_status  INTEGER,
  response     TEXT,                        -- the plain response body, when small enough to keep
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

-- ---- redemption codes ------------------------------------------------------------------------------
-- Codes are shown once at creation; only HMAC-SHA256(KEY_PEPPER, normalised code) is stored.
-- Redeeming is one conditional UPDATE (redeemed_at IS NULL); its trigger writes the credit_ledger
-- row, whose own trigger moves the balance. A code therefore credits exactly once.
CREATE TABLE redemption_codes (
  digest       TEXT PRIMARY KEY,
  batch_id     TEXT NOT NULL,
  amount       INTEGER NOT NULL CHECK (amount > 0),
  expires_at   INTEGER,
  created_at   INTEGER NOT NULL,
  redeemed_at  INTEGER,
  redeemed_by  TEXT,                        -- tenant id
  ledger_id    TEXT                         -- the credit_ledger row it produced
);
CREATE INDEX redemption_codes_batch ON redemption_codes(batch_id);

CREATE TRIGGER redemption_credit AFTER UPDATE OF redeemed_at ON redemption_codes
WHEN OLD.redeemed_at IS NULL AND NEW.redeemed_at IS NOT NULL BEGIN
  INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
  VALUES (NEW.ledger_id, NEW.redeemed_by, NEW.amount, 'redemption code ' || NEW.batch_id, NEW.redeemed_at);
END;
