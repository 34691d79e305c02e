//! The `TenantWallet` Durable Object: one per tenant (`idFromName(tenant_id)`), SQLite-backed.
//!
//! # Storage
//! Its tables are created here (schema version in `meta`, [`SCHEMA_VERSION`]; a later version adds
//! its steps to [`migrate_schema`]): `account` (one row: the tenant's [`Account`] as JSON), `keys`
//! (one [`KeyAccount`] per key that has limits or reservations), `holds` (open reservations),
//! `ledger` (credits and debits by idempotency key) and `outbox` (one usage row per settled
//! request, by request id, until exported to D1 and for a week after, as the settlement's
//! idempotency record); version 2 adds `calls` (plugin call rows, the same way) and `applied`
//! (one-off commands by idempotency key), see `object/money.rs`.
//!
//! The whole wallet is also kept in memory, loaded once when the object starts. A command runs
//! `core::wallet` on the memory copy, then writes what changed inside one `transactionSync`
//! (all or nothing); should the write fail, the memory copy is reloaded from storage, so memory
//! never runs ahead of what is stored. The object runs one command at a time and none of them
//! awaits between decision and write, so no two commands interleave.
//!
//! # Taking the tenant from D1 (lazy migration)
//! The first money command (reserve, settle, release, credit/debit, plan, migrate, export) takes
//! the tenant's money from D1 while other events wait (`blockConcurrencyWhile`): one D1 batch
//! inserts the claim (`wallet_claims`, schema/0011) with a snapshot of balance, debt, allowance,
//! plan, open reservations, revoked keys and ledger position, unless a claim exists; deletes the
//! tenant's D1 reservations (they continue here); reads the claim back. The snapshot is loaded only
//! if the claim is this object's, so it is taken exactly once; a retry after a crash loads the same
//! snapshot. From then on D1 refuses money moves for the tenant (0011's triggers). Limits commands
//! do not take the tenant: they work before migration.
//!
//! # Export
//! Settling sets an alarm ([`EXPORT_DELAY_MS`]); the alarm writes pending outbox rows to D1 in
//! batches of [`EXPORT_BATCH`] with `INSERT OR IGNORE` (request id is `usage`'s key: a replay
//! changes nothing), marks them exported, returns stale reservations, and re-arms itself while
//! rows are pending or reservations are open.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wasm_bindgen::prelude::*;
use worker::js_sys;
use worker::{wasm_bindgen_futures, web_sys, Env, SqlStorage, SqlStorageValue, State};

use super::{Answer, Command, Envelope, ExportReport, WalletView, USAGE_COLUMNS};
use crate::core::wallet::limits::LimitsPatch;
use crate::core::wallet::{Account, Charge, Hold, KeyAccount, LedgerEntry, Wallet};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1::{self as db, Arg};

mod ledger;
mod money;

/// Version of the object's own tables.
pub const SCHEMA_VERSION: u32 = 2;
/// Usage rows per D1 batch at export.
pub const EXPORT_BATCH: usize = 50;
/// How soon after a settlement its row goes to D1.
pub const EXPORT_DELAY_MS: u64 = 1_000;
/// How long an exported row stays as the settlement's idempotency record.
pub const OUTBOX_KEEP_MS: u64 = 7 * 86_400_000;

#[wasm_bindgen]
extern "C" {
    /// `ctx.storage.transactionSync(fn)`: runs `fn` as one SQLite transaction, rolled back if it
    /// throws (not bound by worker 0.8.7).
    type SyncStorage;
    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(this: &SyncStorage, f: &js_sys::Function) -> Result<JsValue, JsValue>;
}

struct Inner {
    wallet: Wallet,
    tenant_id: Option<String>,
    migrated: bool,
    /// Set when the tables could not be created or read: every command then answers 500.
    broken: Option<String>,
}

/// The object. Its JavaScript class (`TenantWallet`, wrangler.toml) is exported here by hand rather
/// than with workers-rs's `#[durable_object]`: the macro hands `fetch` a `worker::Request`, whose
/// conversion reads the method, URL, headers and the `cf` object, and `Request::json` parses the
/// body in JavaScript and converts it field by field into Rust (`serde_wasm_bindgen`). A command
/// needs only its body's text, parsed once in Rust, and its answer is a string: both on the hot
/// path (two commands per request; `node bench/profile.mjs`, docs/scale.md).
#[wasm_bindgen]
pub struct TenantWallet {
    state: State,
    env: Env,
    inner: Rc<RefCell<Inner>>,
    /// When the alarm this object set rings (UTC ms), as far as it knows: `None` when it does not
    /// know (just started, or the alarm began to run). See [`TenantWallet::arm`].
    alarm_at: Cell<Option<u64>>,
}

#[wasm_bindgen]
impl TenantWallet {
    #[wasm_bindgen(constructor)]
    pub fn new(state: worker::worker_sys::DurableObjectState, env: Env) -> Self {
        let state = State::from(state);
        let sql = state.storage().sql();
        let inner = match migrate_schema(&sql).and_then(|()| load(&sql)) {
            Ok(inner) => inner,
            Err(e) => Inner {
                wallet: Wallet::default(),
                tenant_id: None,
                migrated: false,
                broken: Some(e),
            },
        };
        Self {
            state,
            env,
            inner: Rc::new(RefCell::new(inner)),
            alarm_at: Cell::new(None),
        }
    }

    /// One command: the body is an [`Envelope`]; the answer 200 with an [`Answer`], 400 for a
    /// body that is not a command, 500 with `{"error"}` when storage or D1 failed.
    pub async fn fetch(&self, req: web_sys::Request) -> Result<JsValue, JsValue> {
        let text = wasm_bindgen_futures::JsFuture::from(req.text()?)
            .await?
            .as_string()
            .unwrap_or_default();
        let (status, body) = match serde_json::from_str::<Envelope>(&text) {
            Err(e) => (400, failure(&format!("bad wallet command: {e}"))),
            Ok(envelope) => match self.run(envelope).await {
                Ok(answer) => match serde_json::to_string(&answer) {
                    Ok(body) => (200, body),
                    Err(e) => (500, failure(&e.to_string())),
                },
                Err(e) => (500, failure(&e)),
            },
        };
        let init = web_sys::ResponseInit::new();
        init.set_status(status);
        web_sys::Response::new_with_opt_str_and_init(Some(&body), &init).map(JsValue::from)
    }

    pub async fn alarm(&self) -> Result<JsValue, JsValue> {
        // A running alarm is no longer set (the runtime's rule): the next arm asks the runtime.
        self.alarm_at.set(None);
        let tenant_id = self.inner.borrow().tenant_id.clone();
        if let Some(tenant_id) = tenant_id {
            if let Err(e) = self.housekeeping(&tenant_id).await {
                worker::console_error!("wallet {tenant_id}: alarm: {e}");
                // Try again soon; the rows stay pending meanwhile.
                let _ = self.arm(EXPORT_DELAY_MS * 10).await;
            }
        }
        Ok(JsValue::UNDEFINED)
    }
}

/// The body of a failed command's answer.
fn failure(message: &str) -> String {
    json!({ "error": message }).to_string()
}

impl TenantWallet {
    async fn run(&self, envelope: Envelope) -> Result<Answer, String> {
        if let Some(e) = &self.inner.borrow().broken {
            return Err(format!("wallet storage unusable: {e}"));
        }
        self.bind_tenant(&envelope.tenant_id)?;
        let tenant_id = envelope.tenant_id;
        let command = envelope.command;
        if needs_money(&command) && !self.inner.borrow().migrated {
            self.take_tenant(&tenant_id).await?;
        }
        let now = self.now();
        self.record_refill(&command, now)?;
        let sql = self.state.storage().sql();
        // Commands that move the settled balance outside a settlement (whose export records
        // it): D1's copy for the scheduled alert check is written right after them.
        let mirror = matches!(command, Command::Adjust { .. });
        let answer = match command {
            other @ (Command::ReserveCall { .. }
            | Command::ChargeCall { .. }
            | Command::AssignPlan { .. }
            | Command::SetPlanAllowance { .. }
            | Command::SetClock { .. }) => self.run_money(other, &tenant_id, now).await?,
            Command::Reserve { request, lease } => {
                // A request id is reserved once: after its settlement a second reserve would
                // hold money nothing will ever settle.
                if stored_charge(&sql, &request.id)?.is_some() {
                    return Err(format!("request {} is already settled", request.id));
                }
                let result = self.inner.borrow_mut().wallet.reserve(&request, now);
                match result {
                    Ok(reserved) => {
                        let grant = lease.and_then(|ask| {
                            self.inner.borrow_mut().wallet.grant_lease(
                                &ask,
                                &request.key_id,
                                request.amount,
                                now,
                            )
                        });
                        self.write(self.ops(|w| {
                            let mut ops = vec![account_op(w)?];
                            ops.extend(key_op(w, &request.key_id)?);
                            if let Some(h) = w.holds.get(&request.id) {
                                ops.push(hold_op(h)?);
                            }
                            if let Some(g) = &grant {
                                if let Some(h) = w.holds.get(&lease_hold_id(&g.lease_id)) {
                                    ops.push(hold_op(h)?);
                                }
                            }
                            Ok(ops)
                        }))?;
                        if grant.is_some() {
                            // The alarm returns the lease's leftover at its expiry.
                            self.arm_sweep(&tenant_id).await;
                        }
                        Answer::Ok(to_value(&super::ReserveAnswer {
                            reserved,
                            lease: grant,
                        })?)
                    }
                    Err(refusal) => Answer::Refused(refusal),
                }
            }
            Command::Take { lease_id, request } => {
                if stored_charge(&sql, &request.id)?.is_some() {
                    return Err(format!("request {} is already settled", request.id));
                }
                let lid = lease_hold_id(&lease_id);
                let (before, lease_key) = {
                    let inner = self.inner.borrow();
                    let holds = &inner.wallet.holds;
                    let lease_key = holds.get(&lid).map(|h| h.key_id.clone());
                    (holds.keys().cloned().collect::<Vec<_>>(), lease_key)
                };
                let result = self
                    .inner
                    .borrow_mut()
                    .wallet
                    .take(&lease_id, &request, now);
                // Whatever the answer, a take may have cancelled the lease: store the holds it
                // changed (the lease, the request's) and the money.
                self.write(self.ops(|w| {
                    let mut ops = vec![account_op(w)?];
                    ops.extend(key_op(w, &request.key_id)?);
                    if let Some(k) = lease_key.as_deref().filter(|k| *k != request.key_id) {
                        ops.extend(key_op(w, k)?);
                    }
                    for id in [&lid, &request.id] {
                        match w.holds.get(id) {
                            Some(h) => ops.push(hold_op(h)?),
                            None if before.contains(id) => ops.push(delete_hold_op(id)),
                            None => {}
                        }
                    }
                    Ok(ops)
                }))?;
                match result {
                    Ok(took) => Answer::Ok(to_value(&took)?),
                    Err(refusal) => Answer::Refused(refusal),
                }
            }
            Command::Settle {
                request_id,
                key_id,
                cost,
                tokens,
                mut row,
            } => {
                if let Some(previous) = stored_charge(&sql, &request_id)? {
                    return Ok(Answer::Ok(to_value(&previous)?));
                }
                let hold_key = {
                    let inner = self.inner.borrow();
                    inner
                        .wallet
                        .holds
                        .get(&request_id)
                        .map_or(key_id.clone(), |h| h.key_id.clone())
                };
                let observed = self.inner.borrow_mut().wallet.settle_observed(
                    &request_id,
                    &key_id,
                    cost,
                    tokens,
                    now,
                );
                let charge = observed.charge;
                fill_row(&mut row, &tenant_id, &request_id, &hold_key, &charge, now);
                let insert =
                    "INSERT INTO outbox (request_id, charge, row, created_at) VALUES (?, ?, ?, ?)";
                self.store_settlement(
                    &tenant_id,
                    insert,
                    &request_id,
                    &hold_key,
                    &charge,
                    &row,
                    now,
                )
                .await?;
                Answer::Ok(to_value(&observed)?)
            }
            Command::Extend { request } => {
                let result = self.inner.borrow_mut().wallet.extend(&request, now);
                match result {
                    Ok(extension) => {
                        if matches!(
                            extension,
                            crate::core::wallet::extend::Extension::Granted { .. }
                        ) {
                            self.write(self.ops(|w| {
                                let mut ops = vec![account_op(w)?];
                                if let Some(h) = w.holds.get(&request.id) {
                                    ops.extend(key_op(w, &h.key_id)?);
                                    ops.push(hold_op(h)?);
                                }
                                Ok(ops)
                            }))?;
                        }
                        Answer::Ok(to_value(&extension)?)
                    }
                    Err(refusal) => Answer::Refused(refusal),
                }
            }
            Command::Release { request_id } => {
                let hold = self.inner.borrow_mut().wallet.release(&request_id, now);
                if let Some(h) = &hold {
                    self.write(self.ops(|w| {
                        let mut ops = vec![account_op(w)?];
                        ops.extend(key_op(w, &h.key_id)?);
                        ops.push(delete_hold_op(&h.id));
                        Ok(ops)
                    }))?;
                }
                Answer::Ok(json!({ "released": hold.is_some() }))
            }
            Command::Adjust {
                amount,
                idempotency_key,
                reason,
            } => {
                let previous = stored_entry(&sql, &idempotency_key)?;
                let replay = previous.is_some();
                let result = self.inner.borrow_mut().wallet.adjust(amount, previous);
                match result {
                    Ok(entry) => {
                        if !replay {
                            let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
                            self.write(self.ops(|w| {
                                Ok(vec![
                                    account_op(w)?,
                                    op(
                                        "INSERT INTO ledger (idem_key, entry, reason, created_at) VALUES (?, ?, ?, ?)",
                                        vec![
                                            idempotency_key.as_str().into(),
                                            text.into(),
                                            reason.as_deref().into(),
                                            int(now),
                                        ],
                                    ),
                                ])
                            }))?;
                        }
                        Answer::Ok(to_value(&entry)?)
                    }
                    Err(refusal) => Answer::Refused(refusal),
                }
            }
            Command::SetPlan { allowance } => {
                self.inner.borrow_mut().wallet.set_plan(allowance, now);
                self.write(self.ops(|w| Ok(vec![account_op(w)?])))?;
                let view = self.inner.borrow_mut().wallet.balance(now);
                Answer::Ok(to_value(&view)?)
            }
            Command::GetLimits { key_id } => {
                let view = self.inner.borrow().wallet.limits(key_id.as_deref(), now);
                Answer::Ok(to_value(&view)?)
            }
            Command::SetLimits { key_id, patch } => {
                let patch: LimitsPatch =
                    serde_json::from_value(patch).map_err(|e| format!("bad limits: {e}"))?;
                patch.validate().map_err(|(_, m)| m)?;
                let cancelled = {
                    let mut inner = self.inner.borrow_mut();
                    inner.wallet.set_limits(key_id.as_deref(), &patch);
                    // A limited key (or tenant) takes the normal reserve path from now on.
                    inner.wallet.cancel_leases(key_id.as_deref(), now)
                };
                self.write(self.ops(|w| {
                    let mut ops = match &key_id {
                        Some(k) => key_op(w, k)?.into_iter().collect(),
                        None => vec![account_op(w)?],
                    };
                    ops.extend(cancel_ops(w, &cancelled)?);
                    Ok(ops)
                }))?;
                let view = self.inner.borrow().wallet.limits(key_id.as_deref(), now);
                Answer::Ok(to_value(&view)?)
            }
            Command::SetKeyRevoked { key_id, revoked } => {
                let cancelled = {
                    let mut inner = self.inner.borrow_mut();
                    inner.wallet.set_key_revoked(&key_id, revoked);
                    if revoked {
                        inner.wallet.cancel_leases(Some(&key_id), now)
                    } else {
                        Vec::new()
                    }
                };
                self.write(self.ops(|w| {
                    let mut ops: Vec<Op> = key_op(w, &key_id)?.into_iter().collect();
                    ops.extend(cancel_ops(w, &cancelled)?);
                    Ok(ops)
                }))?;
                Answer::Ok(json!({}))
            }
            Command::SetDisabled { disabled } => {
                let cancelled = {
                    let mut inner = self.inner.borrow_mut();
                    inner.wallet.account.disabled = disabled;
                    if disabled {
                        inner.wallet.cancel_leases(None, now)
                    } else {
                        Vec::new()
                    }
                };
                self.write(self.ops(|w| {
                    let mut ops = vec![account_op(w)?];
                    ops.extend(cancel_ops(w, &cancelled)?);
                    Ok(ops)
                }))?;
                Answer::Ok(json!({}))
            }
            Command::Ledger { before, limit } => {
                Answer::Ok(to_value(&ledger::list(&sql, before, limit)?)?)
            }
            Command::Inspect | Command::Migrate => Answer::Ok(to_value(&self.view(&sql, now)?)?),
            Command::Export => {
                let exported =
                    self.export(&tenant_id).await? + self.export_calls(&tenant_id).await?;
                // The alarm then sweeps the stale holds (and re-arms itself for the rest), should
                // it have been lost with a crashed runtime.
                if !self.inner.borrow().wallet.holds.is_empty() {
                    if let Err(e) = self.arm(EXPORT_DELAY_MS).await {
                        worker::console_error!("wallet {tenant_id}: arming the sweep: {e}");
                    }
                }
                let pending = count(
                    &sql,
                    "SELECT COUNT(*) AS n FROM outbox WHERE exported_at IS NULL",
                )? + money::calls_pending(&sql)?;
                Answer::Ok(to_value(&ExportReport { exported, pending })?)
            }
        };
        if mirror && matches!(answer, Answer::Ok(_)) {
            self.mirror_balance(&tenant_id).await;
        }
        Ok(answer)
    }

    /// Records the settled balance in D1 for the scheduled alert check (schema/0016); best
    /// effort: the next export records it again.
    async fn mirror_balance(&self, tenant_id: &str) {
        let now = now_ms();
        let balance = self.inner.borrow().wallet.figures(now).balance;
        let written = match db::database(&self.env) {
            Ok(database) => {
                db::run(
                    &database,
                    crate::edge::store::alerts::WALLET_BALANCE_SQL,
                    &[tenant_id.into(), balance.into(), now.into()],
                )
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            worker::console_warn!("wallet {tenant_id}: recording the balance in D1: {e}");
        }
    }

    /// Remembers the tenant on first use; refuses a command for another tenant.
    fn bind_tenant(&self, tenant_id: &str) -> Result<(), String> {
        let known = self.inner.borrow().tenant_id.clone();
        match known {
            Some(t) if t == tenant_id => Ok(()),
            Some(t) => Err(format!(
                "this wallet belongs to tenant {t}, not {tenant_id}"
            )),
            None => {
                let sql = self.state.storage().sql();
                exec(
                    &sql,
                    "INSERT OR REPLACE INTO meta (k, v) VALUES ('tenant_id', ?)",
                    vec![tenant_id.into()],
                )
                .map_err(js_text)?;
                self.inner.borrow_mut().tenant_id = Some(tenant_id.to_string());
                Ok(())
            }
        }
    }

    fn view(&self, sql: &SqlStorage, now: u64) -> Result<WalletView, String> {
        let mut inner = self.inner.borrow_mut();
        let migrated = inner.migrated;
        Ok(WalletView {
            migrated,
            balance: migrated.then(|| inner.wallet.balance(now)),
            open_reservations: inner
                .wallet
                .holds
                .values()
                .filter(|h| h.lease.is_none())
                .count(),
            open_leases: inner
                .wallet
                .holds
                .values()
                .filter(|h| h.lease.is_some())
                .count(),
            outbox_pending: count(
                sql,
                "SELECT COUNT(*) AS n FROM outbox WHERE exported_at IS NULL",
            )? + money::calls_pending(sql)?,
            outbox_exported: count(
                sql,
                "SELECT COUNT(*) AS n FROM outbox WHERE exported_at IS NOT NULL",
            )?,
            schema_version: SCHEMA_VERSION,
            month: migrated.then(|| inner.wallet.month_totals(now)),
        })
    }

    /// Runs `ops` as one storage transaction. On failure (rolled back) the memory copy is
    /// reloaded from storage, so memory never runs ahead of what is stored.
    fn write(&self, ops: Result<Vec<Op>, String>) -> Result<(), String> {
        let sql = self.state.storage().sql();
        let result = ops.and_then(|ops| transact(&self.state.storage(), &sql, ops));
        if let Err(e) = result {
            match load(&sql) {
                Ok(fresh) => *self.inner.borrow_mut() = fresh,
                Err(le) => self.inner.borrow_mut().broken = Some(le),
            }
            return Err(format!("wallet write failed: {e}"));
        }
        Ok(())
    }

    /// Builds a write from the current wallet.
    fn ops(&self, f: impl FnOnce(&Wallet) -> Result<Vec<Op>, String>) -> Result<Vec<Op>, String> {
        f(&self.inner.borrow().wallet)
    }

    /// Stores a settlement in one transaction — the account and the key's counters as they are
    /// now, the hold gone, and its record (`insert`: the outbox row of a request, the `calls` row
    /// of a plugin call; `(id, charge, row, created_at)`) — then arms the export. The record is
    /// stored: a failed alarm only delays the export (the next settlement or an export command
    /// arms it again), it must not fail the answer.
    #[allow(clippy::too_many_arguments)]
    async fn store_settlement<C: serde::Serialize, R: serde::Serialize>(
        &self,
        tenant_id: &str,
        insert: &'static str,
        id: &str,
        hold_key: &str,
        charge: &C,
        row: &R,
        now: u64,
    ) -> Result<(), String> {
        let row_text = json_text(row)?;
        let charge_text = json_text(charge)?;
        self.write(self.ops(|w| {
            let mut ops = vec![account_op(w)?];
            ops.extend(key_op(w, hold_key)?);
            ops.push(delete_hold_op(id));
            ops.push(op(
                insert,
                vec![id.into(), charge_text.into(), row_text.into(), int(now)],
            ));
            Ok(ops)
        }))?;
        if let Err(e) = self.arm(EXPORT_DELAY_MS).await {
            worker::console_error!("wallet {tenant_id}: arming the export: {e}");
        }
        Ok(())
    }

    /// Arms the sweep of the next hold to expire (best effort: the next settlement's export
    /// re-arms it too).
    async fn arm_sweep(&self, tenant_id: &str) {
        let stale_ms = crate::edge::platform::env::settings(&self.env)
            .stale_reservation_seconds
            .max(60)
            * 1000;
        let next = self.inner.borrow().wallet.next_expiry(stale_ms);
        if let Some(t) = next {
            let delay = (t + 1000).saturating_sub(self.now());
            if let Err(e) = self.arm(delay).await {
                worker::console_error!("wallet {tenant_id}: arming the sweep: {e}");
            }
        }
    }

    /// Sets the alarm to `delay_ms` from now unless one is due sooner.
    ///
    /// Hot path (every settlement arms the export). The object remembers the alarm it set
    /// (`alarm_at`): only it sets the alarm, and the alarm, once it starts to run, is no longer set
    /// (`alarm` forgets it then), so while that time is known and no later than `at` nothing is
    /// asked of the runtime. Otherwise (a new object, an alarm that ran) the runtime's alarm is
    /// read and, if needed, set, and remembered.
    async fn arm(&self, delay_ms: u64) -> Result<(), String> {
        let at = now_ms() + delay_ms;
        if alarm_covers(self.alarm_at.get(), at) {
            return Ok(());
        }
        let storage = self.state.storage();
        let current = storage
            .get_alarm()
            .await
            .map_err(|e| e.to_string())?
            .and_then(|c| u64::try_from(c).ok());
        if alarm_covers(current, at) {
            self.alarm_at.set(current);
            return Ok(());
        }
        storage
            .set_alarm(worker::ScheduledTime::new(js_sys::Date::new(
                &JsValue::from_f64(at as f64),
            )))
            .await
            .map_err(|e| e.to_string())?;
        self.alarm_at.set(Some(at));
        Ok(())
    }

    /// The alarm's work: export, expire stale reservations, prune old rows, re-arm.
    async fn housekeeping(&self, tenant_id: &str) -> Result<(), String> {
        if !self.inner.borrow().migrated {
            return Ok(());
        }
        self.export(tenant_id).await?;
        self.export_calls(tenant_id).await?;
        let now = self.now(); // the wallet's clock (a test deployment may move it)
        self.record_refill(&Command::Export, now)?;
        let stale_ms = crate::edge::platform::env::settings(&self.env)
            .stale_reservation_seconds
            .max(60)
            * 1000;
        let expired = self.inner.borrow_mut().wallet.expire(now, stale_ms);
        if !expired.is_empty() {
            self.write(self.ops(|w| {
                let mut ops = vec![account_op(w)?];
                for h in &expired {
                    ops.extend(key_op(w, &h.key_id)?);
                    ops.push(delete_hold_op(&h.id));
                }
                Ok(ops)
            }))?;
        }
        let sql = self.state.storage().sql();
        exec(
            &sql,
            "DELETE FROM outbox WHERE exported_at IS NOT NULL AND exported_at < ?",
            vec![int(now.saturating_sub(OUTBOX_KEEP_MS))],
        )
        .map_err(js_text)?;
        money::prune_calls(&sql, now.saturating_sub(OUTBOX_KEEP_MS))?;
        let pending = count(
            &sql,
            "SELECT COUNT(*) AS n FROM outbox WHERE exported_at IS NULL",
        )? + money::calls_pending(&sql)?;
        // The next hold to return: a request's after the stale limit, a lease at its expiry.
        let next_expiry = self.inner.borrow().wallet.next_expiry(stale_ms);
        if pending > 0 {
            self.arm(EXPORT_DELAY_MS).await?;
        } else if let Some(t) = next_expiry {
            self.arm((t + 1000).saturating_sub(now)).await?;
        }
        Ok(())
    }

    /// Writes pending outbox rows to D1 (`INSERT OR IGNORE`), then marks them exported.
    async fn export(&self, tenant_id: &str) -> Result<u64, String> {
        #[derive(Deserialize)]
        struct Pending {
            request_id: String,
            row: String,
        }
        let sql = self.state.storage().sql();
        let database = db::database(&self.env).map_err(|e| e.to_string())?;
        let mut exported = 0u64;
        loop {
            let rows: Vec<Pending> = sql
                .exec(
                    "SELECT request_id, row FROM outbox WHERE exported_at IS NULL ORDER BY created_at LIMIT ?",
                    vec![int(EXPORT_BATCH as u64)],
                )
                .and_then(|c| c.to_array())
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(exported);
            }
            let mut statements = Vec::with_capacity(rows.len() + 1);
            let mut sessions: Vec<(String, u64)> = Vec::new();
            for p in &rows {
                let row: Map<String, Value> =
                    serde_json::from_str(&p.row).map_err(|e| e.to_string())?;
                let (text, values) = insert_usage(&row, tenant_id);
                let args: Vec<Arg<'_>> = values.iter().map(ExportValue::arg).collect();
                statements.push(db::statement(&database, &text, &args).map_err(|e| e.to_string())?);
                if let Some(session) = session_to_cache(&row) {
                    if !sessions.iter().any(|(s, _)| *s == session.0) {
                        sessions.push(session);
                    }
                }
            }
            // The balance as of this export, for the scheduled alert check (schema/0016).
            let now = now_ms();
            let balance = self.inner.borrow().wallet.figures(now).balance;
            statements.push(
                db::statement(
                    &database,
                    crate::edge::store::alerts::WALLET_BALANCE_SQL,
                    &[tenant_id.into(), balance.into(), now.into()],
                )
                .map_err(|e| e.to_string())?,
            );
            db::batch(&database, statements)
                .await
                .map_err(|e| e.to_string())?;
            // `INSERT OR IGNORE` also ignores a row D1 refuses (a NOT NULL or CHECK): only rows
            // D1 now holds are marked exported; the others stay pending, loudly.
            let placeholders = vec!["?"; rows.len()].join(", ");
            let ids: Vec<Arg<'_>> = rows.iter().map(|p| p.request_id.as_str().into()).collect();
            #[derive(Deserialize)]
            struct Held {
                request_id: String,
            }
            let held: Vec<Held> = db::all(
                &database,
                &format!("SELECT request_id FROM usage WHERE request_id IN ({placeholders})"),
                &ids,
            )
            .await
            .map_err(|e| e.to_string())?;
            let held: std::collections::HashSet<&str> =
                held.iter().map(|h| h.request_id.as_str()).collect();
            let (rows, refused): (Vec<&Pending>, Vec<&Pending>) = rows
                .iter()
                .partition(|p| held.contains(p.request_id.as_str()));
            for p in &refused {
                worker::console_error!(
                    "wallet {tenant_id}: D1 did not take the usage row of {}: {}",
                    p.request_id,
                    p.row
                );
            }
            if rows.is_empty() {
                return Err(format!(
                    "D1 refused {} usage rows (kept pending)",
                    refused.len()
                ));
            }
            // One statement for the batch (EXPORT_BATCH + 1 bound values, under the object's
            // 100): a statement per row cost ~5 % of the worker's CPU at 30 requests/s.
            let now = now_ms();
            let marks = vec!["?"; rows.len()].join(", ");
            let mut args = Vec::with_capacity(rows.len() + 1);
            args.push(int(now));
            args.extend(rows.iter().map(|p| p.request_id.as_str().into()));
            exec(
                &sql,
                &format!("UPDATE outbox SET exported_at = ? WHERE request_id IN ({marks})"),
                args,
            )
            .map_err(js_text)?;
            exported += rows.len() as u64;
            // The sessions' KV copies, refreshed with the totals D1 now has (the D1 path does
            // it in its settlement; best effort, D1 stays the record).
            for (session, ttl) in &sessions {
                match crate::edge::store::sessions::read(&database, tenant_id, session).await {
                    Ok(Some(row)) => {
                        crate::edge::store::sessions::cache_session(&self.env, &row, *ttl).await
                    }
                    Ok(None) => {}
                    Err(e) => worker::console_warn!("wallet {tenant_id}: session {session}: {e}"),
                }
            }
        }
    }

    /// Takes the tenant's money from D1, once, with other events held back.
    async fn take_tenant(&self, tenant_id: &str) -> Result<(), String> {
        let env = self.env.clone();
        let inner = self.inner.clone();
        let storage = self.state.storage();
        let object_id = self.state.id().to_string();
        let tenant_id = tenant_id.to_string();
        let outcome = self
            .state
            .block_concurrency_while(async move {
                if inner.borrow().migrated {
                    return Ok(Ok(()));
                }
                let snapshot = match claim(&env, &tenant_id, &object_id).await {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                };
                let sql = storage.sql();
                let mut taken = inner.borrow().wallet.clone();
                snapshot.apply(&mut taken);
                let written = (|| -> Result<Vec<Op>, String> {
                    let mut ops = vec![account_op(&taken)?];
                    for k in taken.keys.keys() {
                        ops.extend(key_op(&taken, k)?);
                    }
                    for h in taken.holds.values() {
                        ops.push(hold_op(h)?);
                    }
                    ops.push(op(
                        "INSERT OR REPLACE INTO meta (k, v) VALUES ('migrated', '1')",
                        vec![],
                    ));
                    Ok(ops)
                })()
                .and_then(|ops| transact(&storage, &sql, ops));
                if let Err(e) = written {
                    // Rolled back, nothing half-loaded in memory: the next command tries again
                    // and loads the same snapshot from the claim.
                    return Ok(Err(format!("storing the snapshot: {e}")));
                }
                let mut i = inner.borrow_mut();
                i.wallet = taken;
                i.migrated = true;
                Ok(Ok(()))
            })
            .await
            .map_err(|e| e.to_string())?;
        outcome
    }
}

/// Whether a command needs the tenant's money in the wallet.
fn needs_money(command: &Command) -> bool {
    !matches!(
        command,
        Command::GetLimits { .. }
            | Command::SetLimits { .. }
            | Command::SetKeyRevoked { .. }
            | Command::SetDisabled { .. }
            | Command::Inspect
            | Command::SetClock { .. }
            | Command::Ledger { .. }
    )
}

/// The money state D1 held when the wallet took the tenant (`wallet_claims.snapshot`).
#[derive(Debug, Deserialize)]
struct Snapshot {
    balance: u64,
    debt: u64,
    allowance_remaining: u64,
    allowance_period: Option<u64>,
    plan_allowance: Option<u64>,
    disabled: i64,
    reservations: Vec<SnapshotHold>,
    revoked_keys: Vec<String>,
    /// D1's month totals at the claim (`usage_monthly`), for alert rules.
    #[serde(default)]
    month_start: Option<u64>,
    #[serde(default)]
    month_tokens: u64,
    #[serde(default)]
    month_cost: u64,
}

#[derive(Debug, Deserialize)]
struct SnapshotHold {
    id: String,
    key_id: String,
    amount: u64,
    allowance_amount: u64,
    allowance_period: Option<u64>,
    created_at: u64,
}

impl Snapshot {
    /// Puts the D1 money into `w`, keeping the limits and counters it already had.
    fn apply(self, w: &mut Wallet) {
        let counters = w.account.counters;
        w.account = Account {
            balance: self.balance,
            debt: self.debt,
            allowance_remaining: self.allowance_remaining,
            allowance_period: self.allowance_period,
            plan_allowance: self.plan_allowance,
            disabled: self.disabled != 0,
            counters,
            month: crate::core::wallet::figures::MonthTotals {
                start: self.month_start,
                tokens: self.month_tokens,
                cost: self.month_cost,
            },
        };
        for k in self.revoked_keys {
            w.set_key_revoked(&k, true);
        }
        for r in self.reservations {
            let hold = Hold {
                id: r.id.clone(),
                key_id: r.key_id.clone(),
                amount: r.amount,
                allowance_amount: r.allowance_amount,
                allowance_period: r.allowance_period,
                tokens: 0,
                created_at: r.created_at,
                extensions: 0,
                lease: None,
            };
            w.account.counters.held = w.account.counters.held.saturating_add(hold.total());
            let key = w.keys.entry(r.key_id).or_default();
            key.counters.held = key.counters.held.saturating_add(hold.total());
            w.holds.insert(r.id, hold);
        }
    }
}

/// The claim batch (see the module docs and schema/0011_wallets.sql).
const CLAIM_SQL: &str = "INSERT INTO wallet_claims (tenant_id, object_id, claimed_at, snapshot)
  SELECT t.id, ?2, ?3, json_object(
    'balance', t.balance, 'debt', t.debt,
    'allowance_remaining', t.allowance_remaining, 'allowance_period', t.allowance_period,
    'plan_allowance', (SELECT p.allowance FROM plans p WHERE p.id = t.plan_id),
    'disabled', t.disabled_at IS NOT NULL,
    'reservations', json(COALESCE((SELECT json_group_array(json_object(
        'id', r.id, 'key_id', r.key_id, 'amount', r.amount, 'allowance_amount', r.allowance_amount,
        'allowance_period', r.allowance_period, 'created_at', r.created_at))
      FROM reservations r WHERE r.tenant_id = t.id), '[]')),
    'revoked_keys', json(COALESCE((SELECT json_group_array(k.id) FROM api_keys k
      WHERE k.tenant_id = t.id AND k.revoked_at IS NOT NULL), '[]')),
    'ledger_entries', (SELECT COUNT(*) FROM credit_ledger c WHERE c.tenant_id = t.id),
    'ledger_last_id', (SELECT MAX(c.id) FROM credit_ledger c WHERE c.tenant_id = t.id),
    'month_start', CAST(?4 AS INTEGER),
    'month_tokens', COALESCE((SELECT m.prompt_tokens + m.completion_tokens FROM usage_monthly m
      WHERE m.tenant_id = t.id AND m.month = ?5), 0),
    'month_cost', COALESCE((SELECT m.cost FROM usage_monthly m
      WHERE m.tenant_id = t.id AND m.month = ?5), 0))
  FROM tenants t WHERE t.id = ?1
  ON CONFLICT (tenant_id) DO NOTHING";
const CLAIM_DELETE_SQL: &str = "DELETE FROM reservations WHERE tenant_id = ?1";
const CLAIM_READ_SQL: &str = "SELECT object_id, snapshot FROM wallet_claims WHERE tenant_id = ?1";

async fn claim(env: &Env, tenant_id: &str, object_id: &str) -> Result<Snapshot, String> {
    #[derive(Deserialize)]
    struct ClaimRow {
        object_id: String,
        snapshot: String,
    }
    let database = db::database(env).map_err(|e| e.to_string())?;
    let now = now_ms();
    let statements = vec![
        db::statement(
            &database,
            CLAIM_SQL,
            &[
                tenant_id.into(),
                object_id.into(),
                now.into(),
                crate::core::billing::allowance::month_start_ms(now).into(),
                crate::core::alerts::Observation::month_of(now)
                    .as_str()
                    .into(),
            ],
        ),
        db::statement(&database, CLAIM_DELETE_SQL, &[tenant_id.into()]),
        db::statement(&database, CLAIM_READ_SQL, &[tenant_id.into()]),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| e.to_string())?;
    let results = db::batch(&database, statements)
        .await
        .map_err(|e| e.to_string())?;
    let row = results
        .get(2)
        .map(|r| r.results::<ClaimRow>())
        .transpose()
        .map_err(|e| e.to_string())?
        .and_then(|rows| rows.into_iter().next())
        .ok_or_else(|| format!("tenant {tenant_id} not found"))?;
    if row.object_id != object_id {
        return Err(format!(
            "tenant {tenant_id} was taken by another wallet object ({})",
            row.object_id
        ));
    }
    serde_json::from_str(&row.snapshot).map_err(|e| format!("claim snapshot: {e}"))
}

/// A value bound at export.
enum ExportValue {
    Str(String),
    Int(i64),
    Null,
}

impl ExportValue {
    fn arg(&self) -> Arg<'_> {
        match self {
            ExportValue::Str(s) => Arg::Str(s),
            ExportValue::Int(i) => Arg::Int(*i),
            ExportValue::Null => Arg::Null,
        }
    }
}

/// `INSERT OR IGNORE INTO usage (...)` for a stored row: only [`USAGE_COLUMNS`], values as
/// stored (text, integers; anything else becomes JSON text), `tenant_id` forced to the wallet's.
fn insert_usage(row: &Map<String, Value>, tenant_id: &str) -> (String, Vec<ExportValue>) {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for &column in USAGE_COLUMNS {
        let value = if column == "tenant_id" {
            Some(ExportValue::Str(tenant_id.to_string()))
        } else {
            row.get(column).map(|v| match v {
                Value::Null => ExportValue::Null,
                Value::Bool(b) => ExportValue::Int(i64::from(*b)),
                Value::Number(n) => n
                    .as_i64()
                    .map_or_else(|| ExportValue::Str(n.to_string()), ExportValue::Int),
                Value::String(s) => ExportValue::Str(s.clone()),
                other => ExportValue::Str(other.to_string()),
            })
        };
        if let Some(v) = value {
            columns.push(column);
            values.push(v);
        }
    }
    let marks = vec!["?"; columns.len()].join(", ");
    (
        format!(
            "INSERT OR IGNORE INTO usage ({}) VALUES ({marks})",
            columns.join(", ")
        ),
        values,
    )
}

/// The session whose KV copy an exported row refreshes, with the copy's lifetime.
fn session_to_cache(row: &Map<String, Value>) -> Option<(String, u64)> {
    let ttl = row
        .get(super::SESSION_TTL_FIELD)
        .and_then(Value::as_u64)
        .filter(|t| *t > 0)?;
    let session = row.get("session_id").and_then(Value::as_str)?;
    Some((session.to_string(), ttl))
}

/// The charge columns of a usage row, as the wallet took them.
fn fill_row(
    row: &mut Map<String, Value>,
    tenant_id: &str,
    request_id: &str,
    key_id: &str,
    charge: &Charge,
    now: u64,
) {
    row.insert("request_id".into(), json!(request_id));
    row.insert("tenant_id".into(), json!(tenant_id));
    row.insert("key_id".into(), json!(key_id));
    row.insert("cost".into(), json!(charge.cost));
    row.insert("reserved".into(), json!(charge.reserved));
    row.insert("allowance_cost".into(), json!(charge.allowance_cost));
    row.insert(
        "beyond_reservation".into(),
        json!(charge.beyond_reservation),
    );
    row.insert("debt".into(), json!(charge.debt));
    row.insert("uncharged".into(), json!(0));
    row.insert("from_wallet".into(), json!(1));
    row.entry("created_at").or_insert_with(|| json!(now));
}

// ---- the object's tables ------------------------------------------------------------------------

fn migrate_schema(sql: &SqlStorage) -> Result<(), String> {
    let run = |q: &str| sql.exec(q, None).map(|_| ()).map_err(|e| e.to_string());
    run("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")?;
    let version: u32 = sql
        .exec("SELECT v FROM meta WHERE k = 'schema_version'", None)
        .and_then(|c| c.to_array::<MetaRow>())
        .map_err(|e| e.to_string())?
        .first()
        .and_then(|r| r.v.parse().ok())
        .unwrap_or(0);
    if version < 1 {
        run("CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)")?;
        run("CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, state TEXT NOT NULL)")?;
        run("CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at INTEGER NOT NULL)")?;
        run("CREATE TABLE IF NOT EXISTS ledger (idem_key TEXT PRIMARY KEY, entry TEXT NOT NULL, reason TEXT, created_at INTEGER NOT NULL)")?;
        run("CREATE TABLE IF NOT EXISTS outbox (request_id TEXT PRIMARY KEY, charge TEXT NOT NULL, row TEXT NOT NULL, created_at INTEGER NOT NULL, exported_at INTEGER)")?;
        run("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (exported_at, created_at)")?;
    }
    if version < 2 {
        money::migrate_schema_v2(sql)?;
    }
    if version != SCHEMA_VERSION {
        sql.exec(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('schema_version', ?)",
            vec![SqlStorageValue::from(SCHEMA_VERSION.to_string())],
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct MetaRow {
    v: String,
}

#[derive(Deserialize)]
struct StateRow {
    id: String,
    state: String,
}

fn load(sql: &SqlStorage) -> Result<Inner, String> {
    let meta = |k: &str| -> Result<Option<String>, String> {
        Ok(sql
            .exec("SELECT v FROM meta WHERE k = ?", vec![k.into()])
            .and_then(|c| c.to_array::<MetaRow>())
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .map(|r| r.v))
    };
    let rows = |q: &str| -> Result<Vec<StateRow>, String> {
        sql.exec(q, None)
            .and_then(|c| c.to_array::<StateRow>())
            .map_err(|e| e.to_string())
    };
    let mut wallet = Wallet::default();
    if let Some(r) = rows("SELECT CAST(id AS TEXT) AS id, state FROM account")?
        .into_iter()
        .next()
    {
        wallet.account = serde_json::from_str(&r.state).map_err(|e| format!("account: {e}"))?;
    }
    for r in rows("SELECT id, state FROM keys")? {
        let k: KeyAccount = serde_json::from_str(&r.state).map_err(|e| format!("key: {e}"))?;
        wallet.keys.insert(r.id, k);
    }
    for r in rows("SELECT id, state FROM holds")? {
        let h: Hold = serde_json::from_str(&r.state).map_err(|e| format!("hold: {e}"))?;
        wallet.holds.insert(r.id, h);
    }
    Ok(Inner {
        wallet,
        tenant_id: meta("tenant_id")?,
        migrated: meta("migrated")?.is_some(),
        broken: None,
    })
}

/// An alarm set to ring at `set` (UTC ms) serves a wish for one no later than `at`.
fn alarm_covers(set: Option<u64>, at: u64) -> bool {
    set.is_some_and(|c| c <= at)
}

fn exec(sql: &SqlStorage, q: &str, args: Vec<SqlStorageValue>) -> Result<(), JsValue> {
    sql.exec(q, args).map(|_| ()).map_err(JsValue::from)
}

fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::from(i64::try_from(v).unwrap_or(i64::MAX))
}

/// One statement of a write.
type Op = (&'static str, Vec<SqlStorageValue>);

fn op(q: &'static str, args: Vec<SqlStorageValue>) -> Op {
    (q, args)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}

fn account_op(w: &Wallet) -> Result<Op, String> {
    Ok(op(
        "INSERT OR REPLACE INTO account (id, state) VALUES (1, ?)",
        vec![json_text(&w.account)?.into()],
    ))
}

fn key_op(w: &Wallet, key_id: &str) -> Result<Option<Op>, String> {
    w.keys
        .get(key_id)
        .map(|k| {
            Ok(op(
                "INSERT OR REPLACE INTO keys (id, state) VALUES (?, ?)",
                vec![key_id.into(), json_text(k)?.into()],
            ))
        })
        .transpose()
}

fn hold_op(h: &Hold) -> Result<Op, String> {
    Ok(op(
        "INSERT OR REPLACE INTO holds (id, state, created_at) VALUES (?, ?, ?)",
        vec![
            h.id.as_str().into(),
            json_text(h)?.into(),
            int(h.created_at),
        ],
    ))
}

fn delete_hold_op(id: &str) -> Op {
    op("DELETE FROM holds WHERE id = ?", vec![id.into()])
}

fn lease_hold_id(lease_id: &str) -> String {
    crate::core::wallet::lease::hold_id(lease_id)
}

/// The writes of cancelled leases: the money back (account), their keys, the holds gone.
fn cancel_ops(w: &Wallet, cancelled: &[Hold]) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    if cancelled.is_empty() {
        return Ok(ops);
    }
    ops.push(account_op(w)?);
    for h in cancelled {
        ops.extend(key_op(w, &h.key_id)?);
        ops.push(delete_hold_op(&h.id));
    }
    Ok(ops)
}

/// Runs `ops` inside `transactionSync`: all of them or (on the first failure) none.
fn transact(storage: &worker::Storage, sql: &SqlStorage, ops: Vec<Op>) -> Result<(), String> {
    let sql = sql.clone();
    let mut ops = Some(ops);
    let body = Closure::wrap(Box::new(move || -> Result<JsValue, JsValue> {
        for (q, args) in ops.take().unwrap_or_default() {
            exec(&sql, q, args)?;
        }
        Ok(JsValue::UNDEFINED)
    }) as Box<dyn FnMut() -> Result<JsValue, JsValue>>);
    let result = storage
        .as_raw()
        .unchecked_ref::<SyncStorage>()
        .transaction_sync(body.as_ref().unchecked_ref());
    drop(body);
    result.map(|_| ()).map_err(js_text)
}

/// The JSON document in the one column `v` of the first row `query` (one `?`, bound to `key`)
/// finds, decoded: how every idempotency record of the wallet (a settlement's charge, a ledger
/// entry, a call's charge, an applied operation's answer) is read back.
pub(super) fn stored_json<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    key: &str,
) -> Result<Option<T>, String> {
    #[derive(Deserialize)]
    struct Row {
        v: String,
    }
    let rows: Vec<Row> = sql
        .exec(query, vec![key.into()])
        .and_then(|c| c.to_array())
        .map_err(|e| e.to_string())?;
    rows.into_iter()
        .next()
        .map(|r| serde_json::from_str(&r.v).map_err(|e| e.to_string()))
        .transpose()
}

fn stored_charge(sql: &SqlStorage, request_id: &str) -> Result<Option<Charge>, String> {
    stored_json(
        sql,
        "SELECT charge AS v FROM outbox WHERE request_id = ?",
        request_id,
    )
}

fn stored_entry(sql: &SqlStorage, key: &str) -> Result<Option<LedgerEntry>, String> {
    stored_json(sql, "SELECT entry AS v FROM ledger WHERE idem_key = ?", key)
}

fn count(sql: &SqlStorage, q: &str) -> Result<u64, String> {
    #[derive(Deserialize)]
    struct Row {
        n: f64,
    }
    let rows: Vec<Row> = sql
        .exec(q, None)
        .and_then(|c| c.to_array())
        .map_err(|e| e.to_string())?;
    Ok(rows.first().map_or(0, |r| r.n as u64))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

fn js_text(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            js_sys::Reflect::get(&e, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_alarm_serves_later_wishes_only() {
        // Nothing known (a new object, or the alarm ran): ask the runtime.
        assert!(!alarm_covers(None, 5_000));
        // An alarm at 4 000 serves a wish for 5 000 or 4 000, not one for 3 999.
        assert!(alarm_covers(Some(4_000), 5_000));
        assert!(alarm_covers(Some(4_000), 4_000));
        assert!(!alarm_covers(Some(4_000), 3_999));
    }

    #[test]
    fn export_binds_only_usage_columns_and_the_wallets_charge() {
        let mut row: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","stream":true,"prompt_tokens":3,"ttfb_ms":null,
                "tenant_id":"someone-else","cost":999,"evil); DROP TABLE usage; --":1,
                "routes_tried":["a","b"]}"#,
        )
        .unwrap();
        let charge = Charge {
            cost: 10,
            reserved: 12,
            allowance_cost: 4,
            beyond_reservation: 0,
            debt: 0,
        };
        fill_row(&mut row, "ten_1", "req_1", "key_1", &charge, 77);
        let (sql, values) = insert_usage(&row, "ten_1");
        assert!(
            sql.starts_with("INSERT OR IGNORE INTO usage (request_id, tenant_id, key_id, model, ")
        );
        assert!(!sql.contains("DROP"));
        let cols: Vec<&str> = sql.split(['(', ')']).nth(1).unwrap().split(", ").collect();
        assert_eq!(cols.len(), values.len());
        let get = |c: &str| &values[cols.iter().position(|x| *x == c).unwrap()];
        assert!(matches!(get("tenant_id"), ExportValue::Str(s) if s == "ten_1"));
        assert!(matches!(get("cost"), ExportValue::Int(10)));
        assert!(matches!(get("reserved"), ExportValue::Int(12)));
        assert!(matches!(get("allowance_cost"), ExportValue::Int(4)));
        assert!(matches!(get("from_wallet"), ExportValue::Int(1)));
        assert!(matches!(get("stream"), ExportValue::Int(1)));
        assert!(matches!(get("ttfb_ms"), ExportValue::Null));
        assert!(matches!(get("created_at"), ExportValue::Int(77)));
        assert!(matches!(get("routes_tried"), ExportValue::Str(s) if s == r#"["a","b"]"#));
        assert!(!cols.contains(&"upstream_prompt_tokens"));
    }

    #[test]
    fn a_snapshot_keeps_limits_and_holds_its_reservations() {
        let mut w = Wallet::default();
        w.account.counters.limits.rpm = Some(3);
        let snapshot: Snapshot = serde_json::from_str(
            r#"{"balance":500,"debt":0,"allowance_remaining":20,"allowance_period":1793491200000,
                "plan_allowance":100,"disabled":0,"revoked_keys":["k2"],"ledger_entries":2,
                "ledger_last_id":"cred_x","reservations":[{"id":"r1","key_id":"k1","amount":30,
                "allowance_amount":80,"allowance_period":1793491200000,"created_at":5}]}"#,
        )
        .unwrap();
        snapshot.apply(&mut w);
        assert_eq!(w.account.balance, 500);
        assert_eq!(w.account.plan_allowance, Some(100));
        assert_eq!(w.account.counters.limits.rpm, Some(3));
        assert_eq!(w.account.counters.held, 110);
        assert_eq!(w.keys["k1"].counters.held, 110);
        assert!(w.keys["k2"].revoked);
        // The reservation settles in the wallet as it would have in D1.
        let c = w.settle("r1", "k1", 90, 0, 1_793_491_200_000 + 10);
        assert_eq!((c.allowance_cost, c.beyond_reservation), (80, 0));
        assert_eq!(w.account.balance, 520);
    }
}
