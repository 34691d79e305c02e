//! The wallet's money moves besides a chat request's reserve and settle (docs/money.md
//! "Wallets"): a plugin call's price, a plan allowance changed by the operator, and the
//! one-off operations that must apply once (a plan request's approval).
//!
//! - **Plugin call price** ([`Wallet::reserve_call`], then [`Wallet::settle`] with the call's
//!   cost): the meaning of D1's `plugin_call_charge` (schema/0007) — the price is reserved
//!   before the plugin is called (allowance first, then balance; refused when the key is revoked,
//!   the tenant disabled or in debt, or allowance + balance do not cover it), a successful call is
//!   charged its price from that hold, a failed one costs nothing and the hold returns. Budgets
//!   count the price (it is money spent by the key); a call is not a request, so RPM and TPM do
//!   not count it.
//! - **A plan's allowance changed** ([`Wallet::set_plan_allowance`]): applies from the tenant's
//!   next period, as D1's lazy reset read the plan's current allowance; the allowance left of the
//!   current month is kept.

use super::{Counters, Refusal, Reserved, Scope, Wallet};

impl Counters {
    /// The budget rule alone: spend of the period + held + `amount` within the budget (a plugin
    /// call's price and a stream's extension are money, not a request).
    pub(super) fn check_budget(&self, scope: Scope, amount: u64, now: u64) -> Result<(), Refusal> {
        let Some(budget) = self.limits.budget else {
            return Ok(());
        };
        let spent = self
            .spend
            .in_period(self.limits.period(), now)
            .saturating_add(self.held);
        if spent.saturating_add(amount) > budget {
            return Err(Refusal::Budget {
                scope,
                budget,
                spent,
            });
        }
        Ok(())
    }
}

impl Wallet {
    /// Reserves a plugin call's price under the call's id (`<request id>.c<n>`). Idempotent by
    /// id; changes nothing when refused. Settle it with [`Wallet::settle`] (`tokens` 0): the
    /// price when the call succeeded, 0 when it failed.
    pub fn reserve_call(
        &mut self,
        id: &str,
        key_id: &str,
        amount: u64,
        now: u64,
    ) -> Result<Reserved, Refusal> {
        self.refresh(now);
        if let Some(h) = self.holds.get(id) {
            return Ok(Reserved {
                amount: h.amount,
                allowance_amount: h.allowance_amount,
                headers: Default::default(),
            });
        }
        let key = self.keys.get(key_id).copied().unwrap_or_default();
        let a = &self.account;
        if key.revoked || a.disabled {
            return Err(Refusal::Revoked);
        }
        key.counters.check_budget(Scope::Key, amount, now)?;
        a.counters.check_budget(Scope::Tenant, amount, now)?;
        if a.debt > 0 {
            return Err(Refusal::Debt { debt: a.debt });
        }
        let available = a.allowance_remaining.saturating_add(a.balance);
        if available < amount {
            return Err(Refusal::Insufficient {
                needed: amount,
                available,
            });
        }
        let (from_balance, from_allowance) = self.place_hold(id, key_id, amount, None, now, None);
        Ok(Reserved {
            amount: from_balance,
            allowance_amount: from_allowance,
            headers: Default::default(),
        })
    }

    /// The operator changed the allowance of the tenant's plan: it applies from the next
    /// period (the lazy refill reads it); the allowance left of this period is kept. A wallet
    /// without a plan is not changed. Whether it changed.
    pub fn set_plan_allowance(&mut self, allowance: u64) -> bool {
        match self.account.plan_allowance {
            Some(current) if current != allowance => {
                self.account.plan_allowance = Some(allowance);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::LimitsPatch;
    use super::super::ReserveRequest;
    use super::*;

    // 2026-11-28T11:00:00Z and the month boundaries around it.
    const NOV_28: u64 = 1_795_863_600_000;
    const DEC_1: u64 = 1_796_083_200_000;

    fn wallet(balance: u64) -> Wallet {
        let mut w = Wallet::default();
        w.account.balance = balance;
        w
    }

    #[test]
    fn a_call_price_is_reserved_allowance_first_and_charged_once_from_its_hold() {
        let mut w = wallet(1_000);
        w.set_plan(Some(30), NOV_28);
        let r = w.reserve_call("req.c1", "k", 50, NOV_28).unwrap();
        assert_eq!((r.allowance_amount, r.amount), (30, 20));
        assert_eq!((w.account.allowance_remaining, w.account.balance), (0, 980));
        // Idempotent by call id: nothing more taken.
        w.reserve_call("req.c1", "k", 50, NOV_28).unwrap();
        assert_eq!(w.account.balance, 980);
        let c = w.settle("req.c1", "k", 50, 0, NOV_28);
        assert_eq!(
            (c.cost, c.reserved, c.allowance_cost, c.debt),
            (50, 50, 30, 0)
        );
        assert_eq!((w.account.allowance_remaining, w.account.balance), (0, 980));
        assert!(w.holds.is_empty());
        assert_eq!(w.account.counters.held, 0);
        assert_eq!(w.keys["k"].counters.held, 0);
    }

    #[test]
    fn a_failed_call_costs_nothing_and_its_hold_returns() {
        let mut w = wallet(100);
        w.reserve_call("req.c2", "k", 60, NOV_28).unwrap();
        assert_eq!(w.account.balance, 40);
        let c = w.settle("req.c2", "k", 0, 0, NOV_28);
        assert_eq!((c.cost, c.reserved), (0, 60));
        assert_eq!(w.account.balance, 100);
    }

    #[test]
    fn a_call_is_refused_like_d1_refused_it_and_refusals_change_nothing() {
        let mut w = wallet(100);
        let before = w.clone();
        assert_eq!(
            w.reserve_call("c", "k", 101, NOV_28),
            Err(Refusal::Insufficient {
                needed: 101,
                available: 100
            })
        );
        w.account.debt = 1;
        assert_eq!(
            w.reserve_call("c", "k", 1, NOV_28),
            Err(Refusal::Debt { debt: 1 })
        );
        w.account.debt = 0;
        w.set_key_revoked("k", true);
        assert_eq!(w.reserve_call("c", "k", 1, NOV_28), Err(Refusal::Revoked));
        w.set_key_revoked("k", false);
        w.account.disabled = true;
        assert_eq!(w.reserve_call("c", "k", 1, NOV_28), Err(Refusal::Revoked));
        w.account.disabled = false;
        w.keys.remove("k");
        assert_eq!(w, before);
    }

    #[test]
    fn a_call_counts_against_budgets_but_not_against_rpm() {
        let mut w = wallet(1_000);
        let patch: LimitsPatch = serde_json::from_str(r#"{"rpm":1,"budget":100}"#).unwrap();
        w.set_limits(Some("k"), &patch);
        // The one request a minute is used by a chat request...
        let chat = ReserveRequest {
            id: "r".into(),
            key_id: "k".into(),
            amount: 10,
            tokens: 1,
        };
        w.reserve(&chat, NOV_28).unwrap();
        // ...and the call of its tool loop still passes: a call is not a request.
        w.reserve_call("r.c1", "k", 80, NOV_28).unwrap();
        // The budget counts held prices: 10 + 80 + 20 > 100.
        assert_eq!(
            w.reserve_call("r.c2", "k", 20, NOV_28),
            Err(Refusal::Budget {
                scope: Scope::Key,
                budget: 100,
                spent: 90
            })
        );
        w.settle("r.c1", "k", 80, 0, NOV_28);
        assert_eq!(w.limits(Some("k"), NOV_28).usage.spent, 80);
    }

    #[test]
    fn a_new_plan_allowance_applies_from_the_next_month() {
        let mut w = wallet(0);
        w.set_plan(Some(100), NOV_28);
        w.reserve_call("c", "k", 40, NOV_28).unwrap();
        w.settle("c", "k", 40, 0, NOV_28);
        assert!(w.set_plan_allowance(500));
        assert!(!w.set_plan_allowance(500));
        // This month keeps what was left of the old allowance...
        assert_eq!(w.balance(NOV_28).allowance_remaining, 60);
        // ...the next one starts with the new allowance.
        let dec = w.balance(DEC_1 + 1);
        assert_eq!(
            (dec.allowance_remaining, dec.allowance_period),
            (500, Some(DEC_1))
        );
        // A wallet without a plan gets none.
        let mut none = wallet(0);
        assert!(!none.set_plan_allowance(500));
        assert_eq!(none.account.plan_allowance, None);
    }
}
