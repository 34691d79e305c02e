-- Every money operation through the wallet (issue 13; docs/money.md "Wallets"). With `WALLETS` on,
-- redemption codes, Stripe top-ups and plugin call charges move money in the tenant's wallet (a
-- Durable Object), not in D1. D1 keeps what it is good at: the single use of a code, the payment
-- record of a Checkout Session, and the plugin call rows for reports. The rows below say so, so
-- that the 0003/0010/0007 triggers do not credit or charge D1 for them a second time (and 0011's
-- refusals do not apply to them).

-- ---- redemption codes and Stripe payments: claimed in D1, credited by the wallet ----------------
-- `via_wallet = 1`: the claim (or the payment row) does not credit D1; the wallet is credited with
-- idempotency key `redeem:<digest>` (`stripe:<session id>`), then `wallet_credited_at` is set. A
-- claim whose `wallet_credited_at` is still NULL is a credit in progress (or interrupted): the
-- next redemption of the same code by the same tenant (the next delivery of the same session)
-- completes it; the wallet's idempotency key makes sure it lands once.
ALTER TABLE redemption_codes ADD COLUMN via_wallet INTEGER NOT NULL DEFAULT 0;
ALTER TABLE redemption_codes ADD COLUMN wallet_credited_at INTEGER;

DROP TRIGGER redemption_credit;
CREATE TRIGGER redemption_credit AFTER UPDATE OF redeemed_at ON redemption_codes
WHEN OLD.redeemed_at IS NULL AND NEW.redeemed_at IS NOT NULL AND NEW.via_wallet = 0 BEGIN
  INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
  VALUES (NEW.ledger_id, NEW.redeemed_by, NEW.amount, 'redemption code ' || NEW.batch_id, NEW.redeemed_at);
END;

ALTER TABLE stripe_payments ADD COLUMN via_wallet INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stripe_payments ADD COLUMN wallet_credited_at INTEGER;

DROP TRIGGER stripe_payment_credit;
CREATE TRIGGER stripe_payment_credit AFTER INSERT ON stripe_payments WHEN NEW.via_wallet = 0 BEGIN
  INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
  VALUES (NEW.ledger_id, NEW.tenant_id, NEW.amount, 'stripe checkout ' || NEW.session_id, NEW.created_at);
END;

-- ---- plugin call rows exported by a wallet ---------------------------------------------------------
-- The wallet charged them (cost, allowance_cost, beyond_reservation and debt filled in by it): the
-- insert only records the call. A row written the old way for a taken tenant is still refused.
ALTER TABLE plugin_calls ADD COLUMN from_wallet INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER wallet_owned_plugin_call;
CREATE TRIGGER wallet_owned_plugin_call BEFORE INSERT ON plugin_calls
WHEN NEW.from_wallet = 0 AND EXISTS (SELECT 1 FROM wallet_claims c WHERE c.tenant_id = NEW.tenant_id) BEGIN
  SELECT RAISE(ABORT, 'wallet_owned: this tenant''s money lives in its wallet');
END;

-- 0007's plugin_call_charge, unchanged but for its WHEN: it charges only rows written the old way.
DROP TRIGGER plugin_call_charge;
CREATE TRIGGER plugin_call_charge AFTER INSERT ON plugin_calls WHEN NEW.from_wallet = 0 BEGIN
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
