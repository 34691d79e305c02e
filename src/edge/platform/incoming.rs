//! The incoming request as the runtime hands it to the worker.

use worker::js_sys::{Object, Reflect};
use worker::wasm_bindgen::JsValue;
use worker::web_sys;

/// Turns the runtime's request into workers-rs's `Request` without reading its `cf` object.
///
/// Hot path (every request). workers-rs's conversion reads `cf` (the runtime builds that object,
/// many fields, at its first read), though nothing in Tollgate uses it: ~2–4 % of a plain
/// request's busy time in the profile (`node bench/profile.mjs`, docs/scale.md). An own property
/// `cf` whose value is `undefined` shadows the runtime's getter on this one request object, so the
/// conversion finds no `cf` and everything else (method, URL, headers, body) is read as before.
/// Should the runtime refuse the property, the request is converted as it is.
pub fn request(req: web_sys::Request) -> worker::Request {
    // A data property whose value is `undefined` (said explicitly: an empty descriptor would leave
    // an own accessor as it is).
    let undefined = Object::new();
    let _ = Reflect::set(&undefined, &JsValue::from_str("value"), &JsValue::UNDEFINED)
        .and_then(|_| Reflect::define_property(&req, &JsValue::from_str("cf"), &undefined));
    worker::Request::from(req)
}
