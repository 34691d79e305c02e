//! The tenant wallet: one tenant's money and limits as a pure state machine.
//!
//! The Durable Object of `edge::store::wallet` holds one [`Wallet`] per tenant, runs each command
//! here, and writes what changed to its SQLite storage in the same synchronous step (no `await`
//! between a decision and its writes, so they commit together). Every rule lives here and is tested
//! natively; the object only loads, stores and answers.
//!
//! # Money (the meaning of `schema/0003_ledger.sql` and `0007_settlement.sql`, kept)
//! - **Allowance period**: a plan grants `allowance` micro-units per UTC calendar month, refilled
//!   lazily by the first command of a new month ([`Wallet::refresh`]); unused allowance does not
//!   carry over. A wallet refreshes before *every* money command (D1 did so only on reserve), which
//!   is the same rule applied sooner.
//! - **Reserve** takes `min(amount, allowance)` from the allowance and the rest from the balance,
//!   only if both together cover it, the key is not revoked, the tenant not disabled and not in
//!   debt, and no budget or rate limit refuses it. Idempotent by request id: a second reserve of an
//!   open reservation answers the first one's result and takes nothing.
//! - **Settle** charges the full cost: first from the request's own reservation (its allowance part,
//!   of the period it started in, then its balance part), then the allowance left, then the balance;
//!   the rest becomes **debt**. What the reservation held beyond the charge returns (its allowance
//!   part only while its period is current). Idempotent by request id: the object keeps each
//!   settlement's row (the usage outbox) and answers a repeat with the first [`Charge`].
//! - **Release** returns a reservation untouched (a request that cost nothing); **expiry** does the
//!   same for reservations older than the stale limit; a later settlement then charges everything
//!   as beyond the reservation (allowance, balance, debt), as in D1.
//! - **Credit** pays debt first, the rest goes to the balance; a balance never exceeds 2⁵³ − 1.
//!   **Debit** takes from the balance and never below 0. Both are idempotent by key (the object
//!   keeps each key's [`LedgerEntry`]).
//!
//! Rounding: none happens here. Costs and reservations arrive as integer micro-units computed by
//! `core::billing` (one rounding up per request); the wallet only adds and subtracts them.

pub mod extend;
pub mod figures;
pub mod lease;
pub mod ledger;
pub mod limits;
pub mod money;
pub mod rate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::billing::allowance::month_start_ms;
use crate::core::billing::MAX_SAFE_INT;
use crate::core::error::{ErrorKind, GatewayError};
use limits::{Limits, LimitsPatch, Spend};
use rate::{Bucket, RateHeaders};

/// Why the wallet refused a reservation (or a money move). Each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// The key was revoked or the tenant disabled: 401 `invalid_api_key`.
    Revoked,
    /// The tenant owes debt: 402 `insufficient_quota`.
    Debt { debt: u64 },
    /// Allowance and balance do not cover the reservation: 402 `insufficient_quota`.
    Insufficient { needed: u64, available: u64 },
    /// A key's or the tenant's budget would be exceeded: 402 `budget_exceeded`.
    Budget {
        scope: Scope,
        budget: u64,
        spent: u64,
    },
    /// A key's or the tenant's RPM or TPM is used up: 429 `rate_limit_exceeded`.
    RateLimited {
        scope: Scope,
        what: RateKind,
        limit: u64,
        retry_after_ms: u64,
    },
    /// A credit would take the balance past 2⁵³ − 1, or a debit below 0: 409.
    BalanceLimit,
    /// An idempotency key reused with a different amount: 409 `idempotency_key_reused`.
    KeyReused,
}

/// Whose limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Key,
    Tenant,
}

/// Which rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    Requests,
    Tokens,
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Revoked => 401,
            Refusal::Debt { .. } | Refusal::Insufficient { .. } | Refusal::Budget { .. } => 402,
            Refusal::RateLimited { .. } => 429,
            Refusal::BalanceLimit | Refusal::KeyReused => 409,
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Revoked => "invalid_api_key",
            Refusal::Debt { .. } | Refusal::Insufficient { .. } => "insufficient_quota",
            Refusal::Budget { .. } => "budget_exceeded",
            Refusal::RateLimited { .. } => "rate_limit_exceeded",
            Refusal::BalanceLimit => "balance_limit",
            Refusal::KeyReused => "idempotency_key_reused",
        }
    }

    /// `retry-after` in whole seconds, for a 429.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after_ms, .. } => {
                Some(rate::retry_after_secs(*retry_after_ms))
            }
            _ => None,
        }
    }

    /// The message a client reads.
    pub fn message(&self) -> String {
        let whose = |s: &Scope| match s {
            Scope::Key => "this API key's",
            Scope::Tenant => "the account's",
        };
        match self {
            Refusal::Revoked => "Incorrect API key provided: unknown or revoked key.".into(),
            Refusal::Debt { debt } => format!(
                "You exceeded your current quota: the account owes {debt} micro-units; this debt must be paid before new requests."
            ),
            Refusal::Insufficient { needed, available } => format!(
                "You exceeded your current quota: this request needs {needed} micro-units reserved, {available} available."
            ),
            Refusal::Budget { scope, budget, spent } => format!(
                "This request would exceed {} budget of {budget} micro-units ({spent} spent or held).",
                whose(scope)
            ),
            Refusal::RateLimited { scope, what, limit, retry_after_ms } => {
                let unit = match what {
                    RateKind::Requests => "requests",
                    RateKind::Tokens => "tokens",
                };
                format!(
                    "Rate limit reached: {} limit of {limit} {unit} per minute. Try again in {}.",
                    whose(scope),
                    rate::duration(*retry_after_ms)
                )
            }
            Refusal::BalanceLimit => {
                "The balance would leave 0..=9007199254740991 micro-units.".into()
            }
            Refusal::KeyReused => {
                "This Idempotency-Key was used with a different amount.".into()
            }
        }
    }
}

impl Refusal {
    /// The client's error for this refusal (`status`, `code` and, for a 429, `retry-after` and the
    /// x-ratelimit-* values travel in the kind).
    pub fn to_error(&self) -> GatewayError {
        let kind = match self {
            Refusal::Revoked => ErrorKind::InvalidApiKey,
            Refusal::Debt { .. } | Refusal::Insufficient { .. } => ErrorKind::InsufficientQuota,
            Refusal::Budget { .. } => ErrorKind::BudgetExceeded,
            Refusal::RateLimited {
                what,
                limit,
                retry_after_ms,
                ..
            } => ErrorKind::RateLimitExceeded {
                retry_after_ms: *retry_after_ms,
                limit: *limit,
                tokens: *what == RateKind::Tokens,
            },
            Refusal::BalanceLimit | Refusal::KeyReused => ErrorKind::Conflict,
        };
        GatewayError::new(kind, self.message()).with_code(self.code())
    }
}

/// The x-ratelimit-* headers and `retry-after` of a 429 for a gateway rate limit: the exhausted
/// limit's window is empty until `retry_after_ms` (OpenAI's names and duration format).
pub fn refusal_headers(err: &GatewayError) -> Vec<(&'static str, String)> {
    let ErrorKind::RateLimitExceeded {
        retry_after_ms,
        limit,
        tokens,
    } = err.kind
    else {
        return Vec::new();
    };
    let window = Some(rate::Window {
        limit,
        remaining: 0,
        reset_ms: retry_after_ms,
    });
    let headers = if tokens {
        RateHeaders {
            requests: None,
            tokens: window,
        }
    } else {
        RateHeaders {
            requests: window,
            tokens: None,
        }
    };
    let mut out = vec![(
        "retry-after",
        rate::retry_after_secs(retry_after_ms).to_string(),
    )];
    out.extend(headers.pairs());
    out
}

/// Limits and what they count, of one key or of the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub limits: Limits,
    pub spend: Spend,
    /// Money held by this scope's open reservations.
    pub held: u64,
    pub requests: Bucket,
    pub tokens: Bucket,
}

impl Counters {
    /// Checks budget and rates for a reservation of `amount` money and `tokens` at `now`.
    fn check(&self, scope: Scope, amount: u64, tokens: u64, now: u64) -> Result<(), Refusal> {
        if let Some(limit) = self.limits.rpm {
            self.requests
                .check(limit, 1, now)
                .map_err(|ms| Refusal::RateLimited {
                    scope,
                    what: RateKind::Requests,
                    limit,
                    retry_after_ms: ms,
                })?;
        }
        if let Some(limit) = self.limits.tpm {
            self.tokens
                .check(limit, tokens, now)
                .map_err(|ms| Refusal::RateLimited {
                    scope,
                    what: RateKind::Tokens,
                    limit,
                    retry_after_ms: ms,
                })?;
        }
        if let Some(budget) = self.limits.budget {
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
        }
        Ok(())
    }

    fn take(&mut self, amount: u64, tokens: u64, now: u64) {
        if let Some(limit) = self.limits.rpm {
            self.requests.take(limit, 1, now);
        }
        if let Some(limit) = self.limits.tpm {
            self.tokens.take(limit, tokens, now);
        }
        self.held = self.held.saturating_add(amount);
    }

    fn finish(&mut self, held: u64, cost: u64, reserved_tokens: u64, tokens: u64, now: u64) {
        self.held = self.held.saturating_sub(held);
        if cost > 0 {
            self.spend.add(cost, now);
        }
        if let Some(limit) = self.limits.tpm {
            self.tokens.adjust(limit, reserved_tokens, tokens, now);
        }
    }

    /// What `GET …/limits` shows: limits and current usage.
    pub fn view(&self, now: u64) -> LimitsView {
        LimitsView {
            limits: self.limits,
            usage: UsageView {
                spent: self.spend.in_period(self.limits.period(), now),
                held: self.held,
                budget_period_start: self
                    .limits
                    .budget
                    .map(|_| self.limits.period().start_ms(now)),
                requests: self.limits.rpm.map(|l| self.requests.window(l, now)),
                tokens: self.limits.tpm.map(|l| self.tokens.window(l, now)),
            },
        }
    }

    fn headers(&self, now: u64) -> RateHeaders {
        RateHeaders {
            requests: self.limits.rpm.map(|l| self.requests.window(l, now)),
            tokens: self.limits.tpm.map(|l| self.tokens.window(l, now)),
        }
    }
}

/// The answer of `GET /admin/{keys,tenants}/{id}/limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub limits: Limits,
    pub usage: UsageView,
}

/// Current usage against the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageView {
    /// Full costs settled in the current budget period.
    pub spent: u64,
    /// Held by open reservations.
    pub held: u64,
    /// Start (UTC ms) of the current budget period, when a budget is set.
    pub budget_period_start: Option<u64>,
    pub requests: Option<rate::Window>,
    pub tokens: Option<rate::Window>,
}

/// One key as the wallet knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAccount {
    pub revoked: bool,
    pub counters: Counters,
}

/// The tenant's money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    pub debt: u64,
    pub allowance_remaining: u64,
    /// Start (UTC ms) of the month `allowance_remaining` belongs to; `None` without a plan.
    pub allowance_period: Option<u64>,
    /// The plan's monthly allowance; `None` = no plan.
    pub plan_allowance: Option<u64>,
    pub disabled: bool,
    pub counters: Counters,
    /// Tokens and cost charged this month, for alert rules (`figures.rs`).
    #[serde(default)]
    pub month: figures::MonthTotals,
}

/// An open reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub key_id: String,
    /// Balance part.
    pub amount: u64,
    /// Allowance part, of `allowance_period`.
    pub allowance_amount: u64,
    pub allowance_period: Option<u64>,
    /// Tokens counted against TPM.
    pub tokens: u64,
    pub created_at: u64,
    /// Extensions applied so far (`extend.rs`; idempotency by number).
    #[serde(default)]
    pub extensions: u32,
    /// Set on a lease's hold (`lease.rs`, id `lease:<lease id>`): what was granted and taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<lease::LeaseState>,
}

impl Hold {
    /// A request's reservation of `amount` from the balance and `allowance_amount` from the
    /// allowance of `allowance_period`, covering `tokens` (no extension, not a lease).
    pub fn open(
        id: &str,
        key_id: &str,
        (amount, allowance_amount): (u64, u64),
        allowance_period: Option<u64>,
        tokens: u64,
        now: u64,
    ) -> Hold {
        Hold {
            id: id.to_string(),
            key_id: key_id.to_string(),
            amount,
            allowance_amount,
            allowance_period,
            tokens,
            created_at: now,
            extensions: 0,
            lease: None,
        }
    }

    /// The whole reservation.
    pub fn total(&self) -> u64 {
        self.amount.saturating_add(self.allowance_amount)
    }
}

/// A reservation to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    pub id: String,
    pub key_id: String,
    pub amount: u64,
    /// Prompt tokens + the output the reservation covers (what TPM counts).
    pub tokens: u64,
}

/// A granted reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    pub amount: u64,
    pub allowance_amount: u64,
    /// The limits' header values after this reservation (empty without rate limits).
    pub headers: RateHeaders,
}

/// How a settled cost was taken (the charge columns of the usage row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub cost: u64,
    /// The reservation held (0 if it had expired or never existed).
    pub reserved: u64,
    /// Part of `cost` drawn from allowances.
    pub allowance_cost: u64,
    /// Part of `cost` the reservation did not cover.
    pub beyond_reservation: u64,
    /// Part of `cost` owed.
    pub debt: u64,
}

/// A credit or debit as recorded (answered again for a repeated idempotency key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Positive: credit; negative: debit.
    pub amount: i64,
    /// Part of a credit that paid debt.
    pub debt_paid: u64,
    /// Balance right after it.
    pub balance: u64,
}

/// Balance as `/v1/balance` and the admin show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    pub balance: u64,
    pub debt: u64,
    pub reserved: u64,
    pub allowance_remaining: u64,
    pub allowance_reserved: u64,
    pub allowance_period: Option<u64>,
    pub allowance_resets_at: Option<u64>,
    pub plan_allowance: Option<u64>,
}

/// One tenant's wallet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub account: Account,
    pub keys: BTreeMap<String, KeyAccount>,
    pub holds: BTreeMap<String, Hold>,
}

impl Wallet {
    /// The plan's lazy monthly refill: a new UTC month gives the full allowance again.
    pub fn refresh(&mut self, now: u64) {
        let a = &mut self.account;
        if let Some(allowance) = a.plan_allowance {
            let period = month_start_ms(now);
            if a.allowance_period != Some(period) {
                a.allowance_remaining = allowance;
                a.allowance_period = Some(period);
            }
        }
    }

    /// Reserves `req.amount` for a request (see the module rules). Changes nothing when refused.
    pub fn reserve(&mut self, req: &ReserveRequest, now: u64) -> Result<Reserved, Refusal> {
        self.refresh(now);
        if let Some(h) = self.holds.get(&req.id) {
            return Ok(Reserved {
                amount: h.amount,
                allowance_amount: h.allowance_amount,
                headers: self.headers(&h.key_id.clone(), now),
            });
        }
        let key = self.keys.get(&req.key_id).copied().unwrap_or_default();
        let a = &self.account;
        if key.revoked || a.disabled {
            return Err(Refusal::Revoked);
        }
        key.counters
            .check(Scope::Key, req.amount, req.tokens, now)?;
        a.counters
            .check(Scope::Tenant, req.amount, req.tokens, now)?;
        if a.debt > 0 {
            return Err(Refusal::Debt { debt: a.debt });
        }
        let available = a.allowance_remaining.saturating_add(a.balance);
        if available < req.amount {
            return Err(Refusal::Insufficient {
                needed: req.amount,
                available,
            });
        }
        let (from_balance, from_allowance) = self.place_hold(
            &req.id,
            &req.key_id,
            req.amount,
            Some(req.tokens),
            now,
            None,
        );
        Ok(Reserved {
            amount: from_balance,
            allowance_amount: from_allowance,
            headers: self.headers(&req.key_id, now),
        })
    }

    /// Charges `cost` for request `id` of `key_id`, whose actual tokens were `tokens`. The object
    /// calls this once per request id (it answers a repeat from the stored row).
    pub fn settle(&mut self, id: &str, key_id: &str, cost: u64, tokens: u64, now: u64) -> Charge {
        self.refresh(now);
        let hold = self.holds.remove(id);
        let (ra, rb, rperiod, rtokens) = hold
            .as_ref()
            .map(|h| (h.allowance_amount, h.amount, h.allowance_period, h.tokens))
            .unwrap_or((0, 0, None, tokens));
        let a = &mut self.account;
        // 1. From the reservation: its allowance part, then its balance part.
        let from_ra = cost.min(ra);
        let from_rb = (cost - from_ra).min(rb);
        let beyond = cost - from_ra - from_rb;
        // What it does not use returns (the allowance part only while its period is current).
        if hold.is_some() && rperiod == a.allowance_period {
            a.allowance_remaining = a.allowance_remaining.saturating_add(ra - from_ra);
        }
        a.balance = a.balance.saturating_add(rb - from_rb);
        // 2. Beyond the reservation: allowance left, then balance; 3. the rest is debt.
        let from_allowance = beyond.min(a.allowance_remaining);
        a.allowance_remaining -= from_allowance;
        let from_balance = (beyond - from_allowance).min(a.balance);
        a.balance -= from_balance;
        let debt = beyond - from_allowance - from_balance;
        a.debt = a.debt.saturating_add(debt);
        let held = ra + rb;
        a.counters.finish(held, cost, rtokens, tokens, now);
        let hold_key = hold.as_ref().map_or(key_id, |h| h.key_id.as_str());
        self.keys
            .entry(hold_key.to_string())
            .or_default()
            .counters
            .finish(held, cost, rtokens, tokens, now);
        Charge {
            cost,
            reserved: held,
            allowance_cost: from_ra + from_allowance,
            beyond_reservation: beyond,
            debt,
        }
    }

    /// Returns reservation `id` uncharged (its tokens too). `None` if it is not open.
    pub fn release(&mut self, id: &str, now: u64) -> Option<Hold> {
        self.refresh(now);
        let hold = self.holds.remove(id)?;
        self.give_back(&hold, now);
        Some(hold)
    }

    /// Holds `amount` of the account's funds (the plan's allowance first, then the balance) as
    /// hold `id` of `key_id`: the account and the key count it as held. `rate`: `Some(tokens)`
    /// for a request, which also counts as one request of `tokens` against the RPM/TPM windows
    /// (and the hold covers those tokens); `None` for a hold that is not a request (a lease, a
    /// plugin call). The caller has checked that the funds are there.
    /// → (from the balance, from the allowance).
    fn place_hold(
        &mut self,
        id: &str,
        key_id: &str,
        amount: u64,
        rate: Option<u64>,
        now: u64,
        lease: Option<lease::LeaseState>,
    ) -> (u64, u64) {
        let a = &mut self.account;
        let (from_allowance, from_balance) =
            crate::core::billing::allowance::split(amount, a.allowance_remaining);
        a.allowance_remaining -= from_allowance;
        a.balance -= from_balance;
        let allowance_period = a.allowance_period;
        let key = self.keys.entry(key_id.to_string()).or_default();
        for counters in [&mut self.account.counters, &mut key.counters] {
            match rate {
                Some(tokens) => counters.take(amount, tokens, now),
                None => counters.held = counters.held.saturating_add(amount),
            }
        }
        let tokens = rate.unwrap_or(0);
        let hold = Hold::open(
            id,
            key_id,
            (from_balance, from_allowance),
            allowance_period,
            tokens,
            now,
        );
        self.holds.insert(id.to_string(), Hold { lease, ..hold });
        (from_balance, from_allowance)
    }

    /// Removes every hold `which` selects and returns its funds uncharged. The removed holds.
    fn give_back_where(&mut self, now: u64, which: impl Fn(&Hold) -> bool) -> Vec<Hold> {
        let ids: Vec<String> = self
            .holds
            .values()
            .filter(|h| which(h))
            .map(|h| h.id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(h) = self.holds.remove(&id) {
                self.give_back(&h, now);
                out.push(h);
            }
        }
        out
    }

    fn give_back(&mut self, hold: &Hold, now: u64) {
        let a = &mut self.account;
        if hold.allowance_period == a.allowance_period {
            a.allowance_remaining = a.allowance_remaining.saturating_add(hold.allowance_amount);
        }
        a.balance = a.balance.saturating_add(hold.amount);
        a.counters.finish(hold.total(), 0, hold.tokens, 0, now);
        if let Some(k) = self.keys.get_mut(&hold.key_id) {
            k.counters.finish(hold.total(), 0, hold.tokens, 0, now);
        }
    }

    /// Returns every reservation made before `now - stale_ms` (its request died) and every lease
    /// past its expiry (`lease::EXPIRY_MS`); a later settlement of a request charges it as beyond
    /// its reservation.
    pub fn expire(&mut self, now: u64, stale_ms: u64) -> Vec<Hold> {
        self.refresh(now);
        self.give_back_where(now, |h| match h.lease {
            Some(_) => lease::expires_at(h, stale_ms) <= now,
            None => lease::expires_at(h, stale_ms) < now,
        })
    }

    /// Credits (`amount > 0`) or debits (`amount < 0`). A credit pays debt first. `previous` is
    /// the entry already recorded under the same idempotency key, if any.
    pub fn adjust(
        &mut self,
        amount: i64,
        previous: Option<LedgerEntry>,
    ) -> Result<LedgerEntry, Refusal> {
        if let Some(p) = previous {
            return if p.amount == amount {
                Ok(p)
            } else {
                Err(Refusal::KeyReused)
            };
        }
        let a = &mut self.account;
        let magnitude = amount.unsigned_abs();
        if amount >= 0 {
            let debt_paid = magnitude.min(a.debt);
            let to_balance = magnitude - debt_paid;
            if a.balance.saturating_add(to_balance) > MAX_SAFE_INT {
                return Err(Refusal::BalanceLimit);
            }
            a.debt -= debt_paid;
            a.balance += to_balance;
            Ok(LedgerEntry {
                amount,
                debt_paid,
                balance: a.balance,
            })
        } else {
            if magnitude > a.balance {
                return Err(Refusal::BalanceLimit);
            }
            a.balance -= magnitude;
            Ok(LedgerEntry {
                amount,
                debt_paid: 0,
                balance: a.balance,
            })
        }
    }

    /// Assigns (`Some`) or removes (`None`) the plan's monthly allowance. Assigning grants the
    /// full allowance for the current month less what open reservations of this month hold of it;
    /// removing drops the allowance left.
    pub fn set_plan(&mut self, allowance: Option<u64>, now: u64) {
        let period = month_start_ms(now);
        let a = &mut self.account;
        a.plan_allowance = allowance;
        match allowance {
            Some(allowance) => {
                let held: u64 = self
                    .holds
                    .values()
                    .filter(|h| h.allowance_period == Some(period))
                    .map(|h| h.allowance_amount)
                    .sum();
                a.allowance_remaining = allowance.saturating_sub(held);
                a.allowance_period = Some(period);
            }
            None => {
                a.allowance_remaining = 0;
                a.allowance_period = None;
            }
        }
    }

    /// Applies a limits patch to a key (`Some(id)`) or to the tenant (`None`).
    pub fn set_limits(&mut self, key_id: Option<&str>, patch: &LimitsPatch) -> Limits {
        let counters = match key_id {
            Some(k) => &mut self.keys.entry(k.to_string()).or_default().counters,
            None => &mut self.account.counters,
        };
        counters.limits = patch.apply(counters.limits);
        counters.limits
    }

    /// Limits and usage of a key (`Some(id)`) or of the tenant (`None`).
    pub fn limits(&self, key_id: Option<&str>, now: u64) -> LimitsView {
        match key_id {
            Some(k) => self
                .keys
                .get(k)
                .map(|k| k.counters)
                .unwrap_or_default()
                .view(now),
            None => self.account.counters.view(now),
        }
    }

    /// The `x-ratelimit-*` values for a response to `key_id`: each of requests and tokens from the
    /// key's own limit when it has one, else the tenant's.
    pub fn headers(&self, key_id: &str, now: u64) -> RateHeaders {
        let tenant = self.account.counters.headers(now);
        let key = self
            .keys
            .get(key_id)
            .map(|k| k.counters.headers(now))
            .unwrap_or_default();
        RateHeaders {
            requests: key.requests.or(tenant.requests),
            tokens: key.tokens.or(tenant.tokens),
        }
    }

    /// Marks a key revoked (or not) and the tenant disabled (or not), as D1 says.
    pub fn set_key_revoked(&mut self, key_id: &str, revoked: bool) {
        self.keys.entry(key_id.to_string()).or_default().revoked = revoked;
    }

    /// Balance, debt, reservations and allowance, exact at this moment.
    pub fn balance(&mut self, now: u64) -> BalanceView {
        self.refresh(now);
        let a = &self.account;
        BalanceView {
            balance: a.balance,
            debt: a.debt,
            reserved: self.holds.values().map(|h| h.amount).sum(),
            allowance_remaining: a.allowance_remaining,
            allowance_reserved: self
                .holds
                .values()
                .filter(|h| h.allowance_period == a.allowance_period)
                .map(|h| h.allowance_amount)
                .sum(),
            allowance_period: a.allowance_period,
            allowance_resets_at: a
                .allowance_period
                .map(crate::core::billing::allowance::next_month_start_ms),
            plan_allowance: a.plan_allowance,
        }
    }
}

/// The alert thresholds (micro-units) a balance crossed downwards going from `before` to `after`:
/// each threshold `t` with `before >= t > after`, ascending. A balance that goes up crosses none
/// (a new crossing needs the balance to rise above the threshold and fall again).
pub fn balance_crossings(before: u64, after: u64, thresholds: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = thresholds
        .iter()
        .copied()
        .filter(|&t| before >= t && t > after)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The spend thresholds (micro-units) crossed upwards going from `before` to `after`: each `t`
/// with `before < t <= after`.
pub fn spend_crossings(before: u64, after: u64, thresholds: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = thresholds
        .iter()
        .copied()
        .filter(|&t| before < t && t <= after)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
