//! Route selection decisions, pure: in which order to try a model's provider routes, when a
//! failure may fall back to the next route, a per-route circuit breaker, and the tier rule of the
//! cost-aware virtual model `tollgate/auto`.
//!
//! The edge shell owns the I/O (loading routes, keeping breaker state in KV or D1, sending);
//! every decision it needs is a function here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::ChatCompletionRequest;

/// One way to serve a model: a provider route with its place in the order and its traffic share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOption {
    /// Lower priorities are tried first; routes of equal priority share traffic by weight.
    pub priority: u32,
    /// Relative share among routes of the same priority (0 is treated as 1).
    pub weight: u32,
}

/// A small deterministic generator (SplitMix64): the order depends only on the seed, so a
/// request's order is reproducible from its id.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The order in which to try `options` (indices into it): by priority, and within a priority a
/// weighted random order (each next route drawn with probability proportional to its weight
/// among those left), driven by `seed`.
pub fn try_order(options: &[RouteOption], seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut priorities: Vec<u32> = options.iter().map(|o| o.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut order = Vec::with_capacity(options.len());
    for p in priorities {
        let mut left: Vec<usize> = (0..options.len())
            .filter(|&i| options[i].priority == p)
            .collect();
        while !left.is_empty() {
            let total: u64 = left
                .iter()
                .map(|&i| u64::from(options[i].weight.max(1)))
                .sum();
            let mut pick = splitmix64(&mut state) % total;
            let mut chosen = 0;
            for (pos, &i) in left.iter().enumerate() {
                let w = u64::from(options[i].weight.max(1));
                if pick < w {
                    chosen = pos;
                    break;
                }
                pick -= w;
            }
            order.push(left.remove(chosen));
        }
    }
    order
}

/// Whether a failed attempt may be retried on the next route: only a retryable upstream failure
/// (unreachable, 5xx, overload, rate limit, timeout) and only while nothing has been sent to the
/// client. Rejections of the request (4xx, content-policy refusals) are never retried.
pub fn may_fall_back(err: &GatewayError, sent_to_client: bool) -> bool {
    !sent_to_client && err.retryable()
}

/// Whether a failed attempt counts against its route's shared circuit breaker: a retryable
/// failure, except a rate limit. A 429 says the operator's key is busy, often because one
/// tenant bursts; it still falls back to the next route for that request, but it never opens
/// the route for every tenant (review R4).
pub fn counts_for_breaker(err: &GatewayError) -> bool {
    err.retryable() && err.kind != ErrorKind::UpstreamRateLimited
}

/// Default of `STALE_RESERVATION_SECONDS` (the scheduled sweep's age of a dead reservation).
pub const DEFAULT_STALE_RESERVATION_SECONDS: u64 = 900;

/// How long after a client left a stream the gateway keeps reading the provider for its usage
/// (`CLIENT_ABORT_DRAIN_MS`). Workers lets `waitUntil` work run about 30 s after the client is
/// gone; the rest is left for the settlement.
pub const DEFAULT_CLIENT_ABORT_DRAIN_MS: u64 = 25_000;

/// The wall-clock deadline (UTC ms) of a request that started at `started_at`: every upstream
/// call, plain or streamed, ends before the scheduled sweep could take its reservation for dead.
/// `stale_seconds` is `STALE_RESERVATION_SECONDS` as set (the sweep uses at least 60 s, never
/// less than this); the margin is a minute, or a quarter of the setting when that is shorter.
pub fn request_deadline(started_at: u64, stale_seconds: u64) -> u64 {
    let stale_ms = stale_seconds.max(1).saturating_mul(1000);
    let margin = (stale_ms / 4).min(60_000);
    started_at.saturating_add(stale_ms - margin)
}

/// The time (ms) a plain request may take, headers and body together, from `now`: the route's
/// own timeout or the gateway-wide one, and never past the request's `deadline`.
pub fn plain_timeout_ms(route_ms: Option<u64>, default_ms: u64, now: u64, deadline: u64) -> u64 {
    route_ms
        .unwrap_or(default_ms)
        .min(deadline.saturating_sub(now))
}

/// Until when (UTC ms) a stream whose client left at `now` is still read for the provider's usage.
pub fn drain_until(now: u64, drain_ms: u64, deadline: u64) -> u64 {
    now.saturating_add(drain_ms).min(deadline)
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 2: one error never disables a route).
    pub failure_threshold: u32,
    /// How long an open breaker refuses traffic before it lets one trial request through.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// What the breaker allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Healthy: send.
    Closed,
    /// Cooled down after opening: send one trial; its outcome closes or reopens the breaker.
    HalfOpen,
    /// Failing: skip this route (unless it is the last one left).
    Open,
}

/// One route's breaker state, small enough to keep in KV as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    pub consecutive_failures: u32,
    /// When the breaker last opened (UTC ms); `None` while closed.
    pub opened_at: Option<u64>,
}

impl BreakerState {
    pub fn admission(&self, now: u64, cfg: &BreakerConfig) -> Admission {
        match self.opened_at {
            None => Admission::Closed,
            Some(at) if now.saturating_sub(at) >= cfg.cooldown_ms => Admission::HalfOpen,
            Some(_) => Admission::Open,
        }
    }

    /// A request on this route succeeded: the breaker closes.
    pub fn on_success(&mut self) {
        *self = BreakerState::default();
    }

    /// A request on this route failed retryably. Opens the breaker at the threshold, and
    /// reopens it (a new cooldown) when a half-open trial fails.
    pub fn on_failure(&mut self, now: u64, cfg: &BreakerConfig) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let threshold = cfg.failure_threshold.max(2);
        if self.opened_at.is_some() || self.consecutive_failures >= threshold {
            self.opened_at = Some(now);
        }
    }
}

/// The two tiers of `tollgate/auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Cheap,
    Strong,
}

/// Why `tollgate/auto` chose a tier (recorded with the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierReason {
    Default,
    ExplicitHint,
    Tools,
    LongContext,
    ReasoningEffort,
}

/// The rule of `tollgate/auto`: the cheap model unless the request needs the strong one.
///
/// In order: an explicit hint (`"tollgate_tier": "cheap" | "strong"` in the request body) wins;
/// a request with `tools` goes strong; a prompt longer than `long_context_tokens` goes strong;
/// `reasoning_effort` `medium` or `high` goes strong; everything else goes cheap.
pub fn auto_tier(
    req: &ChatCompletionRequest,
    prompt_tokens: u64,
    long_context_tokens: u64,
) -> (Tier, TierReason) {
    match req.extra.get("tollgate_tier").and_then(Value::as_str) {
        Some("strong") => return (Tier::Strong, TierReason::ExplicitHint),
        Some("cheap") => return (Tier::Cheap, TierReason::ExplicitHint),
        _ => {}
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return (Tier::Strong, TierReason::Tools);
    }
    if prompt_tokens > long_context_tokens {
        return (Tier::Strong, TierReason::LongContext);
    }
    if matches!(
        req.extra.get("reasoning_effort").and_then(Value::as_str),
        Some("medium") | Some("high")
    ) {
        return (Tier::Strong, TierReason::ReasoningEffort);
    }
    (Tier::Cheap, TierReason::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(priority: u32, weight: u32) -> RouteOption {
        RouteOption { priority, weight }
    }

    #[test]
    fn order_is_by_priority_then_weight() {
        let options = [opt(2, 1), opt(1, 1), opt(1, 3), opt(3, 1)];
        let mut first_counts = [0u32; 4];
        for seed in 0..4000 {
            let order = try_order(&options, seed);
            assert_eq!(order.len(), 4);
            assert_eq!(&order[2..], &[0, 3], "lower priorities first");
            first_counts[order[0]] += 1;
        }
        // Route 2 (weight 3) leads about three times as often as route 1 (weight 1).
        let (a, b) = (first_counts[1], first_counts[2]);
        assert_eq!(a + b, 4000);
        assert!((2700..3300).contains(&b), "weighted share {b}");
        assert_eq!(try_order(&options, 42), try_order(&options, 42));
        assert!(try_order(&[], 1).is_empty());
        assert_eq!(try_order(&[opt(0, 0)], 9), vec![0]);
    }

    #[test]
    fn fallback_only_for_retryable_failures_before_output() {
        let failed = GatewayError::new(ErrorKind::UpstreamFailed, "503");
        let limited = GatewayError::new(ErrorKind::UpstreamRateLimited, "429");
        let rejected =
            GatewayError::new(ErrorKind::UpstreamRejected(400), "bad").with_code("content_filter");
        assert!(may_fall_back(&failed, false));
        assert!(may_fall_back(&limited, false));
        assert!(!may_fall_back(&failed, true));
        assert!(!may_fall_back(&rejected, false));
    }

    #[test]
    fn a_rate_limit_falls_back_but_never_opens_the_breaker() {
        let limited = GatewayError::new(ErrorKind::UpstreamRateLimited, "429");
        let failed = GatewayError::new(ErrorKind::UpstreamFailed, "503");
        let rejected = GatewayError::new(ErrorKind::UpstreamRejected(400), "bad");
        let unanswered = GatewayError::new(ErrorKind::UpstreamUnanswered, "no answer in time");
        assert!(may_fall_back(&limited, false));
        assert!(!counts_for_breaker(&limited));
        assert!(counts_for_breaker(&failed));
        assert!(counts_for_breaker(&GatewayError::upstream_redirect(307)));
        assert!(!counts_for_breaker(&rejected));
        assert!(!counts_for_breaker(&unanswered));
        // However many 429s one tenant's burst brings, the route stays closed for everyone.
        let cfg = BreakerConfig::default();
        let mut b = BreakerState::default();
        for t in 0..50 {
            if counts_for_breaker(&limited) {
                b.on_failure(t, &cfg);
            }
        }
        assert_eq!(b.admission(50, &cfg), Admission::Closed);
    }

    #[test]
    fn a_timeout_after_sending_never_falls_back() {
        // The request reached the provider and no answer came: it may have been served.
        let unanswered = GatewayError::new(ErrorKind::UpstreamUnanswered, "no answer in time");
        let unusable = GatewayError::new(ErrorKind::UpstreamUnusable, "too large");
        assert!(!may_fall_back(&unanswered, false));
        assert!(!may_fall_back(&unusable, false));
        // Unreachable, redirected or answered 5xx: the work was not done.
        assert!(may_fall_back(&GatewayError::upstream_redirect(307), false));
    }

    #[test]
    fn time_limits() {
        // Default: 900 s sweep, a minute of margin.
        assert_eq!(request_deadline(1_000, 900), 1_000 + 840_000);
        // Short settings keep three quarters; the sweep's 60 s floor is never undercut.
        assert_eq!(request_deadline(0, 4), 3_000);
        assert_eq!(request_deadline(0, 60), 45_000);
        assert_eq!(request_deadline(0, 0), 750);
        assert_eq!(request_deadline(u64::MAX - 5, 900), u64::MAX);
        // A plain request: the route's timeout, else the gateway's, capped by the deadline.
        assert_eq!(plain_timeout_ms(Some(400), 600_000, 0, 840_000), 400);
        assert_eq!(plain_timeout_ms(None, 600_000, 0, 840_000), 600_000);
        assert_eq!(plain_timeout_ms(None, 600_000, 800_000, 840_000), 40_000);
        assert_eq!(plain_timeout_ms(Some(5), 10, 900, 840), 0);
        assert_eq!(drain_until(100, 25_000, 1_000_000), 25_100);
        assert_eq!(drain_until(100, 25_000, 10_000), 10_000);
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let cfg = BreakerConfig {
            failure_threshold: 3,
            cooldown_ms: 1000,
        };
        let mut b = BreakerState::default();
        b.on_failure(10, &cfg);
        b.on_failure(20, &cfg);
        assert_eq!(b.admission(21, &cfg), Admission::Closed);
        b.on_failure(30, &cfg);
        assert_eq!(b.admission(31, &cfg), Admission::Open);
        assert_eq!(b.admission(1030, &cfg), Admission::HalfOpen);
        b.on_failure(1030, &cfg); // the trial failed: a new cooldown
        assert_eq!(b.admission(1500, &cfg), Admission::Open);
        assert_eq!(b.admission(2030, &cfg), Admission::HalfOpen);
        b.on_success();
        assert_eq!(b, BreakerState::default());

        // A single error never opens the breaker, whatever the configuration says.
        let eager = BreakerConfig {
            failure_threshold: 1,
            cooldown_ms: 1000,
        };
        let mut b = BreakerState::default();
        b.on_failure(5, &eager);
        assert_eq!(b.admission(6, &eager), Admission::Closed);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<BreakerState>(&json).unwrap(), b);
    }

    #[test]
    fn auto_tier_rule() {
        let req = |extra: &str| {
            ChatCompletionRequest::from_json(
                format!(r#"{{"model":"tollgate/auto","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(
            auto_tier(&req(""), 10, 8000),
            (Tier::Cheap, TierReason::Default)
        );
        assert_eq!(
            auto_tier(
                &req(r#","tools":[{"type":"function","function":{"name":"f"}}]"#),
                10,
                8000
            ),
            (Tier::Strong, TierReason::Tools)
        );
        assert_eq!(
            auto_tier(&req(""), 8001, 8000),
            (Tier::Strong, TierReason::LongContext)
        );
        assert_eq!(
            auto_tier(&req(r#","reasoning_effort":"high""#), 10, 8000),
            (Tier::Strong, TierReason::ReasoningEffort)
        );
        assert_eq!(
            auto_tier(
                &req(
                    r#","tollgate_tier":"cheap","tools":[{"type":"function","function":{"name":"f"}}]"#
                ),
                9000,
                8000
            ),
            (Tier::Cheap, TierReason::ExplicitHint)
        );
        assert_eq!(
            auto_tier(&req(r#","tollgate_tier":"strong""#), 1, 8000),
            (Tier::Strong, TierReason::ExplicitHint)
        );
    }
}
