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
//! record), `wallet_credit` (with `WALLETS`: the wallet credit of a claimed redemption code or a
//! recorded Stripe payment, as if the worker died in between). Never set these in production;
//! without `TOLLGATE_TEST_DEPLOYMENT` they do nothing.

use crate::edge::store;
use worker::{D1Database, Env};

use crate::core::error::GatewayError;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::store::ledger::UsageRow;
use crate::edge::store::pending::{self, PENDING_CALL_PREFIX, PENDING_SETTLE_PREFIX};
use crate::edge::store::plugins::CallRow;
use crate::edge::store::reports::roll_up_closed_days;

/// Margin between the sweep cutoff and the last day rolled up, for clock skew between isolates.
const ROLLUP_MARGIN_MS: u64 = 5 * 60_000;
/// Days rolled up per run (a first run over a long history catches up over several runs).
const ROLLUP_DAYS_PER_RUN: u64 = 31;
/// Sessions expired per run (each also costs a KV delete).
const SESSIONS_PER_RUN: u32 = 100;
/// Pending settlements replayed per run (each costs a KV read, a D1 batch and a KV delete).
const REPLAYS_PER_RUN: u64 = 200;
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
    match crate::edge::store::ledger::sweep_stale_reservations(&db, cutoff, now).await {
        Ok(swept) => report.push(format!("swept {swept} stale reservations")),
        Err(e) => worker::console_error!("cron: reservation sweep failed: {e}"),
    }
    match crate::edge::store::idempotency::release_stale_idempotency_keys(&db, cutoff).await {
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
    match crate::edge::gateway::alerts::check_all(env, &db, now).await {
        Ok(n) => report.push(format!("{n} alerts fired")),
        Err(e) => worker::console_error!("cron: alert check failed: {e}"),
    }
    match crate::edge::gateway::alerts::retry_due(env, &db, now).await {
        Ok(n) => report.push(format!("{n} webhook retries")),
        Err(e) => worker::console_error!("cron: webhook retries failed: {e}"),
    }

    match store::ledger::reset_plan_periods(&db, now).await {
        Ok(n) => report.push(format!("reset {n} plan periods")),
        Err(e) => worker::console_error!("cron: plan-period reset failed: {e}"),
    }
    match crate::edge::store::idempotency::purge_idempotency_keys(&db, now).await {
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
    crate::edge::api::http::json(
        200,
        &serde_json::json!({"object": "cron_run", "time": now, "done": done}),
    )
}

/// Writes the settlements and plugin-call records kept in KV (at most [`REPLAYS_PER_RUN`]) and
/// removes each once D1 has it. Idempotent: both writes are `INSERT OR IGNORE` by id, so a row
/// written twice (a D1 success that looked like a failure) is charged once. Returns how many.
pub async fn replay_pending(env: &Env, db: &D1Database) -> Result<usize, GatewayError> {
    let mut replayed = 0;
    for prefix in [PENDING_SETTLE_PREFIX, PENDING_CALL_PREFIX] {
        for (name, text) in pending::list(env, prefix, REPLAYS_PER_RUN).await? {
            let written = if prefix == PENDING_SETTLE_PREFIX {
                match serde_json::from_str::<UsageRow>(&text) {
                    // With wallets the settlement belongs to the tenant's wallet (idempotent by
                    // request id there too); D1 would refuse it for a tenant the wallet took.
                    Ok(row) if crate::edge::platform::env::settings(env).wallets => {
                        crate::edge::gateway::wallet::settle(env, &row)
                            .await
                            .map_err(GatewayError::internal)
                    }
                    Ok(row) => store::ledger::settle(db, &row, false, now_ms())
                        .await
                        .map(|_| ()),
                    Err(e) => Err(GatewayError::internal(format!("unreadable: {e}"))),
                }
            } else {
                match serde_json::from_str::<CallRow>(&text) {
                    Ok(call) => crate::edge::plugins::replay_call(env, db, &call).await,
                    Err(e) => Err(GatewayError::internal(format!("unreadable: {e}"))),
                }
            };
            match written {
                Ok(()) => {
                    pending::forget(env, &name).await;
                    replayed += 1;
                }
                // Kept for the next run (and in the logs).
                Err(e) => worker::console_error!("cron: replay of {name} failed: {e}"),
            }
        }
    }
    Ok(replayed)
}

/// Deletes sessions idle since before `cutoff` from D1 and KV (at most [`SESSIONS_PER_RUN`]).
async fn expire_sessions(env: &Env, db: &D1Database, cutoff: u64) -> Result<usize, GatewayError> {
    crate::edge::store::sessions::expire(env, db, cutoff, SESSIONS_PER_RUN).await
}
