//! Threshold alerts: admin routes for rules, the crossing check after each settlement and in the
//! scheduled handler, and signed webhook delivery with retries. The rules themselves (when a
//! rule fires or re-arms, the payload, the signature, the backoff) are in `core::alerts`.
//!
//! One webhook per crossing: a rule fires by a compare-and-set on its `fire_count` in the same D1
//! batch that inserts the delivery row, whose id is `<rule id>-<fire_count>` (`INSERT OR IGNORE`).
//! Concurrent checks that see the same crossing therefore write one delivery, and only the check
//! whose insert took effect sends it at once; the scheduled handler retries what failed.

use std::time::Duration;

use futures::future::{select, Either};
use worker::{
    AbortController, D1Database, Delay, Env, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect,
};

use crate::core::alerts::{
    self, evaluate, retry_delay_ms, AlertKind, Decision, Observation, RuleInfo, SIGNATURE_HEADER,
};
use crate::core::error::GatewayError;
use crate::core::outbound::SecretUse;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env as config;
use crate::edge::store;
use crate::edge::store::alerts::{DeliveryRow, Observed};

/// How long a delivery being attempted is hidden from other senders (a lease), in ms.
const ATTEMPT_LEASE_MS: u64 = 120_000;
/// Until the webhook's response headers, in ms.
const WEBHOOK_TIMEOUT_MS: u64 = 10_000;
/// Due deliveries retried per scheduled run.
const RETRY_BATCH: u32 = 50;

// ---- crossing checks ------------------------------------------------------------------------

/// The check that runs after a request is settled (from `ctx.wait_until`), on the rules its
/// settlement batch read with [`store::alerts::observe_statement`]: nothing more to do when the tenant has no
/// rules. Failures are logged, never raised: billing is already done.
pub async fn after_settlement(
    env: &Env,
    db: &D1Database,
    tenant_id: &str,
    rules: Vec<Observed>,
    now: u64,
) {
    if rules.is_empty() {
        return;
    }
    if let Err(e) = act(env, db, rules, now).await {
        worker::console_error!("alert check for {tenant_id} failed: {e}");
    }
}

/// The check after a wallet settlement (from `ctx.wait_until`), on the wallet's figures before
/// and after its charge: the crossing is decided in core ([`crate::core::wallet::figures::crossed`])
/// against the tenant's thresholds (isolate cache); only when a rule crossed are its rules read
/// from D1 and acted on with the wallet's figures, and the wallet's balance recorded for the
/// scheduled check. Failures are logged, never raised: billing is already done.
pub async fn after_wallet_settlement(
    db: &D1Database,
    env: &Env,
    tenant_id: &str,
    before: &Observation,
    after: &Observation,
    now: u64,
) {
    let result = async {
        let thresholds = store::alerts::thresholds(db, tenant_id).await?;
        // A rule this charge crossed, or one that would fire now (created while its condition
        // already held: it fires at the next check, as on D1).
        let any = thresholds.iter().any(|(kind, threshold, fired)| {
            AlertKind::parse(kind).is_some_and(|k| {
                crate::core::wallet::figures::crossed(k, *threshold, None, before, after)
                    || matches!(
                        evaluate(k, *threshold, fired.as_deref(), after),
                        Decision::Fire { .. }
                    )
            })
        });
        if !any {
            return Ok(());
        }
        store::alerts::record_wallet_balance(db, tenant_id, after.balance, now).await?;
        let mut rules = store::alerts::observed_of(db, tenant_id, now).await?;
        for rule in &mut rules {
            // A balance rule still fired from an earlier episode although the balance was back
            // at or above its threshold before this charge (a top-up no check has seen yet):
            // re-armed first, so this crossing fires it again.
            if rule.kind == AlertKind::BalanceBelow.as_str()
                && rule.fired.is_some()
                && before.balance >= rule.threshold
                && after.balance < rule.threshold
            {
                store::alerts::rearm(db, &rule.id, rule.fire_count, now).await?;
                rule.fired = None;
            }
            rule.balance = after.balance;
            // The wallet's month totals include rows not exported yet; take the larger.
            rule.month_tokens = rule.month_tokens.max(after.month_tokens);
            rule.month_cost = rule.month_cost.max(after.month_cost);
        }
        act(env, db, rules, now).await.map(|_| ())
    }
    .await;
    if let Err(e) = result {
        worker::console_error!("alert check for {tenant_id} failed: {e}");
    }
}

/// Checks every rule (the scheduled handler: month roll-overs, top-ups and debits that no
/// request settled). Returns the number of webhooks it queued.
/// Pages through every rule by id ([`store::alerts::CRON_BATCH`] at a time, keyset: the next page starts after
/// the last id seen), so no rule is left out however many there are.
pub async fn check_all(env: &Env, db: &D1Database, now: u64) -> Result<u32, GatewayError> {
    let mut queued = 0;
    let mut after: Option<String> = None;
    loop {
        let rows = store::alerts::observed_page(db, after.as_deref(), now).await?;
        let full_page = rows.len() >= store::alerts::CRON_BATCH as usize;
        after = rows.last().map(|r| r.id.clone());
        queued += act(env, db, rows, now).await?;
        if !full_page || after.is_none() {
            return Ok(queued);
        }
    }
}

/// Fires or re-arms each observed rule as its figures say. Returns the webhooks queued.
async fn act(
    env: &Env,
    db: &D1Database,
    rows: Vec<Observed>,
    now: u64,
) -> Result<u32, GatewayError> {
    let month = Observation::month_of(now);
    let mut queued = 0;
    for rule in rows {
        let Some(kind) = AlertKind::parse(&rule.kind) else {
            continue;
        };
        let obs = Observation {
            month: month.clone(),
            month_tokens: rule.month_tokens,
            month_cost: rule.month_cost,
            balance: rule.balance,
        };
        match evaluate(kind, rule.threshold, rule.fired.as_deref(), &obs) {
            Decision::Keep => {}
            Decision::Rearm => {
                store::alerts::rearm(db, &rule.id, rule.fire_count, now).await?;
            }
            Decision::Fire { episode } => {
                if let Some(delivery) = fire(db, &rule, kind, &episode, &obs, now).await? {
                    if delivery.status != "pending" {
                        continue; // an in-app notice: recorded, nothing to send
                    }
                    queued += 1;
                    // A failed attempt stays pending; the scheduled handler retries it.
                    if let Err(e) = attempt(env, db, &delivery, now).await {
                        worker::console_error!("webhook {}: {e}", delivery.id);
                    }
                }
            }
        }
    }
    Ok(queued)
}

/// Records a crossing: moves the rule to `episode` and inserts its delivery, atomically. Returns
/// the delivery when this call inserted it (and so must send it).
async fn fire(
    db: &D1Database,
    rule: &Observed,
    kind: AlertKind,
    episode: &str,
    obs: &Observation,
    now: u64,
) -> Result<Option<DeliveryRow>, GatewayError> {
    let count = rule.fire_count + 1;
    let event_id = format!("{}-{count}", rule.id);
    let body = alerts::payload(
        &event_id,
        &RuleInfo {
            id: &rule.id,
            tenant_id: &rule.tenant_id,
            kind,
            threshold: rule.threshold,
        },
        obs,
        now,
    );
    store::alerts::record_fire(
        db,
        &store::alerts::Fire {
            rule_id: &rule.id,
            fire_count: rule.fire_count,
            fired: rule.fired.as_deref(),
            episode,
            event_id: &event_id,
            payload: &body,
            lease_until: now + ATTEMPT_LEASE_MS,
        },
        now,
    )
    .await
}

// ---- delivery -------------------------------------------------------------------------------

/// Sends one delivery and records the outcome: delivered, or the next attempt's time, or
/// failed after [`alerts::MAX_ATTEMPTS`].
async fn attempt(
    env: &Env,
    db: &D1Database,
    d: &DeliveryRow,
    now: u64,
) -> Result<(), GatewayError> {
    let attempt_no = d.attempts + 1;
    let outcome: Result<u16, String> = match deliverable(env, d) {
        Err(why) => Err(why),
        Ok(secret) => {
            // Signed with the real clock: receivers compare `t` with theirs.
            let header =
                alerts::signature_header(secret.as_bytes(), now_ms() / 1000, d.payload.as_bytes());
            let headers = [
                ("content-type", "application/json".to_string()),
                ("user-agent", "Tollgate-Webhooks/1".to_string()),
                (SIGNATURE_HEADER, header),
                ("x-tollgate-event-id", d.id.clone()),
                ("x-tollgate-delivery-attempt", attempt_no.to_string()),
            ];
            post_webhook(&d.webhook_url, &headers, &d.payload).await
        }
    };
    let (status, last_status, last_error, next, delivered_at) = match &outcome {
        Ok(code) if (200..300).contains(code) => ("delivered", Some(*code), None, None, Some(now)),
        failure => {
            let (code, error) = match failure {
                Ok(code) => (Some(*code), format!("the webhook answered HTTP {code}")),
                Err(e) => (None, e.clone()),
            };
            match retry_delay_ms(attempt_no) {
                Some(delay) => ("pending", code, Some(error), Some(now + delay), None),
                None => ("failed", code, Some(error), None, None),
            }
        }
    };
    store::alerts::record_attempt(
        db,
        &store::alerts::Attempt {
            id: &d.id,
            status,
            attempts: attempt_no,
            last_status,
            last_error: last_error.as_deref(),
            next_attempt_at: next,
            delivered_at,
        },
    )
    .await?;
    if status != "delivered" {
        worker::console_warn!(
            "webhook {} attempt {attempt_no} failed ({status}): {}",
            d.id,
            last_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// The signing secret of a delivery, if its URL and secret name are still allowed (the rules
/// may have been written before `core::outbound` existed, or the dev setting turned off).
fn deliverable(env: &Env, d: &DeliveryRow) -> Result<String, String> {
    alerts::check_webhook_url(
        &d.webhook_url,
        config::settings(env).allow_private_upstreams,
    )
    .map_err(|e| e.message)?;
    match config::named_secret(env, &d.secret_name, SecretUse::Webhook) {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(format!("the signing secret `{}` is not set", d.secret_name)),
        Err(why) => Err(format!("the signing secret name `{}` {why}", d.secret_name)),
    }
}

/// POSTs one webhook: redirects are not followed (a 3xx is a failed delivery, so the payload
/// and signature reach only the configured host), headers within [`WEBHOOK_TIMEOUT_MS`].
async fn post_webhook(url: &str, headers: &[(&str, String)], payload: &str) -> Result<u16, String> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v)
            .map_err(|e| format!("invalid header {k}: {e}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(h)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(wasm_bindgen::JsValue::from_str(payload)));
    let request = Request::new_with_init(url, &init).map_err(|e| format!("invalid URL: {e}"))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sending = Box::pin(fetch.send_with_signal(&signal));
    let timer = Delay::from(Duration::from_millis(WEBHOOK_TIMEOUT_MS));
    let answered = match select(sending, timer).await {
        Either::Left((result, _)) => Some(result.map(|resp| resp.status_code())),
        Either::Right(_) => None,
    };
    // The body is not read; a 3xx is returned as is (not a 2xx: a failed delivery).
    controller.abort();
    match answered {
        Some(Ok(code)) => Ok(code),
        Some(Err(e)) => Err(format!("could not reach the webhook: {e}")),
        None => Err(format!(
            "the webhook sent no response within {WEBHOOK_TIMEOUT_MS} ms"
        )),
    }
}

/// Retries the deliveries that are due (scheduled handler). Each is claimed with a lease first,
/// so overlapping runs never send the same attempt twice. Returns how many were attempted.
pub async fn retry_due(env: &Env, db: &D1Database, now: u64) -> Result<u32, GatewayError> {
    let due = store::alerts::due_deliveries(db, now, RETRY_BATCH).await?;
    let mut attempted = 0;
    for d in due {
        let claimed =
            store::alerts::lease_delivery(db, &d.id, d.next_attempt_at, now + ATTEMPT_LEASE_MS)
                .await?;
        if claimed {
            attempt(env, db, &d, now).await?;
            attempted += 1;
        }
    }
    Ok(attempted)
}
