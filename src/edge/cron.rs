//! The scheduled handler (`[triggers] crons` in wrangler.toml, every five minutes). Each run does
//! every task below, in this order; each is idempotent and cheap when there is nothing to do, and
//! a failing task is logged without stopping the others:
//!
//! 1. Sweep stale reservations: a reservation older than `STALE_RESERVATION_SECONDS` (default
//!    900) belongs to a request that died without settling (the isolate was evicted). In one D1
//!    batch its credit is returned and a usage row is written for it: status `upstream_error`,
//!    `error_code` `reservation_expired`, zero tokens, cost 0, `reserved` = the amount held, empty
//!    `model`/`provider`/`upstream_model` (a reservation does not record them). If the request
//!    does settle later, its `INSERT OR IGNORE` finds that row and changes nothing.
//! 2. Daily rollups of closed days (see `edge::reports`). After step 1 no usage row can appear
//!    with a `created_at` older than the sweep cutoff, so days that ended before it (less a
//!    five-minute margin for clock skew) are final and safe to roll up. Skipped when step 1 fails.
//! 3. Expire sessions idle for longer than `SESSION_TTL_SECONDS`: their D1 rows and KV copies.
//!    Usage rows keep their `session_id`, so `/v1/sessions/{id}/requests` still lists them.
//! 4. Alerts: check every rule (month roll-overs, top-ups), then retry due webhook deliveries.
//! 5. Plan-period resets (billing plans): see the marked call site below.
//!
//! "Now" is the event's scheduled time, so `wrangler dev --test-scheduled` can run the handler as
//! of another time (`/__scheduled?cron=*/5+*+*+*+*&time=<ms>`).

use serde::Deserialize;
use worker::{D1Database, Env};

use super::db;
use super::reports::roll_up_closed_days;
use super::tenant::session_cache_name;
use crate::core::error::GatewayError;

/// Default age after which a reservation is considered dead, in seconds.
const DEFAULT_STALE_RESERVATION_SECONDS: u64 = 900;
/// Margin between the sweep cutoff and the last day rolled up, for clock skew between isolates.
const ROLLUP_MARGIN_MS: u64 = 5 * 60_000;
/// Days rolled up per run (a first run over a long history catches up over several runs).
const ROLLUP_DAYS_PER_RUN: u64 = 31;
/// Sessions expired per run (each also costs a KV delete).
const SESSIONS_PER_RUN: u32 = 100;

fn var_u64(env: &Env, name: &str, default: u64) -> u64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
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
    let stale_ms = var_u64(
        env,
        "STALE_RESERVATION_SECONDS",
        DEFAULT_STALE_RESERVATION_SECONDS,
    )
    .max(60)
        * 1000;
    let session_ttl_ms = var_u64(env, "SESSION_TTL_SECONDS", 86_400).max(60) * 1000;
    let cutoff = now.saturating_sub(stale_ms);

    let mut report = Vec::new();
    match sweep_stale_reservations(&db, cutoff, now).await {
        Ok(swept) => {
            report.push(format!("swept {swept} stale reservations"));
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
        }
        Err(e) => worker::console_error!("cron: reservation sweep failed (rollups skipped): {e}"),
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
    let now = time.unwrap_or_else(super::now_ms);
    let done = run(env, now).await;
    super::http::json(
        200,
        &serde_json::json!({"object": "cron_run", "time": now, "done": done}),
    )
}

/// Returns the credit of reservations created before `cutoff` and writes their usage rows, in
/// one batch. Returns how many it swept.
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
                "INSERT OR IGNORE INTO usage (request_id, tenant_id, key_id, session_id, model,
                   provider, upstream_model, stream, prompt_tokens, completion_tokens,
                   upstream_prompt_tokens, upstream_completion_tokens, local_prompt_tokens,
                   local_completion_tokens, usage_source, input_price, output_price, reserved, cost,
                   uncharged, status, http_status, error_code, latency_ms, ttfb_ms, created_at)
                 SELECT id, tenant_id, key_id, NULL, '', '', '', 0, 0, 0, NULL, NULL, 0, 0,
                   'local', 0, 0, amount, 0, 0, 'upstream_error', 504, 'reservation_expired',
                   MAX(?2 - created_at, 0), NULL, created_at
                 FROM reservations WHERE created_at < ?1",
                &[cutoff.into(), now.into()],
            )?,
            db::statement(
                db,
                "DELETE FROM reservations WHERE created_at < ?1 RETURNING id",
                &[cutoff.into()],
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
        .get(1)
        .and_then(|r| r.results::<Swept>().ok())
        .map_or(0, |rows| rows.len()))
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
    if let Ok(kv) = env.kv("KV") {
        for s in &expired {
            if let Err(e) = kv.delete(&session_cache_name(&s.tenant_id, &s.id)).await {
                worker::console_warn!("cron: KV delete of session {} failed: {e}", s.id);
            }
        }
    }
    Ok(expired.len())
}
