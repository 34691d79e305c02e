//! Metering: what a request used and what it costs.
//!
//! [`StreamMeter`] observes the items of one stream between an adapter's stream decoder and the
//! inbound codec's encoder: it collects the generated text for the local completion count, keeps
//! the provider's usage and how the stream ended, and writes no bytes (the encoder, e.g.
//! [`crate::core::inbound::openai::StreamEncoder`], writes what the client receives). [`bill`]
//! turns counts into a charge.

use serde::Serialize;

use crate::core::billing::tiers::{cost_micros_tiered, PriceSheet, TieredUsage};
use crate::core::billing::{TokenUsage, MAX_SAFE_INT};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::Usage;
use crate::core::providers::StreamItem;
use crate::core::tokens::Encoding;

/// How a request ended, as recorded in `usage.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Ok,
    /// The client went away before the end; prompt and delivered output are charged.
    ClientAbort,
    /// The provider failed; nothing is charged before the first token, what was delivered after.
    UpstreamError,
    /// Output was cut short by the gateway (reservation exhausted, or the stream's deadline).
    Truncated,
    /// The request was sent and no complete answer came in time: the provider may have done the
    /// work, so the reservation is charged.
    UpstreamTimeout,
    /// The provider answered 2xx with something the gateway cannot use (too large, broken off,
    /// unparseable): the provider billed it, so the reservation is charged.
    UpstreamUnusable,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::ClientAbort => "client_abort",
            RequestStatus::UpstreamError => "upstream_error",
            RequestStatus::Truncated => "truncated",
            RequestStatus::UpstreamTimeout => "upstream_timeout",
            RequestStatus::UpstreamUnusable => "upstream_unusable",
        }
    }
}

/// Where the billed token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    Upstream,
    Local,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Upstream => "upstream",
            UsageSource::Local => "local",
        }
    }
}

/// The `id`, `model` and `created` of a stream's chunks, for a chunk the gateway adds itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// Measures one stream: it observes each decoded item (in order, as the client would get it) and
/// keeps what settlement needs: the generated text, the provider's usage, whether the stream
/// answered, completed, failed or was cut. It writes no bytes: the inbound codec's encoder does
/// (for chat completions, [`crate::core::inbound::openai::StreamEncoder`]), after asking the meter
/// whether the stream is still open.
#[derive(Debug, Default)]
pub struct StreamMeter {
    text: String,
    usage: Option<Usage>,
    done: bool,
    error: Option<GatewayError>,
    content_chunks: u64,
    last_header: Option<StreamHeader>,
    truncated: bool,
    /// The provider sent something parseable: a chunk, `[DONE]` or an error event of its own
    /// (keep-alives do not count: an HTML page read as SSE is nothing but ignored lines).
    answered: bool,
    /// The choices' finish reason ([`fold_finish_reason`]).
    finish_reason: Option<String>,
    /// The provider had answered (something parseable) and then its stream broke off or went
    /// silent ([`StreamMeter::close`]), rather than ending with an error event of its own.
    broke_off: bool,
}

impl StreamMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the stream is still open for the client: not ended by `[DONE]`, a cut or an error.
    pub fn open(&self) -> bool {
        !self.done && self.error.is_none()
    }

    /// Observes one decoded item; `true` when it reaches the client (the stream was open). Once
    /// the stream has ended for the client, later items are neither sent nor metered: the
    /// upstream may send more in the same read.
    pub fn observe(&mut self, item: &StreamItem) -> bool {
        if !self.open() {
            return false;
        }
        match item {
            StreamItem::KeepAlive(_) => {}
            StreamItem::Done => {
                self.answered = true;
                self.done = true;
            }
            StreamItem::Error(err) => {
                self.answered = true;
                self.error = Some(err.clone());
            }
            StreamItem::Chunk { chunk, .. } => {
                self.answered = true;
                if !chunk.id.is_empty() {
                    self.last_header = Some(StreamHeader {
                        id: chunk.id.clone(),
                        model: chunk.model.clone(),
                        created: chunk.created,
                    });
                }
                let before = self.text.len();
                chunk.append_generated_text(&mut self.text);
                if self.text.len() > before {
                    self.content_chunks += 1;
                }
                if let Some(usage) = &chunk.usage {
                    self.usage = Some(usage.clone());
                }
                for reason in chunk
                    .choices
                    .iter()
                    .filter_map(|c| c.finish_reason.as_deref())
                {
                    fold_finish_reason(&mut self.finish_reason, reason);
                }
            }
        }
        true
    }

    /// The finish reason the provider gave its choices ([`fold_finish_reason`]), if any.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// The upstream connection ended (or broke). If it ended without `[DONE]` or an error, the
    /// stream counts as failed and the error the client must be told is returned (`None`: the
    /// stream had already ended). `broken` is why (a broken connection, a timeout, or the
    /// decoder's complaint about an incomplete stream).
    ///
    /// A 2xx stream that ends before anything parseable arrived (an HTML page, an empty body)
    /// is an unusable answer like a plain one: the error becomes `UpstreamUnusable`, which the
    /// provider may have billed (README, "how a request ends"). A stream that got no bytes at
    /// all before its first-byte timeout keeps its own `UpstreamUnanswered`.
    pub fn close(&mut self, broken: Option<GatewayError>) -> Option<&GatewayError> {
        if !self.open() {
            return None;
        }
        let err = broken.unwrap_or_else(|| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                "The provider closed the stream before it was complete.",
            )
        });
        self.broke_off = self.answered;
        let err = if self.answered || err.kind == ErrorKind::UpstreamUnanswered {
            err
        } else {
            // Same words (the client learns what happened), the kind that is charged.
            GatewayError::new(ErrorKind::UpstreamUnusable, err.message)
        };
        Some(self.error.insert(err))
    }

    /// Whether an upstream error that ends this stream is charged (prompt plus the output
    /// received) rather than free: output reached the client, or the provider had started its
    /// answer and then broke off or went silent (it accepted the prompt and bills it). Only an
    /// error the provider itself reported before any output is free ([`bill`]'s
    /// `delivered_output`).
    pub fn error_is_charged(&self) -> bool {
        self.delivered_output() || self.broke_off
    }

    /// Ends the stream before the provider did, because its output reached what the reservation
    /// covers (or the deadline came). Returns the header for the closing chunks the encoder
    /// writes, `None` when the stream had already ended.
    pub fn cut(&mut self) -> Option<StreamHeader> {
        if !self.open() {
            return None;
        }
        self.truncated = true;
        self.done = true;
        Some(self.last_header.clone().unwrap_or_default())
    }

    /// Whether the stream is open and the provider has sent no usage (yet): a client that asked
    /// for the usage chunk must then get one of local counts before `[DONE]`.
    pub fn usage_pending(&self) -> bool {
        self.usage.is_none() && self.open()
    }

    /// The `id`, `model` and `created` of the last chunk that had an id.
    pub fn header(&self) -> Option<&StreamHeader> {
        self.last_header.as_ref()
    }

    /// Whether [`StreamMeter::cut`] ended the stream.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The generated text delivered so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn upstream_usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    pub fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    pub fn completed(&self) -> bool {
        self.done && self.error.is_none()
    }

    /// Whether any generated text reached the client.
    pub fn delivered_output(&self) -> bool {
        self.content_chunks > 0
    }
}

/// Folds one choice's `finish_reason` into a response's: `"length"` (cut at `max_tokens`, no
/// end-of-turn token generated) only while every choice that finished says so; any other reason
/// wins, since that choice ended its turn.
pub fn fold_finish_reason(response: &mut Option<String>, choice: &str) {
    if response.as_deref().is_none_or(|r| r == LENGTH) {
        *response = Some(choice.to_string());
    }
}

/// The `finish_reason` of a response that the provider cut at its `max_tokens`.
pub const LENGTH: &str = "length";

/// Everything a usage row records about tokens and money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bill {
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub upstream_prompt_tokens: Option<u64>,
    pub upstream_completion_tokens: Option<u64>,
    pub local_prompt_tokens: u64,
    pub local_completion_tokens: u64,
    pub source: UsageSource,
    /// Charged, micro-units: the full cost of the counts, also above the reservation (the
    /// settlement takes it from the reservation, then allowance and balance, the rest as debt).
    pub cost: u64,
    /// Prompt tokens billed as cache writes (parts of `prompt_tokens`, after the clamping of
    /// [`cost_micros_tiered`]'s rule 1), by lifetime.
    pub cache_write_5m_tokens: u64,
    pub cache_write_1h_tokens: u64,
    /// The long-context tier of the price sheet priced the request (never for a free one).
    pub long_context: bool,
}

/// The inputs of a charge.
#[derive(Clone)]
pub struct BillInput<'a> {
    pub status: RequestStatus,
    /// Whether any output reached the client (for upstream errors).
    pub delivered_output: bool,
    pub local_prompt_tokens: u64,
    pub completion_text: &'a str,
    /// The provider's `finish_reason` ([`fold_finish_reason`] over the choices), if it gave one:
    /// `"length"` means the model generated no end-of-turn token.
    pub finish_reason: Option<&'a str>,
    pub encoding: Option<Encoding>,
    /// The provider's usage, with its cache writes ([`tiered_usage`] of a chat usage, or a
    /// native answer's own counts).
    pub upstream_usage: Option<TieredUsage>,
    /// Every price of the model's version: the tier is chosen from the billed prompt tokens.
    pub sheet: &'a PriceSheet,
    /// The tenant's price multiplier in basis points (10,000 = list price).
    pub multiplier_bps: u64,
    /// What the request held (recorded in the usage row). Not a cap: see [`bill`].
    pub reserved: u64,
}

/// Decides what a request is charged. The rules (README, "Billing"):
/// - completed: the provider's reported usage when it sent one, else the local counts;
/// - upstream error before any output: nothing;
/// - upstream error after output, client abort, truncation: prompt plus the output delivered
///   (provider's usage if it reported one, else local counts);
/// - the charge is the full cost of those counts, also when it exceeds the reservation (the
///   provider billed it): settlement takes it from the reservation, then the allowance and the
///   balance, and records what is still missing as the tenant's debt (schema/0007_settlement.sql);
/// - every number is at most [`MAX_SAFE_INT`] (2⁵³ − 1, what D1 stores exactly), so an absurd
///   usage report from a provider cannot make the usage row unwritable.
pub fn bill(input: &BillInput<'_>) -> Bill {
    let local_completion = input.encoding.map_or_else(
        || estimate_tokens(input.completion_text),
        // A completed response ended the model's turn: the open families' servers count that
        // end-of-turn token in their completion (docs/tokens.md, "End of turn"); one the provider
        // cut at `max_tokens` did not.
        |e| e.count_completion(input.completion_text, ended_turn(input)),
    );
    let upstream = input.upstream_usage;
    let (source, usage) = match upstream {
        Some(u) => (UsageSource::Upstream, u),
        None => (
            UsageSource::Local,
            TieredUsage::from(TokenUsage {
                prompt_tokens: input.local_prompt_tokens,
                cached_prompt_tokens: 0,
                completion_tokens: local_completion,
                reasoning_tokens: 0,
            }),
        ),
    };
    let tokens = usage.tokens;
    let free = input.status == RequestStatus::UpstreamError && !input.delivered_output;
    let cost = if free {
        0
    } else {
        cost_micros_tiered(&usage, input.sheet, input.multiplier_bps)
    };
    let writes = usage.billed_writes();
    let safe = |v: u64| v.min(MAX_SAFE_INT);
    Bill {
        prompt_tokens: safe(tokens.prompt_tokens),
        cached_prompt_tokens: safe(tokens.cached_prompt_tokens),
        completion_tokens: safe(tokens.completion_tokens),
        reasoning_tokens: safe(tokens.reasoning_tokens),
        upstream_prompt_tokens: upstream.map(|u| safe(u.tokens.prompt_tokens)),
        upstream_completion_tokens: upstream.map(|u| safe(u.tokens.completion_tokens)),
        local_prompt_tokens: safe(input.local_prompt_tokens),
        local_completion_tokens: safe(local_completion),
        source,
        cost: safe(cost),
        cache_write_5m_tokens: safe(writes.0),
        cache_write_1h_tokens: safe(writes.1),
        long_context: !free && input.sheet.is_long(tokens.prompt_tokens),
    }
}

/// A chat usage in the terms of the price sheet: its four classes and its cache writes.
pub fn tiered_usage(u: &Usage) -> TieredUsage {
    TieredUsage {
        tokens: TokenUsage {
            prompt_tokens: u.prompt_tokens,
            cached_prompt_tokens: u.cached_tokens(),
            completion_tokens: u.completion_tokens,
            reasoning_tokens: u.reasoning_tokens(),
        },
        cache_write_5m: u.cache_writes.five_minutes,
        cache_write_1h: u.cache_writes.one_hour,
    }
}

/// Whether the model ended its turn (generated its end-of-turn token): the response completed
/// and the provider did not cut it at `max_tokens`.
fn ended_turn(input: &BillInput<'_>) -> bool {
    input.status == RequestStatus::Ok && input.finish_reason != Some(LENGTH)
}

/// The charge of a request the provider may have served although the gateway learnt no usage
/// (README, "how a request ends": a timeout after the request was sent, an unusable 2xx, a client
/// that left while the provider kept generating past the drain deadline): the whole amount held,
/// `input.reserved`, recorded as the local prompt count plus `covered_output`, the output the
/// reservation covered. A provider's usage, when there is one, wins: then [`bill`] decides.
pub fn bill_reserved(input: &BillInput<'_>, covered_output: u64) -> Bill {
    if input.upstream_usage.is_some() {
        return bill(input);
    }
    let local = bill(input);
    Bill {
        prompt_tokens: input.local_prompt_tokens,
        cached_prompt_tokens: 0,
        completion_tokens: covered_output.max(local.local_completion_tokens),
        reasoning_tokens: 0,
        source: UsageSource::Local,
        cost: input.reserved,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        long_context: input.sheet.is_long(input.local_prompt_tokens),
        ..local
    }
}

/// Token estimate for model families without a local tokenizer: one token per 4 bytes of UTF-8,
/// rounded up (OpenAI's rule of thumb). Used only when the provider reports no usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::billing::Price;
    use crate::core::openai::ChatCompletionChunk;

    fn chunk(json: &str) -> StreamItem {
        let chunk: ChatCompletionChunk = serde_json::from_str(json).unwrap();
        StreamItem::Chunk { chunk, raw: None }
    }

    const CONTENT: &str = r#"{"id":"c","model":"m","created":7,"choices":[{"index":0,"delta":{"content":"Hi there"}}]}"#;
    const USAGE: &str = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    #[test]
    fn observes_text_usage_and_the_end() {
        let mut m = StreamMeter::new();
        assert!(m.observe(&StreamItem::KeepAlive(b": ping\n\n".to_vec())));
        assert!(m.observe(&chunk(CONTENT)));
        assert_eq!(
            m.header(),
            Some(&StreamHeader {
                id: "c".into(),
                model: "m".into(),
                created: 7
            })
        );
        assert!(m.usage_pending());
        assert!(m.observe(&chunk(USAGE)));
        assert!(!m.usage_pending());
        // The header is the last chunk's that had an id.
        assert_eq!(m.header().map(|h| h.model.as_str()), Some(""));
        assert!(m.observe(&StreamItem::Done));
        assert!(m.completed() && m.delivered_output() && !m.truncated());
        assert_eq!(m.text(), "Hi there");
        assert_eq!(m.upstream_usage().map(|u| u.completion_tokens), Some(2));
        // After the end nothing more reaches the client or the counts.
        assert!(!m.observe(&chunk(CONTENT)));
        assert_eq!(m.text(), "Hi there");
        assert!(m.close(None).is_none() && m.cut().is_none());
        assert!(m.completed());
    }

    #[test]
    fn a_cut_ends_the_stream_with_the_last_header() {
        let mut m = StreamMeter::new();
        m.observe(&chunk(CONTENT));
        let header = m.cut().unwrap();
        assert_eq!((header.id.as_str(), header.created), ("c", 7));
        assert!(m.truncated() && m.completed() && !m.usage_pending());
        assert!(!m.observe(&StreamItem::Done) && m.cut().is_none());
        // A stream cut before any chunk gets an empty header.
        assert_eq!(StreamMeter::new().cut(), Some(StreamHeader::default()));
    }

    #[test]
    fn reasoning_is_delivered_output_and_billed() {
        // A reasoning model's stream that breaks off (or whose client leaves) after thinking only.
        let thinking = r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"First, consider the premise carefully."}}]}"#;
        let mut m = StreamMeter::new();
        m.observe(&chunk(thinking));
        assert!(m.close(None).is_some());
        assert!(m.delivered_output());
        assert_eq!(m.text(), "First, consider the premise carefully.");
        let p = PriceSheet::flat(price());
        let b = bill(&BillInput {
            status: RequestStatus::UpstreamError,
            delivered_output: m.delivered_output(),
            local_prompt_tokens: 10,
            completion_text: m.text(),
            finish_reason: m.finish_reason(),
            encoding: Some(Encoding::O200kBase),
            upstream_usage: None,
            sheet: &p,
            multiplier_bps: 10_000,
            reserved: 1_000,
        });
        let thought = Encoding::O200kBase.count(m.text());
        assert!(thought > 0);
        assert_eq!(b.completion_tokens, thought);
        assert_eq!(b.cost, 10 + 2 * thought);
    }

    #[test]
    fn a_stream_with_nothing_parseable_is_unusable() {
        // An HTML page read as SSE: its lines are ignored fields, i.e. keep-alives only.
        let mut m = StreamMeter::new();
        m.observe(&StreamItem::KeepAlive(b"<html>\n\n".to_vec()));
        let told = m.close(None).cloned();
        assert_eq!(told.map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        assert!(m
            .error()
            .is_some_and(GatewayError::provider_may_have_billed));
        assert!(!m.delivered_output());
        // Broken off before anything parseable: unusable too, with the same words.
        let mut m = StreamMeter::new();
        let broke = GatewayError::new(ErrorKind::UpstreamFailed, "broke off");
        m.close(Some(broke));
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        assert_eq!(m.error().map(|e| e.message.as_str()), Some("broke off"));
        // No byte before the first-byte timeout stays a timeout.
        let mut m = StreamMeter::new();
        let silent = GatewayError::new(ErrorKind::UpstreamUnanswered, "nothing");
        m.close(Some(silent));
        assert_eq!(
            m.error().map(|e| e.kind),
            Some(ErrorKind::UpstreamUnanswered)
        );
        // The provider's own error event is an answer: free, as before.
        let mut m = StreamMeter::new();
        let overloaded = GatewayError::new(ErrorKind::UpstreamFailed, "overloaded");
        assert!(m.observe(&StreamItem::Error(overloaded)));
        assert!(m.close(None).is_none());
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
        assert!(
            !m.error_is_charged(),
            "the provider's own error event is free"
        );
        // A chunk without content still answers: a later break is an ordinary upstream error,
        // charged (prompt + output received): the provider had started.
        let mut m = StreamMeter::new();
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
        ));
        m.close(None);
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
        assert!(!m.completed());
        assert!(!m.delivered_output() && m.error_is_charged());
        // ... and so is one that went silent after it (the relay's idle timeout).
        let mut m = StreamMeter::new();
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
        ));
        m.close(Some(GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "silent",
        )));
        assert!(m.error_is_charged());
        // An error event after a content-less chunk stays free.
        let mut m = StreamMeter::new();
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
        ));
        let overloaded = GatewayError::new(ErrorKind::UpstreamFailed, "overloaded");
        m.observe(&StreamItem::Error(overloaded));
        assert!(m.close(None).is_none());
        assert!(!m.error_is_charged());
    }

    fn price() -> Price {
        Price {
            input: 1_000_000,
            cached_input: None,
            output: 2_000_000,
            reasoning: None,
        }
    }

    #[test]
    fn local_completion_counts_the_open_families_end_of_turn() {
        let p = PriceSheet::flat(price());
        let base = BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: 6,
            completion_text: "Hi there",
            finish_reason: None,
            encoding: Some(Encoding::Llama3),
            upstream_usage: None,
            sheet: &p,
            multiplier_bps: 10_000,
            reserved: 1_000,
        };
        let text = Encoding::Llama3.count("Hi there");
        assert_eq!(bill(&base).completion_tokens, text + 1);
        let aborted = bill(&BillInput {
            status: RequestStatus::ClientAbort,
            ..base.clone()
        });
        assert_eq!(aborted.completion_tokens, text);
        // Cut by the provider at max_tokens: no end-of-turn token was generated.
        let cut = bill(&BillInput {
            finish_reason: Some(LENGTH),
            ..base.clone()
        });
        assert_eq!(cut.completion_tokens, text);
        let stopped = bill(&BillInput {
            finish_reason: Some("stop"),
            ..base.clone()
        });
        assert_eq!(stopped.completion_tokens, text + 1);
        let openai = bill(&BillInput {
            encoding: Some(Encoding::O200kBase),
            ..base.clone()
        });
        assert_eq!(
            openai.completion_tokens,
            Encoding::O200kBase.count("Hi there")
        );
    }

    #[test]
    fn finish_reason_is_length_only_when_every_choice_was_cut() {
        let mut m = StreamMeter::new();
        assert_eq!(m.finish_reason(), None);
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        ));
        assert_eq!(m.finish_reason(), None);
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ));
        assert_eq!(m.finish_reason(), Some(LENGTH));
        // A second choice that ended its turn: an end-of-turn token was generated.
        m.observe(&chunk(
            r#"{"id":"c","choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
        ));
        assert_eq!(m.finish_reason(), Some("stop"));
        let mut r = Some("stop".to_string());
        fold_finish_reason(&mut r, LENGTH);
        assert_eq!(r.as_deref(), Some("stop"));

        let plain: crate::core::openai::ChatCompletionResponse = serde_json::from_str(
            r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[
                {"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"length"},
                {"index":1,"message":{"role":"assistant","content":"b"},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(plain.finish_reason().as_deref(), Some(LENGTH));
    }

    #[test]
    fn billing_rules() {
        let p = PriceSheet::flat(price());
        let usage = Usage::new(5, 2);
        let base = BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: 6,
            completion_text: "Hi there",
            finish_reason: None,
            encoding: Some(Encoding::O200kBase),
            upstream_usage: Some(tiered_usage(&usage)),
            sheet: &p,
            multiplier_bps: 10_000,
            reserved: 1_000,
        };
        let b = bill(&base);
        assert_eq!(b.source, UsageSource::Upstream);
        assert_eq!((b.prompt_tokens, b.completion_tokens), (5, 2));
        assert_eq!(b.cost, 9); // 5×1 + 2×2 micro-units
        assert_eq!(b.local_completion_tokens, 2);

        let local = bill(&BillInput {
            upstream_usage: None,
            ..base.clone()
        });
        assert_eq!(local.source, UsageSource::Local);
        assert_eq!(local.cost, 6 + 2 * 2);

        let failed = bill(&BillInput {
            status: RequestStatus::UpstreamError,
            delivered_output: false,
            ..base.clone()
        });
        assert_eq!(failed.cost, 0);

        let partial = bill(&BillInput {
            status: RequestStatus::UpstreamError,
            upstream_usage: None,
            ..base.clone()
        });
        assert_eq!(partial.cost, 10);

        let marked_up = bill(&BillInput {
            multiplier_bps: 15_000,
            ..base.clone()
        });
        assert_eq!(marked_up.cost, 14); // 9 × 1.5 = 13.5, rounded up once

        // The reservation is not a cap: the provider billed 9, the request held 4, 9 is charged.
        let beyond = bill(&BillInput {
            reserved: 4,
            ..base.clone()
        });
        assert_eq!(beyond.cost, 9);
        assert_eq!(beyond.cost, bill(&base).cost);
    }

    #[test]
    fn absurd_usage_reports_stay_within_what_d1_stores() {
        let p = PriceSheet::flat(price());
        let usage = Usage::new(u64::MAX / 2, u64::MAX / 3);
        let b = bill(&BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: u64::MAX,
            completion_text: "x",
            finish_reason: None,
            encoding: Some(Encoding::O200kBase),
            upstream_usage: Some(tiered_usage(&usage)),
            sheet: &p,
            multiplier_bps: 10_000,
            reserved: 1,
        });
        assert_eq!(b.cost, MAX_SAFE_INT);
        assert_eq!(b.prompt_tokens, MAX_SAFE_INT);
        assert_eq!(b.completion_tokens, MAX_SAFE_INT);
        assert_eq!(b.upstream_prompt_tokens, Some(MAX_SAFE_INT));
        assert_eq!(b.local_prompt_tokens, MAX_SAFE_INT);
    }

    #[test]
    fn a_request_the_provider_may_have_served_is_charged_the_reservation() {
        let p = PriceSheet::flat(price());
        let input = BillInput {
            status: RequestStatus::UpstreamTimeout,
            delivered_output: false,
            local_prompt_tokens: 6,
            completion_text: "",
            finish_reason: None,
            encoding: Some(Encoding::O200kBase),
            upstream_usage: None,
            sheet: &p,
            multiplier_bps: 10_000,
            reserved: 2_006,
        };
        let b = bill_reserved(&input, 1_000);
        assert_eq!(b.cost, 2_006);
        assert_eq!((b.prompt_tokens, b.completion_tokens), (6, 1_000));
        assert_eq!((b.local_prompt_tokens, b.local_completion_tokens), (6, 0));
        assert_eq!(b.source, UsageSource::Local);
        // Text already received counts when it is more than the covered output.
        let b = bill_reserved(
            &BillInput {
                completion_text: "Hi there",
                ..input.clone()
            },
            1,
        );
        assert_eq!((b.completion_tokens, b.cost), (2, 2_006));
        // The provider's usage, when known, is billed as usual.
        let usage = Usage::new(5, 2);
        let b = bill_reserved(
            &BillInput {
                status: RequestStatus::ClientAbort,
                upstream_usage: Some(tiered_usage(&usage)),
                ..input
            },
            1_000,
        );
        assert_eq!((b.source, b.cost), (UsageSource::Upstream, 9));
    }

    /// The bill before price sheets (flat `Price`, chat usage): what a flat model must still
    /// cost, token for token.
    fn old_cost(input: &BillInput<'_>, usage: Option<&Usage>, price: &Price) -> u64 {
        if input.status == RequestStatus::UpstreamError && !input.delivered_output {
            return 0;
        }
        let tokens = match usage {
            Some(u) => TokenUsage {
                prompt_tokens: u.prompt_tokens,
                cached_prompt_tokens: u.cached_tokens(),
                completion_tokens: u.completion_tokens,
                reasoning_tokens: u.reasoning_tokens(),
            },
            None => TokenUsage {
                prompt_tokens: input.local_prompt_tokens,
                completion_tokens: bill(input).local_completion_tokens,
                ..TokenUsage::default()
            },
        };
        crate::core::billing::cost_micros_scaled(&tokens, price, input.multiplier_bps)
            .min(MAX_SAFE_INT)
    }

    #[test]
    fn a_flat_model_costs_what_it_cost_before_sheets() {
        // xorshift64*, as in the billing module's property tests.
        let mut x: u64 = 0x7135_0017_ABCD_0001;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6D_CDDD)
        };
        let statuses = [
            RequestStatus::Ok,
            RequestStatus::UpstreamError,
            RequestStatus::ClientAbort,
            RequestStatus::Truncated,
        ];
        for _ in 0..5_000 {
            let mut value = |m: u64| next() % m;
            let price = Price {
                input: value(100_000_000),
                cached_input: (value(2) == 0).then(|| value(100_000_000)),
                output: value(100_000_000),
                reasoning: (value(2) == 0).then(|| value(100_000_000)),
            };
            let mut usage = Usage::new(value(1_000_000_000), value(1_000_000_000));
            usage.prompt_tokens_details = Some(crate::core::openai::PromptTokensDetails {
                cached_tokens: value(1_000_000_000),
            });
            usage.completion_tokens_details = Some(crate::core::openai::CompletionTokensDetails {
                reasoning_tokens: value(1_000_000_000),
            });
            let sheet = PriceSheet::flat(price);
            let input = BillInput {
                status: statuses[value(4) as usize],
                delivered_output: value(2) == 0,
                local_prompt_tokens: value(1_000_000),
                completion_text: "Hi there, a few words",
                finish_reason: None,
                encoding: Some(Encoding::O200kBase),
                upstream_usage: None,
                sheet: &sheet,
                multiplier_bps: 1 + value(100_000),
                reserved: value(1_000_000),
            };
            let upstream = BillInput {
                upstream_usage: Some(tiered_usage(&usage)),
                ..input.clone()
            };
            for (input, usage) in [(&input, None), (&upstream, Some(&usage))] {
                let b = bill(input);
                assert_eq!(b.cost, old_cost(input, usage, &price));
                assert_eq!((b.cache_write_5m_tokens, b.cache_write_1h_tokens), (0, 0));
                assert!(!b.long_context);
            }
        }
    }

    #[test]
    fn cache_writes_and_the_long_context_tier_are_billed() {
        use crate::core::billing::tiers::{CacheWritePrices, LongContext, Tier};
        let base = Tier {
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
        };
        let long = Tier {
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
        };
        let sheet = PriceSheet {
            base,
            long_context: Some(LongContext {
                above_prompt_tokens: 1_000,
                tier: long,
            }),
        };
        // An Anthropic usage: 10 uncached + 50 read + 100 (5m) + 200 (1h) written; 7 out.
        let mut usage = Usage::new(360, 7);
        usage.prompt_tokens_details =
            Some(crate::core::openai::PromptTokensDetails { cached_tokens: 50 });
        usage.cache_writes = crate::core::openai::CacheWrites {
            five_minutes: 100,
            one_hour: 200,
        };
        let input = BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: 300,
            completion_text: "ok",
            finish_reason: None,
            encoding: Some(Encoding::O200kBase),
            upstream_usage: Some(tiered_usage(&usage)),
            sheet: &sheet,
            multiplier_bps: 10_000,
            reserved: 10_000,
        };
        let b = bill(&input);
        // 10×3 + 50×0.3 + 100×3.75 + 200×6 + 7×15 = 30 + 15 + 375 + 1200 + 105.
        assert_eq!(b.cost, 1_725);
        assert_eq!(
            (b.cache_write_5m_tokens, b.cache_write_1h_tokens),
            (100, 200)
        );
        assert_eq!((b.prompt_tokens, b.cached_prompt_tokens), (360, 50));
        assert!(!b.long_context);

        // Above the threshold the whole request moves to the long tier.
        let mut big = Usage::new(1_001, 10);
        big.cache_writes.five_minutes = 1;
        let b = bill(&BillInput {
            upstream_usage: Some(tiered_usage(&big)),
            ..input.clone()
        });
        // 1000×6 + 1×7.5 + 10×22.5 = 6000 + 7.5 + 225 → rounded up once.
        assert_eq!(b.cost, 6_233);
        assert!(b.long_context);
        // Local counts choose the tier too; a free request is priced by no tier.
        let local = bill(&BillInput {
            upstream_usage: None,
            local_prompt_tokens: 2_000,
            ..input.clone()
        });
        assert!(local.long_context && local.source == UsageSource::Local);
        let free = bill(&BillInput {
            status: RequestStatus::UpstreamError,
            delivered_output: false,
            upstream_usage: None,
            local_prompt_tokens: 2_000,
            ..input.clone()
        });
        assert!(!free.long_context && free.cost == 0);
        // Writes reported beyond the prompt are recorded as billed (clamped).
        let mut odd = Usage::new(100, 0);
        odd.cache_writes.one_hour = 500;
        let b = bill(&BillInput {
            upstream_usage: Some(tiered_usage(&odd)),
            ..input
        });
        assert_eq!((b.cache_write_5m_tokens, b.cache_write_1h_tokens), (0, 100));
        assert_eq!(b.cost, 600);
    }
}
