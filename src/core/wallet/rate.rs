//! Requests-per-minute and tokens-per-minute windows, and OpenAI's `x-ratelimit-*` header values.
//!
//! Each limit is a **token bucket that refills continuously**: a limit of `L` per minute holds at
//! most `L` and drains at `L` per 60,000 ms. A request (or a request's reserved tokens) fits when
//! the bucket has room for it; otherwise it is refused with 429 `rate_limit_exceeded` and a
//! `retry-after` of exactly when it would fit. Unlike fixed UTC minutes, a burst at a minute's
//! edge cannot pass twice the limit: over any 60 s window at most `L` plus what drained in it.
//!
//! Everything is integer: one request (or token) is [`UNIT`] = 60,000 bucket units, and a bucket
//! of limit `L` drains `L` units per ms, so no rate is ever rounded. Times to wait are rounded
//! **up** to the next ms (never too early).
//!
//! TPM counts the tokens **reserved** (prompt + the output the reservation covers) when a request
//! is admitted and settles to the actual tokens afterwards ([`Bucket::adjust`]): unused tokens
//! return, extra ones (a provider that outran the count) are added.

use serde::{Deserialize, Serialize};

/// Bucket units per request or token: a minute in ms.
pub const UNIT: u128 = 60_000;

/// The state of one bucket: its level (in units) at `at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub level: u128,
    pub at_ms: u64,
}

impl Bucket {
    /// The level at `now_ms` under a limit of `limit` per minute.
    fn drained(&self, limit: u64, now_ms: u64) -> u128 {
        let elapsed = u128::from(now_ms.saturating_sub(self.at_ms));
        self.level.saturating_sub(elapsed * u128::from(limit))
    }

    /// Whether `amount` (requests or tokens) fits now: `Ok(())` or `Err(ms to wait)`. An amount
    /// larger than the limit never fits: the wait is then until the bucket is empty (the answer a
    /// client can act on; it will be refused again, see the message in [`super::Refusal`]).
    pub fn check(&self, limit: u64, amount: u64, now_ms: u64) -> Result<(), u64> {
        let level = self.drained(limit, now_ms);
        let capacity = u128::from(limit) * UNIT;
        let need = u128::from(amount) * UNIT;
        if level + need <= capacity {
            return Ok(());
        }
        let excess = if need > capacity {
            level
        } else {
            level + need - capacity
        };
        Err(ceil_div(excess, u128::from(limit.max(1))))
    }

    /// Takes `amount` at `now_ms` (after [`Bucket::check`] said it fits).
    pub fn take(&mut self, limit: u64, amount: u64, now_ms: u64) {
        self.level = self.drained(limit, now_ms) + u128::from(amount) * UNIT;
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Corrects a take of `reserved` to `actual` (TPM settling to the real tokens).
    pub fn adjust(&mut self, limit: u64, reserved: u64, actual: u64, now_ms: u64) {
        let level = self.drained(limit, now_ms);
        self.level = if actual >= reserved {
            level + u128::from(actual - reserved) * UNIT
        } else {
            level.saturating_sub(u128::from(reserved - actual) * UNIT)
        };
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// The header values of this bucket under `limit` at `now_ms`.
    pub fn window(&self, limit: u64, now_ms: u64) -> Window {
        let level = self.drained(limit, now_ms);
        let capacity = u128::from(limit) * UNIT;
        let remaining = capacity.saturating_sub(level) / UNIT;
        Window {
            limit,
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            reset_ms: ceil_div(level, u128::from(limit.max(1))),
        }
    }
}

fn ceil_div(a: u128, b: u128) -> u64 {
    u64::try_from(a.div_ceil(b)).unwrap_or(u64::MAX)
}

/// What `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` say for one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub limit: u64,
    /// Whole requests (or tokens) that would fit now.
    pub remaining: u64,
    /// Time until the bucket is empty again (its initial state), in ms.
    pub reset_ms: u64,
}

/// The rate-limit headers of a response: requests and tokens, each when a limit applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateHeaders {
    pub requests: Option<Window>,
    pub tokens: Option<Window>,
}

impl RateHeaders {
    /// The `(name, value)` pairs, in OpenAI's names and duration format.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(w) = self.requests {
            out.push(("x-ratelimit-limit-requests", w.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", w.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", duration(w.reset_ms)));
        }
        if let Some(w) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", w.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", w.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", duration(w.reset_ms)));
        }
        out
    }
}

/// A duration as OpenAI writes its reset headers: `0s`, `120ms`, `1.5s`, `59.999s`, `6m0s`,
/// `1m30.5s` (Go's `time.Duration` format, at ms precision).
pub fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    let secs = if millis == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{millis:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    };
    if minutes == 0 {
        secs
    } else if minutes < 60 {
        format!("{minutes}m{secs}")
    } else {
        format!("{}h{}m{secs}", minutes / 60, minutes % 60)
    }
}

/// `retry-after` in whole seconds (rounded up, at least 1) for a wait of `ms`.
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_admits_the_limit_then_refuses_until_one_drains() {
        let mut b = Bucket::default();
        let t0 = 1_000_000;
        for _ in 0..3 {
            assert_eq!(b.check(3, 1, t0), Ok(()));
            b.take(3, 1, t0);
        }
        // Full: one request drains in 60,000 / 3 = 20,000 ms.
        assert_eq!(b.check(3, 1, t0), Err(20_000));
        assert_eq!(b.check(3, 1, t0 + 19_999), Err(1));
        assert_eq!(b.check(3, 1, t0 + 20_000), Ok(()));
        let w = b.window(3, t0 + 20_000);
        assert_eq!((w.limit, w.remaining, w.reset_ms), (3, 1, 40_000));
        assert_eq!(b.window(3, t0 + 60_000).remaining, 3);
        assert_eq!(b.window(3, t0 + 60_000).reset_ms, 0);
    }

    #[test]
    fn no_burst_at_a_minute_edge() {
        // 60 requests per minute, all taken at once: at most one more per second afterwards.
        let mut b = Bucket::default();
        let t0 = 59_999;
        let mut admitted = 0;
        for i in 0..200u64 {
            let now = t0 + i * 10; // 2 s of attempts every 10 ms
            if b.check(60, 1, now).is_ok() {
                b.take(60, 1, now);
                admitted += 1;
            }
        }
        // 60 at once, then one per 1000 ms over 1990 ms: 1 more (at +1000 ms); not 120.
        assert_eq!(admitted, 61);
    }

    #[test]
    fn tpm_settles_to_actual_tokens() {
        let mut b = Bucket::default();
        b.take(1000, 800, 0);
        assert_eq!(b.check(1000, 300, 0), Err(6_000)); // 100 tokens over: 100*60000/1000 ms
        b.adjust(1000, 800, 100, 0);
        assert_eq!(b.window(1000, 0).remaining, 900);
        assert_eq!(b.check(1000, 300, 0), Ok(()));
        b.adjust(1000, 100, 250, 0);
        assert_eq!(b.window(1000, 0).remaining, 750);
        // More than the whole limit never fits; the wait is until empty.
        assert_eq!(b.check(1000, 1001, 0), Err(15_000));
        assert_eq!(Bucket::default().check(1000, 1001, 0), Err(0));
    }

    #[test]
    fn durations_in_openai_format() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(120), "120ms");
        assert_eq!(duration(1000), "1s");
        assert_eq!(duration(1500), "1.5s");
        assert_eq!(duration(59_999), "59.999s");
        assert_eq!(duration(360_000), "6m0s");
        assert_eq!(duration(90_500), "1m30.5s");
        assert_eq!(duration(3_600_000), "1h0m0s");
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(20_000), 20);
        assert_eq!(retry_after_secs(20_001), 21);
    }

    #[test]
    fn bucket_round_trips_as_json() {
        // The wallet object stores buckets as JSON text.
        let b = Bucket {
            level: u128::from(u64::MAX) * 3,
            at_ms: 7,
        };
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Bucket>(&text).unwrap(), b);
    }

    #[test]
    fn header_pairs() {
        let h = RateHeaders {
            requests: Some(Window {
                limit: 10,
                remaining: 9,
                reset_ms: 6000,
            }),
            tokens: None,
        };
        assert_eq!(
            h.pairs(),
            vec![
                ("x-ratelimit-limit-requests", "10".to_string()),
                ("x-ratelimit-remaining-requests", "9".to_string()),
                ("x-ratelimit-reset-requests", "6s".to_string()),
            ]
        );
        assert!(RateHeaders::default().pairs().is_empty());
    }
}
