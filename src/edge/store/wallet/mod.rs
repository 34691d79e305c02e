//! Tenant wallets: one SQLite-backed Durable Object per tenant (`object.rs`, class
//! `TenantWallet`, binding `WALLET`, named by tenant id) holding the tenant's money and limits, and
//! the worker's typed calls to it (`client.rs`). The rules are `core::wallet`'s; the object only
//! loads, stores and answers. Design and numbers: docs/scale.md; money rules: docs/money.md.
//!
//! The protocol is one JSON [`Envelope`] per `POST` to the object; it answers 200 with an
//! [`Answer`] (a result or a refusal the caller turns into the client's error), or 500 with a
//! message when its storage or D1 failed.

pub mod client;
pub mod object;

use serde::{Deserialize, Serialize};

use crate::core::wallet::lease::{Grant, LeaseAsk};
use crate::core::wallet::{Refusal, ReserveRequest, Reserved};

/// The Durable Object binding (wrangler.toml `[[durable_objects.bindings]]`).
pub const BINDING: &str = "WALLET";

/// One command to a tenant's wallet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The tenant the wallet belongs to (checked against the one it was created for).
    pub tenant_id: String,
    pub command: Command,
}

/// The commands. Money commands take the tenant's money from D1 first (once, see object.rs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Reserve before the upstream call → [`ReserveAnswer`] (`Reserved`, with a lease when one
    /// was asked for and the policy grants it, `core::wallet::lease`).
    Reserve {
        request: ReserveRequest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseAsk>,
    },
    /// Admit a request an isolate took from its lease `lease_id` (announced before its upstream
    /// call): its reservation moves from the lease into a hold of the request id, or a normal
    /// reserve is made → `Took` (or the reserve's refusal).
    Take {
        lease_id: String,
        request: ReserveRequest,
    },
    /// Charge a finished request and keep its usage row for export → `Charge` (the first one's,
    /// for a repeated request id).
    Settle {
        request_id: String,
        key_id: String,
        cost: u64,
        tokens: u64,
        /// The usage row (D1 `usage` columns); the wallet fills in the charge columns.
        row: serde_json::Map<String, serde_json::Value>,
    },
    /// Grow an open reservation (a stream that outran it), idempotent by (request id, number)
    /// → `Extension`.
    Extend {
        request: crate::core::wallet::extend::ExtendRequest,
    },
    /// Return a reservation uncharged → `{released: bool}`.
    Release {
        request_id: String,
    },
    /// Credit (> 0) or debit (< 0), idempotent by key → `LedgerEntry`.
    Adjust {
        amount: i64,
        idempotency_key: String,
        reason: Option<String>,
    },
    /// Assign or remove the plan's monthly allowance → `BalanceView`.
    SetPlan {
        allowance: Option<u64>,
    },
    /// Limits and usage of a key (`key_id`) or the tenant → `LimitsView`.
    GetLimits {
        key_id: Option<String>,
    },
    /// Patch (JSON body of `PUT …/limits`, validated by the caller) → `LimitsView`.
    SetLimits {
        key_id: Option<String>,
        patch: serde_json::Value,
    },
    /// What the wallet knows of revocation and disabling → `{}`.
    SetKeyRevoked {
        key_id: String,
        revoked: bool,
    },
    SetDisabled {
        disabled: bool,
    },
    /// The money state without taking it → `WalletView`.
    Inspect,
    /// Take the tenant's money from D1 now (the one-off migration) → `WalletView`.
    Migrate,
    /// Export pending usage rows to D1 now → `ExportReport`.
    Export,
    // ---- the other money moves (object/money.rs) ----
    /// Reserve a plugin call's price under the call id → `Reserved`.
    ReserveCall {
        id: String,
        key_id: String,
        amount: u64,
    },
    /// Charge a plugin call (its price, or 0 when it failed) and keep its `plugin_calls` row for
    /// export → `Charge` (the first one's, for a repeated call id).
    ChargeCall {
        id: String,
        key_id: String,
        cost: u64,
        /// The D1 `plugin_calls` row; the wallet fills in the charge columns.
        row: serde_json::Map<String, serde_json::Value>,
    },
    /// `SetPlan` applied once per idempotency key (a plan request's approval) → `BalanceView`
    /// (the first one's, for a repeated key).
    AssignPlan {
        allowance: Option<u64>,
        idempotency_key: String,
    },
    /// The allowance of the tenant's plan changed: from the next period → `{changed: bool}`.
    SetPlanAllowance {
        allowance: u64,
    },
    /// Test deployments only (`TOLLGATE_TEST_DEPLOYMENT`): the wallet's clock runs `offset_ms`
    /// ahead of the real one (to test the monthly refill) → `{offset_ms}`.
    SetClock {
        offset_ms: i64,
    },
    /// The wallet's ledger entries below sequence `before` (all when `None`), newest first, at
    /// most `limit` → `WalletPage` (object/ledger.rs). Does not take the tenant.
    Ledger {
        before: Option<u64>,
        limit: u32,
    },
}

/// Columns of D1's `plugin_calls` a call row carries (keep in sync with schema/0006, 0007, 0015).
pub const CALL_COLUMNS: &[&str] = &[
    "id",
    "request_id",
    "tenant_id",
    "key_id",
    "session_id",
    "plugin_id",
    "api",
    "mode",
    "status",
    "http_status",
    "latency_ms",
    "cost",
    "created_at",
    "allowance_cost",
    "beyond_reservation",
    "debt",
    "from_wallet",
];

/// The object's answer to a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Ok(serde_json::Value),
    Refused(Refusal),
}

/// The answer to `Reserve`: the reservation, and the lease granted with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReserveAnswer {
    #[serde(flatten)]
    pub reserved: Reserved,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Grant>,
}

/// The state `Inspect` and `Migrate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletView {
    /// Whether the wallet has taken the tenant's money from D1.
    pub migrated: bool,
    pub balance: Option<crate::core::wallet::BalanceView>,
    /// Open reservations of requests and plugin calls (leases not included).
    pub open_reservations: usize,
    /// Open credit leases (`core::wallet::lease`); their leftovers count in `balance.reserved`.
    #[serde(default)]
    pub open_leases: usize,
    pub outbox_pending: u64,
    pub outbox_exported: u64,
    pub schema_version: u32,
    /// Tokens and cost the wallet charged this UTC month (with what D1 had at the claim).
    #[serde(default)]
    pub month: Option<crate::core::wallet::figures::MonthTotals>,
}

/// What an export did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub exported: u64,
    pub pending: u64,
}

/// Columns of D1's `usage` a settlement row may carry (anything else is dropped at export).
/// Keep in sync with schema/*.sql (`usage`).
pub const USAGE_COLUMNS: &[&str] = &[
    "request_id",
    "tenant_id",
    "key_id",
    "session_id",
    "model",
    "provider",
    "upstream_model",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "upstream_prompt_tokens",
    "upstream_completion_tokens",
    "local_prompt_tokens",
    "local_completion_tokens",
    "usage_source",
    "input_price",
    "output_price",
    "reserved",
    "cost",
    "uncharged",
    "status",
    "http_status",
    "error_code",
    "latency_ms",
    "ttfb_ms",
    "created_at",
    "price_version",
    "cached_prompt_tokens",
    "reasoning_tokens",
    "multiplier_bps",
    "allowance_cost",
    "idempotency_key",
    "routes_tried",
    "beyond_reservation",
    "debt",
    "from_wallet",
    // schema/0012 (media units)
    "api",
    "unit",
    "quantity",
    "unit_price",
    "image_input_tokens",
    "audio_input_tokens",
    // schema/0013 (agents: cache writes, long context)
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "long_context",
];

/// The row field (not a `usage` column, dropped at export) that tells the export how long the
/// session's KV copy lives (`Pending::session_ttl_seconds`; absent or 0: no copy).
pub const SESSION_TTL_FIELD: &str = "session_ttl_seconds";

/// A usage row as the wallet's outbox keeps it: every column of D1's `usage` the D1 path writes,
/// flat (a media request's units, schema/0012, are columns like the others; the D1 path writes
/// them with a second statement), plus the session copy's lifetime for the export.
pub fn outbox_row(
    row: &crate::edge::store::ledger::UsageRow,
    session_ttl_seconds: u64,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let serde_json::Value::Object(mut map) =
        serde_json::to_value(row).map_err(|e| format!("usage row: {e}"))?
    else {
        return Err("usage row is not an object".into());
    };
    // Nested groups of columns (the media units) become columns; their values win, as the D1
    // path's second statement does.
    let nested: Vec<String> = map
        .iter()
        .filter(|(k, v)| v.is_object() && !USAGE_COLUMNS.contains(&k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    for key in nested {
        if let Some(serde_json::Value::Object(inner)) = map.remove(&key) {
            for (k, v) in inner {
                map.insert(k, v);
            }
        }
    }
    // Columns D1 requires that the row does not carry (the D1 path writes them as 0 too).
    for column in ["input_price", "output_price"] {
        map.entry(column).or_insert(serde_json::json!(0));
    }
    if session_ttl_seconds > 0 {
        map.insert(
            SESSION_TTL_FIELD.into(),
            serde_json::json!(session_ttl_seconds),
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::store::ledger::{UsageMedia, UsageRow};

    fn row() -> UsageRow {
        serde_json::from_value(serde_json::json!({
            "request_id": "r", "tenant_id": "t", "key_id": "k", "session_id": "s",
            "model": "m", "provider": "p", "upstream_model": "u", "stream": false,
            "prompt_tokens": 1, "cached_prompt_tokens": 0, "completion_tokens": 2,
            "reasoning_tokens": 0, "upstream_prompt_tokens": null,
            "upstream_completion_tokens": null, "local_prompt_tokens": 1,
            "local_completion_tokens": 2, "usage_source": "local", "cost": 5,
            "price_version": null, "multiplier_bps": 10000, "idempotency_key": null,
            "reserved": 9, "status": "ok", "http_status": 200, "error_code": null,
            "latency_ms": 3, "ttfb_ms": null, "created_at": 7, "routes_tried": null,
            "api": "chat"
        }))
        .unwrap()
    }

    #[test]
    fn a_media_rows_units_are_columns_of_the_outbox_row() {
        let mut r = row();
        r.media = Some(UsageMedia {
            api: "speech".into(),
            unit: "character".into(),
            quantity: 42,
            unit_price: Some(15),
            image_input_tokens: 3,
            audio_input_tokens: 4,
        });
        let map = outbox_row(&r, 0).unwrap();
        assert_eq!(map["api"], "speech");
        assert_eq!(map["unit"], "character");
        assert_eq!(map["quantity"], 42);
        assert_eq!(map["unit_price"], 15);
        assert_eq!(map["image_input_tokens"], 3);
        assert_eq!(map["audio_input_tokens"], 4);
        assert!(!map.contains_key("media"));
        assert!(!map.contains_key(SESSION_TTL_FIELD));
        // Every key is a usage column: nothing the D1 path writes is lost at export.
        for k in map.keys() {
            assert!(
                USAGE_COLUMNS.contains(&k.as_str()),
                "{k} is not a usage column"
            );
        }
        // And every column the D1 path writes for this row is there.
        for c in [
            "session_id",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "reserved",
            "status",
            "http_status",
            "latency_ms",
            "created_at",
            "api",
            "input_price",
        ] {
            assert!(map.contains_key(c), "{c} missing");
        }
    }

    #[test]
    fn a_chat_row_keeps_its_api_and_carries_the_session_lifetime() {
        let map = outbox_row(&row(), 3600).unwrap();
        assert_eq!(map["api"], "chat");
        assert!(!map.contains_key("unit"));
        assert_eq!(map[SESSION_TTL_FIELD], 3600);
    }
}
