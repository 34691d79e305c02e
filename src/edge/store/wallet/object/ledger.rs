//! The object's ledger listing and its plan refill entries (`core::wallet::ledger`).
//!
//! The `ledger` table (schema version 1) keeps one entry per idempotency key; its SQLite `rowid`
//! (rows are never deleted) is the listing's order and cursor. A plan's monthly refill, lazy in
//! `core::wallet`, is stored here as an entry too, in the same transaction as the account.

use super::*;
use crate::core::wallet::ledger::{refill_key, refill_reason, WalletPage, WalletRow};

/// Most entries one listing returns (the route asks for `limit + 1`).
const MAX_ROWS: u32 = 1001;

/// Entries below `before` (all when `None`), newest first, at most `limit`.
pub(super) fn list(
    sql: &SqlStorage,
    before: Option<u64>,
    limit: u32,
) -> Result<WalletPage, String> {
    #[derive(Deserialize)]
    struct Row {
        seq: f64,
        idem_key: String,
        entry: String,
        reason: Option<String>,
        created_at: f64,
    }
    let rows: Vec<Row> = sql
        .exec(
            "SELECT rowid AS seq, idem_key, entry, reason, created_at FROM ledger
             WHERE rowid < ? ORDER BY rowid DESC LIMIT ?",
            vec![
                int(before.unwrap_or(i64::MAX as u64)),
                int(u64::from(limit.min(MAX_ROWS))),
            ],
        )
        .and_then(|c| c.to_array())
        .map_err(|e| e.to_string())?;
    let entries = rows
        .into_iter()
        .map(|r| {
            Ok(WalletRow {
                seq: r.seq as u64,
                key: r.idem_key,
                entry: serde_json::from_str(&r.entry).map_err(|e| format!("ledger entry: {e}"))?,
                reason: r.reason,
                created_at: r.created_at as u64,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(WalletPage { entries })
}

impl TenantWallet {
    /// Before a command on a taken tenant: starts the plan's new allowance period if one is due
    /// and stores it with its ledger entry, in one transaction. Not before the plan commands,
    /// which set the period themselves (and `SetPlanAllowance`, which must change the allowance
    /// a still pending refill grants), nor before the clock command.
    pub(super) fn record_refill(&self, command: &Command, now: u64) -> Result<(), String> {
        if !self.inner.borrow().migrated
            || matches!(
                command,
                Command::SetPlan { .. }
                    | Command::AssignPlan { .. }
                    | Command::SetPlanAllowance { .. }
                    | Command::SetClock { .. }
            )
        {
            return Ok(());
        }
        let refill = self.inner.borrow_mut().wallet.refill(now);
        let Some((allowance, period)) = refill else {
            return Ok(());
        };
        let entry = json_text(&self.inner.borrow().wallet.refill_entry(allowance))?;
        self.write(self.ops(|w| {
            Ok(vec![
                account_op(w)?,
                op(
                    "INSERT OR IGNORE INTO ledger (idem_key, entry, reason, created_at) VALUES (?, ?, ?, ?)",
                    vec![
                        refill_key(period).into(),
                        entry.into(),
                        refill_reason(period).into(),
                        int(now),
                    ],
                ),
            ])
        }))
    }
}
