//! Which microtask primitive the wasm futures' executor uses.
//!
//! Every Rust future of the worker (the fetch handler, `wait_until`'s settlement and stream pump,
//! each pull of a streamed body, the wallet object's handlers) is polled by one executor, the
//! queue of `js_sys::futures` (re-exported as `wasm_bindgen_futures`). Each time a task is woken
//! (a fetch answered, a body read, a timer fired, a channel got room) the queue schedules its
//! next round with `queueMicrotask` when the global has one, else with `then` on a resolved
//! promise. Both run the round as a microtask of the same queue; but workerd's `queueMicrotask`
//! wraps each callback for error reporting and async-context tracking, and V8 CPU profiles of
//! the worker isolate (`node bench/profile.mjs`) put ~8 % of a plain request's busy time and
//! ~15 % of a streamed one's in it (a stream wakes tasks several times per chunk), against < 1 %
//! once the queue used a promise's `then` (BENCHMARKS.md, issue-13 notes).
//!
//! The queue reads `queueMicrotask` once, when it is created (the first spawned future). So at
//! start-up [`prefer_promise_microtasks`] hides the global for the duration of one empty spawn —
//! which creates the queue on the promise path — and puts it back at once: nothing else ever sees
//! the global missing, and if anything fails (or the queue already exists) the queue simply keeps
//! `queueMicrotask`, which is correct, only slower.

use wasm_bindgen::JsValue;
use worker::js_sys::{global, Object, Reflect};

const NAME: &str = "queueMicrotask";

/// Makes the wasm futures' executor schedule its rounds with `Promise.then` instead of
/// `queueMicrotask` (see the module docs). Call once, before any future is spawned. Returns
/// whether `queueMicrotask` is in place afterwards (it always should be).
pub fn prefer_promise_microtasks() -> bool {
    let global: Object = global();
    let key = JsValue::from_str(NAME);
    let Ok(saved) = Reflect::get(&global, &key) else {
        return false;
    };
    if !saved.is_function() {
        return false;
    }
    // An own property (or one inherited from the global's prototype, workerd's case).
    let own = Object::get_own_property_descriptor(&global, &key);
    if Reflect::set(&global, &key, &JsValue::UNDEFINED) == Ok(true) {
        // Creates the executor's queue (it reads `queueMicrotask` now); the empty task runs as
        // the first microtask.
        worker::wasm_bindgen_futures::spawn_local(async {});
        let restored = if own.is_undefined() {
            Reflect::delete_property(&global, &key)
        } else {
            Reflect::set(&global, &key, &saved)
        };
        if restored != Ok(true) {
            // Not expected; put the function back as an own property, whatever it takes.
            let _ = Reflect::set(&global, &key, &saved);
        }
    }
    Reflect::get(&global, &key).is_ok_and(|now| Object::is(&now, &saved))
}
