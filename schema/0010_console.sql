-- Console (issue 16): card top-ups through Stripe Checkout.
-- One row per paid Checkout Session; its trigger writes the credit_ledger row, whose trigger moves
-- the balance. The webhook inserts with ON CONFLICT DO NOTHING, so a session (or an event id)
-- delivered twice credits once.
CREATE TABLE stripe_payments (
  session_id  TEXT PRIMARY KEY,                 -- Checkout Session id (cs_…)
  event_id    TEXT NOT NULL UNIQUE,             -- the webhook event that credited it (evt_…)
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  amount      INTEGER NOT NULL CHECK (amount > 0),   -- micro-units credited
  amount_paid INTEGER NOT NULL,                 -- minor units (cents) Stripe reported
  currency    TEXT NOT NULL,
  ledger_id   TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX stripe_payments_tenant ON stripe_payments(tenant_id, created_at);

CREATE TRIGGER stripe_payment_credit AFTER INSERT ON stripe_payments BEGIN
  INSERT INTO credit_ledger (id, tenant_id, amount, reason, created_at)
  VALUES (NEW.ledger_id, NEW.tenant_id, NEW.amount, 'stripe checkout ' || NEW.session_id, NEW.created_at);
END;
