//! The scheduled handler (`[triggers] crons` in wrangler.toml, every five minutes). Each run does
//! every task below, in this order; each is idempotent and cheap when there is nothing to do, and
//! a failing task is logged without stopping the others:
//!
//! 1. Replay pending settlements: a usage row (or plugin call) that D1 refused on every attempt was
//!    kept in KV (`pending-settle:<request id>`, `pending-call:<call id>`); it is written now, with
//!    the same idempotent batch (`INSERT OR IGNORE` by id), and its KV entry removed. Before the
//!    sweep, so that a replayed row still finds and consumes its reservation.
//! 2. Sweep stale reservations: a reservation older than `STALE_RESERVATION_SECONDS` (default
//!    900) is presumed dead. In one D1 batch its credit is returned, it is recorded in
//!    `reservation_expiries` (never in `usage`), and the `Idempotency-Key` its request held is
//!    released. If the request is in fact alive and settles later, its settlement charges what it
//!    delivered from the allowance and balance (the rest as debt) and writes the real usage row
//!    (schema/0007_settlement.sql). Idempotency keys left `pending` longer than the same age
//!    without a reservation (their request died before reserving, or its settlement failed) are
//!    released too, or marked done when their request has a usage row: a lease.
//! 3. Daily rollups of closed days (see `edge::reports`). A usage row written later for a day
//!    already rolled up (a late settlement) adds itself to that day's rollup (its trigger).
//! 4. Expire sessions idle for longer than `SESSION_TTL_SECONDS`: their D1 rows and KV copies.
//!    Usage rows keep their `session_id`, so `/v1/sessions/{id}/requests` still lists them.
//! 5. Alerts: check every rule (month roll-overs, top-ups), then retry due webhook deliveries.
//! 6. Plan-period resets (billing plans): see the marked call site below.
//!
//! "Now" is the event's scheduled time, so `wrangler dev --test-scheduled` can run the handler as
//! of another time (`/__scheduled?cron=*/5+*+*+*+*&time=<ms>`).
//!
//! Test-only fault injection: with the var `TOLLGATE_TEST_DEPLOYMENT = "true"`, the var
//! `TOLLGATE_FAULTS` (comma-separated) makes chosen D1 writes fail as if D1 were down:
//! `settle_d1` (every attempt of a request's settlement), `record_call_d1` (a plugin call's
//! record). Never set these in production; without `TOLLGATE_TEST_DEPLOYMENT` they do nothing.

use serde::Deserialize;
use worker::{D1Database, Env};

use super::db::{self, UsageRow};
use super::plugins::store::{self as plugin_store, CallRow};
use super::reports::roll_up_closed_days;
use super::tenant::session_cache_name;
use crate::core::error::GatewayError;
use crate::edge::platform::clock::now_ms;

/// Margin between the sweep cutoff and the last day rolled up, for clock skew between isolates.
const ROLLUP_MARGIN_MS: u64 = 5 * 60_000;
/// Days rolled up per run (a first run over a long history catches up over several runs).
const ROLLUP_DAYS_PER_RUN: u64 = 31;
/// Sessions expired per run (each also costs a KV delete).
const SESSIONS_PER_RUN: u32 = 100;
/// Pending settlements replayed per run (each costs a KV read, a D1 batch and a KV delete).
const REPLAYS_PER_RUN: u64 = 200;
/// How long expired reservations are kept in `reservation_expiries`.
const EXPIRY_RECORDS_MS: u64 = 30 * 86_400_000;
/// KV prefixes of settlements kept for replay.
pub const PENDING_SETTLE_PREFIX: &str = "pending-settle:";
pub const PENDING_CALL_PREFIX: &str = "pending-call:";

/// Keeps a settlement that D1 refused, for [`replay_pending`]: logs the whole row (so the bill can
/// be rebuilt from the logs even if KV fails too) and stores it in KV.
pub async fn keep_pending_settlement(env: &Env, row: &UsageRow) {
    let json = serde_json::to_string(row).unwrap_or_default();
    worker::console_error!("settlement of {} kept for replay: {json}", row.request_id);
    keep(
        env,
        &format!("{PENDING_SETTLE_PREFIX}{}", row.request_id),
        &json,
    )
    .await;
}

/// [`keep_pending_settlement`] for a plugin call's record.
pub async fn keep_pending_call(env: &Env, call: &CallRow) {
    let json = serde_json::to_string(call).unwrap_or_default();
    worker::console_error!("plugin call {} kept for replay: {json}", call.id);
    keep(env, &format!("{PENDING_CALL_PREFIX}{}", call.id), &json).await;
}

async fn keep(env: &Env, name: &str, json: &str) {
    let stored = match crate::edge::platform::kv::namespace(env) {
        Ok(kv) => match kv.put(name, json) {
            Ok(put) => put.execute().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        worker::console_error!("cannot keep {name} in KV ({e}); the log line above has it");
    }
}

/// Runs every scheduled task as of `now` (UTC ms); returns a line per task done.
pub async fn run(env: &Env, now: u64) -> Vec<String> {
    let db = match db::database(env) {
        Ok(db) => db,
        Err(e) => {
            worker::console_error!("cron: {e}");
            return vec![format!("failed: {e}")];
        }
    };
    let settings = crate::edge::platform::env::settings(env);
    let stale_ms = settings.stale_reservation_seconds.max(60) * 1000;
    let session_ttl_ms = settings.session_ttl_seconds * 1000;
    let cutoff = now.saturating_sub(stale_ms);

    let mut report = Vec::new();
    match replay_pending(env, &db).await {
        Ok(n) => report.push(format!("replayed {n} pending settlements")),
        Err(e) => worker::console_error!("cron: replay of pending settlements failed: {e}"),
    }
    match sweep_stale_reservations(&db, cutoff, now).await {
        Ok(swept) => report.push(format!("swept {swept} stale reservations")),
        Err(e) => worker::console_error!("cron: reservation sweep failed: {e}"),
    }
    match release_stale_idempotency_keys(&db, cutoff).await {
        Ok(n) => report.push(format!("released {n} stale idempotency keys")),
        Err(e) => worker::console_error!("cron: idempotency-key lease failed: {e}"),
    }
    match roll_up_closed_days(
        &db,
        cutoff.saturating_sub(ROLLUP_MARGIN_MS),
        ROLLUP_DAYS_PER_RUN,
    )
    .await
    {
        Ok(days) => report.push(format!("rolled up {days} days")),
        Err(e) => worker::console_error!("cron: rollup failed: {e}"),
    }
    match expire_sessions(env, &db, now.saturating_sub(session_ttl_ms)).await {
        Ok(n) => report.push(format!("expired {n} sessions")),
        Err(e) => worker::console_error!("cron: session expiry failed: {e}"),
    }
    match super::alerts::check_all(env, &db, now).await {
        Ok(n) => report.push(format!("{n} alerts fired")),
        Err(e) => worker::console_error!("cron: alert check failed: {e}"),
    }
    match super::alerts::retry_due(env, &db, now).await {
        Ok(n) => report.push(format!("{n} webhook retries")),
        Err(e) => worker::console_error!("cron: webhook retries failed: {e}"),
    }

    match db::reset_plan_periods(&db, now).await {
        Ok(n) => report.push(format!("reset {n} plan periods")),
        Err(e) => worker::console_error!("cron: plan-period reset failed: {e}"),
    }
    match super::idempotency::purge_idempotency_keys(&db, now).await {
        Ok(n) => report.push(format!("purged {n} idempotency keys")),
        Err(e) => worker::console_error!("cron: idempotency-key purge failed: {e}"),
    }

    worker::console_log!("cron at {now}: {}", report.join(", "));
    report
}

/// `POST /admin/cron` `{"time"?: ms}`: runs the scheduled tasks now, or as of `time`, and
/// returns what they did. For operators (e.g. to catch up rollups after a deploy) and tests
/// (`wrangler dev --test-scheduled` always uses the real time). A `time` in the future treats
/// requests in flight as dead and days not yet over as closed: use it on test data only.
pub async fn run_now(env: &Env, time: Option<u64>) -> Result<worker::Response, GatewayError> {
    let now = time.unwrap_or_else(now_ms);
    let done = run(env, now).await;
    super::http::json(
        200,
        &serde_json::json!({"object": "cron_run", "time": now, "done": done}),
    )
}

/// Writes the settlements and plugin-call records kept in KV (at most [`REPLAYS_PER_RUN`]) and
/// removes each once D1 has it. Idempotent: both writes are `INSERT OR IGNORE` by id, so a row
/// written twice (a D1 success that looked like a failure) is charged once. Returns how many.
pub async fn replay_pending(env: &Env, db: &D1Database) -> Result<usize, GatewayError> {
    let kv = env
        .kv("KV")
        .map_err(|e| GatewayError::internal(format!("KV binding KV is missing: {e}")))?;
    let mut replayed = 0;
    for prefix in [PENDING_SETTLE_PREFIX, PENDING_CALL_PREFIX] {
        let listed = kv
            .list()
            .prefix(prefix.to_string())
            .limit(REPLAYS_PER_RUN)
            .execute()
            .await
            .map_err(|e| GatewayError::internal(format!("KV list {prefix}: {e}")))?;
        for key in listed.keys {
            let text = match kv.get(&key.name).text().await {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    worker::console_error!("cron: KV get {}: {e}", key.name);
                    continue;
                }
            };
            let written = if prefix == PENDING_SETTLE_PREFIX {
                match serde_json::from_str::<UsageRow>(&text) {
                    Ok(row) => db::settle(db, &row, false, now_ms()).await.map(|_| ()),
                    Err(e) => Err(GatewayError::internal(format!("unreadable: {e}"))),
                }
            } else {
                match serde_json::from_str::<CallRow>(&text) {
                    Ok(call) => plugin_store::record_call(db, &call.as_record()).await,
                    Err(e) => Err(GatewayError::internal(format!("unreadable: {e}"))),
                }
            };
            match written {
                Ok(()) => {
                    if let Err(e) = kv.delete(&key.name).await {
                        worker::console_error!("cron: KV delete {}: {e}", key.name);
                    }
                    replayed += 1;
                }
                // Kept for the next run (and in the logs).
                Err(e) => worker::console_error!("cron: replay of {} failed: {e}", key.name),
            }
        }
    }
    Ok(replayed)
}

/// Returns the credit of reservations created before `cutoff`, records them in
/// `reservation_expiries` and releases the idempotency keys their requests held, in one batch.
/// Writes no usage row: a request that is still alive settles later as usual. Returns how many it
/// swept.
pub async fn sweep_stale_reservations(
    db: &D1Database,
    cutoff: u64,
    now: u64,
) -> Result<usize, GatewayError> {
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                "INSERT OR IGNORE INTO reservation_expiries (id, tenant_id, key_id, amount,
                   allowance_amount, allowance_period, created_at, expired_at)
                 SELECT id, tenant_id, key_id, amount, allowance_amount, allowance_period,
                   created_at, ?2
                 FROM reservations WHERE created_at < ?1",
                &[cutoff.into(), now.into()],
            )?,
            db::statement(
                db,
                "DELETE FROM idempotency_keys WHERE state = 'pending' AND request_id IN
                   (SELECT id FROM reservations WHERE created_at < ?1)",
                &[cutoff.into()],
            )?,
            db::statement(
                db,
                "DELETE FROM reservations WHERE created_at < ?1 RETURNING id",
                &[cutoff.into()],
            )?,
            db::statement(
                db,
                "DELETE FROM reservation_expiries WHERE expired_at < ?1",
                &[now.saturating_sub(EXPIRY_RECORDS_MS).into()],
            )?,
        ],
    )
    .await?;
    #[derive(Deserialize)]
    struct Swept {
        #[allow(dead_code)]
        id: String,
    }
    Ok(results
        .get(2)
        .and_then(|r| r.results::<Swept>().ok())
        .map_or(0, |rows| rows.len()))
}

/// The lease of `Idempotency-Key`s: a key still `pending` since before `cutoff` whose request
/// holds no reservation is either done (its request has a usage row: marked done, so a retry is
/// refused as used, unless that request was charged nothing and failed: then released) or dead
/// (no usage row: released, so a retry runs). Returns how many keys it changed.
pub async fn release_stale_idempotency_keys(
    db: &D1Database,
    cutoff: u64,
) -> Result<usize, GatewayError> {
    let stale = "i.state = 'pending' AND i.created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = i.request_id)";
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                &format!(
                    "UPDATE idempotency_keys AS i SET state = 'done',
                       http_status = (SELECT u.http_status FROM usage u WHERE u.request_id = i.request_id)
                     WHERE {stale} AND EXISTS (SELECT 1 FROM usage u WHERE u.request_id = i.request_id
                       AND NOT (u.cost = 0 AND u.status = 'upstream_error'))
                     RETURNING key"
                ),
                &[cutoff.into()],
            )?,
            db::statement(
                db,
                &format!("DELETE FROM idempotency_keys AS i WHERE {stale} RETURNING key"),
                &[cutoff.into()],
            )?,
        ],
    )
    .await?;
    Ok(results
        .iter()
        .map(|r| {
            r.results::<serde_json::Value>()
                .map_or(0, |rows| rows.len())
        })
        .sum())
}

/// Deletes sessions idle since before `cutoff` from D1 and KV (at most [`SESSIONS_PER_RUN`]).
async fn expire_sessions(env: &Env, db: &D1Database, cutoff: u64) -> Result<usize, GatewayError> {
    #[derive(Deserialize)]
    struct Expired {
        tenant_id: String,
        id: String,
    }
    let expired: Vec<Expired> = db::all(
        db,
        &format!(
            "DELETE FROM sessions WHERE last_seen < ?1 AND (tenant_id, id) IN
               (SELECT tenant_id, id FROM sessions WHERE last_seen < ?1 LIMIT {SESSIONS_PER_RUN})
             RETURNING tenant_id, id"
        ),
        &[cutoff.into()],
    )
    .await?;
    if let Ok(kv) = crate::edge::platform::kv::namespace(env) {
        for s in &expired {
            if let Err(e) = kv.delete(&session_cache_name(&s.tenant_id, &s.id)).await {
                worker::console_warn!("cron: KV delete of session {} failed: {e}", s.id);
            }
        }
    }
    Ok(expired.len())
}
