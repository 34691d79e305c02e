//! The object's other money commands (`core::wallet::money`): plugin call prices, plan
//! assignments applied once, a plan's new allowance, and the test-only clock.
//!
//! # Storage (schema version 2)
//! - `calls`: one `plugin_calls` row per charged plugin call, by call id (`<request id>.c<n>`),
//!   written in the same transaction as the charge, exported to D1 like the usage outbox
//!   (`INSERT OR IGNORE`, `from_wallet = 1`: D1's triggers neither charge nor refuse it) and kept a
//!   week after as the charge's idempotency record.
//! - `applied`: the answer of each one-off command by idempotency key (a plan request's
//!   approval), so that a repeat answers the first result and changes nothing.
//! - `meta.test_clock_offset`: with `TOLLGATE_TEST_DEPLOYMENT` only, how far the wallet's clock
//!   runs ahead of the real one (the monthly refill is tested by moving it).

use super::*;
use crate::edge::store::wallet::CALL_COLUMNS;

pub(super) fn migrate_schema_v2(sql: &SqlStorage) -> Result<(), String> {
    let run = |q: &str| sql.exec(q, None).map(|_| ()).map_err(|e| e.to_string());
    run("CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, charge TEXT NOT NULL, row TEXT NOT NULL, created_at INTEGER NOT NULL, exported_at INTEGER)")?;
    run("CREATE INDEX IF NOT EXISTS calls_pending ON calls (exported_at, created_at)")?;
    run("CREATE TABLE IF NOT EXISTS applied (idem_key TEXT PRIMARY KEY, result TEXT NOT NULL, created_at INTEGER NOT NULL)")
}

/// Call rows not yet in D1.
pub(super) fn calls_pending(sql: &SqlStorage) -> Result<u64, String> {
    count(
        sql,
        "SELECT COUNT(*) AS n FROM calls WHERE exported_at IS NULL",
    )
}

/// Forgets call rows exported before `before`.
pub(super) fn prune_calls(sql: &SqlStorage, before: u64) -> Result<(), String> {
    exec(
        sql,
        "DELETE FROM calls WHERE exported_at IS NOT NULL AND exported_at < ?",
        vec![int(before)],
    )
    .map_err(js_text)
}

impl TenantWallet {
    /// The wallet's clock: the real one, moved by `SetClock` in a test deployment only.
    pub(super) fn now(&self) -> u64 {
        let real = now_ms();
        if !crate::edge::platform::env::settings(&self.env).test_deployment {
            return real;
        }
        let sql = self.state.storage().sql();
        match clock_offset(&sql) {
            Some(offset) => real.saturating_add_signed(offset),
            None => real,
        }
    }

    pub(super) async fn run_money(
        &self,
        command: Command,
        tenant_id: &str,
        now: u64,
    ) -> Result<Answer, String> {
        let sql = self.state.storage().sql();
        let answer = match command {
            Command::ReserveCall { id, key_id, amount } => {
                // A call is charged once: after its charge a second reserve would hold money
                // nothing will ever settle.
                if stored_call(&sql, &id)?.is_some() {
                    return Err(format!("plugin call {id} is already charged"));
                }
                let result = self
                    .inner
                    .borrow_mut()
                    .wallet
                    .reserve_call(&id, &key_id, amount, now);
                match result {
                    Ok(reserved) => {
                        self.write(self.ops(|w| {
                            let mut ops = vec![account_op(w)?];
                            ops.extend(key_op(w, &key_id)?);
                            if let Some(h) = w.holds.get(&id) {
                                ops.push(hold_op(h)?);
                            }
                            Ok(ops)
                        }))?;
                        Answer::Ok(to_value(&reserved)?)
                    }
                    Err(refusal) => Answer::Refused(refusal),
                }
            }
            Command::ChargeCall {
                id,
                key_id,
                cost,
                mut row,
            } => {
                if let Some(previous) = stored_call(&sql, &id)? {
                    return Ok(Answer::Ok(to_value(&previous)?));
                }
                let hold_key = {
                    let inner = self.inner.borrow();
                    inner
                        .wallet
                        .holds
                        .get(&id)
                        .map_or(key_id.clone(), |h| h.key_id.clone())
                };
                let charge = self
                    .inner
                    .borrow_mut()
                    .wallet
                    .settle(&id, &key_id, cost, 0, now);
                fill_call_row(&mut row, tenant_id, &id, &hold_key, &charge, now);
                let insert = "INSERT INTO calls (id, charge, row, created_at) VALUES (?, ?, ?, ?)";
                self.store_settlement(tenant_id, insert, &id, &hold_key, &charge, &row, now)
                    .await?;
                Answer::Ok(to_value(&charge)?)
            }
            Command::AssignPlan {
                allowance,
                idempotency_key,
            } => {
                if let Some(previous) = stored_applied(&sql, &idempotency_key)? {
                    return Ok(Answer::Ok(previous));
                }
                self.inner.borrow_mut().wallet.set_plan(allowance, now);
                let view = to_value(&self.inner.borrow_mut().wallet.balance(now))?;
                let text = json_text(&view)?;
                self.write(self.ops(|w| {
                    Ok(vec![
                        account_op(w)?,
                        op(
                            "INSERT INTO applied (idem_key, result, created_at) VALUES (?, ?, ?)",
                            vec![idempotency_key.as_str().into(), text.into(), int(now)],
                        ),
                    ])
                }))?;
                Answer::Ok(view)
            }
            Command::SetPlanAllowance { allowance } => {
                let changed = self.inner.borrow_mut().wallet.set_plan_allowance(allowance);
                if changed {
                    self.write(self.ops(|w| Ok(vec![account_op(w)?])))?;
                }
                Answer::Ok(json!({ "changed": changed }))
            }
            Command::SetClock { offset_ms } => {
                if !crate::edge::platform::env::settings(&self.env).test_deployment {
                    return Err("the wallet clock can be moved in test deployments only".into());
                }
                exec(
                    &sql,
                    "INSERT OR REPLACE INTO meta (k, v) VALUES ('test_clock_offset', ?)",
                    vec![offset_ms.to_string().into()],
                )
                .map_err(js_text)?;
                Answer::Ok(json!({ "offset_ms": offset_ms }))
            }
            _ => return Err("not a money command of object/money.rs".into()),
        };
        Ok(answer)
    }

    /// Writes pending call rows to D1 `plugin_calls` (`INSERT OR IGNORE`), then marks them
    /// exported (only those D1 holds; the others stay pending, loudly).
    pub(super) async fn export_calls(&self, tenant_id: &str) -> Result<u64, String> {
        #[derive(Deserialize)]
        struct Pending {
            id: String,
            row: String,
        }
        #[derive(Deserialize)]
        struct Held {
            id: String,
        }
        let sql = self.state.storage().sql();
        let database = db::database(&self.env).map_err(|e| e.to_string())?;
        let mut exported = 0u64;
        loop {
            let rows: Vec<Pending> = sql
                .exec(
                    "SELECT id, row FROM calls WHERE exported_at IS NULL ORDER BY created_at LIMIT ?",
                    vec![int(EXPORT_BATCH as u64)],
                )
                .and_then(|c| c.to_array())
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(exported);
            }
            let mut statements = Vec::with_capacity(rows.len());
            for p in &rows {
                let row: Map<String, Value> =
                    serde_json::from_str(&p.row).map_err(|e| e.to_string())?;
                let (text, values) = insert_call(&row, tenant_id);
                let args: Vec<Arg<'_>> = values.iter().map(ExportValue::arg).collect();
                statements.push(db::statement(&database, &text, &args).map_err(|e| e.to_string())?);
            }
            db::batch(&database, statements)
                .await
                .map_err(|e| e.to_string())?;
            let placeholders = vec!["?"; rows.len()].join(", ");
            let ids: Vec<Arg<'_>> = rows.iter().map(|p| p.id.as_str().into()).collect();
            let held: Vec<Held> = db::all(
                &database,
                &format!("SELECT id FROM plugin_calls WHERE id IN ({placeholders})"),
                &ids,
            )
            .await
            .map_err(|e| e.to_string())?;
            let held: std::collections::HashSet<&str> =
                held.iter().map(|h| h.id.as_str()).collect();
            let (rows, refused): (Vec<&Pending>, Vec<&Pending>) =
                rows.iter().partition(|p| held.contains(p.id.as_str()));
            for p in &refused {
                worker::console_error!(
                    "wallet {tenant_id}: D1 did not take the plugin call row {}: {}",
                    p.id,
                    p.row
                );
            }
            if rows.is_empty() {
                return Err(format!(
                    "D1 refused {} plugin call rows (kept pending)",
                    refused.len()
                ));
            }
            let now = now_ms();
            for p in &rows {
                exec(
                    &sql,
                    "UPDATE calls SET exported_at = ? WHERE id = ?",
                    vec![int(now), p.id.as_str().into()],
                )
                .map_err(js_text)?;
            }
            exported += rows.len() as u64;
        }
    }
}

fn clock_offset(sql: &SqlStorage) -> Option<i64> {
    sql.exec("SELECT v FROM meta WHERE k = 'test_clock_offset'", None)
        .and_then(|c| c.to_array::<MetaRow>())
        .ok()?
        .first()
        .and_then(|r| r.v.parse().ok())
}

fn stored_call(sql: &SqlStorage, id: &str) -> Result<Option<Charge>, String> {
    stored_json(sql, "SELECT charge AS v FROM calls WHERE id = ?", id)
}

fn stored_applied(sql: &SqlStorage, key: &str) -> Result<Option<Value>, String> {
    stored_json(
        sql,
        "SELECT result AS v FROM applied WHERE idem_key = ?",
        key,
    )
}

/// The charge columns of a `plugin_calls` row, as the wallet took them.
fn fill_call_row(
    row: &mut Map<String, Value>,
    tenant_id: &str,
    id: &str,
    key_id: &str,
    charge: &Charge,
    now: u64,
) {
    row.insert("id".into(), json!(id));
    row.insert("tenant_id".into(), json!(tenant_id));
    row.insert("key_id".into(), json!(key_id));
    row.insert("cost".into(), json!(charge.cost));
    row.insert("allowance_cost".into(), json!(charge.allowance_cost));
    row.insert(
        "beyond_reservation".into(),
        json!(charge.beyond_reservation),
    );
    row.insert("debt".into(), json!(charge.debt));
    row.insert("from_wallet".into(), json!(1));
    row.entry("created_at").or_insert_with(|| json!(now));
}

/// `INSERT OR IGNORE INTO plugin_calls (...)` for a stored row: only [`CALL_COLUMNS`], values as
/// stored, `tenant_id` forced to the wallet's.
fn insert_call(row: &Map<String, Value>, tenant_id: &str) -> (String, Vec<ExportValue>) {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for &column in CALL_COLUMNS {
        let value = if column == "tenant_id" {
            Some(ExportValue::Str(tenant_id.to_string()))
        } else {
            row.get(column).map(export_value)
        };
        if let Some(v) = value {
            columns.push(column);
            values.push(v);
        }
    }
    let marks = vec!["?"; columns.len()].join(", ");
    (
        format!(
            "INSERT OR IGNORE INTO plugin_calls ({}) VALUES ({marks})",
            columns.join(", ")
        ),
        values,
    )
}

fn export_value(v: &Value) -> ExportValue {
    match v {
        Value::Null => ExportValue::Null,
        Value::Bool(b) => ExportValue::Int(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| ExportValue::Str(n.to_string()), ExportValue::Int),
        Value::String(s) => ExportValue::Str(s.clone()),
        other => ExportValue::Str(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_row_exports_only_its_columns_with_the_wallets_charge() {
        let mut row: Map<String, Value> = serde_json::from_str(
            r#"{"request_id":"req_1","tenant_id":"someone-else","key_id":"k","session_id":null,
                "plugin_id":"notes","api":"add","mode":"tool","status":"ok","http_status":200,
                "latency_ms":5,"cost":999,"created_at":70,"x); DROP TABLE plugin_calls; --":1}"#,
        )
        .unwrap();
        let charge = Charge {
            cost: 40,
            reserved: 40,
            allowance_cost: 15,
            beyond_reservation: 0,
            debt: 0,
        };
        fill_call_row(&mut row, "ten_1", "req_1.c1", "k", &charge, 77);
        let (sql, values) = insert_call(&row, "ten_1");
        assert!(sql.starts_with("INSERT OR IGNORE INTO plugin_calls (id, request_id, tenant_id, "));
        assert!(!sql.contains("DROP"));
        let cols: Vec<&str> = sql.split(['(', ')']).nth(1).unwrap().split(", ").collect();
        assert_eq!(cols.len(), values.len());
        let get = |c: &str| &values[cols.iter().position(|x| *x == c).unwrap()];
        assert!(matches!(get("id"), ExportValue::Str(s) if s == "req_1.c1"));
        assert!(matches!(get("tenant_id"), ExportValue::Str(s) if s == "ten_1"));
        assert!(matches!(get("cost"), ExportValue::Int(40)));
        assert!(matches!(get("allowance_cost"), ExportValue::Int(15)));
        assert!(matches!(get("from_wallet"), ExportValue::Int(1)));
        assert!(matches!(get("session_id"), ExportValue::Null));
        // The call's own time is kept (the charge's time only fills a missing one).
        assert!(matches!(get("created_at"), ExportValue::Int(70)));
        assert_eq!(cols.len(), CALL_COLUMNS.len());
    }
}
