-- Wallets (docs/money.md, "Wallets"; docs/scale.md): a Durable Object per tenant becomes the system
-- of record for its money and limits. D1 keeps the reports (usage rows exported by the wallet) and
-- the record of which tenants a wallet has taken.
--
-- Taking a tenant (src/edge/store/wallet/object.rs, on the wallet's first money command) is one D1
-- batch: the claim row below is inserted with a snapshot of the tenant's money (balance, debt,
-- allowance and its period, plan allowance, open reservations, revoked keys, ledger position),
-- unless a claim exists; the tenant's D1 reservations are then deleted (they live on in the wallet).
-- The claim is read back: the wallet loads the snapshot only if the claim is its own (the object's
-- id), so two objects or two isolates can never both take a tenant, and a wallet that crashed
-- between the batch and its own write loads the same snapshot again.

CREATE TABLE wallet_claims (
  tenant_id   TEXT PRIMARY KEY,
  object_id   TEXT NOT NULL,          -- the Durable Object id (hex) that took the tenant
  claimed_at  INTEGER NOT NULL,
  snapshot    TEXT NOT NULL           -- JSON: the money state taken (see object.rs `Snapshot`)
);

-- After the claim no money moves for the tenant in D1: a reservation, a credit, a plugin charge
-- or a usage row written the old way would be lost to the wallet, so they are refused.
CREATE TRIGGER wallet_owned_reservation BEFORE INSERT ON reservations
WHEN EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;
CREATE TRIGGER wallet_owned_extend BEFORE UPDATE OF amount, allowance_amount ON reservations
WHEN EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;
CREATE TRIGGER wallet_owned_credit BEFORE INSERT ON credit_ledger
WHEN EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;
CREATE TRIGGER wallet_owned_plugin_call BEFORE INSERT ON plugin_calls
WHEN EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;

-- ---- usage rows exported by a wallet --------------------------------------------------------------
-- The wallet charged them already (cost, allowance_cost, beyond_reservation and debt are filled in
-- by it): the insert only adds them to the session, month and late-rollup totals. A row written the
-- old way for a taken tenant is refused.
ALTER TABLE usage ADD COLUMN from_wallet INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER wallet_owned_usage BEFORE INSERT ON usage
WHEN NEW.from_wallet = 0 AND EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;

-- 0007's usage_settle, unchanged but for its WHEN: it charges only rows written the old way.
DROP TRIGGER usage_settle;
CREATE TRIGGER usage_settle AFTER INSERT ON usage WHEN NEW.from_wallet = 0 BEGIN
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

-- The totals part of usage_settle, for rows a wallet exported.
CREATE TRIGGER usage_wallet_totals AFTER INSERT ON usage WHEN NEW.from_wallet = 1 BEGIN
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
