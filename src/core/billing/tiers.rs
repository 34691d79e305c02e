//! Prices beyond the four token classes: cache writes (5-minute and 1-hour) and long-context
//! tiers.
//!
//! * **Cache writes.** Anthropic bills input tokens written to its prompt cache at their own
//!   prices, by lifetime: 1.25× the input price for the default 5-minute lifetime, 2× for one
//!   hour (<https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing>). A
//!   [`CacheWritePrices`] holds both; `None` means the input price of the tier (a provider
//!   that reports no writes never needs them).
//! * **Long context.** Some models price a whole request higher once its prompt passes a
//!   threshold: Claude Sonnet with the 1M context above 200,000 input tokens, Gemini 2.5 Pro
//!   above 200,000 (<https://ai.google.dev/gemini-api/docs/pricing>). A [`LongContext`] tier
//!   names the threshold and a complete second set of prices; when a request's prompt tokens
//!   (cache reads and writes included, as both providers count them) are **above** it, every
//!   token of the request — input, cached, writes, output, reasoning — is charged at the tier's
//!   prices.
//!
//! # Rules of [`cost_micros_tiered`]
//!
//! The rules of [`super::cost_micros`], extended:
//! 1. Cache reads and writes are parts of `prompt_tokens`. They are taken from it in the order
//!    reads, 1-hour writes, 5-minute writes, each clamped to what is left, so no token is
//!    charged twice and a subset reported larger than its total is billed as the total.
//! 2. The tier is chosen once per request from `prompt_tokens` ([`PriceSheet::tier_for`]).
//! 3. All products are summed in pico-units and divided once, rounding up, with the tenant
//!    multiplier applied before the rounding; the result saturates at `u64::MAX`.
//!
//! With no long-context tier and no cache writes it is exactly
//! [`super::cost_micros_scaled`] (a property test checks it).
//!
//! # Rules of [`reservation_micros_tiered`]
//!
//! The tier of the reservation's prompt count, every prompt token at the dearest input price of
//! that tier (uncached, cached, either write) and every output token at the dearer of output and
//! reasoning. It covers the cost of any usage with at most that many prompt tokens and at most
//! `max_output_tokens` output tokens, provided no long-context price is below its base price
//! ([`PriceSheet::is_monotonic`]): a smaller prompt is then in the same tier or a cheaper one.
//! The admin API does not require it (a provider may price a tier lower): a charge above the
//! reservation is settled like any other (reservation, allowance, balance, then debt).

use serde::{Deserialize, Serialize};

use super::{pico, scaled_micros_rounded_up, Price, TokenUsage, LIST_PRICE_BPS};

/// Cache-write prices, micro-units per 1,000,000 tokens; `None` is the tier's input price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheWritePrices {
    pub five_minutes: Option<u64>,
    pub one_hour: Option<u64>,
}

/// One complete set of prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub price: Price,
    pub cache_write: CacheWritePrices,
}

impl Tier {
    pub fn write_5m_price(&self) -> u64 {
        self.cache_write.five_minutes.unwrap_or(self.price.input)
    }

    pub fn write_1h_price(&self) -> u64 {
        self.cache_write.one_hour.unwrap_or(self.price.input)
    }

    /// The dearest price a prompt token can have in this tier.
    fn max_input(&self) -> u64 {
        self.price
            .input
            .max(self.price.cached_input_price())
            .max(self.write_5m_price())
            .max(self.write_1h_price())
    }

    /// The dearest price an output token can have in this tier.
    fn max_output(&self) -> u64 {
        self.price.output.max(self.price.reasoning_price())
    }
}

/// The prices of requests whose prompt is above `above_prompt_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongContext {
    pub above_prompt_tokens: u64,
    pub tier: Tier,
}

/// Everything a model charges: the base tier and an optional long-context tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceSheet {
    pub base: Tier,
    pub long_context: Option<LongContext>,
}

impl PriceSheet {
    /// A sheet of the four token prices only.
    pub fn flat(price: Price) -> Self {
        PriceSheet {
            base: Tier {
                price,
                cache_write: CacheWritePrices::default(),
            },
            long_context: None,
        }
    }

    /// The tier of a request with `prompt_tokens` prompt tokens.
    pub fn tier_for(&self, prompt_tokens: u64) -> &Tier {
        match &self.long_context {
            Some(long) if prompt_tokens > long.above_prompt_tokens => &long.tier,
            _ => &self.base,
        }
    }

    /// Whether a request of `prompt_tokens` prompt tokens is priced at the long-context tier.
    pub fn is_long(&self, prompt_tokens: u64) -> bool {
        self.long_context
            .as_ref()
            .is_some_and(|long| prompt_tokens > long.above_prompt_tokens)
    }

    /// Whether no price of the long-context tier is below the base tier's: what providers do,
    /// and what makes the reservation a cover (a shorter prompt can never cost more). Not
    /// required of an admin's prices (see the module docs).
    pub fn is_monotonic(&self) -> bool {
        let Some(long) = &self.long_context else {
            return true;
        };
        let (b, l) = (&self.base, &long.tier);
        l.price.input >= b.price.input
            && l.price.cached_input_price() >= b.price.cached_input_price()
            && l.price.output >= b.price.output
            && l.price.reasoning_price() >= b.price.reasoning_price()
            && l.write_5m_price() >= b.write_5m_price()
            && l.write_1h_price() >= b.write_1h_price()
    }
}

/// The cache-write and long-context prices of a price version as the admin API takes them
/// (`PUT /admin/models`) and `price_versions` stores them (schema/0013): micro-units per
/// 1,000,000 tokens, `None` = not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierFields {
    pub cache_write_5m_price: Option<u64>,
    pub cache_write_1h_price: Option<u64>,
    pub long_context_threshold: Option<u64>,
    pub long_input_price: Option<u64>,
    pub long_cached_input_price: Option<u64>,
    pub long_output_price: Option<u64>,
    pub long_reasoning_price: Option<u64>,
    pub long_cache_write_5m_price: Option<u64>,
    pub long_cache_write_1h_price: Option<u64>,
}

/// A field of [`TierFields`] that cannot be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierFieldError {
    pub field: &'static str,
    pub message: String,
}

impl TierFields {
    /// Checks the long-context tier is whole: a threshold above 0 with its input and output
    /// prices, and no `long_*` price without a threshold (it would never apply). The long prices
    /// need not be above the base ones (docs/money.md: a reservation then covers its own
    /// tier only).
    pub fn check(&self) -> Result<(), TierFieldError> {
        let err = |field: &'static str, message: &str| {
            Err(TierFieldError {
                field,
                message: message.to_string(),
            })
        };
        let long_prices = [
            ("long_input_price", self.long_input_price),
            ("long_cached_input_price", self.long_cached_input_price),
            ("long_output_price", self.long_output_price),
            ("long_reasoning_price", self.long_reasoning_price),
            ("long_cache_write_5m_price", self.long_cache_write_5m_price),
            ("long_cache_write_1h_price", self.long_cache_write_1h_price),
        ];
        match self.long_context_threshold {
            Some(0) => err(
                "long_context_threshold",
                "`long_context_threshold` must be at least 1 (prompt tokens above it are priced at the long-context prices).",
            ),
            Some(_) if self.long_input_price.is_none() => err(
                "long_input_price",
                "A long-context tier needs `long_input_price` (and `long_output_price`).",
            ),
            Some(_) if self.long_output_price.is_none() => err(
                "long_output_price",
                "A long-context tier needs `long_output_price` (and `long_input_price`).",
            ),
            Some(_) => Ok(()),
            None => match long_prices.iter().find(|(_, v)| v.is_some()) {
                Some((field, _)) => err(
                    field,
                    &format!("`{field}` needs `long_context_threshold`: the prompt size above which the long-context prices apply."),
                ),
                None => Ok(()),
            },
        }
    }
}

/// The tokens of a request, with the cache writes apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieredUsage {
    /// The four classes; `prompt_tokens` includes cache reads and writes.
    pub tokens: TokenUsage,
    /// Part of `prompt_tokens` written to the cache for 5 minutes.
    pub cache_write_5m: u64,
    /// Part of `prompt_tokens` written to the cache for 1 hour.
    pub cache_write_1h: u64,
}

impl From<TokenUsage> for TieredUsage {
    fn from(tokens: TokenUsage) -> Self {
        TieredUsage {
            tokens,
            ..TieredUsage::default()
        }
    }
}

/// The prompt of a usage split by price (rule 1 of [`cost_micros_tiered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PromptSplit {
    uncached: u64,
    cached: u64,
    write_5m: u64,
    write_1h: u64,
}

impl TieredUsage {
    fn prompt_split(&self) -> PromptSplit {
        let mut left = self.tokens.prompt_tokens;
        let mut take = |n: u64| {
            let n = n.min(left);
            left -= n;
            n
        };
        let cached = take(self.tokens.cached_prompt_tokens);
        let write_1h = take(self.cache_write_1h);
        let write_5m = take(self.cache_write_5m);
        PromptSplit {
            uncached: left,
            cached,
            write_5m,
            write_1h,
        }
    }

    /// The cache writes as billed, `(5-minute, 1-hour)`: each clamped to what the prompt has
    /// left after the reads (and, for the 5-minute ones, the 1-hour ones).
    pub fn billed_writes(&self) -> (u64, u64) {
        let split = self.prompt_split();
        (split.write_5m, split.write_1h)
    }
}

/// What `usage` costs on `sheet` at `multiplier_bps`, in micro-units, rounded up once; see the
/// module docs.
pub fn cost_micros_tiered(usage: &TieredUsage, sheet: &PriceSheet, multiplier_bps: u64) -> u64 {
    let t = &usage.tokens;
    let tier = sheet.tier_for(t.prompt_tokens);
    let PromptSplit {
        uncached,
        cached,
        write_5m,
        write_1h,
    } = usage.prompt_split();
    let reasoning = t.reasoning_tokens.min(t.completion_tokens);
    let plain_output = t.completion_tokens - reasoning;
    let p = &tier.price;
    let picos = [
        pico(uncached, p.input),
        pico(cached, p.cached_input_price()),
        pico(write_5m, tier.write_5m_price()),
        pico(write_1h, tier.write_1h_price()),
        pico(plain_output, p.output),
        pico(reasoning, p.reasoning_price()),
    ];
    scaled_micros_rounded_up(
        picos.into_iter().fold(0, u128::saturating_add),
        multiplier_bps,
    )
}

/// [`cost_micros_tiered`] at list price.
pub fn cost_micros_tiered_list(usage: &TieredUsage, sheet: &PriceSheet) -> u64 {
    cost_micros_tiered(usage, sheet, LIST_PRICE_BPS)
}

/// The most a request of `prompt_tokens` prompt tokens and up to `max_output_tokens` output
/// tokens can cost on `sheet`; see the module docs.
pub fn reservation_micros_tiered(
    prompt_tokens: u64,
    max_output_tokens: u64,
    sheet: &PriceSheet,
    multiplier_bps: u64,
) -> u64 {
    let tier = sheet.tier_for(prompt_tokens);
    let picos = pico(prompt_tokens, tier.max_input())
        .saturating_add(pico(max_output_tokens, tier.max_output()));
    scaled_micros_rounded_up(picos, multiplier_bps)
}

/// What `output_tokens` more output tokens can cost in a request of `prompt_tokens` prompt
/// tokens: the dearer of output and reasoning of that prompt's tier. A stream's reservation
/// grows by this when it runs past its cover (`gateway/guard.rs`).
pub fn output_reservation_micros_tiered(
    prompt_tokens: u64,
    output_tokens: u64,
    sheet: &PriceSheet,
    multiplier_bps: u64,
) -> u64 {
    let tier = sheet.tier_for(prompt_tokens);
    scaled_micros_rounded_up(pico(output_tokens, tier.max_output()), multiplier_bps)
}

#[cfg(test)]
mod tests {
    use super::super::{cost_micros_scaled, reservation_micros_scaled};
    use super::*;

    /// Claude Sonnet 4.5-like, for arithmetic only: $3 / $15, cache read $0.30, writes $3.75 (5m)
    /// and $6 (1h); above 200K: $6 / $22.50, read $0.60, writes $7.50 / $12.
    fn sonnet() -> PriceSheet {
        PriceSheet {
            base: Tier {
                price: Price {
                    input: 3_000_000,
                    cached_input: Some(300_000),
                    output: 15_000_000,
                    reasoning: None,
                },
                cache_write: CacheWritePrices {
                    five_minutes: Some(3_750_000),
                    one_hour: Some(6_000_000),
                },
            },
            long_context: Some(LongContext {
                above_prompt_tokens: 200_000,
                tier: Tier {
                    price: Price {
                        input: 6_000_000,
                        cached_input: Some(600_000),
                        output: 22_500_000,
                        reasoning: None,
                    },
                    cache_write: CacheWritePrices {
                        five_minutes: Some(7_500_000),
                        one_hour: Some(12_000_000),
                    },
                },
            }),
        }
    }

    fn usage(prompt: u64, cached: u64, w5: u64, w1: u64, out: u64, reasoning: u64) -> TieredUsage {
        TieredUsage {
            tokens: TokenUsage {
                prompt_tokens: prompt,
                cached_prompt_tokens: cached,
                completion_tokens: out,
                reasoning_tokens: reasoning,
            },
            cache_write_5m: w5,
            cache_write_1h: w1,
        }
    }

    #[test]
    fn tier_fields_must_make_a_whole_tier() {
        let whole = TierFields {
            cache_write_5m_price: Some(3_750_000),
            long_context_threshold: Some(200_000),
            long_input_price: Some(6_000_000),
            long_output_price: Some(22_500_000),
            ..TierFields::default()
        };
        assert_eq!(whole.check(), Ok(()));
        assert_eq!(TierFields::default().check(), Ok(()));
        // Cheaper long prices are allowed.
        let cheaper = TierFields {
            long_input_price: Some(1),
            ..whole
        };
        assert_eq!(cheaper.check(), Ok(()));
        let field = |f: TierFields| f.check().unwrap_err().field;
        assert_eq!(
            field(TierFields {
                long_context_threshold: Some(0),
                ..whole
            }),
            "long_context_threshold"
        );
        assert_eq!(
            field(TierFields {
                long_input_price: None,
                ..whole
            }),
            "long_input_price"
        );
        assert_eq!(
            field(TierFields {
                long_output_price: None,
                ..whole
            }),
            "long_output_price"
        );
        assert_eq!(
            field(TierFields {
                long_cache_write_1h_price: Some(5),
                ..TierFields::default()
            }),
            "long_cache_write_1h_price"
        );
    }

    #[test]
    fn extensions_are_priced_at_the_tier_of_the_prompt() {
        let sheet = sonnet();
        // 1000 more output tokens: $15 on the base tier, $22.50 above 200K prompt tokens.
        assert_eq!(
            output_reservation_micros_tiered(1_000, 1_000, &sheet, LIST_PRICE_BPS),
            15_000
        );
        assert_eq!(
            output_reservation_micros_tiered(200_001, 1_000, &sheet, LIST_PRICE_BPS),
            22_500
        );
        // With the tenant multiplier, rounded up once.
        assert_eq!(
            output_reservation_micros_tiered(200_001, 1, &sheet, 15_000),
            34
        );
        // A reservation plus its extension covers a usage with that much more output.
        let reserved = reservation_micros_tiered(300_000, 10, &sheet, LIST_PRICE_BPS)
            + output_reservation_micros_tiered(300_000, 1_000, &sheet, LIST_PRICE_BPS);
        let used = usage(300_000, 0, 0, 0, 1_010, 0);
        assert!(cost_micros_tiered_list(&used, &sheet) <= reserved);
    }

    #[test]
    fn cache_writes_at_their_own_prices() {
        // 4525 prompt = 25 uncached + 1500 read + 1000 (5m) + 2000 (1h) writes; 96 out.
        // 25×3 + 1500×0.3 + 1000×3.75 + 2000×6 + 96×15 = 75 + 450 + 3750 + 12000 + 1440.
        let u = usage(4525, 1500, 1000, 2000, 96, 0);
        assert_eq!(cost_micros_tiered_list(&u, &sonnet()), 17_715);
    }

    #[test]
    fn write_prices_default_to_the_input_price() {
        let mut sheet = sonnet();
        sheet.base.cache_write = CacheWritePrices::default();
        // 100 writes of each kind at $3 + nothing else.
        assert_eq!(
            cost_micros_tiered_list(&usage(200, 0, 100, 100, 0, 0), &sheet),
            600
        );
    }

    #[test]
    fn long_context_applies_to_the_whole_request_above_the_threshold() {
        let at = usage(200_000, 0, 0, 0, 1000, 0);
        // Exactly at the threshold: the base tier. 200000×3 + 1000×15.
        assert_eq!(cost_micros_tiered_list(&at, &sonnet()), 615_000);
        let above = usage(200_001, 1, 0, 0, 1000, 0);
        // 200000×6 + 1×0.6 + 1000×22.5 = 1,200,000 + 0.6 + 22,500 → rounded up once.
        assert_eq!(cost_micros_tiered_list(&above, &sonnet()), 1_222_501);
        // Cache reads and writes count toward the threshold.
        let cached = usage(250_000, 200_000, 0, 0, 0, 0);
        assert_eq!(
            cost_micros_tiered_list(&cached, &sonnet()),
            50_000 * 6 + 200_000 * 6 / 10
        );
    }

    #[test]
    fn subsets_are_clamped_in_order() {
        let sheet = sonnet();
        // Reads and writes claiming more than the prompt: reads first, then 1h, then 5m.
        let u = usage(100, 60, 1000, 30, 0, 0);
        let exact = usage(100, 60, 10, 30, 0, 0);
        assert_eq!(
            cost_micros_tiered_list(&u, &sheet),
            cost_micros_tiered_list(&exact, &sheet)
        );
        // 60×0.3 + 30×6 + 10×3.75 = 18 + 180 + 37.5 → 236.
        assert_eq!(cost_micros_tiered_list(&u, &sheet), 236);
        assert_eq!(
            cost_micros_tiered_list(&usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX, 0, 0), &sheet),
            cost_micros_tiered_list(&usage(u64::MAX, u64::MAX, 0, 0, 0, 0), &sheet)
        );
    }

    /// xorshift64*, as in the parent module's property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6D_CDDD)
        }

        fn value(&mut self) -> u64 {
            let x = self.next();
            match x % 3 {
                0 => x % 1000,
                1 => x % 1_000_000,
                _ => x % 100_000_000_000,
            }
        }

        fn option(&mut self) -> Option<u64> {
            (!self.next().is_multiple_of(3)).then(|| self.value())
        }

        fn price(&mut self) -> Price {
            Price {
                input: self.value(),
                cached_input: self.option(),
                output: self.value(),
                reasoning: self.option(),
            }
        }
    }

    #[test]
    fn a_flat_sheet_without_writes_is_the_four_class_cost() {
        let mut rng = Rng(0xC0FF_EE00_1234_5678);
        for _ in 0..10_000 {
            let price = rng.price();
            let bps = 1 + rng.next() % 1_000_000;
            let tokens = TokenUsage {
                prompt_tokens: rng.value(),
                cached_prompt_tokens: rng.value(),
                completion_tokens: rng.value(),
                reasoning_tokens: rng.value(),
            };
            let sheet = PriceSheet::flat(price);
            assert_eq!(
                cost_micros_tiered(&tokens.into(), &sheet, bps),
                cost_micros_scaled(&tokens, &price, bps)
            );
            let (p, m) = (rng.value(), rng.value());
            assert_eq!(
                reservation_micros_tiered(p, m, &sheet, bps),
                reservation_micros_scaled(p, m, &price, bps)
            );
        }
    }

    #[test]
    fn reservation_covers_any_usage_within_bounds_on_a_monotonic_sheet() {
        let mut rng = Rng(99);
        let mut checked = 0;
        for _ in 0..20_000 {
            let base = Tier {
                price: rng.price(),
                cache_write: CacheWritePrices {
                    five_minutes: rng.option(),
                    one_hour: rng.option(),
                },
            };
            let mut long = base;
            long.price.input += rng.value();
            long.price.output += rng.value();
            long.price.cached_input = Some(base.price.cached_input_price() + rng.value());
            long.price.reasoning = Some(base.price.reasoning_price() + rng.value());
            long.cache_write.five_minutes = Some(base.write_5m_price() + rng.value());
            long.cache_write.one_hour = Some(base.write_1h_price() + rng.value());
            let sheet = PriceSheet {
                base,
                long_context: Some(LongContext {
                    above_prompt_tokens: rng.value(),
                    tier: long,
                }),
            };
            assert!(sheet.is_monotonic());
            let bps = 1 + rng.next() % 100_000;
            let (p, m) = (rng.value(), rng.value());
            let reserved = reservation_micros_tiered(p, m, &sheet, bps);
            for _ in 0..4 {
                let prompt = rng.next() % (p + 1);
                let u = usage(
                    prompt,
                    rng.next() % (prompt + 1),
                    rng.next() % (prompt + 1),
                    rng.next() % (prompt + 1),
                    rng.next() % (m + 1),
                    rng.value(),
                );
                let cost = cost_micros_tiered(&u, &sheet, bps);
                assert!(reserved >= cost, "{sheet:?} {u:?}: {reserved} < {cost}");
                checked += 1;
            }
        }
        assert_eq!(checked, 80_000);
    }

    #[test]
    fn a_cheaper_long_tier_is_not_monotonic() {
        let mut sheet = sonnet();
        assert!(sheet.is_monotonic());
        assert!(PriceSheet::flat(Price::default()).is_monotonic());
        if let Some(long) = &mut sheet.long_context {
            long.tier.cache_write.one_hour = Some(1);
        }
        assert!(!sheet.is_monotonic());
    }
}
