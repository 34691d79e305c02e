-- Wallet figures in D1 (docs/money.md "Wallets", docs/alerts.md): the balance a wallet last
-- reported, so that the scheduled alert check reads a wallet tenant's real balance (its D1
-- `tenants.balance` stopped at the claim). Written by the wallet's export and by the alert check
-- after a wallet settlement, each write only forward in time (`balance_at`).
ALTER TABLE wallet_claims ADD COLUMN balance INTEGER;
ALTER TABLE wallet_claims ADD COLUMN balance_at INTEGER;
