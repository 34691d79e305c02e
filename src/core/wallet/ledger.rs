//! A tenant's ledger as `GET /admin/tenants/{id}/ledger` lists it: the wallet's own entries
//! (credits, debits, redemption codes, Stripe top-ups, plan refills) followed by the D1
//! `credit_ledger` history from before the tenant moved into its wallet, newest first, a page at
//! a time.
//!
//! # The seam
//! Once a wallet claims its tenant, D1 refuses every `credit_ledger` insert for it
//! (schema/0011 `wallet_owned_credit`), and the wallet's ledger is empty before the claim: every
//! wallet entry is newer than every D1 entry, and no entry is in both. A page therefore lists
//! wallet entries first (by their storage sequence, descending), then D1's (by `created_at`, `id`,
//! descending); the cursor names the last entry listed and its store, so the next page starts
//! right after it on either side of the seam.
//!
//! # Plan refills
//! The monthly refill of a plan's allowance is lazy ([`Wallet::refresh`]); the object calls
//! [`Wallet::refill`] before its commands so that a refill is stored as a ledger entry
//! (`kind: "plan_allowance"`, key [`refill_key`]) in the same transaction as the account.
//! Its `amount` is the allowance granted (allowance, not balance: `balance` is unchanged).
//! Request charges and plugin call charges are usage (`/v1/usage`, `plugin_calls`), not ledger
//! entries, as on D1.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{LedgerEntry, Wallet};

/// Entries per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// Largest `limit`.
pub const MAX_PAGE: u32 = 1000;
/// Prefix of a plan refill's key in the wallet's ledger.
pub const REFILL_PREFIX: &str = "plan-refill:";

/// The idempotency key of the refill of the month starting at `period` (UTC ms).
pub fn refill_key(period: u64) -> String {
    format!("{REFILL_PREFIX}{period}")
}

/// The reason recorded with a refill.
pub fn refill_reason(period: u64) -> String {
    format!(
        "plan allowance {}",
        crate::core::alerts::Observation::month_of(period)
    )
}

impl Wallet {
    /// [`Wallet::refresh`], saying what it did: `Some((allowance, period))` when it started a new
    /// allowance period (the plan's full allowance for the month starting at `period`).
    pub fn refill(&mut self, now: u64) -> Option<(u64, u64)> {
        let before = self.account.allowance_period;
        self.refresh(now);
        let a = &self.account;
        match (a.plan_allowance, a.allowance_period) {
            (Some(allowance), Some(period)) if before != Some(period) => Some((allowance, period)),
            _ => None,
        }
    }

    /// The entry a refill of `allowance` is stored as (the balance right after it: unchanged).
    pub fn refill_entry(&self, allowance: u64) -> LedgerEntry {
        LedgerEntry {
            amount: i64::try_from(allowance).unwrap_or(i64::MAX),
            debt_paid: 0,
            balance: self.account.balance,
        }
    }
}

/// Where the listing continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// After the wallet entry of this storage sequence.
    Wallet(u64),
    /// After this D1 entry.
    D1 { created_at: u64, id: String },
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Cursor::Wallet(seq) => format!("w{seq}"),
            Cursor::D1 { created_at, id } => format!("d{created_at}.{id}"),
        }
    }

    /// Parses a cursor a previous page gave; `None` for anything else.
    pub fn parse(s: &str) -> Option<Cursor> {
        let digits = |t: &str| {
            (!t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u64>().ok())
                .flatten()
        };
        if let Some(rest) = s.strip_prefix('w') {
            return digits(rest).map(Cursor::Wallet);
        }
        let rest = s.strip_prefix('d')?;
        let (at, id) = rest.split_once('.')?;
        let id_ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        Some(Cursor::D1 {
            created_at: digits(at)?,
            id: id_ok.then(|| id.to_string())?,
        })
    }
}

/// A page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerQuery {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl LedgerQuery {
    /// From the query string: `limit` (1–[`MAX_PAGE`], default [`DEFAULT_PAGE`]) and `cursor`
    /// (alias `after`). An error names the parameter.
    pub fn parse(pairs: &[(String, String)]) -> Result<LedgerQuery, (String, String)> {
        let mut q = LedgerQuery {
            limit: DEFAULT_PAGE,
            cursor: None,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    q.limit = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            (
                                "limit".to_string(),
                                format!("`limit` must be an integer from 1 to {MAX_PAGE}."),
                            )
                        })?
                }
                "cursor" | "after" => {
                    q.cursor = Some(Cursor::parse(v).ok_or_else(|| {
                        (
                            "cursor".to_string(),
                            "`cursor` must be the `next_cursor` of a previous page.".to_string(),
                        )
                    })?)
                }
                other => {
                    return Err((
                        other.to_string(),
                        format!("Unknown query parameter `{other}`."),
                    ))
                }
            }
        }
        Ok(q)
    }

    /// Whether the wallet is asked at all (not once the cursor is on D1's side).
    pub fn asks_wallet(&self) -> bool {
        !matches!(self.cursor, Some(Cursor::D1 { .. }))
    }

    /// The wallet sequence to list below (`None`: from the newest).
    pub fn wallet_before(&self) -> Option<u64> {
        match self.cursor {
            Some(Cursor::Wallet(seq)) => Some(seq),
            _ => None,
        }
    }

    /// The D1 entry to list below (`None`: from the newest).
    pub fn d1_after(&self) -> Option<(u64, &str)> {
        match &self.cursor {
            Some(Cursor::D1 { created_at, id }) => Some((*created_at, id.as_str())),
            _ => None,
        }
    }

    /// How many D1 entries to read after `wallet_rows` wallet entries (one more than the page
    /// still has room for, to know whether more follow).
    pub fn d1_wanted(&self, wallet_rows: usize) -> u32 {
        let limit = self.limit as usize;
        if wallet_rows > limit {
            0
        } else {
            (limit - wallet_rows + 1) as u32
        }
    }
}

/// One entry of the wallet's ledger, as the object reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRow {
    /// Storage order (ascending with time).
    pub seq: u64,
    /// Its idempotency key (`adj_…` admin, `redeem:…` code, `stripe:…` payment, `plan-refill:…`).
    pub key: String,
    pub entry: LedgerEntry,
    pub reason: Option<String>,
    pub created_at: u64,
}

/// What the object answers to a listing: entries newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletPage {
    pub entries: Vec<WalletRow>,
}

/// One `credit_ledger` row of D1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct D1Row {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub debt_paid: u64,
    pub reason: Option<String>,
    pub created_at: u64,
}

/// An entry of either store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Wallet(WalletRow),
    D1(D1Row),
}

impl Listed {
    fn cursor(&self) -> Cursor {
        match self {
            Listed::Wallet(w) => Cursor::Wallet(w.seq),
            Listed::D1(d) => Cursor::D1 {
                created_at: d.created_at,
                id: d.id.clone(),
            },
        }
    }

    /// The entry as the route lists it: D1's columns (`id`, `tenant_id`, `amount`, `reason`,
    /// `created_at`) plus `debt_paid`, `balance` (right after it; `null` for D1 entries, whose
    /// history does not keep it), `kind` (`credit`, `debit`, `plan_allowance`) and `store`.
    pub fn to_json(&self, tenant_id: &str) -> Value {
        match self {
            Listed::Wallet(w) => {
                let kind = if w.key.starts_with(REFILL_PREFIX) {
                    "plan_allowance"
                } else {
                    kind_of(w.entry.amount)
                };
                json!({
                    "id": w.key, "tenant_id": tenant_id, "amount": w.entry.amount,
                    "reason": w.reason, "created_at": w.created_at,
                    "debt_paid": w.entry.debt_paid, "balance": w.entry.balance,
                    "kind": kind, "store": "wallet",
                })
            }
            Listed::D1(d) => json!({
                "id": d.id, "tenant_id": tenant_id, "amount": d.amount, "reason": d.reason,
                "created_at": d.created_at, "debt_paid": d.debt_paid, "balance": null,
                "kind": kind_of(d.amount), "store": "d1",
            }),
        }
    }
}

fn kind_of(amount: i64) -> &'static str {
    if amount < 0 {
        "debit"
    } else {
        "credit"
    }
}

/// One page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub data: Vec<Listed>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// Puts a page together from what was read: `wallet` (up to `limit + 1` entries below the
/// cursor, newest first) and `d1` (up to [`LedgerQuery::d1_wanted`] entries, newest first).
/// The wallet's entries come first (see the module docs); an entry beyond `limit` only says that
/// more follow.
pub fn assemble(q: &LedgerQuery, wallet: Vec<WalletRow>, d1: Vec<D1Row>) -> Page {
    let limit = q.limit as usize;
    let mut data: Vec<Listed> = wallet
        .into_iter()
        .map(Listed::Wallet)
        .chain(d1.into_iter().map(Listed::D1))
        .collect();
    let has_more = data.len() > limit;
    data.truncate(limit);
    let next_cursor = if has_more {
        data.last().map(|e| e.cursor().encode())
    } else {
        None
    };
    Page {
        data,
        has_more,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::billing::allowance::month_start_ms;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn w(seq: u64, amount: i64) -> WalletRow {
        WalletRow {
            seq,
            key: format!("adj_{seq}"),
            entry: LedgerEntry {
                amount,
                debt_paid: 0,
                balance: 0,
            },
            reason: None,
            created_at: 1_000 + seq,
        }
    }

    fn d(n: u64) -> D1Row {
        D1Row {
            id: format!("cred_{n:03}"),
            amount: n as i64,
            debt_paid: 0,
            reason: None,
            created_at: n,
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        for c in [
            Cursor::Wallet(0),
            Cursor::Wallet(u64::MAX),
            Cursor::D1 {
                created_at: 17,
                id: "cred_01J-x".into(),
            },
        ] {
            assert_eq!(Cursor::parse(&c.encode()), Some(c));
        }
        for bad in [
            "",
            "w",
            "w-1",
            "wx",
            "d",
            "d1",
            "d1.",
            "d.x",
            "dx.y",
            "d1.a'b",
            "d1.a.b",
            "x1",
            "w99999999999999999999",
            "w123456789012345678901",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_query_takes_limit_and_cursor_and_names_what_is_wrong() {
        let q = LedgerQuery::parse(&pairs(&[])).unwrap();
        assert_eq!((q.limit, q.cursor), (DEFAULT_PAGE, None));
        let q = LedgerQuery::parse(&pairs(&[("limit", "2"), ("after", "w5")])).unwrap();
        assert_eq!((q.limit, q.cursor), (2, Some(Cursor::Wallet(5))));
        for (p, param) in [
            (("limit", "0"), "limit"),
            (("limit", "1001"), "limit"),
            (("limit", "x"), "limit"),
            (("cursor", "req_'--"), "cursor"),
            (("order", "asc"), "order"),
        ] {
            assert_eq!(LedgerQuery::parse(&pairs(&[p])).unwrap_err().0, param);
        }
    }

    /// Pages through `wallet` (newest last in the vec, as stored) and `d1` the way the route
    /// does, with every limit from 1 to past the total: each entry is listed once, in order.
    #[test]
    fn paging_lists_every_entry_once_across_the_seam() {
        let wallet: Vec<WalletRow> = (1..=5).map(|s| w(s, s as i64)).collect();
        let d1: Vec<D1Row> = (1..=4).map(d).collect();
        let expected: Vec<Cursor> = (1..=5)
            .rev()
            .map(Cursor::Wallet)
            .chain((1..=4).rev().map(|n| Cursor::D1 {
                created_at: n,
                id: format!("cred_{n:03}"),
            }))
            .collect();
        for limit in 1..=11u32 {
            let mut cursor: Option<String> = None;
            let mut seen = Vec::new();
            for _ in 0..20 {
                let mut p = vec![("limit".to_string(), limit.to_string())];
                if let Some(c) = &cursor {
                    p.push(("cursor".into(), c.clone()));
                }
                let q = LedgerQuery::parse(&p).unwrap();
                let wr: Vec<WalletRow> = if q.asks_wallet() {
                    wallet
                        .iter()
                        .rev()
                        .filter(|r| q.wallet_before().is_none_or(|b| r.seq < b))
                        .take(limit as usize + 1)
                        .cloned()
                        .collect()
                } else {
                    vec![]
                };
                let dr: Vec<D1Row> = d1
                    .iter()
                    .rev()
                    .filter(|r| {
                        q.d1_after()
                            .is_none_or(|(at, id)| (r.created_at, r.id.as_str()) < (at, id))
                    })
                    .take(q.d1_wanted(wr.len()) as usize)
                    .cloned()
                    .collect();
                let page = assemble(&q, wr, dr);
                assert!(page.data.len() <= limit as usize);
                seen.extend(page.data.iter().map(Listed::cursor));
                assert_eq!(page.has_more, page.next_cursor.is_some());
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "limit {limit}");
        }
    }

    #[test]
    fn a_refill_is_reported_once_per_new_period_with_the_plans_allowance() {
        let mut wallet = Wallet::default();
        let dec = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        let jan = 1_798_761_600_000; // 2027-01-01T00:00:00Z
        assert_eq!(month_start_ms(dec + 5), dec);
        assert_eq!(wallet.refill(dec + 5), None, "no plan, no refill");
        wallet.set_plan(Some(400), dec + 5);
        wallet.account.balance = 70;
        assert_eq!(
            wallet.refill(dec + 9),
            None,
            "assigned this month: no refill"
        );
        wallet.account.allowance_remaining = 10;
        assert_eq!(wallet.refill(jan + 1), Some((400, jan)));
        assert_eq!(wallet.account.allowance_remaining, 400);
        assert_eq!(wallet.refill(jan + 2), None, "once per period");
        let e = wallet.refill_entry(400);
        assert_eq!((e.amount, e.debt_paid, e.balance), (400, 0, 70));
        assert_eq!(refill_key(jan), "plan-refill:1798761600000");
        assert_eq!(refill_reason(jan), "plan allowance 2027-01");
    }

    #[test]
    fn entries_keep_d1s_shape_and_say_their_kind() {
        let mut r = w(3, -20);
        r.entry.balance = 80;
        let v = Listed::Wallet(r.clone()).to_json("t1");
        assert_eq!(
            (
                v["id"].as_str(),
                v["amount"].as_i64(),
                v["balance"].as_u64()
            ),
            (Some("adj_3"), Some(-20), Some(80))
        );
        assert_eq!(
            (v["kind"].as_str(), v["store"].as_str()),
            (Some("debit"), Some("wallet"))
        );
        r.key = refill_key(5);
        assert_eq!(Listed::Wallet(r).to_json("t1")["kind"], "plan_allowance");
        let v = Listed::D1(d(7)).to_json("t1");
        for k in ["id", "tenant_id", "amount", "reason", "created_at"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(
            (v["kind"].as_str(), v["store"].as_str()),
            (Some("credit"), Some("d1"))
        );
        assert!(v["balance"].is_null());
    }
}
