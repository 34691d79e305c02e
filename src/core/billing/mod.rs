//! Money arithmetic: what a request costs and how much credit to reserve before it runs.
//!
//! # Units
//!
//! * Money is an integer number of **micro-units** (10⁻⁶ of the account currency), held in
//!   `u64`. Floats are never used.
//! * A [`Price`] is micro-units **per 1,000,000 tokens**, so a price can express fractions of a
//!   micro-unit per token (e.g. $0.15 per million tokens is `150_000`).
//! * A token count times a price is therefore in **pico-units** (10⁻¹² of the currency), and
//!   is computed in `u128`, where no product of two `u64` can overflow.
//!
//! # Rules of [`cost_micros`]
//!
//! 1. `cached_prompt_tokens` are part of `prompt_tokens`, and `reasoning_tokens` are part of
//!    `completion_tokens`. A subset reported larger than its total is clamped to the total,
//!    so no token is ever charged twice.
//! 2. Each class of token is charged at its own price: uncached prompt tokens at `input`,
//!    cached ones at `cached_input` (or `input` when `None`), non-reasoning completion tokens
//!    at `output`, reasoning ones at `reasoning` (or `output` when `None`).
//! 3. The four products are summed in pico-units, and the sum is divided by 1,000,000
//!    **rounding up, once per request**: a request is never charged less than it cost, and
//!    never more than one micro-unit above it.
//! 4. A result too large for `u64` saturates to `u64::MAX` instead of overflowing.
//!
//! # Rules of [`reservation_micros`]
//!
//! The reservation is the worst case of rule 2 for a request with `prompt_tokens` prompt
//! tokens that may generate up to `max_output_tokens`: every prompt token at the dearer of
//! `input` and `cached_input`, every output token at the dearer of `output` and `reasoning`,
//! rounded and saturated as above. Hence `reservation_micros(p, m, price) >=
//! cost_micros(usage, price)` for every usage with `prompt_tokens <= p` and
//! `completion_tokens <= m`.

use serde::{Deserialize, Serialize};

pub mod allowance;
pub mod codes;
pub mod guard;
pub mod tiers;
pub mod units;

/// Micro-units in one unit of currency.
pub const MICROS_PER_UNIT: u64 = 1_000_000;

/// The number of tokens a [`Price`] is quoted for.
pub const TOKENS_PER_PRICE: u64 = 1_000_000;

/// What a model charges, in micro-units per 1,000,000 tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Prompt tokens not served from the provider's cache.
    pub input: u64,
    /// Prompt tokens served from the cache; `None` means the same as `input`.
    pub cached_input: Option<u64>,
    /// Completion tokens other than reasoning tokens.
    pub output: u64,
    /// Reasoning tokens; `None` means the same as `output`.
    pub reasoning: Option<u64>,
}

impl Price {
    /// The price of a cached prompt token.
    pub fn cached_input_price(&self) -> u64 {
        self.cached_input.unwrap_or(self.input)
    }

    /// The price of a reasoning token.
    pub fn reasoning_price(&self) -> u64 {
        self.reasoning.unwrap_or(self.output)
    }
}

/// The tokens a request used, as reported by the provider or counted by the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// All prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// The part of `prompt_tokens` served from the provider's cache.
    pub cached_prompt_tokens: u64,
    /// All completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// The part of `completion_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

/// A multiplier in basis points that leaves prices as they are.
pub const LIST_PRICE_BPS: u64 = 10_000;

/// The largest tenant multiplier accepted (100×).
pub const MAX_MULTIPLIER_BPS: u64 = 1_000_000;

/// The largest integer stored or bound in D1: 2⁵³ − 1. D1 takes and returns numbers as JavaScript
/// doubles, which are exact only up to here, so money, token counts and times stay at or below it.
pub const MAX_SAFE_INT: u64 = (1 << 53) - 1;

/// Whether `v` survives a round trip through a JavaScript number exactly.
pub fn is_js_safe(v: i64) -> bool {
    v.unsigned_abs() <= MAX_SAFE_INT
}

/// What `usage` costs at `price`, in micro-units, rounded up once; see the module docs.
pub fn cost_micros(usage: &TokenUsage, price: &Price) -> u64 {
    cost_micros_scaled(usage, price, LIST_PRICE_BPS)
}

/// [`cost_micros`] with a tenant multiplier of `multiplier_bps` basis points (10,000 = ×1).
///
/// The multiplier is applied to the exact sum in pico-units before the single rounding up:
/// `ceil(Σ tokens × price × bps / (1,000,000 × 10,000))`. So a 12,500 bps tenant pays exactly
/// 1.25× the list cost, rounded up once, never rounded twice.
pub fn cost_micros_scaled(usage: &TokenUsage, price: &Price, multiplier_bps: u64) -> u64 {
    let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
    let plain_output = usage.completion_tokens - reasoning;

    let picos = [
        pico(uncached, price.input),
        pico(cached, price.cached_input_price()),
        pico(plain_output, price.output),
        pico(reasoning, price.reasoning_price()),
    ];
    scaled_micros_rounded_up(
        picos.into_iter().fold(0, u128::saturating_add),
        multiplier_bps,
    )
}

/// The most a request can cost: `prompt_tokens` prompt tokens and up to
/// `max_output_tokens` output tokens, each at the dearest price that could apply to it.
pub fn reservation_micros(prompt_tokens: u64, max_output_tokens: u64, price: &Price) -> u64 {
    reservation_micros_scaled(prompt_tokens, max_output_tokens, price, LIST_PRICE_BPS)
}

/// [`reservation_micros`] with a tenant multiplier, rounded like [`cost_micros_scaled`]; it
/// covers `cost_micros_scaled` of any usage within the bounds, at the same multiplier.
pub fn reservation_micros_scaled(
    prompt_tokens: u64,
    max_output_tokens: u64,
    price: &Price,
    multiplier_bps: u64,
) -> u64 {
    let input_price = price.input.max(price.cached_input_price());
    let output_price = price.output.max(price.reasoning_price());
    let picos =
        pico(prompt_tokens, input_price).saturating_add(pico(max_output_tokens, output_price));
    scaled_micros_rounded_up(picos, multiplier_bps)
}

/// `tokens × price` in pico-units; cannot overflow `u128`.
pub(crate) fn pico(tokens: u64, price_per_million: u64) -> u128 {
    u128::from(tokens) * u128::from(price_per_million)
}

/// Pico-units times `bps / 10,000` to micro-units, rounding up once and saturating at
/// `u64::MAX`. At exactly 10,000 bps this is the plain `ceil(picos / 1,000,000)`.
pub(crate) fn scaled_micros_rounded_up(picos: u128, multiplier_bps: u64) -> u64 {
    let divisor = u128::from(TOKENS_PER_PRICE) * u128::from(LIST_PRICE_BPS);
    let micros = match picos.checked_mul(u128::from(multiplier_bps)) {
        Some(scaled) => scaled.div_ceil(divisor),
        // Only for sums near u128::MAX, far beyond u64 micros: divide first, still rounding up.
        None => picos
            .div_ceil(u128::from(TOKENS_PER_PRICE))
            .saturating_mul(u128::from(multiplier_bps))
            .div_ceil(u128::from(LIST_PRICE_BPS)),
    };
    u64::try_from(micros).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// $2.50 / $10.00 per million, cached input $1.25: gpt-4o-like, for arithmetic only.
    const PRICE: Price = Price {
        input: 2_500_000,
        cached_input: Some(1_250_000),
        output: 10_000_000,
        reasoning: None,
    };

    fn usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            reasoning_tokens: reasoning,
        }
    }

    #[test]
    fn exact_values() {
        // 1M prompt tokens at $2.50 = 2,500,000 micros.
        assert_eq!(cost_micros(&usage(1_000_000, 0, 0, 0), &PRICE), 2_500_000);
        assert_eq!(cost_micros(&usage(0, 0, 1_000_000, 0), &PRICE), 10_000_000);
        // 1000 prompt (400 cached) + 200 completion:
        // 600 × 2.5 + 400 × 1.25 + 200 × 10 = 1500 + 500 + 2000 micros.
        assert_eq!(cost_micros(&usage(1000, 400, 200, 0), &PRICE), 4000);
    }

    #[test]
    fn reasoning_price() {
        let price = Price {
            reasoning: Some(20_000_000),
            ..PRICE
        };
        // 100 plain output at 10 + 50 reasoning at 20 micros per token.
        assert_eq!(cost_micros(&usage(0, 0, 150, 50), &price), 2000);
        // `None` falls back to the output price.
        assert_eq!(cost_micros(&usage(0, 0, 150, 50), &PRICE), 1500);
    }

    #[test]
    fn cached_price_defaults_to_input() {
        let price = Price {
            cached_input: None,
            ..PRICE
        };
        assert_eq!(cost_micros(&usage(1000, 400, 0, 0), &price), 2500);
    }

    #[test]
    fn rounds_up_once_per_request() {
        let price = Price {
            input: 150_000, // $0.15 per million: 0.15 micros per token
            cached_input: Some(75_000),
            output: 600_000,
            reasoning: None,
        };
        // 1 token = 0.15 micros, charged as 1.
        assert_eq!(cost_micros(&usage(1, 0, 0, 0), &price), 1);
        // 10 tokens = 1.5 micros => 2.
        assert_eq!(cost_micros(&usage(10, 0, 0, 0), &price), 2);
        // Exactly 3 micros is not rounded further.
        assert_eq!(cost_micros(&usage(20, 0, 0, 0), &price), 3);
        // Classes are summed before rounding: 0.15 + 0.075 + 0.6 = 0.825 => 1, not 3.
        assert_eq!(cost_micros(&usage(2, 1, 1, 0), &price), 1);
    }

    #[test]
    fn rounding_error_is_below_one_micro() {
        let price = Price {
            input: 333_333,
            cached_input: Some(7),
            output: 1_234_567,
            reasoning: Some(999_999),
        };
        for n in 0..2000u64 {
            let u = usage(n * 7, n * 3, n * 5, n);
            let exact = u128::from(u.prompt_tokens - u.cached_prompt_tokens) * 333_333
                + u128::from(u.cached_prompt_tokens) * 7
                + u128::from(u.completion_tokens - u.reasoning_tokens) * 1_234_567
                + u128::from(u.reasoning_tokens) * 999_999;
            let charged = u128::from(cost_micros(&u, &price)) * 1_000_000;
            assert!(charged >= exact && charged - exact < 1_000_000, "n = {n}");
        }
    }

    #[test]
    fn zero() {
        assert_eq!(cost_micros(&TokenUsage::default(), &PRICE), 0);
        assert_eq!(cost_micros(&usage(1000, 0, 1000, 0), &Price::default()), 0);
        assert_eq!(reservation_micros(0, 0, &PRICE), 0);
        assert_eq!(reservation_micros(1000, 1000, &Price::default()), 0);
    }

    #[test]
    fn subsets_are_clamped() {
        // 500 cached of 100 prompt: all 100 are cached, none charged twice.
        assert_eq!(
            cost_micros(&usage(100, 500, 0, 0), &PRICE),
            cost_micros(&usage(100, 100, 0, 0), &PRICE)
        );
        assert_eq!(cost_micros(&usage(100, 500, 0, 0), &PRICE), 125);
        let price = Price {
            reasoning: Some(20_000_000),
            ..PRICE
        };
        assert_eq!(
            cost_micros(&usage(0, 0, 10, u64::MAX), &price),
            cost_micros(&usage(0, 0, 10, 10), &price)
        );
        assert_eq!(cost_micros(&usage(0, u64::MAX, 0, u64::MAX), &price), 0);
    }

    #[test]
    fn huge_numbers_saturate() {
        let max_price = Price {
            input: u64::MAX,
            cached_input: Some(u64::MAX),
            output: u64::MAX,
            reasoning: Some(u64::MAX),
        };
        let max_usage = usage(u64::MAX, u64::MAX / 2, u64::MAX, u64::MAX / 2);
        assert_eq!(cost_micros(&max_usage, &max_price), u64::MAX);
        assert_eq!(reservation_micros(u64::MAX, u64::MAX, &max_price), u64::MAX);
        // Large but representable: u64::MAX tokens at 1 micro per million.
        let tiny = Price {
            input: 1,
            ..Price::default()
        };
        assert_eq!(
            cost_micros(&usage(u64::MAX, 0, 0, 0), &tiny),
            u64::MAX.div_ceil(1_000_000)
        );
        // Just past u64::MAX micros.
        let price = Price {
            input: 1_000_001,
            ..Price::default()
        };
        assert_eq!(cost_micros(&usage(u64::MAX, 0, 0, 0), &price), u64::MAX);
    }

    #[test]
    fn reservation_values() {
        // 1000 prompt at 2.5 + 500 output at 10 micros per token.
        assert_eq!(reservation_micros(1000, 500, &PRICE), 7500);
        let dear_reasoning = Price {
            reasoning: Some(40_000_000),
            ..PRICE
        };
        assert_eq!(reservation_micros(0, 500, &dear_reasoning), 20_000);
        let dear_cache = Price {
            cached_input: Some(3_000_000),
            ..PRICE
        };
        assert_eq!(reservation_micros(1000, 0, &dear_cache), 3000);
        let tiny = Price {
            input: 1,
            cached_input: None,
            ..PRICE
        };
        assert_eq!(reservation_micros(1, 0, &tiny), 1); // 10⁻⁶ micros rounds up
    }

    /// A small deterministic generator (xorshift64*) for property tests (also `units`').
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6D_CDDD)
        }

        /// Mostly small values, sometimes huge ones.
        pub(super) fn value(&mut self) -> u64 {
            let x = self.next();
            match x % 4 {
                0 => x % 100,
                1 => x % 100_000,
                2 => x % 100_000_000_000,
                _ => x,
            }
        }

        pub(super) fn option(&mut self) -> Option<u64> {
            if self.next().is_multiple_of(3) {
                None
            } else {
                Some(self.value())
            }
        }
    }

    #[test]
    fn reservation_covers_any_usage_within_bounds() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let price = Price {
                input: rng.value(),
                cached_input: rng.option(),
                output: rng.value(),
                reasoning: rng.option(),
            };
            let max_prompt = rng.value();
            let max_output = rng.value();
            let reserved = reservation_micros(max_prompt, max_output, &price);
            for _ in 0..5 {
                let prompt = rng.next() % max_prompt.saturating_add(1);
                let completion = rng.next() % max_output.saturating_add(1);
                let u = usage(prompt, rng.value(), completion, rng.value());
                let cost = cost_micros(&u, &price);
                assert!(reserved >= cost, "{price:?} {u:?}: {reserved} < {cost}");
            }
            // The worst case itself is covered exactly when all tokens take the dear price.
            let worst = usage(max_prompt, 0, max_output, 0);
            assert!(reserved >= cost_micros(&worst, &price));
        }
    }

    #[test]
    fn cost_is_monotonic_in_tokens() {
        let mut rng = Rng(42);
        for _ in 0..10_000 {
            let price = Price {
                input: rng.value(),
                cached_input: rng.option(),
                output: rng.value(),
                reasoning: rng.option(),
            };
            let u = usage(rng.value(), rng.value(), rng.value(), rng.value());
            let more = TokenUsage {
                prompt_tokens: u.prompt_tokens.saturating_add(rng.next() % 1000),
                completion_tokens: u.completion_tokens.saturating_add(rng.next() % 1000),
                ..u
            };
            // Adding uncached / plain tokens never lowers the cost.
            if u.cached_prompt_tokens <= u.prompt_tokens
                && u.reasoning_tokens <= u.completion_tokens
            {
                assert!(cost_micros(&more, &price) >= cost_micros(&u, &price));
            }
        }
    }

    #[test]
    fn multiplier_is_exact_and_rounds_once() {
        // 1000 prompt (400 cached) + 200 completion = 4000 micros at list price.
        let u = usage(1000, 400, 200, 0);
        assert_eq!(cost_micros_scaled(&u, &PRICE, 10_000), 4000);
        assert_eq!(cost_micros_scaled(&u, &PRICE, 12_500), 5000);
        assert_eq!(cost_micros_scaled(&u, &PRICE, 5_000), 2000);
        assert_eq!(cost_micros_scaled(&u, &PRICE, 1), 1); // 0.4 micros rounds up
        let cheap = Price {
            input: 150_000,
            cached_input: None,
            output: 0,
            reasoning: None,
        };
        // 10 tokens = 1.5 micros; ×1.1 = 1.65 → 2 (rounded once, not ceil(1.5)=2 then ×1.1=2.2→3).
        assert_eq!(cost_micros_scaled(&usage(10, 0, 0, 0), &cheap, 11_000), 2);
        // 20 tokens = 3 micros; ×1.1 = 3.3 → 4; at list price exactly 3.
        assert_eq!(cost_micros_scaled(&usage(20, 0, 0, 0), &cheap, 11_000), 4);
        assert_eq!(cost_micros_scaled(&usage(20, 0, 0, 0), &cheap, 10_000), 3);
    }

    #[test]
    fn scaled_reservation_covers_scaled_cost() {
        let mut rng = Rng(7);
        for _ in 0..10_000 {
            let price = Price {
                input: rng.value() % 100_000_000,
                cached_input: rng.option().map(|v| v % 100_000_000),
                output: rng.value() % 100_000_000,
                reasoning: rng.option().map(|v| v % 100_000_000),
            };
            let bps = 1 + rng.next() % MAX_MULTIPLIER_BPS;
            let (p, m) = (rng.value() % 1_000_000, rng.value() % 1_000_000);
            let reserved = reservation_micros_scaled(p, m, &price, bps);
            let u = usage(
                rng.next() % (p + 1),
                rng.value(),
                rng.next() % (m + 1),
                rng.value(),
            );
            assert!(reserved >= cost_micros_scaled(&u, &price, bps));
            // Exactness: charged × 10¹⁰ is the exact scaled amount rounded up by less than 1.
            let c = cost_micros_scaled(&u, &price, bps);
            let cached = u.cached_prompt_tokens.min(u.prompt_tokens);
            let reasoning = u.reasoning_tokens.min(u.completion_tokens);
            let exact = (u128::from(u.prompt_tokens - cached) * u128::from(price.input)
                + u128::from(cached) * u128::from(price.cached_input_price())
                + u128::from(u.completion_tokens - reasoning) * u128::from(price.output)
                + u128::from(reasoning) * u128::from(price.reasoning_price()))
                * u128::from(bps);
            let charged = u128::from(c) * 10_000_000_000;
            assert!(charged >= exact && charged - exact < 10_000_000_000);
        }
        assert_eq!(
            reservation_micros_scaled(u64::MAX, u64::MAX, &PRICE, MAX_MULTIPLIER_BPS),
            u64::MAX
        );
    }

    #[test]
    fn js_safe_bounds() {
        assert!(is_js_safe(0));
        assert!(is_js_safe(MAX_SAFE_INT as i64));
        assert!(is_js_safe(-(MAX_SAFE_INT as i64)));
        assert!(!is_js_safe(MAX_SAFE_INT as i64 + 1));
        assert!(!is_js_safe(-(MAX_SAFE_INT as i64) - 1));
        assert!(!is_js_safe(i64::MAX));
        assert!(!is_js_safe(i64::MIN));
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&PRICE).unwrap();
        assert_eq!(serde_json::from_str::<Price>(&json).unwrap(), PRICE);
        let u = usage(1, 2, 3, 4);
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<TokenUsage>(&json).unwrap(), u);
    }
}
