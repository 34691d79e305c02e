//! Sending an adapter's request to the provider, with timeouts.
//!
//! Redirects are never followed (`redirect: "manual"`): a provider's key travels only to its own
//! `base_url`, and a 3xx is an upstream error. An unreachable provider is `UpstreamFailed` (the
//! work was not done: another route may be tried); no answer in time after the request was sent
//! is `UpstreamUnanswered` (it may have been done: not retried, charged).

use std::time::Duration;

use futures::future::{select, Either};
use futures::StreamExt;
use wasm_bindgen::JsCast;
use worker::{AbortController, Delay, Headers, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::providers::UpstreamRequest;

/// Error bodies larger than this are cut when read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends `up` and waits for the response headers at most `timeout_ms`. The returned controller
/// aborts the fetch (and its body) when dropped or aborted.
///
/// Hot path (every call of a provider). The request is built with the runtime's own types, once:
/// workers-rs's `Request::new_with_init` and `Fetch::send_with_signal` build an init object, a
/// request, then read the request back into a wrapper (method, URL, headers and its `cf`
/// object) and build a second init for the signal; none of that is used here.
pub async fn send(
    up: &UpstreamRequest,
    timeout_ms: u64,
) -> Result<(Response, AbortController), GatewayError> {
    use worker::js_sys;
    use worker::wasm_bindgen_futures::JsFuture;
    use worker::web_sys;

    let headers = Headers::new();
    for (k, v) in &up.headers {
        headers
            .set(k, v)
            .map_err(|e| GatewayError::internal(format!("invalid upstream header {k}: {e}")))?;
    }
    let controller = AbortController::default();
    let signal = controller.signal();
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(headers.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_body(&js_body(&up.body));
    init.set_signal(Some(&signal));
    // The URL and the runtime's error text name the operator's provider: logged, never sent to
    // the tenant (review I1).
    let request = web_sys::Request::new_with_str_and_init(&up.url, &init).map_err(|e| {
        let e = worker::Error::JsError(
            e.as_string()
                .unwrap_or_else(|| "invalid URL or options for Request".to_string()),
        );
        worker::console_error!("provider URL {} is invalid: {e}", up.url);
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            "The provider of this model is not configured correctly.",
        )
    })?;
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let sending = JsFuture::from(global.fetch_with_request(&request));
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    let answered = match select(sending, timer).await {
        Either::Left((result, _)) => {
            Some(result.and_then(|resp| resp.dyn_into::<web_sys::Response>()))
        }
        Either::Right(_) => None,
    };
    match answered {
        Some(Ok(resp)) => Ok((Response::from(resp), controller)),
        Some(Err(e)) => {
            let e = worker::Error::from(e);
            worker::console_error!("could not reach the provider at {}: {e}", up.url);
            Err(GatewayError::new(
                ErrorKind::UpstreamFailed,
                "Could not reach the provider.",
            ))
        }
        None => {
            controller.abort();
            Err(GatewayError::new(
                ErrorKind::UpstreamUnanswered,
                format!("The provider sent no response within {timeout_ms} ms."),
            ))
        }
    }
}

fn js_body(bytes: &[u8]) -> wasm_bindgen::JsValue {
    let array = worker::js_sys::Uint8Array::new_with_length(bytes.len() as u32);
    array.copy_from(bytes);
    array.into()
}

/// Reads a whole response body within `timeout_ms`, keeping at most `limit` bytes.
pub async fn read_body(
    resp: &mut Response,
    limit: usize,
    timeout_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    let declared = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|len| len.trim().parse::<u64>().ok())
        .filter(|&len| len <= limit as u64);
    let reading: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> = if declared.is_some() {
        // A declared length within the limit: one read, no stream reader.
        Box::pin(async move {
            resp.bytes().await.map_err(|e| {
                GatewayError::new(
                    ErrorKind::UpstreamFailed,
                    format!("The provider's response broke off: {e}"),
                )
            })
        })
    } else {
        read_stream(resp, limit)?
    };
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(reading, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(GatewayError::new(
            ErrorKind::UpstreamTimeout,
            format!("The provider did not finish its response within {timeout_ms} ms."),
        )),
    }
}

/// Reads a 2xx answer whole within `timeout_ms`, failing closed: a body declared or found larger
/// than `limit` bytes is refused before more than `limit` bytes are held (never cut silently).
/// Every failure here comes after the provider accepted the request, so none is retryable: a
/// body too large or broken off is `UpstreamUnusable`, a slow one `UpstreamUnanswered`.
pub async fn read_answer(
    resp: &mut Response,
    limit: usize,
    timeout_ms: u64,
) -> Result<Vec<u8>, GatewayError> {
    let too_large = |what: &str| {
        GatewayError::new(
            ErrorKind::UpstreamUnusable,
            format!(
                "The provider's answer is larger than the gateway accepts ({what}, limit \
                 {limit} bytes)."
            ),
        )
    };
    let declared = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|len| len.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        return Err(too_large(&format!("{len} bytes declared")));
    }
    let encoded = resp
        .headers()
        .get("content-encoding")
        .ok()
        .flatten()
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
    if declared.is_some() && !encoded {
        // A declared length within the limit, not compressed: the body is that many bytes (HTTP
        // framing), read in one call (see `whole_body`).
        let reading = Box::pin(whole_body(resp));
        let timer = Delay::from(Duration::from_millis(timeout_ms));
        return match select(reading, timer).await {
            Either::Left((Ok(body), _)) if body.len() > limit => Err(too_large("more sent")),
            Either::Left((Ok(body), _)) => Ok(body),
            Either::Left((Err(e), _)) => Err(GatewayError::new(
                ErrorKind::UpstreamUnusable,
                format!("The provider's answer broke off: {e}"),
            )),
            Either::Right(_) => Err(GatewayError::new(
                ErrorKind::UpstreamUnanswered,
                format!("The provider did not finish its answer within {timeout_ms} ms."),
            )),
        };
    }
    let mut stream = resp.stream().map_err(|e| {
        GatewayError::new(
            ErrorKind::UpstreamUnusable,
            format!("The provider's answer has no readable body: {e}"),
        )
    })?;
    let capacity = declared.map_or(0, |len| len as usize).min(limit);
    let reading = Box::pin(async move {
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                GatewayError::new(
                    ErrorKind::UpstreamUnusable,
                    format!("The provider's answer broke off: {e}"),
                )
            })?;
            if chunk.len() > limit - body.len() {
                return Err(too_large("more sent"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    });
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(reading, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(GatewayError::new(
            ErrorKind::UpstreamUnanswered,
            format!("The provider did not finish its answer within {timeout_ms} ms."),
        )),
    }
}

/// The whole body of `resp` in one call of the runtime's `Response.arrayBuffer()`.
///
/// Hot path (every plain answer). workers-rs's `Response::bytes` reads through a stream reader,
/// chunk by chunk (a reader, a read, a lock release and a microtask per chunk); the runtime reads
/// the whole body natively. Only for a body whose length is declared and within the caller's
/// limit, and not compressed (a compressed body grows when the runtime decodes it: those are read
/// chunk by chunk, failing closed at the limit).
async fn whole_body(resp: &mut Response) -> Result<Vec<u8>, String> {
    use worker::wasm_bindgen_futures::JsFuture;
    use worker::{js_sys, web_sys, ResponseBody};
    let stream = match resp.body() {
        ResponseBody::Stream(stream) => stream.clone(),
        ResponseBody::Body(bytes) => return Ok(bytes.clone()),
        ResponseBody::Empty => return Ok(Vec::new()),
    };
    let text = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let whole = web_sys::Response::new_with_opt_readable_stream(Some(&stream)).map_err(text)?;
    let buffer = JsFuture::from(whole.array_buffer().map_err(text)?)
        .await
        .map_err(text)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Reads a body of unknown length chunk by chunk, keeping at most `limit` bytes.
#[allow(clippy::type_complexity)]
fn read_stream(
    resp: &mut Response,
    limit: usize,
) -> Result<
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, GatewayError>>>>,
    GatewayError,
> {
    let mut stream = resp.stream().map_err(|e| {
        GatewayError::new(
            ErrorKind::UpstreamFailed,
            format!("The provider's response has no readable body: {e}"),
        )
    })?;
    Ok(Box::pin(async move {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                GatewayError::new(
                    ErrorKind::UpstreamFailed,
                    format!("The provider's response broke off: {e}"),
                )
            })?;
            let room = limit.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                break;
            }
        }
        Ok(body)
    }))
}

/// Reads an error body (bounded, short timeout).
pub async fn read_error_body(resp: &mut Response) -> Vec<u8> {
    read_body(resp, MAX_ERROR_BODY, 10_000)
        .await
        .unwrap_or_default()
}
