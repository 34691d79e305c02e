//! Growing a reservation in flight (a stream without `max_tokens` that outruns what it reserved),
//! with the meaning of D1's `store::ledger::extend_reservation`: the extension comes from the
//! allowance first (only while the reservation's allowance period is current), then from the
//! balance; it is refused when the two together cannot cover it, when the key was revoked or the
//! tenant disabled since, or when the tenant owes debt. Here, as for a reservation, the key's and
//! the tenant's budgets must allow it too (RPM/TPM are not checked: no new request starts, and TPM
//! settles to the actual tokens anyway).
//!
//! Idempotent by (request id, extension number): extension `n` of a request is applied once; a
//! repeat of an extension already applied answers [`Extension::Repeat`] and takes nothing.

use serde::{Deserialize, Serialize};

use super::{Refusal, Scope, Wallet};

/// An extension to make: the `number`-th (1, 2, …) of request `id`, of `amount` micro-units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendRequest {
    pub id: String,
    pub number: u32,
    pub amount: u64,
}

/// What an extension did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "extension", rename_all = "snake_case")]
pub enum Extension {
    /// Added to the reservation: `allowance_amount` from the allowance, `amount` from the balance.
    Granted { amount: u64, allowance_amount: u64 },
    /// This extension number was applied before: nothing taken again.
    Repeat,
    /// The reservation is not open (settled, released or expired): nothing taken, the stream
    /// stops at what it covered.
    NotOpen,
}

impl Extension {
    /// Whether the stream may go on.
    pub fn granted(&self) -> bool {
        !matches!(self, Extension::NotOpen)
    }
}

impl Wallet {
    /// Grows reservation `req.id` by `req.amount` (see the module rules). Changes nothing when
    /// refused, not open or a repeat.
    pub fn extend(&mut self, req: &ExtendRequest, now: u64) -> Result<Extension, Refusal> {
        self.refresh(now);
        let Some(hold) = self.holds.get(&req.id) else {
            return Ok(Extension::NotOpen);
        };
        if req.number <= hold.extensions {
            return Ok(Extension::Repeat);
        }
        let key_id = hold.key_id.clone();
        let same_period = hold.allowance_period == self.account.allowance_period;
        let key = self.keys.get(&key_id).copied().unwrap_or_default();
        let a = &self.account;
        if key.revoked || a.disabled {
            return Err(Refusal::Revoked);
        }
        if a.debt > 0 {
            return Err(Refusal::Debt { debt: a.debt });
        }
        key.counters.check_budget(Scope::Key, req.amount, now)?;
        a.counters.check_budget(Scope::Tenant, req.amount, now)?;
        let allowance = if same_period {
            a.allowance_remaining
        } else {
            0
        };
        let available = allowance.saturating_add(a.balance);
        if available < req.amount {
            return Err(Refusal::Insufficient {
                needed: req.amount,
                available,
            });
        }
        let (from_allowance, from_balance) =
            crate::core::billing::allowance::split(req.amount, allowance);
        let a = &mut self.account;
        a.allowance_remaining -= from_allowance;
        a.balance -= from_balance;
        a.counters.held = a.counters.held.saturating_add(req.amount);
        let key = self.keys.entry(key_id).or_default();
        key.counters.held = key.counters.held.saturating_add(req.amount);
        if let Some(h) = self.holds.get_mut(&req.id) {
            h.amount = h.amount.saturating_add(from_balance);
            h.allowance_amount = h.allowance_amount.saturating_add(from_allowance);
            h.extensions = req.number;
        }
        Ok(Extension::Granted {
            amount: from_balance,
            allowance_amount: from_allowance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::LimitsPatch;
    use super::super::ReserveRequest;
    use super::*;

    const NOV_28: u64 = 1_795_863_600_000;
    const DEC_1: u64 = 1_796_083_200_000;

    fn wallet(balance: u64) -> Wallet {
        let mut w = Wallet::default();
        w.account.balance = balance;
        w
    }

    fn reserve(w: &mut Wallet, id: &str, amount: u64, now: u64) {
        w.reserve(
            &ReserveRequest {
                id: id.into(),
                key_id: "k".into(),
                amount,
                tokens: 10,
            },
            now,
        )
        .unwrap();
    }

    fn ext(id: &str, number: u32, amount: u64) -> ExtendRequest {
        ExtendRequest {
            id: id.into(),
            number,
            amount,
        }
    }

    #[test]
    fn an_extension_takes_allowance_first_then_balance_and_settles_with_the_hold() {
        let mut w = wallet(1_000);
        w.set_plan(Some(150), NOV_28);
        reserve(&mut w, "r", 100, NOV_28); // 100 from the allowance
        let e = w.extend(&ext("r", 1, 200), NOV_28 + 1).unwrap();
        assert_eq!(
            e,
            Extension::Granted {
                amount: 150,
                allowance_amount: 50
            }
        );
        assert_eq!((w.account.allowance_remaining, w.account.balance), (0, 850));
        assert_eq!(w.holds["r"].total(), 300);
        assert_eq!(w.account.counters.held, 300);
        assert_eq!(w.keys["k"].counters.held, 300);
        // The settlement sees one reservation of 300: a cost of 250 returns 50 to the balance.
        let c = w.settle("r", "k", 250, 20, NOV_28 + 2);
        assert_eq!(
            (c.reserved, c.beyond_reservation, c.allowance_cost),
            (300, 0, 150)
        );
        assert_eq!(w.account.balance, 900);
        assert_eq!(w.account.counters.held, 0);
        assert_eq!(w.keys["k"].counters.held, 0);
    }

    #[test]
    fn extensions_are_idempotent_by_number() {
        let mut w = wallet(1_000);
        reserve(&mut w, "r", 100, NOV_28);
        assert!(matches!(
            w.extend(&ext("r", 1, 50), NOV_28),
            Ok(Extension::Granted { amount: 50, .. })
        ));
        let after_first = w.clone();
        assert_eq!(w.extend(&ext("r", 1, 50), NOV_28), Ok(Extension::Repeat));
        assert_eq!(w, after_first);
        assert!(matches!(
            w.extend(&ext("r", 2, 50), NOV_28),
            Ok(Extension::Granted { amount: 50, .. })
        ));
        assert_eq!(w.account.balance, 800);
        assert_eq!(w.holds["r"].total(), 200);
    }

    #[test]
    fn refusals_and_closed_reservations_change_nothing() {
        let mut w = wallet(150);
        reserve(&mut w, "r", 100, NOV_28);
        let before = w.clone();
        assert_eq!(
            w.extend(&ext("r", 1, 51), NOV_28),
            Err(Refusal::Insufficient {
                needed: 51,
                available: 50
            })
        );
        assert_eq!(w.extend(&ext("gone", 1, 1), NOV_28), Ok(Extension::NotOpen));
        assert!(!Extension::NotOpen.granted());
        assert_eq!(w, before);
        w.set_key_revoked("k", true);
        assert_eq!(w.extend(&ext("r", 1, 1), NOV_28), Err(Refusal::Revoked));
        w.set_key_revoked("k", false);
        w.account.disabled = true;
        assert_eq!(w.extend(&ext("r", 1, 1), NOV_28), Err(Refusal::Revoked));
        w.account.disabled = false;
        w.account.debt = 5;
        assert_eq!(
            w.extend(&ext("r", 1, 1), NOV_28),
            Err(Refusal::Debt { debt: 5 })
        );
        w.account.debt = 0;
        // A budget counts what the hold already has.
        let patch: LimitsPatch = serde_json::from_str(r#"{"budget":120}"#).unwrap();
        w.set_limits(Some("k"), &patch);
        assert!(matches!(
            w.extend(&ext("r", 1, 21), NOV_28),
            Err(Refusal::Budget {
                scope: Scope::Key,
                budget: 120,
                spent: 100
            })
        ));
        assert!(w.extend(&ext("r", 1, 20), NOV_28).unwrap().granted());
        assert_eq!(w.account.balance, 30);
    }

    #[test]
    fn an_old_period_reservation_extends_from_the_balance_only() {
        let mut w = wallet(100);
        w.set_plan(Some(300), NOV_28);
        reserve(&mut w, "r", 50, NOV_28);
        // December: the allowance is refilled, but the hold belongs to November.
        let e = w.extend(&ext("r", 1, 80), DEC_1 + 1).unwrap();
        assert_eq!(
            e,
            Extension::Granted {
                amount: 80,
                allowance_amount: 0
            }
        );
        assert_eq!(
            (w.account.allowance_remaining, w.account.balance),
            (300, 20)
        );
        assert_eq!(
            w.extend(&ext("r", 2, 21), DEC_1 + 2),
            Err(Refusal::Insufficient {
                needed: 21,
                available: 20
            })
        );
    }
}
