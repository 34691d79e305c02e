//! The figures alert rules watch, kept where the numbers are: the settled balance (spendable +
//! reserved, as `store::alerts::observe` reads it from D1 for a tenant without a wallet) and the
//! tokens and cost charged in the current UTC month. A wallet settlement answers them before and
//! after its charge ([`Wallet::settle_observed`]); [`crossed`] decides in core which rules that
//! charge crossed, so the worker touches D1 (the alert rules and their deliveries) only then.
//!
//! The month totals start from D1's `usage_monthly` at the wallet's claim (its snapshot) and
//! follow every settlement of the wallet after it; a new UTC month starts them at 0. A request is
//! counted in the month it is settled (D1 counts it in the month it started: they differ only for
//! a request that runs across midnight at a month's end).

use serde::{Deserialize, Serialize};

use super::{Charge, Wallet};
use crate::core::alerts::{evaluate, AlertKind, Decision, Observation};
use crate::core::billing::allowance::month_start_ms;

/// Tokens and cost charged in one UTC month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthTotals {
    /// Start (UTC ms) of the month these totals are of; `None` before the first settlement.
    pub start: Option<u64>,
    pub tokens: u64,
    pub cost: u64,
}

/// What alert rules compare, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Spendable balance + what open reservations hold of it.
    pub balance: u64,
    /// Month start (UTC ms) of `month_tokens` / `month_cost`.
    pub month_start: u64,
    pub month_tokens: u64,
    pub month_cost: u64,
}

impl Figures {
    /// As `core::alerts` observes them.
    pub fn observation(&self) -> Observation {
        Observation {
            month: Observation::month_of(self.month_start),
            month_tokens: self.month_tokens,
            month_cost: self.month_cost,
            balance: self.balance,
        }
    }
}

/// A settlement's charge with the figures before and after it (`None` for a repeated settlement,
/// which changed nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    #[serde(flatten)]
    pub charge: Charge,
    #[serde(default)]
    pub figures: Option<(Figures, Figures)>,
}

impl Wallet {
    /// The month totals as of `now` (0 in a month with no settlement yet).
    fn month_at(&self, now: u64) -> MonthTotals {
        let start = month_start_ms(now);
        let m = self.account.month;
        if m.start == Some(start) {
            m
        } else {
            MonthTotals {
                start: Some(start),
                tokens: 0,
                cost: 0,
            }
        }
    }

    /// The month's totals as of `now`.
    pub fn month_totals(&self, now: u64) -> MonthTotals {
        self.month_at(now)
    }

    /// The alert figures at `now`.
    pub fn figures(&self, now: u64) -> Figures {
        let m = self.month_at(now);
        Figures {
            balance: self
                .account
                .balance
                .saturating_add(self.holds.values().map(|h| h.amount).sum::<u64>()),
            month_start: m.start.unwrap_or_else(|| month_start_ms(now)),
            month_tokens: m.tokens,
            month_cost: m.cost,
        }
    }

    /// [`Wallet::settle`], counting the charge in the month's totals, with the figures before
    /// and after.
    pub fn settle_observed(
        &mut self,
        id: &str,
        key_id: &str,
        cost: u64,
        tokens: u64,
        now: u64,
    ) -> Observed {
        let before = self.figures(now);
        let charge = self.settle(id, key_id, cost, tokens, now);
        let mut m = self.month_at(now);
        m.tokens = m.tokens.saturating_add(tokens);
        m.cost = m.cost.saturating_add(cost);
        self.account.month = m;
        Observed {
            charge,
            figures: Some((before, self.figures(now))),
        }
    }
}

/// Whether a rule of `kind` and `threshold`, in the state `fired`, fires on going from `before`
/// to `after`: it fires on `after` (`core::alerts::evaluate`) and its condition did not already
/// hold at `before` in the same episode. A settlement that crossed nothing needs no D1 at all.
pub fn crossed(
    kind: AlertKind,
    threshold: u64,
    fired: Option<&str>,
    before: &Observation,
    after: &Observation,
) -> bool {
    if !matches!(
        evaluate(kind, threshold, fired, after),
        Decision::Fire { .. }
    ) {
        return false;
    }
    // Holding already before this charge (and in the same month for monthly rules): not a
    // crossing of this settlement (the scheduled check decides such rules).
    let held_before = match kind {
        AlertKind::BalanceBelow => before.balance < threshold,
        AlertKind::MonthlyTokensAbove | AlertKind::MonthlySpendAbove => {
            before.month == after.month && before.value(kind) > threshold
        }
    };
    !held_before
}

#[cfg(test)]
mod tests {
    use super::super::ReserveRequest;
    use super::*;

    const NOV_28: u64 = 1_795_863_600_000;
    const DEC_1: u64 = 1_796_083_200_000;

    #[test]
    fn a_settlement_answers_its_figures_before_and_after() {
        let mut w = Wallet::default();
        w.account.balance = 1_000;
        w.reserve(
            &ReserveRequest {
                id: "a".into(),
                key_id: "k".into(),
                amount: 300,
                tokens: 9,
            },
            NOV_28,
        )
        .unwrap();
        w.reserve(
            &ReserveRequest {
                id: "b".into(),
                key_id: "k".into(),
                amount: 100,
                tokens: 9,
            },
            NOV_28,
        )
        .unwrap();
        // The reservations are part of the settled balance.
        assert_eq!(w.figures(NOV_28).balance, 1_000);
        let o = w.settle_observed("a", "k", 250, 40, NOV_28 + 1);
        let (before, after) = o.figures.unwrap();
        assert_eq!(o.charge.cost, 250);
        assert_eq!((before.balance, after.balance), (1_000, 750));
        assert_eq!((before.month_cost, after.month_cost), (0, 250));
        assert_eq!((before.month_tokens, after.month_tokens), (0, 40));
        assert_eq!(after.observation().month, "2026-11");
        // A new month starts the totals at 0.
        let o = w.settle_observed("b", "k", 10, 1, DEC_1 + 1);
        let (before, after) = o.figures.unwrap();
        assert_eq!((before.month_cost, after.month_cost), (0, 10));
        assert_eq!(after.observation().month, "2026-12");
        assert_eq!(w.account.month.start, Some(DEC_1));
    }

    fn obs(month: &str, cost: u64, balance: u64) -> Observation {
        Observation {
            month: month.into(),
            month_tokens: 0,
            month_cost: cost,
            balance,
        }
    }

    #[test]
    fn only_the_settlement_that_crosses_a_threshold_says_so() {
        let k = AlertKind::BalanceBelow;
        // 500 → 499 crosses 500; 499 → 400 does not (it held already); nor 600 → 500.
        assert!(crossed(k, 500, None, &obs("m", 0, 500), &obs("m", 0, 499)));
        assert!(!crossed(k, 500, None, &obs("m", 0, 499), &obs("m", 0, 400)));
        assert!(!crossed(k, 500, None, &obs("m", 0, 600), &obs("m", 0, 500)));
        // A fired rule does not fire again.
        assert!(!crossed(
            k,
            500,
            Some("below"),
            &obs("m", 0, 500),
            &obs("m", 0, 499)
        ));
        let s = AlertKind::MonthlySpendAbove;
        assert!(crossed(s, 100, None, &obs("m", 100, 0), &obs("m", 101, 0)));
        assert!(!crossed(s, 100, None, &obs("m", 99, 0), &obs("m", 100, 0)));
        assert!(!crossed(s, 100, None, &obs("m", 101, 0), &obs("m", 150, 0)));
        // A new month's first charge above the threshold crosses.
        assert!(crossed(
            s,
            100,
            Some("m"),
            &obs("m", 150, 0),
            &obs("n", 150, 0)
        ));
    }
}
