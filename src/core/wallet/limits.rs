//! Per-key and per-tenant limits: `{rpm, tpm, budget, budget_period}` and the spend counters a
//! budget is checked against.
//!
//! Decisions (also in docs/money.md, "Wallets"):
//! - Periods are UTC: a `day` starts at 00:00 UTC, a `week` on Monday 00:00 UTC (ISO weeks), a
//!   `month` on the 1st at 00:00 UTC; `total` never resets.
//! - A budget counts the full cost of every settled request of the current period plus the money
//!   still held by open reservations (whatever period they started in): a reservation that would
//!   take the spend past the budget is refused (402 `budget_exceeded`). The part of a cost beyond
//!   its reservation is still counted (the provider billed it), so spend may end above a budget by
//!   at most that part, exactly like the balance and debt.
//! - The wallet keeps the four counters (day, week, month, total) at once, so changing
//!   `budget_period` neither loses nor invents spend.

use serde::{Deserialize, Serialize};

use crate::core::billing::allowance::month_start_ms;
use crate::core::calendar::DAY_MS;

/// The period a budget is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
    Total,
}

impl BudgetPeriod {
    /// The start (UTC ms) of the period that contains `now_ms` (0 for `Total`).
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            BudgetPeriod::Day => now_ms / DAY_MS * DAY_MS,
            BudgetPeriod::Week => {
                // Day 0 (1970-01-01) was a Thursday; Monday is day 4.
                let day = now_ms / DAY_MS;
                (day - (day + 3) % 7) * DAY_MS
            }
            BudgetPeriod::Month => month_start_ms(now_ms),
            BudgetPeriod::Total => 0,
        }
    }

    const ALL: [BudgetPeriod; 4] = [
        BudgetPeriod::Day,
        BudgetPeriod::Week,
        BudgetPeriod::Month,
        BudgetPeriod::Total,
    ];

    fn index(self) -> usize {
        match self {
            BudgetPeriod::Day => 0,
            BudgetPeriod::Week => 1,
            BudgetPeriod::Month => 2,
            BudgetPeriod::Total => 3,
        }
    }
}

/// The limits of one key or of a tenant. `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Micro-units per `budget_period`.
    pub budget: Option<u64>,
    /// The period of `budget`; `None` with a budget means `total`.
    pub budget_period: Option<BudgetPeriod>,
}

impl Limits {
    /// The period `budget` is counted over.
    pub fn period(&self) -> BudgetPeriod {
        self.budget_period.unwrap_or(BudgetPeriod::Total)
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.budget.is_some()
    }
}

/// One field of a `PUT …/limits` body: absent (keep), `null` (clear) or a value (set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    fn apply(self, field: &mut Option<T>) {
        match self {
            Patch::Keep => {}
            Patch::Clear => *field = None,
            Patch::Set(v) => *field = Some(v),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Reached only when the field is present (`#[serde(default)]` gives `Keep` otherwise).
        Ok(match Option::<T>::deserialize(d)? {
            None => Patch::Clear,
            Some(v) => Patch::Set(v),
        })
    }
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Keep | Patch::Clear => s.serialize_none(),
            Patch::Set(v) => v.serialize(s),
        }
    }
}

/// The body of `PUT /admin/keys/{id}/limits` and `PUT /admin/tenants/{id}/limits`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    #[serde(default)]
    pub rpm: Patch<u64>,
    #[serde(default)]
    pub tpm: Patch<u64>,
    #[serde(default)]
    pub budget: Patch<u64>,
    #[serde(default)]
    pub budget_period: Patch<BudgetPeriod>,
}

/// Largest rpm/tpm accepted (keeps every bucket product far inside `u128` and the values exact
/// as JavaScript numbers).
pub const MAX_RATE: u64 = 1_000_000_000_000;

impl LimitsPatch {
    /// Checks the values: rates 1..=[`MAX_RATE`], budget at most 2⁵³ − 1. Returns the field at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (name, patch) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if let Patch::Set(v) = patch {
                if v == 0 || v > MAX_RATE {
                    return Err((name, format!("{name} must be between 1 and {MAX_RATE}.")));
                }
            }
        }
        if let Patch::Set(v) = self.budget {
            if v > crate::core::billing::MAX_SAFE_INT {
                return Err((
                    "budget",
                    "budget must be at most 9007199254740991 micro-units.".into(),
                ));
            }
        }
        Ok(())
    }

    /// `limits` with this patch applied.
    pub fn apply(&self, mut limits: Limits) -> Limits {
        self.rpm.apply(&mut limits.rpm);
        self.tpm.apply(&mut limits.tpm);
        self.budget.apply(&mut limits.budget);
        self.budget_period.apply(&mut limits.budget_period);
        limits
    }
}

/// Spend (micro-units, full costs) in the current day, week, month and in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// `(period start ms, amount)` per period, in [`BudgetPeriod::ALL`] order.
    pub periods: [(u64, u64); 4],
}

impl Spend {
    /// The spend of the period of kind `period` that contains `now_ms`.
    pub fn in_period(&self, period: BudgetPeriod, now_ms: u64) -> u64 {
        let (start, amount) = self.periods[period.index()];
        if start == period.start_ms(now_ms) {
            amount
        } else {
            0
        }
    }

    /// Adds `cost` at `now_ms` (a counter of an older period starts again from 0).
    pub fn add(&mut self, cost: u64, now_ms: u64) {
        for period in BudgetPeriod::ALL {
            let start = period.start_ms(now_ms);
            let slot = &mut self.periods[period.index()];
            if slot.0 != start {
                *slot = (start, 0);
            }
            slot.1 = slot.1.saturating_add(cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-01T15:30:00Z is a Tuesday (date -u -d 2026-12-01T15:30:00Z +%s%3N).
    const TUE_DEC_1_2026_1530: u64 = 1_796_139_000_000;
    const MON_NOV_30_2026: u64 = 1_795_996_800_000;
    const DEC_1_2026: u64 = 1_796_083_200_000;

    #[test]
    fn periods_are_utc() {
        let now = TUE_DEC_1_2026_1530;
        assert_eq!(BudgetPeriod::Day.start_ms(now), DEC_1_2026);
        assert_eq!(BudgetPeriod::Week.start_ms(now), MON_NOV_30_2026);
        assert_eq!(BudgetPeriod::Month.start_ms(now), DEC_1_2026);
        assert_eq!(BudgetPeriod::Total.start_ms(now), 0);
        // A Monday starts its own week; the Sunday before belongs to the week before.
        assert_eq!(
            BudgetPeriod::Week.start_ms(MON_NOV_30_2026),
            MON_NOV_30_2026
        );
        assert_eq!(
            BudgetPeriod::Week.start_ms(MON_NOV_30_2026 - 1),
            MON_NOV_30_2026 - 7 * DAY_MS
        );
        // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29, before the epoch; the
        // first Monday on or after day 0 is day 4.
        assert_eq!(BudgetPeriod::Week.start_ms(4 * DAY_MS + 5), 4 * DAY_MS);
    }

    #[test]
    fn spend_counters_roll_per_period() {
        let mut s = Spend::default();
        s.add(100, TUE_DEC_1_2026_1530);
        s.add(50, TUE_DEC_1_2026_1530 + 1000);
        assert_eq!(s.in_period(BudgetPeriod::Day, TUE_DEC_1_2026_1530), 150);
        // Next day: day resets, week/month/total keep counting.
        let wed = TUE_DEC_1_2026_1530 + DAY_MS;
        assert_eq!(s.in_period(BudgetPeriod::Day, wed), 0);
        assert_eq!(s.in_period(BudgetPeriod::Week, wed), 150);
        s.add(1, wed);
        assert_eq!(s.in_period(BudgetPeriod::Day, wed), 1);
        assert_eq!(s.in_period(BudgetPeriod::Month, wed), 151);
        assert_eq!(s.in_period(BudgetPeriod::Total, wed + 400 * DAY_MS), 151);
        assert_eq!(s.in_period(BudgetPeriod::Month, wed + 40 * DAY_MS), 0);
    }

    #[test]
    fn patch_keeps_clears_and_sets() {
        let base = Limits {
            rpm: Some(10),
            tpm: Some(1000),
            budget: Some(5),
            budget_period: Some(BudgetPeriod::Day),
        };
        let p: LimitsPatch = serde_json::from_str(r#"{"rpm":null,"budget":7}"#).unwrap();
        assert_eq!(
            p.apply(base),
            Limits {
                rpm: None,
                tpm: Some(1000),
                budget: Some(7),
                budget_period: Some(BudgetPeriod::Day)
            }
        );
        let p: LimitsPatch = serde_json::from_str(r#"{"budget_period":"week"}"#).unwrap();
        assert_eq!(p.apply(base).period(), BudgetPeriod::Week);
        assert!(serde_json::from_str::<LimitsPatch>(r#"{"budget_period":"year"}"#).is_err());
        assert!(serde_json::from_str::<LimitsPatch>(r#"{"rmp":1}"#).is_err());
        assert!(serde_json::from_str::<LimitsPatch>(r#"{"rpm":-1}"#).is_err());
        assert!(serde_json::from_str::<LimitsPatch>(r#"{"rpm":1.5}"#).is_err());
        let zero: LimitsPatch = serde_json::from_str(r#"{"rpm":0}"#).unwrap();
        assert_eq!(zero.validate().unwrap_err().0, "rpm");
        let big: LimitsPatch = serde_json::from_str(r#"{"budget":9007199254740992}"#).unwrap();
        assert_eq!(big.validate().unwrap_err().0, "budget");
        assert!(LimitsPatch::default().validate().is_ok());
    }
}
