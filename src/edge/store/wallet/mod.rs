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

use crate::core::wallet::{Refusal, ReserveRequest};

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
    /// Reserve before the upstream call → `Reserved`.
    Reserve {
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

/// The state `Inspect` and `Migrate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletView {
    /// Whether the wallet has taken the tenant's money from D1.
    pub migrated: bool,
    pub balance: Option<crate::core::wallet::BalanceView>,
    pub open_reservations: usize,
    pub outbox_pending: u64,
    pub outbox_exported: u64,
    pub schema_version: u32,
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
