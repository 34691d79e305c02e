-- Settlement: charges beyond the reservation (debt), late settlements after the stale-reservation
-- sweep, plugin calls from the plan allowance, totals from what was charged, and bounded credits.
-- Money still moves only through triggers; each step stays one statement or one batch.
--
-- How a charge is taken (usage rows and plugin calls alike), in this order:
--   1. from the request's own reservation, if it is still held: its allowance part first (the
--      allowance of the period the request started in, even if a new period began since), then its
--      balance part; what the charge does not use returns (the delete triggers of 0001/0003);
--   2. what the reservation did not cover (`beyond_reservation`) from the allowance left, then from
--      the balance;
--   3. whatever is still missing becomes the tenant's `debt`. A tenant with debt cannot reserve (402)
--      until credit pays it: every credit pays debt first.
-- `cost` is therefore always the full charge, `allowance_cost` the part from allowances and `debt`
-- the part owed; `uncharged` (0001) is no longer written (always 0 from here on).

-- ---- debt -------------------------------------------------------------------------------------
ALTER TABLE tenants ADD COLUMN debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0);

ALTER TABLE usage ADD COLUMN beyond_reservation INTEGER NOT NULL DEFAULT 0;  -- cost the reservation did not cover
ALTER TABLE usage ADD COLUMN debt INTEGER NOT NULL DEFAULT 0;                -- part of cost owed (not taken)

ALTER TABLE plugin_calls ADD COLUMN allowance_cost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE plugin_calls ADD COLUMN beyond_reservation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE plugin_calls ADD COLUMN debt INTEGER NOT NULL DEFAULT 0;

ALTER TABLE credit_ledger ADD COLUMN debt_paid INTEGER NOT NULL DEFAULT 0;    -- part of the credit that paid debt

-- A charge consumes part of a reservation by shrinking it, which moves no money; only growth (a
-- stream's extension) takes more. Replaces 0003's reservation_extend.
DROP TRIGGER reservation_extend;
CREATE TRIGGER reservation_extend AFTER UPDATE OF amount, allowance_amount ON reservations
WHEN NEW.amount >= OLD.amount AND NEW.allowance_amount >= OLD.allowance_amount BEGIN
  UPDATE tenants SET
    balance = balance - (NEW.amount - OLD.amount),
    allowance_remaining = allowance_remaining - (NEW.allowance_amount - OLD.allowance_amount)
  WHERE id = NEW.tenant_id;
END;

-- ---- usage rows: charge, then the totals from the row as charged ---------------------------------
-- One trigger (SQLite does not order several triggers of one event): the charge, the session and
-- month totals and the late-rollup step read the row after the charge was recorded on it.
DROP TRIGGER usage_charge;
DROP TRIGGER usage_session;
DROP TRIGGER usage_month_totals;

CREATE TRIGGER usage_settle AFTER INSERT ON usage BEGIN
  -- 1. From the reservation's allowance part, then its balance part.
  UPDATE usage SET uncharged = 0, debt = 0,
    allowance_cost = MIN(NEW.cost,
      COALESCE((SELECT r.allowance_amount FROM reservations r WHERE r.id = NEW.request_id), 0))
  WHERE request_id = NEW.request_id;
  UPDATE reservations SET allowance_amount = allowance_amount
    - (SELECT u.allowance_cost FROM usage u WHERE u.request_id = NEW.request_id)
  WHERE id = NEW.request_id;
  UPDATE usage SET beyond_reservation = NEW.cost - allowance_cost - MIN(NEW.cost - allowance_cost,
      COALESCE((SELECT r.amount FROM reservations r WHERE r.id = NEW.request_id), 0))
  WHERE request_id = NEW.request_id;
  UPDATE reservations SET amount = amount
    - (SELECT u.cost - u.allowance_cost - u.beyond_reservation FROM usage u WHERE u.request_id = NEW.request_id)
  WHERE id = NEW.request_id;
  -- What the charge did not use returns.
  DELETE FROM reservations WHERE id = NEW.request_id;
  -- 2. Beyond the reservation: allowance left, then balance; 3. the rest is debt.
  UPDATE usage SET
    allowance_cost = allowance_cost + MIN(beyond_reservation,
      COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0)),
    debt = beyond_reservation
      - MIN(beyond_reservation, COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0))
      - MIN(beyond_reservation
          - MIN(beyond_reservation, COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0)),
        COALESCE((SELECT t.balance FROM tenants t WHERE t.id = NEW.tenant_id), 0))
  WHERE request_id = NEW.request_id;
  UPDATE tenants SET
    allowance_remaining = allowance_remaining
      - MIN((SELECT u.beyond_reservation FROM usage u WHERE u.request_id = NEW.request_id), allowance_remaining),
    balance = balance
      - ((SELECT u.beyond_reservation - u.debt FROM usage u WHERE u.request_id = NEW.request_id)
         - MIN((SELECT u.beyond_reservation FROM usage u WHERE u.request_id = NEW.request_id), allowance_remaining)),
    debt = debt + (SELECT u.debt FROM usage u WHERE u.request_id = NEW.request_id)
  WHERE id = NEW.tenant_id;

  -- Session totals (0001's usage_session), from the row as charged.
  INSERT INTO sessions (tenant_id, id, last_model, request_count, prompt_tokens, completion_tokens, cost, created_at, last_seen)
  SELECT u.tenant_id, u.session_id, u.model, 1, u.prompt_tokens, u.completion_tokens, u.cost, u.created_at, u.created_at
  FROM usage u WHERE u.request_id = NEW.request_id AND u.session_id IS NOT NULL
  ON CONFLICT (tenant_id, id) DO UPDATE SET
    last_model = excluded.last_model,
    request_count = request_count + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost,
    last_seen = MAX(last_seen, excluded.last_seen);

  -- Month-to-date totals (0004's usage_month_totals), from the row as charged.
  INSERT INTO usage_monthly (tenant_id, month, requests, prompt_tokens, completion_tokens, cost)
  SELECT u.tenant_id, strftime('%Y-%m', u.created_at / 1000, 'unixepoch'), 1,
         u.prompt_tokens, u.completion_tokens, u.cost
  FROM usage u WHERE u.request_id = NEW.request_id
  ON CONFLICT (tenant_id, month) DO UPDATE SET
    requests = requests + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost;

  -- A late settlement (a request that outlived the stale-reservation sweep, or one replayed from the
  -- settlement fallback) of a day already rolled up joins that day's rollup, so reports stay exact.
  INSERT INTO usage_daily (tenant_id, key_id, model, day, requests, prompt_tokens, completion_tokens, cost)
  SELECT u.tenant_id, u.key_id, u.model, u.created_at / 86400000, 1, u.prompt_tokens, u.completion_tokens, u.cost
  FROM usage u WHERE u.request_id = NEW.request_id
    AND u.created_at / 86400000 < COALESCE((SELECT c.value FROM cron_state c WHERE c.name = 'usage_daily_through'), 0)
  ON CONFLICT (tenant_id, day, key_id, model) DO UPDATE SET
    requests = requests + 1,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost;
END;

-- ---- plugin calls: the same charge (0006's trigger took the balance only) ------------------------
DROP TRIGGER plugin_call_charge;
CREATE TRIGGER plugin_call_charge AFTER INSERT ON plugin_calls BEGIN
  UPDATE plugin_calls SET debt = 0,
    allowance_cost = MIN(NEW.cost,
      COALESCE((SELECT r.allowance_amount FROM reservations r WHERE r.id = NEW.id), 0))
  WHERE id = NEW.id;
  UPDATE reservations SET allowance_amount = allowance_amount
    - (SELECT p.allowance_cost FROM plugin_calls p WHERE p.id = NEW.id)
  WHERE id = NEW.id;
  UPDATE plugin_calls SET beyond_reservation = NEW.cost - allowance_cost - MIN(NEW.cost - allowance_cost,
      COALESCE((SELECT r.amount FROM reservations r WHERE r.id = NEW.id), 0))
  WHERE id = NEW.id;
  UPDATE reservations SET amount = amount
    - (SELECT p.cost - p.allowance_cost - p.beyond_reservation FROM plugin_calls p WHERE p.id = NEW.id)
  WHERE id = NEW.id;
  DELETE FROM reservations WHERE id = NEW.id;
  UPDATE plugin_calls SET
    allowance_cost = allowance_cost + MIN(beyond_reservation,
      COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0)),
    debt = beyond_reservation
      - MIN(beyond_reservation, COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0))
      - MIN(beyond_reservation
          - MIN(beyond_reservation, COALESCE((SELECT t.allowance_remaining FROM tenants t WHERE t.id = NEW.tenant_id), 0)),
        COALESCE((SELECT t.balance FROM tenants t WHERE t.id = NEW.tenant_id), 0))
  WHERE id = NEW.id;
  UPDATE tenants SET
    allowance_remaining = allowance_remaining
      - MIN((SELECT p.beyond_reservation FROM plugin_calls p WHERE p.id = NEW.id), allowance_remaining),
    balance = balance
      - ((SELECT p.beyond_reservation - p.debt FROM plugin_calls p WHERE p.id = NEW.id)
         - MIN((SELECT p.beyond_reservation FROM plugin_calls p WHERE p.id = NEW.id), allowance_remaining)),
    debt = debt + (SELECT p.debt FROM plugin_calls p WHERE p.id = NEW.id)
  WHERE id = NEW.tenant_id;
END;

-- ---- credits: debt first, and balances that stay exact in JavaScript numbers ----------------------
DROP TRIGGER credit_apply;
CREATE TRIGGER credit_apply AFTER INSERT ON credit_ledger BEGIN
  UPDATE credit_ledger SET debt_paid = MIN(MAX(NEW.amount, 0),
      COALESCE((SELECT t.debt FROM tenants t WHERE t.id = NEW.tenant_id), 0))
  WHERE id = NEW.id;
  UPDATE tenants SET
    debt = debt - (SELECT c.debt_paid FROM credit_ledger c WHERE c.id = NEW.id),
    balance = balance + NEW.amount - (SELECT c.debt_paid FROM credit_ledger c WHERE c.id = NEW.id)
  WHERE id = NEW.tenant_id;
END;

-- Balances stay at most 2^53 - 1 (exact as JavaScript numbers, which is how D1 binds and returns them).
CREATE TRIGGER credit_bound BEFORE INSERT ON credit_ledger
WHEN NEW.amount > 0
  AND COALESCE((SELECT t.balance FROM tenants t WHERE t.id = NEW.tenant_id), 0) + NEW.amount > 9007199254740991
BEGIN
  SELECT RAISE(ABORT, 'balance_limit: the balance would exceed 9007199254740991 micro-units');
END;

-- ---- expired reservations ------------------------------------------------------------------------
-- The scheduled handler returns the credit of a reservation older than STALE_RESERVATION_SECONDS and
-- records it here (never in `usage`). Should its request still settle later, the settlement charges
-- what was delivered from the allowance and balance (debt if short) and writes the real usage row.
CREATE TABLE reservation_expiries (
  id               TEXT PRIMARY KEY,         -- the reservation (request or plugin-call) id
  tenant_id        TEXT NOT NULL,
  key_id           TEXT NOT NULL,
  amount           INTEGER NOT NULL,         -- balance part returned
  allowance_amount INTEGER NOT NULL,         -- allowance part returned (if its period was current)
  allowance_period INTEGER,
  created_at       INTEGER NOT NULL,         -- when it was reserved
  expired_at       INTEGER NOT NULL
);
CREATE INDEX reservation_expiries_tenant ON reservation_expiries(tenant_id, expired_at);
CREATE INDEX reservation_expiries_expired ON reservation_expiries(expired_at);
