use super::limits::{BudgetPeriod, Patch};
use super::*;

// 2026-11-28T11:00:00Z and the month boundaries around it (see billing::allowance's tests).
const NOV_28: u64 = 1_795_863_600_000;
const NOV_1: u64 = 1_793_491_200_000;
const DEC_1: u64 = 1_796_083_200_000;

fn wallet(balance: u64) -> Wallet {
    let mut w = Wallet::default();
    w.account.balance = balance;
    w
}

fn req(id: &str, key: &str, amount: u64, tokens: u64) -> ReserveRequest {
    ReserveRequest {
        id: id.into(),
        key_id: key.into(),
        amount,
        tokens,
    }
}

fn limits(w: &mut Wallet, key: Option<&str>, json: &str) {
    let patch: LimitsPatch = serde_json::from_str(json).unwrap();
    w.set_limits(key, &patch);
}

/// Balance + allowance + holds + charged = what was put in: no micro-unit appears or vanishes.
fn total(w: &Wallet) -> u64 {
    w.account.balance
        + w.account.allowance_remaining
        + w.holds.values().map(Hold::total).sum::<u64>()
}

#[test]
fn reserve_takes_allowance_first_then_balance() {
    let mut w = wallet(1_000);
    w.set_plan(Some(300), NOV_28);
    let r = w.reserve(&req("r1", "k", 500, 10), NOV_28).unwrap();
    assert_eq!((r.allowance_amount, r.amount), (300, 200));
    assert_eq!(w.account.allowance_remaining, 0);
    assert_eq!(w.account.balance, 800);
    // Idempotent by request id: the same answer, nothing more taken.
    let again = w.reserve(&req("r1", "k", 500, 10), NOV_28).unwrap();
    assert_eq!((again.allowance_amount, again.amount), (300, 200));
    assert_eq!(w.account.balance, 800);
    assert_eq!(w.holds.len(), 1);
}

#[test]
fn refusals_change_nothing() {
    let mut w = wallet(100);
    let before = w.clone();
    assert_eq!(
        w.reserve(&req("r", "k", 101, 1), NOV_28),
        Err(Refusal::Insufficient {
            needed: 101,
            available: 100
        })
    );
    assert_eq!(w, before);
    w.set_key_revoked("k", true);
    let err = w.reserve(&req("r", "k", 1, 1), NOV_28).unwrap_err();
    assert_eq!((err.status(), err.code()), (401, "invalid_api_key"));
    assert!(w.reserve(&req("r", "other", 1, 1), NOV_28).is_ok());
    w.account.disabled = true;
    assert_eq!(
        w.reserve(&req("r2", "other", 1, 1), NOV_28),
        Err(Refusal::Revoked)
    );
}

#[test]
fn settle_within_reservation_returns_the_rest() {
    let mut w = wallet(1_000);
    w.set_plan(Some(300), NOV_28);
    w.reserve(&req("r1", "k", 500, 10), NOV_28).unwrap();
    // Cost 350: 300 from the hold's allowance part, 50 from its balance part; 150 returns.
    let c = w.settle("r1", "k", 350, 10, NOV_28);
    assert_eq!(
        c,
        Charge {
            cost: 350,
            reserved: 500,
            allowance_cost: 300,
            beyond_reservation: 0,
            debt: 0
        }
    );
    assert_eq!(w.account.balance, 950);
    assert_eq!(w.account.allowance_remaining, 0);
    assert!(w.holds.is_empty());
    assert_eq!(w.account.counters.held, 0);
    assert_eq!(w.keys["k"].counters.held, 0);
}

#[test]
fn settle_beyond_reservation_takes_allowance_then_balance_then_debt() {
    // The order of 0007's usage_settle trigger.
    let mut w = wallet(100);
    w.set_plan(Some(50), NOV_28);
    w.reserve(&req("r1", "k", 60, 1), NOV_28).unwrap(); // 50 allowance + 10 balance
    w.account.allowance_remaining = 20; // (a refill from elsewhere, to see step 2)
    let c = w.settle("r1", "k", 200, 1, NOV_28);
    // hold 60, beyond 140: 20 from allowance, 90 from balance, 30 debt.
    assert_eq!(c.allowance_cost, 50 + 20);
    assert_eq!(c.beyond_reservation, 140);
    assert_eq!(c.debt, 30);
    assert_eq!(w.account.balance, 0);
    assert_eq!(w.account.allowance_remaining, 0);
    assert_eq!(w.account.debt, 30);
    // Debt refuses the next reservation (402 insufficient_quota) until a credit pays it.
    let err = w.reserve(&req("r2", "k", 1, 1), NOV_28).unwrap_err();
    assert_eq!((err.status(), err.code()), (402, "insufficient_quota"));
    let e = w.adjust(50, None).unwrap();
    assert_eq!((e.debt_paid, e.balance), (30, 20));
    assert_eq!(w.account.debt, 0);
    assert!(w.reserve(&req("r2", "k", 1, 1), NOV_28).is_ok());
}

#[test]
fn a_request_from_last_month_is_paid_by_its_own_allowance() {
    let mut w = wallet(1_000);
    w.set_plan(Some(300), NOV_28);
    w.reserve(&req("old", "k", 300, 1), NOV_28).unwrap();
    assert_eq!(w.account.allowance_remaining, 0);
    // December: full allowance again; the old hold's unused allowance part does not return.
    let c = w.settle("old", "k", 100, 1, DEC_1 + 5);
    assert_eq!(c.allowance_cost, 100);
    assert_eq!(w.account.allowance_remaining, 300);
    assert_eq!(w.account.allowance_period, Some(DEC_1));
    assert_eq!(w.account.balance, 1_000);
}

#[test]
fn release_and_expiry_return_everything() {
    let mut w = wallet(1_000);
    w.set_plan(Some(100), NOV_28);
    w.reserve(&req("a", "k", 150, 5), NOV_28).unwrap();
    w.reserve(&req("b", "k", 150, 5), NOV_28 + 10_000).unwrap();
    assert_eq!(total(&w), 1_100);
    assert_eq!(w.release("a", NOV_28 + 1).unwrap().total(), 150);
    assert!(w.release("a", NOV_28 + 1).is_none());
    assert_eq!(total(&w), 1_100);
    let expired = w.expire(NOV_28 + 20_000, 5_000);
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (w.account.balance, w.account.allowance_remaining),
        (1_000, 100)
    );
    // A late settlement of the expired request charges everything beyond a reservation.
    let c = w.settle("b", "k", 120, 5, NOV_28 + 30_000);
    assert_eq!(
        (c.reserved, c.beyond_reservation, c.allowance_cost),
        (0, 120, 100)
    );
    assert_eq!(w.account.balance, 980);
    assert_eq!(w.account.counters.held, 0);
}

#[test]
fn assigning_a_plan_counts_what_holds_of_this_month_took() {
    let mut w = wallet(0);
    w.set_plan(Some(100), NOV_28);
    w.reserve(&req("a", "k", 40, 1), NOV_28).unwrap();
    w.set_plan(Some(500), NOV_28);
    assert_eq!(w.account.allowance_remaining, 460);
    w.settle("a", "k", 10, 1, NOV_28);
    assert_eq!(w.account.allowance_remaining, 490);
    w.set_plan(None, NOV_28);
    assert_eq!(w.account.allowance_remaining, 0);
    assert_eq!(w.balance(NOV_28).allowance_resets_at, None);
    w.set_plan(Some(7), NOV_28);
    assert_eq!(w.balance(NOV_28).allowance_resets_at, Some(DEC_1));
    assert_eq!(w.balance(NOV_28).allowance_period, Some(NOV_1));
}

#[test]
fn credits_and_debits_are_bounded_and_idempotent() {
    let mut w = wallet(0);
    let e = w.adjust(100, None).unwrap();
    assert_eq!(w.adjust(100, Some(e)), Ok(e));
    assert_eq!(w.account.balance, 100);
    assert_eq!(w.adjust(99, Some(e)), Err(Refusal::KeyReused));
    assert_eq!(w.adjust(-101, None), Err(Refusal::BalanceLimit));
    assert_eq!(w.adjust(-100, None).unwrap().balance, 0);
    assert!(w.adjust(MAX_SAFE_INT as i64, None).is_ok());
    assert_eq!(w.adjust(1, None), Err(Refusal::BalanceLimit));
    assert_eq!(w.account.balance, MAX_SAFE_INT);
}

#[test]
fn key_budget_counts_spend_and_holds_per_period() {
    let mut w = wallet(1_000_000);
    limits(
        &mut w,
        Some("k"),
        r#"{"budget":1000,"budget_period":"day"}"#,
    );
    w.reserve(&req("a", "k", 600, 1), NOV_28).unwrap();
    let err = w.reserve(&req("b", "k", 500, 1), NOV_28).unwrap_err();
    assert_eq!((err.status(), err.code()), (402, "budget_exceeded"));
    // Another key is not limited.
    assert!(w.reserve(&req("c", "k2", 500, 1), NOV_28).is_ok());
    w.settle("a", "k", 100, 1, NOV_28);
    assert!(w.reserve(&req("b", "k", 900, 1), NOV_28).is_ok());
    w.settle("b", "k", 900, 1, NOV_28);
    assert!(w.reserve(&req("d", "k", 1, 1), NOV_28).is_err());
    // Next UTC day: the day's spend starts again.
    assert!(w
        .reserve(&req("d", "k", 1000, 1), NOV_28 + 86_400_000)
        .is_ok());
    let view = w.limits(Some("k"), NOV_28 + 86_400_000);
    assert_eq!((view.usage.spent, view.usage.held), (0, 1000));
    // "total" sees everything.
    limits(
        &mut w,
        Some("k"),
        r#"{"budget_period":"total","budget":null}"#,
    );
    assert_eq!(w.limits(Some("k"), NOV_28).usage.spent, 1000);
    assert_eq!(w.limits(Some("k"), NOV_28).limits.budget, None);
}

#[test]
fn tenant_budget_holds_across_keys_under_a_burst() {
    // 200 requests, one at a time as the object runs them: never more held + spent than budget.
    let mut w = wallet(1_000_000);
    limits(&mut w, None, r#"{"budget":5000}"#);
    let mut granted = 0;
    for i in 0..200 {
        if w.reserve(
            &req(&format!("r{i}"), &format!("k{}", i % 7), 100, 1),
            NOV_28,
        )
        .is_ok()
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 50);
    for i in 0..200 {
        w.settle(&format!("r{i}"), &format!("k{}", i % 7), 100, 1, NOV_28);
    }
    // Settling the 150 refused requests (no hold) still charges them: they ran anyway.
    assert_eq!(
        w.account
            .counters
            .spend
            .in_period(BudgetPeriod::Total, NOV_28),
        20_000
    );
    assert_eq!(w.account.balance, 1_000_000 - 20_000);
}

#[test]
fn rpm_refuses_with_retry_after_and_headers() {
    let mut w = wallet(1_000);
    limits(&mut w, Some("k"), r#"{"rpm":2}"#);
    let r = w.reserve(&req("a", "k", 1, 1), NOV_28).unwrap();
    let rq = r.headers.requests.unwrap();
    assert_eq!((rq.limit, rq.remaining), (2, 1));
    w.reserve(&req("b", "k", 1, 1), NOV_28).unwrap();
    let before = w.clone();
    let err = w.reserve(&req("c", "k", 1, 1), NOV_28).unwrap_err();
    assert_eq!((err.status(), err.code()), (429, "rate_limit_exceeded"));
    assert_eq!(err.retry_after_secs(), Some(30));
    assert_eq!(w, before);
    assert!(w.reserve(&req("c", "k", 1, 1), NOV_28 + 30_000).is_ok());
}

#[test]
fn tpm_counts_reserved_tokens_and_settles_to_actual() {
    let mut w = wallet(1_000);
    limits(&mut w, None, r#"{"tpm":1000}"#);
    w.reserve(&req("a", "k", 1, 900), NOV_28).unwrap();
    assert!(w.reserve(&req("b", "k", 1, 200), NOV_28).is_err());
    w.settle("a", "k", 1, 100, NOV_28);
    let view = w.limits(None, NOV_28);
    assert_eq!(view.usage.tokens.unwrap().remaining, 900);
    assert!(w.reserve(&req("b", "k", 1, 200), NOV_28).is_ok());
    // Headers come from the tenant when the key has no limit of its own.
    let h = w.headers("k", NOV_28);
    assert_eq!(h.tokens.unwrap().remaining, 700);
    assert!(h.requests.is_none());
    limits(&mut w, Some("k"), r#"{"tpm":5000,"rpm":9}"#);
    let h = w.headers("k", NOV_28);
    assert_eq!(h.tokens.unwrap().limit, 5000);
    assert_eq!(h.requests.unwrap().remaining, 9);
}

#[test]
fn limits_patch_through_wallet() {
    let mut w = wallet(0);
    let l = w.set_limits(
        Some("k"),
        &LimitsPatch {
            rpm: Patch::Set(5),
            ..LimitsPatch::default()
        },
    );
    assert_eq!(l.rpm, Some(5));
    assert_eq!(w.limits(None, NOV_28).limits, Limits::default());
    assert_eq!(w.limits(Some("nobody"), NOV_28).limits, Limits::default());
}

#[test]
fn money_is_conserved_over_random_commands() {
    // A small deterministic generator: every command keeps balance + allowance + holds + charged
    // - debt equal to what was credited plus the allowances granted.
    let mut w = wallet(10_000);
    w.set_plan(Some(2_000), NOV_28);
    let granted = 2_000u64;
    let mut credited = 10_000u64;
    let mut charged = 0u64;
    let mut seed = 12345u64;
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for i in 0..2_000u64 {
        let now = NOV_28 + i;
        let id = format!("r{}", next(40));
        match next(4) {
            0 => {
                let _ = w.reserve(&req(&id, "k", next(900), 1), now);
            }
            1 => {
                let c = w.settle(&id, "k", next(1200), 1, now);
                charged += c.cost;
            }
            2 => {
                w.release(&id, now);
            }
            _ => {
                let amount = next(500);
                if w.adjust(amount as i64, None).is_ok() {
                    credited += amount;
                }
            }
        }
        assert_eq!(
            total(&w) + charged,
            credited + granted + w.account.debt,
            "step {i}"
        );
    }
}

#[test]
fn alert_crossings() {
    assert_eq!(
        balance_crossings(1000, 400, &[500, 100, 1000, 500]),
        vec![500, 1000]
    );
    assert!(balance_crossings(400, 1000, &[500]).is_empty());
    assert_eq!(spend_crossings(90, 110, &[100, 110, 111]), vec![100, 110]);
    assert!(spend_crossings(110, 110, &[110]).is_empty());
}

#[test]
fn refusal_messages_name_the_limit() {
    let r = Refusal::RateLimited {
        scope: Scope::Key,
        what: RateKind::Tokens,
        limit: 10,
        retry_after_ms: 1500,
    };
    assert!(r.message().contains("10 tokens per minute"));
    assert!(r.message().contains("1.5s"));
    assert_eq!(r.retry_after_secs(), Some(2));
}

#[test]
fn refusals_become_the_clients_errors() {
    use crate::core::error::ErrorKind;
    let budget = Refusal::Budget {
        scope: Scope::Key,
        budget: 100,
        spent: 90,
    }
    .to_error();
    assert_eq!((budget.status(), budget.code()), (402, "budget_exceeded"));
    assert_eq!(budget.kind, ErrorKind::BudgetExceeded);
    assert!(refusal_headers(&budget).is_empty());
    let rpm = Refusal::RateLimited {
        scope: Scope::Tenant,
        what: RateKind::Requests,
        limit: 5,
        retry_after_ms: 1_500,
    }
    .to_error();
    assert_eq!((rpm.status(), rpm.code()), (429, "rate_limit_exceeded"));
    assert_eq!(rpm.error_type(), "requests");
    assert_eq!(
        refusal_headers(&rpm),
        vec![
            ("retry-after", "2".to_string()),
            ("x-ratelimit-limit-requests", "5".to_string()),
            ("x-ratelimit-remaining-requests", "0".to_string()),
            ("x-ratelimit-reset-requests", "1.5s".to_string()),
        ]
    );
    let tpm = Refusal::RateLimited {
        scope: Scope::Key,
        what: RateKind::Tokens,
        limit: 1000,
        retry_after_ms: 200,
    }
    .to_error();
    assert_eq!(tpm.error_type(), "tokens");
    assert_eq!(refusal_headers(&tpm)[0], ("retry-after", "1".to_string()));
    assert_eq!(refusal_headers(&tpm)[1].0, "x-ratelimit-limit-tokens");
    let debt = Refusal::Debt { debt: 3 }.to_error();
    assert_eq!((debt.status(), debt.code()), (402, "insufficient_quota"));
    assert_eq!(Refusal::Revoked.to_error().status(), 401);
}
