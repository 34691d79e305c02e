//! Card top-ups through Stripe Checkout: the worker creates the Checkout Session (against
//! `STRIPE_API_BASE`, default `https://api.stripe.com`, with the `STRIPE_SECRET_KEY` secret) and
//! credits the tenant when Stripe's `checkout.session.completed` webhook arrives, verified with the
//! `STRIPE_WEBHOOK_SECRET` signing secret. A session credits once however often it is delivered
//! (`stripe_payments`, schema/0010_console.sql).

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::super::platform::{d1 as db, env as config};
use super::session::Session;
use crate::core::console::{self as rules, WebhookAction};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::prefixed_id;
use crate::edge::api::http;
use crate::edge::platform::clock::now_ms;
use crate::edge::store;

const MAX_EVENT_BYTES: usize = 256 * 1024;

fn currency(env: &Env) -> String {
    config::settings(env).stripe_currency.clone()
}

/// Whether card top-ups are offered: both Stripe secrets are set.
fn enabled(env: &Env) -> bool {
    config::secret(env, "STRIPE_SECRET_KEY").is_some()
        && config::secret(env, "STRIPE_WEBHOOK_SECRET").is_some()
}

/// What the user center needs to offer card top-ups.
pub fn public_config(env: &Env) -> Value {
    json!({
        "enabled": enabled(env),
        "currency": currency(env),
        "min_cents": rules::MIN_TOP_UP_CENTS,
        "max_cents": rules::MAX_TOP_UP_CENTS,
        "micro_units_per_cent": rules::MICRO_PER_CENT,
    })
}

fn not_configured() -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        "Card payments are not configured on this gateway (STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET).",
    )
    .with_code("stripe_not_configured")
}

/// `POST /console/api/checkout` `{amount_cents}` → `{id, url}` of a new Checkout Session.
pub async fn create_checkout(
    mut req: Request,
    env: &Env,
    s: &Session,
) -> Result<Response, GatewayError> {
    #[derive(Deserialize)]
    struct Body {
        amount_cents: u64,
    }
    let secret = config::secret(env, "STRIPE_SECRET_KEY")
        .filter(|_| enabled(env))
        .ok_or_else(not_configured)?;
    let body = http::read_body(&mut req, 4096).await?;
    let body: Body = serde_json::from_slice(&body).map_err(|_| {
        GatewayError::invalid_param("amount_cents", "Send {\"amount_cents\": <integer>}.")
    })?;
    let amount = rules::check_top_up(body.amount_cents)
        .map_err(|m| GatewayError::invalid_param("amount_cents", m))?;
    let probe = s.as_tenant_request(&req, "/v1/balance", Method::Get, None)?;
    let caller = crate::edge::gateway::auth::live_caller(&probe, env).await?;

    let url = req.url().map_err(|e| http::internal("url", e))?;
    let origin = url.origin().ascii_serialization();
    let success = format!("{origin}/console/?checkout=success&session_id={{CHECKOUT_SESSION_ID}}");
    let cancel = format!("{origin}/console/?checkout=cancelled");
    let currency = currency(env);
    let form = rules::checkout_form(&rules::CheckoutRequest {
        tenant_id: &caller.tenant_id,
        amount_cents: amount,
        currency: &currency,
        success_url: &success,
        cancel_url: &cancel,
    });
    let endpoint = format!(
        "{}/v1/checkout/sessions",
        config::settings(env).stripe_api_base
    );
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|e| http::internal("set header", e))
    };
    set("authorization", &format!("Bearer {secret}"))?;
    set("content-type", "application/x-www-form-urlencoded")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers.clone())
        .with_body(Some(form.into()));
    let stripe_req = Request::new_with_init(&endpoint, &init)
        .map_err(|e| http::internal("stripe request", e))?;
    let mut resp = Fetch::Request(stripe_req).send().await.map_err(|e| {
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            format!("Stripe could not be reached: {e}"),
        )
    })?;
    let status = resp.status_code();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or("no error message");
        return Err(GatewayError::new(
            ErrorKind::UpstreamFailed,
            format!("Stripe refused the Checkout Session (HTTP {status}): {message}"),
        )
        .with_code("stripe_error"));
    }
    let (Some(id), Some(checkout_url)) = (answer["id"].as_str(), answer["url"].as_str()) else {
        return Err(GatewayError::new(
            ErrorKind::UpstreamFailed,
            "Stripe's Checkout Session has no id or url.",
        ));
    };
    http::json(
        200,
        &json!({"object": "checkout_session", "id": id, "url": checkout_url,
                "amount_cents": amount, "currency": currency}),
    )
}

/// `POST /stripe/webhook`: a signed Stripe event. Credits a paid Checkout Session once.
pub async fn webhook(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let secret = config::secret(env, "STRIPE_WEBHOOK_SECRET").ok_or_else(not_configured)?;
    let signature = req
        .headers()
        .get("stripe-signature")
        .ok()
        .flatten()
        .unwrap_or_default();
    let payload = http::read_body(&mut req, MAX_EVENT_BYTES).await?;
    let tolerance = config::settings(env).stripe_webhook_tolerance_seconds;
    rules::verify_stripe_signature(
        secret.as_bytes(),
        &signature,
        &payload,
        now_ms() / 1000,
        tolerance,
    )
    .map_err(|e| {
        GatewayError::new(ErrorKind::InvalidRequest, format!("Webhook refused: {e}."))
            .with_code("invalid_signature")
    })?;
    let action = rules::webhook_action(&payload, &currency(env)).map_err(|m| {
        GatewayError::invalid_request(format!("Webhook refused: {m}.")).with_code("invalid_event")
    })?;
    let credit = match action {
        WebhookAction::Ignore(why) => {
            return http::json(200, &json!({"received": true, "ignored": why}))
        }
        WebhookAction::Credit(c) => c,
    };
    let database = db::database(env)?;
    let now = now_ms();
    let ledger_id = prefixed_id("cred", now);
    if config::settings(env).wallets {
        return credit_wallet(env, &database, &credit, &ledger_id, now).await;
    }
    // One statement: the row exists once per session and event; its trigger credits the tenant.
    let inserted = store::payments::record_checkout(&database, &credit, &ledger_id, now).await?;
    // D1 counts the trigger's writes too: any change means this delivery inserted the row.
    if inserted > 0 {
        return http::json(
            200,
            &json!({"received": true, "credited": credit.amount, "tenant_id": credit.tenant_id,
                    "ledger_id": ledger_id}),
        );
    }
    let known = store::payments::recorded_checkout(&database, &credit).await?;
    match known {
        Some(row) => http::json(
            200,
            &json!({"received": true, "duplicate": true, "ledger_id": row["ledger_id"]}),
        ),
        None => {
            // A paid session for a tenant that does not exist: keep Stripe retrying and say so.
            worker::console_error!(
                "stripe: paid session {} for unknown tenant {}",
                credit.session_id,
                credit.tenant_id
            );
            Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No tenant {}.", credit.tenant_id),
            ))
        }
    }
}

/// The webhook's credit with `WALLETS` on: D1 keeps the payment record (once per session and
/// event, `via_wallet = 1`: no D1 credit), the tenant's wallet takes the credit with idempotency
/// key `stripe:<session id>`, then the record is marked credited. A delivery that finds the
/// session recorded but its credit not landed (the wallet was unreachable, or the worker died in
/// between) completes it; one that finds it credited is a duplicate. Until the credit lands the
/// webhook answers an error, so Stripe delivers again.
async fn credit_wallet(
    env: &Env,
    database: &worker::D1Database,
    credit: &rules::CheckoutCredit,
    ledger_id: &str,
    now: u64,
) -> Result<Response, GatewayError> {
    let inserted =
        store::payments::record_checkout_for_wallet(database, credit, ledger_id, now).await?;
    let payment = match store::payments::wallet_payment(database, credit).await? {
        Some(p) => p,
        None => {
            worker::console_error!(
                "stripe: paid session {} for unknown tenant {}",
                credit.session_id,
                credit.tenant_id
            );
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("No tenant {}.", credit.tenant_id),
            ));
        }
    };
    if payment.via_wallet == 0 || payment.wallet_credited_at.is_some() {
        return http::json(
            200,
            &json!({"received": true, "duplicate": true, "ledger_id": payment.ledger_id}),
        );
    }
    let amount = i64::try_from(payment.amount)
        .map_err(|_| GatewayError::internal("payment amount out of range"))?;
    let reason = format!("stripe checkout {}", payment.session_id);
    if config::settings(env).fault("wallet_credit") {
        // Test-only (TOLLGATE_FAULTS): the worker dies between the record and the credit.
        return Err(crate::edge::gateway::wallet::wallet_error(
            crate::edge::store::wallet::client::WalletError::Failed(
                "injected fault wallet_credit (TOLLGATE_FAULTS)".into(),
            ),
        ));
    }
    crate::edge::store::wallet::client::WalletClient::new(env, &payment.tenant_id)
        .adjust(
            amount,
            &format!("stripe:{}", payment.session_id),
            Some(&reason),
        )
        .await
        .map_err(|e| {
            worker::console_error!(
                "stripe: session {} recorded, its wallet credit failed (Stripe will retry): {e}",
                payment.session_id
            );
            crate::edge::gateway::wallet::wallet_error(e)
        })?;
    store::payments::mark_payment_credited(database, &payment.session_id, now).await?;
    http::json(
        200,
        &json!({"received": true, "credited": payment.amount, "tenant_id": payment.tenant_id,
                "ledger_id": payment.ledger_id, "completed": !inserted}),
    )
}
