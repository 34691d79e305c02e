//! Calling a plugin: outside the gateway, with only its arguments and its own settings, within
//! a time limit and size limits, without following redirects.

use std::time::Duration;

use futures::future::{select, Either};
use serde_json::Value;
use worker::{
    AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    Response,
};

use crate::core::plugins::reply::{plugin_text, CallFailure};
use crate::core::plugins::{
    call_body, check_url, Endpoint, EndpointPolicy, Manifest, MAX_REQUEST_BYTES,
};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::fetch as upstream;

/// What one invocation produced.
pub struct Outcome {
    pub result: Result<String, CallFailure>,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
}

/// The URL a service-bound plugin is called at (the host is ignored by the binding).
const SERVICE_URL: &str = "https://plugin.tollgate.internal/invoke";

/// Calls `api` of the plugin with already validated `arguments`.
pub async fn invoke(
    env: &Env,
    manifest: &Manifest,
    api: &str,
    arguments: &Value,
    settings: Option<&Value>,
    policy: EndpointPolicy,
) -> Outcome {
    let started = now_ms();
    let timeout_ms = manifest.timeout_ms;
    let work = Box::pin(call(env, manifest, api, arguments, settings, policy));
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    let (result, http_status) = match select(work, timer).await {
        Either::Left((done, _)) => done,
        Either::Right(_) => (Err(CallFailure::Timeout(timeout_ms)), None),
    };
    Outcome {
        result,
        http_status,
        latency_ms: now_ms().saturating_sub(started),
    }
}

async fn call(
    env: &Env,
    manifest: &Manifest,
    api: &str,
    arguments: &Value,
    settings: Option<&Value>,
    policy: EndpointPolicy,
) -> (Result<String, CallFailure>, Option<u16>) {
    let body = call_body(api, arguments, settings);
    if body.len() > MAX_REQUEST_BYTES {
        return (Err(CallFailure::RequestTooLarge(MAX_REQUEST_BYTES)), None);
    }
    let headers = Headers::new();
    for (k, v) in [
        ("content-type", "application/json"),
        (
            "accept",
            "text/markdown, text/plain;q=0.9, application/json;q=0.8",
        ),
        ("user-agent", "Tollgate-Plugins/1"),
    ] {
        let _ = headers.set(k, v);
    }
    // Safe as a header value: API names are `[A-Za-z0-9_-]` (checked at registration).
    let _ = headers.set("x-tollgate-plugin-api", api);
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(wasm_bindgen::JsValue::from_str(
            &String::from_utf8_lossy(&body),
        )));

    // The controller lives as long as the call: dropping this future (the timeout) aborts it.
    let controller = AbortController::default();
    let sent = match &manifest.endpoint {
        Endpoint::Url(url) => {
            if let Err(why) = check_url(url, &manifest.allowed_hosts, policy) {
                return (
                    Err(CallFailure::Unreachable(format!("its URL {why}"))),
                    None,
                );
            }
            let request = match Request::new_with_init(url, &init) {
                Ok(r) => r,
                Err(e) => return (Err(CallFailure::Unreachable(e.to_string())), None),
            };
            Fetch::Request(request)
                .send_with_signal(&controller.signal())
                .await
        }
        Endpoint::Service(binding) => match env.service(binding) {
            Ok(fetcher) => fetcher.fetch(SERVICE_URL, Some(init)).await,
            Err(_) => {
                return (
                    Err(CallFailure::Unreachable(format!(
                        "the service binding `{binding}` is not configured"
                    ))),
                    None,
                )
            }
        },
    };
    let mut resp: Response = match sent {
        Ok(r) => r,
        Err(e) => return (Err(CallFailure::Unreachable(e.to_string())), None),
    };
    let status = resp.status_code();
    let result = read_answer(&mut resp, status, manifest).await;
    drop(controller);
    (result, Some(status))
}

async fn read_answer(
    resp: &mut Response,
    status: u16,
    manifest: &Manifest,
) -> Result<String, CallFailure> {
    if (300..400).contains(&status) {
        return Err(CallFailure::Redirect(status));
    }
    if !(200..300).contains(&status) {
        return Err(CallFailure::Status(status));
    }
    let limit = manifest.max_response_bytes;
    let declared = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(CallFailure::ResponseTooLarge(limit));
    }
    // One byte over the limit tells an oversized body from one that fits exactly. The outer
    // timeout bounds the read.
    let cap = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let body = upstream::read_body(resp, cap, manifest.timeout_ms)
        .await
        .map_err(|e| CallFailure::Unreachable(e.message))?;
    if body.len() as u64 > limit {
        return Err(CallFailure::ResponseTooLarge(limit));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_else(|| "text/plain".to_string());
    plugin_text(&content_type, &body)
}
