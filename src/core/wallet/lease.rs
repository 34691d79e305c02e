//! Per-isolate credit leases: most requests of a busy key do not wait for the wallet.
//!
//! A **lease** is money of the tenant the wallet sets aside for one isolate and one key, held
//! exactly like a reservation (a hold of id `lease:<lease id>`, so balance, `/v1/balance` and
//! alerts see it as held). The isolate spends it locally: a request whose reservation fits in what
//! the isolate has left of its lease is admitted at once and **announces** itself to the wallet
//! with a [`Wallet::take`], which moves its reservation from the lease hold into an ordinary hold
//! of the request's id. From then on the request is settled, extended, released and swept like any
//! other. The announce is sent before the upstream call and awaited before the settlement.
//!
//! # The rules (docs/money.md, "Credit leases")
//! - **Who gets one** ([`Wallet::lease_eligible`]): a key without RPM, TPM or budget limits, of a
//!   tenant without any, not revoked, tenant not disabled, no debt. A limited key always takes the
//!   normal reserve path, so limits stay exact.
//! - **How much** ([`lease_amount`]): asked in the same command as a normal reserve (no extra
//!   call); granted only when what is available after that reservation is at least
//!   [`MIN_AVAILABLE_RESERVATIONS`] times the reservation, and then
//!   `min(LEASE_RESERVATIONS × reservation, available / SHARE_DIVISOR)`. A lease never takes more
//!   than an eighth of what is left, and a small balance (under 16 reservations) is never leased at
//!   all: other isolates are never starved. At most [`MAX_OPEN_LEASES_PER_KEY`] open leases per key.
//! - **Using one**: the isolate takes from its lease only while it is younger than
//!   [`USE_WINDOW_MS`] (its own clock, from when it received the grant); the wallet honours a take
//!   until [`EXPIRY_MS`] after the grant (its clock), and the alarm returns the leftover then.
//! - **Take arithmetic**: a take moves exactly the request's reservation (allowance part first)
//!   out of the lease; the wallet refuses to move more than the lease has left, so the sum of takes
//!   never exceeds the lease. A take on a lease that is unknown, expired, cancelled, of another key,
//!   too small, or whose key is no longer eligible falls back to a normal reserve inside the wallet
//!   (a refusal then stops the request; see the gateway), and cancels that lease if it still exists.
//! - **Cancel** ([`Wallet::cancel_leases`]): revoking a key, disabling the tenant or setting limits
//!   returns the leases' leftovers at once; the isolate learns it from the answer to its next take
//!   (`lease_open: false`) and drops its lease.

use serde::{Deserialize, Serialize};

use super::{Hold, Refusal, ReserveRequest, Reserved, Wallet};

/// Prefix of a lease's hold id.
pub const HOLD_PREFIX: &str = "lease:";
/// How long an isolate takes from a lease after it received it (its clock).
pub const USE_WINDOW_MS: u64 = 10_000;
/// How long the wallet honours takes on a lease after granting it (its clock); the leftover is
/// returned after this. Well above [`USE_WINDOW_MS`]: a take is sent when its request is admitted,
/// so it reaches the wallet long before the lease expires there.
pub const EXPIRY_MS: u64 = 60_000;
/// A lease is at most this many times the reservation that asked for it.
pub const LEASE_RESERVATIONS: u64 = 16;
/// A lease is at most this fraction (1/n) of what is available after that reservation.
pub const SHARE_DIVISOR: u64 = 8;
/// No lease unless at least this many reservations like the asking one are still available.
pub const MIN_AVAILABLE_RESERVATIONS: u64 = 16;
/// Open leases per key at most (one per isolate asking).
pub const MAX_OPEN_LEASES_PER_KEY: usize = 8;

/// The hold id of lease `lease_id`.
pub fn hold_id(lease_id: &str) -> String {
    format!("{HOLD_PREFIX}{lease_id}")
}

/// What a lease hold records beyond a reservation (its `amount`/`allowance_amount` are the
/// leftover).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// What was granted.
    pub granted: u64,
    /// Sum of the takes so far (`taken + leftover == granted`).
    pub taken: u64,
    pub takes: u32,
}

/// An isolate's request for a lease, sent with a reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAsk {
    pub id: String,
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub lease_id: String,
    pub key_id: String,
    pub amount: u64,
    /// The wallet's clock at the grant.
    pub granted_at: u64,
}

/// The answer to a take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Took {
    #[serde(flatten)]
    pub reserved: Reserved,
    /// Whether the reservation came from the lease.
    pub from_lease: bool,
    /// Whether the isolate may go on taking from this lease.
    pub lease_open: bool,
}

/// The lease policy: how much to lease after a reservation of `reserved` that left `available`
/// (allowance + balance), or none.
pub fn lease_amount(reserved: u64, available: u64) -> Option<u64> {
    if reserved == 0 || available / MIN_AVAILABLE_RESERVATIONS < reserved {
        return None;
    }
    let amount = reserved
        .saturating_mul(LEASE_RESERVATIONS)
        .min(available / SHARE_DIVISOR);
    (amount >= reserved).then_some(amount)
}

/// An isolate's own view of its lease on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLease {
    pub id: String,
    pub remaining: u64,
    /// The isolate's clock when it received the grant.
    pub received_at: u64,
}

impl LocalLease {
    /// Whether the isolate may still take from it at `now`.
    pub fn usable(&self, now: u64) -> bool {
        now.saturating_sub(self.received_at) < USE_WINDOW_MS
    }

    /// Takes `amount` if the lease is usable and has it left.
    pub fn try_take(&mut self, amount: u64, now: u64) -> bool {
        if amount == 0 || !self.usable(now) || self.remaining < amount {
            return false;
        }
        self.remaining -= amount;
        true
    }
}

impl Wallet {
    /// Whether `key_id` may hold leases now (see the module rules).
    pub fn lease_eligible(&self, key_id: &str) -> bool {
        let key = self.keys.get(key_id).copied().unwrap_or_default();
        let a = &self.account;
        !key.revoked
            && !a.disabled
            && a.debt == 0
            && !key.counters.limits.any()
            && !a.counters.limits.any()
    }

    fn open_leases(&self, key_id: &str) -> usize {
        self.holds
            .values()
            .filter(|h| h.lease.is_some() && h.key_id == key_id)
            .count()
    }

    /// Grants lease `ask` to `key_id` after a reservation of `reserved`, when the policy allows.
    /// Changes nothing when it does not.
    pub fn grant_lease(
        &mut self,
        ask: &LeaseAsk,
        key_id: &str,
        reserved: u64,
        now: u64,
    ) -> Option<Grant> {
        let id = hold_id(&ask.id);
        if !self.lease_eligible(key_id)
            || self.holds.contains_key(&id)
            || self.open_leases(key_id) >= MAX_OPEN_LEASES_PER_KEY
        {
            return None;
        }
        let a = &self.account;
        let available = a.allowance_remaining.saturating_add(a.balance);
        let amount = lease_amount(reserved, available)?;
        self.place_hold(
            &id,
            key_id,
            amount,
            None,
            now,
            Some(LeaseState {
                granted: amount,
                taken: 0,
                takes: 0,
            }),
        );
        Some(Grant {
            lease_id: ask.id.clone(),
            key_id: key_id.to_string(),
            amount,
            granted_at: now,
        })
    }

    /// Admits request `req` on lease `lease_id` (see the module rules): its reservation moves from
    /// the lease into a hold of id `req.id`, or, when the lease cannot take it, a normal reserve
    /// is made (whose refusal is the answer). Idempotent by request id. Only the lease's hold and
    /// the request's change (and the money, when the lease is cancelled or a reserve is made).
    pub fn take(
        &mut self,
        lease_id: &str,
        req: &ReserveRequest,
        now: u64,
    ) -> Result<Took, Refusal> {
        self.refresh(now);
        let lid = hold_id(lease_id);
        if let Some(h) = self.holds.get(&req.id) {
            return Ok(Took {
                reserved: Reserved {
                    amount: h.amount,
                    allowance_amount: h.allowance_amount,
                    headers: Default::default(),
                },
                from_lease: false,
                lease_open: self.holds.contains_key(&lid),
            });
        }
        let eligible = self.lease_eligible(&req.key_id);
        let usable = self.holds.get(&lid).map(|l| {
            l.lease.is_some()
                && l.key_id == req.key_id
                && eligible
                && now < l.created_at.saturating_add(EXPIRY_MS)
        });
        let fits = self
            .holds
            .get(&lid)
            .is_some_and(|l| l.total() >= req.amount);
        match usable {
            Some(true) if fits => {
                let Some(l) = self.holds.get_mut(&lid) else {
                    return Err(Refusal::Revoked);
                };
                let from_allowance = req.amount.min(l.allowance_amount);
                let from_balance = req.amount - from_allowance;
                l.allowance_amount -= from_allowance;
                l.amount -= from_balance;
                if let Some(s) = l.lease.as_mut() {
                    s.taken = s.taken.saturating_add(req.amount);
                    s.takes = s.takes.saturating_add(1);
                }
                let period = l.allowance_period;
                let used_up = l.total() == 0;
                if used_up {
                    self.holds.remove(&lid);
                }
                self.holds.insert(
                    req.id.clone(),
                    Hold::open(
                        &req.id,
                        &req.key_id,
                        (from_balance, from_allowance),
                        period,
                        req.tokens,
                        now,
                    ),
                );
                Ok(Took {
                    reserved: Reserved {
                        amount: from_balance,
                        allowance_amount: from_allowance,
                        headers: Default::default(),
                    },
                    from_lease: true,
                    lease_open: !used_up,
                })
            }
            other => {
                // Unusable (expired, ineligible key, another key's): cancelled now. Too small:
                // kept (the isolate's view ran ahead of it; the wallet's is the truth).
                if other == Some(false) {
                    if let Some(l) = self.holds.remove(&lid) {
                        self.give_back(&l, now);
                    }
                }
                let reserved = self.reserve(req, now)?;
                Ok(Took {
                    reserved,
                    from_lease: false,
                    lease_open: false,
                })
            }
        }
    }

    /// Cancels the open leases of `key_id` (every key's with `None`): their leftovers return at
    /// once; later takes on them fall back to a normal reserve. The removed lease holds.
    pub fn cancel_leases(&mut self, key_id: Option<&str>, now: u64) -> Vec<Hold> {
        self.give_back_where(now, |h| {
            h.lease.is_some() && key_id.is_none_or(|k| h.key_id == k)
        })
    }

    /// When the next hold expires: a lease [`EXPIRY_MS`] after its grant, a reservation
    /// `stale_ms` after it was made.
    pub fn next_expiry(&self, stale_ms: u64) -> Option<u64> {
        self.holds.values().map(|h| expires_at(h, stale_ms)).min()
    }
}

/// When hold `h` expires (see [`Wallet::next_expiry`]).
pub fn expires_at(h: &Hold, stale_ms: u64) -> u64 {
    if h.lease.is_some() {
        h.created_at.saturating_add(EXPIRY_MS)
    } else {
        h.created_at.saturating_add(stale_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_793_491_200_000 + 5_000;

    fn wallet(balance: u64) -> Wallet {
        let mut w = Wallet::default();
        w.account.balance = balance;
        w
    }

    fn req(id: &str, amount: u64) -> ReserveRequest {
        ReserveRequest {
            id: id.into(),
            key_id: "k".into(),
            amount,
            tokens: 10,
        }
    }

    fn ask(id: &str) -> LeaseAsk {
        LeaseAsk { id: id.into() }
    }

    /// Reserve `r1` of 100 and ask for lease `l1`.
    fn leased(balance: u64) -> (Wallet, Grant) {
        let mut w = wallet(balance);
        w.reserve(&req("r1", 100), NOW).unwrap();
        let g = w.grant_lease(&ask("l1"), "k", 100, NOW).expect("granted");
        (w, g)
    }

    fn held(w: &Wallet) -> u64 {
        w.holds.values().map(Hold::total).sum()
    }

    #[test]
    fn the_policy_leases_a_bounded_share_and_nothing_from_a_small_balance() {
        // Plenty: K reservations.
        assert_eq!(lease_amount(100, 1_000_000), Some(1_600));
        // Less: an eighth of what is left.
        assert_eq!(lease_amount(100, 4_000), Some(500));
        // Under 16 reservations available: none.
        assert_eq!(lease_amount(100, 1_599), None);
        assert_eq!(lease_amount(100, 1_600), Some(200));
        assert_eq!(lease_amount(0, 1_000_000), None);
        // Never more than an eighth of what is available.
        for available in [1_600, 2_000, 12_800, 20_000, 1 << 40] {
            if let Some(a) = lease_amount(100, available) {
                assert!(a * SHARE_DIVISOR <= available, "{available}");
                assert!(a >= 100);
            }
        }
    }

    #[test]
    fn a_grant_is_held_like_a_reservation() {
        let (mut w, g) = leased(100_000);
        // 99_900 available after r1: min(1_600, 12_487).
        assert_eq!(g.amount, 1_600);
        assert_eq!(w.account.balance, 100_000 - 100 - 1_600);
        let b = w.balance(NOW);
        assert_eq!(b.reserved, 1_700);
        assert_eq!(w.account.counters.held, 1_700);
        assert_eq!(w.keys["k"].counters.held, 1_700);
        assert!(w.holds.contains_key("lease:l1"));
        // The same lease id is not granted twice.
        assert_eq!(w.grant_lease(&ask("l1"), "k", 100, NOW), None);
    }

    #[test]
    fn no_lease_for_a_limited_revoked_disabled_or_indebted_key() {
        type Change = Box<dyn Fn(&mut Wallet)>;
        let cases: Vec<Change> = vec![
            Box::new(|w| w.keys.entry("k".into()).or_default().counters.limits.rpm = Some(5)),
            Box::new(|w| w.keys.entry("k".into()).or_default().counters.limits.budget = Some(9)),
            Box::new(|w| w.account.counters.limits.tpm = Some(5)),
            Box::new(|w| w.set_key_revoked("k", true)),
            Box::new(|w| w.account.disabled = true),
            Box::new(|w| w.account.debt = 1),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut w = wallet(1_000_000);
            change(&mut w);
            let before = w.clone();
            assert_eq!(w.grant_lease(&ask("l"), "k", 100, NOW), None, "case {i}");
            assert_eq!(w, before, "case {i}: nothing changed");
        }
    }

    #[test]
    fn open_leases_per_key_are_bounded() {
        let mut w = wallet(u64::from(u32::MAX));
        for i in 0..MAX_OPEN_LEASES_PER_KEY {
            assert!(w
                .grant_lease(&ask(&format!("l{i}")), "k", 100, NOW)
                .is_some());
        }
        assert_eq!(w.grant_lease(&ask("one-more"), "k", 100, NOW), None);
    }

    #[test]
    fn a_take_moves_exactly_the_reservation_and_never_more_than_the_lease() {
        let (mut w, g) = leased(100_000);
        let balance = w.account.balance;
        let mut taken = 0;
        let mut i = 0;
        loop {
            i += 1;
            let t = w.take("l1", &req(&format!("t{i}"), 300), NOW + 1).unwrap();
            if !t.from_lease {
                // The sixth take no longer fits (1_600 = 5 × 300 + 100): a normal reserve.
                assert!(!t.lease_open);
                break;
            }
            taken += 300;
            let l = &w.holds["lease:l1"];
            assert_eq!(l.lease.unwrap().taken, taken);
            assert_eq!(l.total() + taken, g.amount);
            assert!(t.lease_open);
        }
        assert_eq!(i, 6);
        assert_eq!(taken, 1_500);
        // The five takes came from the lease, the sixth from the balance.
        assert_eq!(w.account.balance, balance - 300);
        assert_eq!(w.holds["t1"].total(), 300);
        // Money is conserved: spendable + held == what there was.
        assert_eq!(w.account.balance + held(&w), 100_000);
        // Settling a taken request is today's settle.
        let c = w.settle("t1", "k", 250, 12, NOW + 2);
        assert_eq!((c.reserved, c.beyond_reservation), (300, 0));
        assert_eq!(w.account.balance + held(&w), 100_000 - 250);
    }

    #[test]
    fn a_take_that_uses_up_the_lease_closes_it() {
        let (mut w, _) = leased(100_000);
        let t = w.take("l1", &req("t1", 1_600), NOW).unwrap();
        assert!(t.from_lease);
        assert!(!t.lease_open);
        assert!(!w.holds.contains_key("lease:l1"));
        // A later take on it: a normal reserve.
        let t = w.take("l1", &req("t2", 100), NOW).unwrap();
        assert!(!t.from_lease);
    }

    #[test]
    fn a_take_is_idempotent_by_request_id() {
        let (mut w, _) = leased(100_000);
        w.take("l1", &req("t1", 300), NOW).unwrap();
        let snapshot = w.clone();
        let again = w.take("l1", &req("t1", 300), NOW).unwrap();
        assert_eq!(again.reserved.amount + again.reserved.allowance_amount, 300);
        assert_eq!(w, snapshot);
    }

    #[test]
    fn an_expired_or_unknown_lease_falls_back_to_a_reserve_which_may_refuse() {
        let (mut w, _) = leased(100_000);
        let t = w.take("l1", &req("late", 100), NOW + EXPIRY_MS).unwrap();
        assert!(!t.from_lease && !t.lease_open);
        // The expired lease was returned.
        assert!(!w.holds.contains_key("lease:l1"));
        assert_eq!(w.account.balance, 100_000 - 100 - 100);
        // Unknown lease, too little money: refused like a reserve.
        let mut w = wallet(50);
        assert_eq!(
            w.take("nope", &req("x", 100), NOW),
            Err(Refusal::Insufficient {
                needed: 100,
                available: 50
            })
        );
        assert!(w.holds.is_empty());
    }

    #[test]
    fn revoking_or_limiting_cancels_the_keys_leases() {
        // Revoked: the next take falls back to a reserve, which refuses; the leftover returned.
        let (mut w, _) = leased(100_000);
        w.take("l1", &req("t1", 300), NOW).unwrap();
        w.set_key_revoked("k", true);
        let cancelled = w.cancel_leases(Some("k"), NOW);
        assert_eq!(cancelled.len(), 1);
        assert_eq!(w.account.balance, 100_000 - 100 - 300);
        assert_eq!(w.take("l1", &req("t2", 300), NOW), Err(Refusal::Revoked));
        // Even without the explicit cancel, a take of an ineligible key is not served from the
        // lease, and the lease is cancelled by it.
        let (mut w, _) = leased(100_000);
        w.keys.get_mut("k").unwrap().counters.limits.rpm = Some(1_000);
        let t = w.take("l1", &req("t1", 300), NOW).unwrap();
        assert!(!t.from_lease && !t.lease_open);
        assert!(!w.holds.contains_key("lease:l1"));
        assert_eq!(
            w.keys["k"].counters.requests.window(1_000, NOW).remaining,
            999
        );
        // Only the named key's leases go; `None` cancels all.
        let (mut w, _) = leased(1_000_000);
        w.grant_lease(&ask("other"), "k2", 100, NOW).unwrap();
        assert_eq!(w.cancel_leases(Some("k"), NOW).len(), 1);
        assert_eq!(w.cancel_leases(None, NOW).len(), 1);
        assert_eq!(w.account.balance + held(&w), 1_000_000);
    }

    #[test]
    fn the_sweep_returns_a_lease_after_its_expiry_not_the_stale_limit() {
        let (mut w, _) = leased(100_000);
        w.take("l1", &req("t1", 300), NOW).unwrap();
        let stale = 600_000;
        assert_eq!(w.next_expiry(stale), Some(NOW + EXPIRY_MS));
        assert!(w.expire(NOW + EXPIRY_MS - 1, stale).is_empty());
        let gone = w.expire(NOW + EXPIRY_MS, stale);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, "lease:l1");
        // The taken request's hold stays until it is settled (or stale).
        assert!(w.holds.contains_key("t1"));
        assert_eq!(w.account.balance, 100_000 - 100 - 300);
    }

    #[test]
    fn random_grants_takes_settles_and_sweeps_never_overspend() {
        // Money is conserved (spendable + held + charged == credited + allowance granted + debt),
        // no lease ever gives more than it was granted, and what the counters hold is the holds.
        let mut w = wallet(20_000);
        w.set_plan(Some(3_000), NOW);
        let (credited, granted) = (20_000u64, 3_000u64);
        let mut charged = 0u64;
        let mut seed = 99u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for i in 0..3_000u64 {
            let now = NOW + i * 40;
            let id = format!("r{}", next(60));
            let lease = format!("l{}", next(6));
            match next(6) {
                0 => {
                    if w.reserve(&req(&id, 1 + next(400)), now).is_ok() {
                        w.grant_lease(&ask(&lease), "k", 1 + next(400), now);
                    }
                }
                1 | 2 => {
                    let _ = w.take(&lease, &req(&id, 1 + next(400)), now);
                }
                3 => charged += w.settle(&id, "k", next(500), 1, now).cost,
                4 => {
                    w.expire(now, 600_000);
                }
                _ => {
                    if next(10) == 0 {
                        w.cancel_leases(Some("k"), now);
                    }
                }
            }
            let spendable = w.account.balance + w.account.allowance_remaining;
            assert_eq!(
                spendable + held(&w) + charged,
                credited + granted + w.account.debt,
                "step {i}"
            );
            for l in w.holds.values().filter_map(|h| h.lease.map(|s| (h, s))) {
                assert_eq!(l.0.total() + l.1.taken, l.1.granted, "step {i}");
            }
            assert_eq!(w.account.counters.held, held(&w), "step {i}");
        }
    }

    #[test]
    fn an_isolate_takes_only_inside_its_window_and_its_lease() {
        let mut l = LocalLease {
            id: "l".into(),
            remaining: 1_000,
            received_at: 50,
        };
        assert!(l.try_take(600, 50));
        assert!(!l.try_take(600, 51), "more than left");
        assert!(l.try_take(400, 50 + USE_WINDOW_MS - 1));
        assert_eq!(l.remaining, 0);
        let mut l = LocalLease {
            id: "l".into(),
            remaining: 1_000,
            received_at: 50,
        };
        assert!(!l.try_take(1, 50 + USE_WINDOW_MS), "too old");
        assert!(!l.try_take(0, 50), "nothing to take");
        const {
            assert!(
                EXPIRY_MS >= USE_WINDOW_MS * 5,
                "the wallet outlives the isolate's use"
            )
        };
    }
}
