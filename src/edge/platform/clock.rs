//! The wall clock.

/// Milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> u64 {
    // `Date.now()` itself: no Date object per call (the hot path asks several times).
    worker::js_sys::Date::now() as u64
}
