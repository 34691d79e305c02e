//! Metering: what a request used and what it costs.
//!
//! [`StreamMeter`] sits between an adapter's stream decoder and the client. It forwards chunks as
//! they come (their original bytes when nothing needs changing), collects the generated text for
//! the local completion count, keeps the provider's usage, and removes the usage chunk that
//! Tollgate asked for but the client did not. [`bill`] turns counts into a charge.

use serde::Serialize;

use crate::core::billing::{cost_micros_scaled, Price, TokenUsage, MAX_SAFE_INT};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{ChatCompletionChunk, ChunkChoice, Delta, Usage};
use crate::core::providers::StreamItem;
use crate::core::sse::{encode_data, SseParser};
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

/// Forwards and measures one stream.
#[derive(Debug)]
pub struct StreamMeter {
    wants_usage: bool,
    text: String,
    usage: Option<Usage>,
    done: bool,
    error: Option<GatewayError>,
    content_chunks: u64,
    /// `id`, `model` and `created` of the last chunk, for a chunk the gateway adds itself.
    last_header: Option<(String, String, u64)>,
    truncated: bool,
    /// The provider sent something parseable: a chunk, `[DONE]` or an error event of its own
    /// (keep-alives do not count: an HTML page read as SSE is nothing but ignored lines).
    answered: bool,
}

impl StreamMeter {
    /// `wants_usage`: the client asked for the final usage chunk itself.
    pub fn new(wants_usage: bool) -> Self {
        StreamMeter {
            wants_usage,
            text: String::new(),
            usage: None,
            done: false,
            error: None,
            content_chunks: 0,
            last_header: None,
            truncated: false,
            answered: false,
        }
    }

    /// Takes one decoded item and appends what the client should receive to `out`. Once the
    /// stream has ended for the client (`[DONE]` or an error event sent), later items are
    /// neither sent nor metered: the upstream may send more in the same read.
    pub fn forward(&mut self, item: StreamItem, out: &mut Vec<u8>) {
        if self.done || self.error.is_some() {
            return;
        }
        if !matches!(item, StreamItem::KeepAlive(_)) {
            self.answered = true;
        }
        match item {
            StreamItem::KeepAlive(raw) => out.extend_from_slice(&raw),
            StreamItem::Done => {
                self.done = true;
                out.extend_from_slice(&encode_data(crate::core::sse::DONE));
            }
            StreamItem::Error(err) => {
                out.extend_from_slice(&encode_data(&err.to_json()));
                self.error.get_or_insert(err);
            }
            StreamItem::Chunk { mut chunk, raw } => {
                if !chunk.id.is_empty() {
                    self.last_header = Some((chunk.id.clone(), chunk.model.clone(), chunk.created));
                }
                let before = self.text.len();
                chunk.append_generated_text(&mut self.text);
                if self.text.len() > before {
                    self.content_chunks += 1;
                }
                if let Some(usage) = chunk.usage.take() {
                    self.usage = Some(usage.clone());
                    if !self.wants_usage {
                        if chunk.choices.is_empty() {
                            return; // the usage chunk only Tollgate asked for
                        }
                        // usage riding on a content chunk: send the chunk without it
                        if let Ok(json) = serde_json::to_string(&chunk) {
                            out.extend_from_slice(&encode_data(&json));
                        }
                        return;
                    }
                    chunk.usage = Some(usage);
                }
                // Clients index `choices`: a chunk whose raw bytes lack the array (`data: {}`) is
                // sent re-encoded, with it.
                let raw = raw.filter(|raw| !chunk.choices.is_empty() || has_choices(raw));
                match raw {
                    Some(raw) => out.extend_from_slice(&raw),
                    None => {
                        if let Ok(json) = serde_json::to_string(&chunk) {
                            out.extend_from_slice(&encode_data(&json));
                        }
                    }
                }
            }
        }
    }

    /// The upstream connection ended (or broke). If it ended without `[DONE]` or an error, the
    /// client gets an error event, and the stream counts as failed. `broken` is why (a broken
    /// connection, a timeout, or the decoder's complaint about an incomplete stream).
    ///
    /// A 2xx stream that ends before anything parseable arrived (an HTML page, an empty body)
    /// is an unusable answer like a plain one: the error becomes `UpstreamUnusable`, which the
    /// provider may have billed (README, "how a request ends"). A stream that got no bytes at
    /// all before its first-byte timeout keeps its own `UpstreamUnanswered`.
    pub fn upstream_closed(&mut self, out: &mut Vec<u8>, broken: Option<GatewayError>) {
        if self.done || self.error.is_some() {
            return;
        }
        let err = broken.unwrap_or_else(|| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                "The provider closed the stream before it was complete.",
            )
        });
        let err = if self.answered || err.kind == ErrorKind::UpstreamUnanswered {
            err
        } else {
            // Same words (the client learns what happened), the kind that is charged.
            GatewayError::new(ErrorKind::UpstreamUnusable, err.message)
        };
        out.extend_from_slice(&encode_data(&err.to_json()));
        self.error = Some(err);
    }

    /// Ends the stream cleanly before the provider did, because its output reached what the
    /// reservation covers: one chunk with `finish_reason: "length"` for each of the `choices`,
    /// the usage chunk (`usage`, counted locally) if the client asked for it, and `[DONE]`.
    pub fn cut(&mut self, choices: u64, usage: Usage, out: &mut Vec<u8>) {
        if self.done || self.error.is_some() {
            return;
        }
        let (id, model, created) = self.last_header.clone().unwrap_or_default();
        let header = |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".to_string(),
            created,
            model: model.clone(),
            choices,
            usage,
            extra: Default::default(),
        };
        let finish: Vec<ChunkChoice> = (0..choices.clamp(1, 128))
            .map(|index| ChunkChoice {
                index: u32::try_from(index).unwrap_or(0),
                delta: Delta::default(),
                finish_reason: Some("length".to_string()),
                extra: Default::default(),
            })
            .collect();
        if let Ok(json) = serde_json::to_string(&header(finish, None)) {
            out.extend_from_slice(&encode_data(&json));
        }
        if self.wants_usage {
            if let Ok(json) = serde_json::to_string(&header(Vec::new(), Some(usage))) {
                out.extend_from_slice(&encode_data(&json));
            }
        }
        self.truncated = true;
        self.done = true;
        out.extend_from_slice(&encode_data(crate::core::sse::DONE));
    }

    /// Whether the client asked for the usage chunk, the provider has sent none and the stream is
    /// still open: then [`StreamMeter::local_usage`] must come before `[DONE]`.
    pub fn owes_usage(&self) -> bool {
        self.wants_usage && self.usage.is_none() && !self.done && self.error.is_none()
    }

    /// The usage chunk the provider did not send (`usage`: local counts), for a client that asked
    /// for one: `choices: []` and the stream's id, model and created.
    pub fn local_usage(&mut self, usage: Usage, out: &mut Vec<u8>) {
        if !self.owes_usage() {
            return;
        }
        let (id, model, created) = self.last_header.clone().unwrap_or_default();
        let chunk = ChatCompletionChunk {
            id,
            object: "chat.completion.chunk".to_string(),
            created,
            model,
            choices: Vec::new(),
            usage: Some(usage),
            extra: Default::default(),
        };
        if let Ok(json) = serde_json::to_string(&chunk) {
            out.extend_from_slice(&encode_data(&json));
        }
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

/// Whether the SSE block `raw` holds a JSON object with a `choices` array. Asked only of chunks
/// without choices (the usage chunk, a provider's notice), so the extra parse is rare.
fn has_choices(raw: &[u8]) -> bool {
    let mut parser = SseParser::new();
    let event = match parser.push(raw) {
        Ok(mut events) if !events.is_empty() => events.pop(),
        _ => parser.finish().ok().flatten(),
    };
    event
        .and_then(|e| e.data)
        .and_then(|data| serde_json::from_str::<serde_json::Value>(&data).ok())
        .is_some_and(|v| v.get("choices").is_some_and(serde_json::Value::is_array))
}

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
}

/// The inputs of a charge.
#[derive(Clone)]
pub struct BillInput<'a> {
    pub status: RequestStatus,
    /// Whether any output reached the client (for upstream errors).
    pub delivered_output: bool,
    pub local_prompt_tokens: u64,
    pub completion_text: &'a str,
    pub encoding: Option<Encoding>,
    pub upstream_usage: Option<&'a Usage>,
    pub price: &'a Price,
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
        // end-of-turn token in their completion (docs/tokens.md, "End of turn").
        |e| e.count_completion(input.completion_text, input.status == RequestStatus::Ok),
    );
    let upstream = input.upstream_usage;
    let (source, tokens) = match upstream {
        Some(u) => (
            UsageSource::Upstream,
            TokenUsage {
                prompt_tokens: u.prompt_tokens,
                cached_prompt_tokens: u.cached_tokens(),
                completion_tokens: u.completion_tokens,
                reasoning_tokens: u.reasoning_tokens(),
            },
        ),
        None => (
            UsageSource::Local,
            TokenUsage {
                prompt_tokens: input.local_prompt_tokens,
                cached_prompt_tokens: 0,
                completion_tokens: local_completion,
                reasoning_tokens: 0,
            },
        ),
    };
    let free = input.status == RequestStatus::UpstreamError && !input.delivered_output;
    let cost = if free {
        0
    } else {
        cost_micros_scaled(&tokens, input.price, input.multiplier_bps)
    };
    let safe = |v: u64| v.min(MAX_SAFE_INT);
    Bill {
        prompt_tokens: safe(tokens.prompt_tokens),
        cached_prompt_tokens: safe(tokens.cached_prompt_tokens),
        completion_tokens: safe(tokens.completion_tokens),
        reasoning_tokens: safe(tokens.reasoning_tokens),
        upstream_prompt_tokens: upstream.map(|u| safe(u.prompt_tokens)),
        upstream_completion_tokens: upstream.map(|u| safe(u.completion_tokens)),
        local_prompt_tokens: safe(input.local_prompt_tokens),
        local_completion_tokens: safe(local_completion),
        source,
        cost: safe(cost),
    }
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
    use crate::core::openai::ChatCompletionChunk;

    fn chunk(json: &str) -> StreamItem {
        let chunk: ChatCompletionChunk = serde_json::from_str(json).unwrap();
        StreamItem::Chunk {
            chunk,
            raw: Some(encode_data(json)),
        }
    }

    const CONTENT: &str = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi there"}}]}"#;
    const USAGE: &str = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

    #[test]
    fn strips_the_usage_chunk_the_client_did_not_ask_for() {
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.forward(chunk(CONTENT), &mut out);
        m.forward(chunk(USAGE), &mut out);
        m.forward(StreamItem::Done, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("data: {CONTENT}\n\ndata: [DONE]\n\n"));
        assert_eq!(m.upstream_usage().unwrap().completion_tokens, 2);
        assert_eq!(m.text(), "Hi there");
        assert!(m.completed() && m.delivered_output());
    }

    #[test]
    fn keeps_it_when_asked_and_strips_usage_from_content_chunks() {
        let mut m = StreamMeter::new(true);
        let mut out = Vec::new();
        m.forward(chunk(USAGE), &mut out);
        assert_eq!(out, encode_data(USAGE));

        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.forward(
            chunk(r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage") && text.contains("\"x\""));
    }

    #[test]
    fn reasoning_is_delivered_output_and_billed() {
        // A reasoning model's stream that breaks off (or whose client leaves) after thinking only.
        let thinking = r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"First, consider the premise carefully."}}]}"#;
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.forward(chunk(thinking), &mut out);
        m.upstream_closed(&mut out, None);
        assert!(m.delivered_output());
        assert_eq!(m.text(), "First, consider the premise carefully.");
        let p = price();
        let b = bill(&BillInput {
            status: RequestStatus::UpstreamError,
            delivered_output: m.delivered_output(),
            local_prompt_tokens: 10,
            completion_text: m.text(),
            encoding: Some(Encoding::O200kBase),
            upstream_usage: None,
            price: &p,
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
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.forward(StreamItem::KeepAlive(b"<html>\n\n".to_vec()), &mut out);
        m.upstream_closed(&mut out, None);
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        assert!(m
            .error()
            .is_some_and(GatewayError::provider_may_have_billed));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("upstream_unusable"));
        assert!(!m.delivered_output());
        // Broken off before anything parseable: unusable too.
        let mut m = StreamMeter::new(false);
        let broke = GatewayError::new(ErrorKind::UpstreamFailed, "broke off");
        m.upstream_closed(&mut Vec::new(), Some(broke));
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        // No byte before the first-byte timeout stays a timeout.
        let mut m = StreamMeter::new(false);
        let silent = GatewayError::new(ErrorKind::UpstreamUnanswered, "nothing");
        m.upstream_closed(&mut Vec::new(), Some(silent));
        assert_eq!(
            m.error().map(|e| e.kind),
            Some(ErrorKind::UpstreamUnanswered)
        );
        // The provider's own error event is an answer: free, as before.
        let mut m = StreamMeter::new(false);
        let overloaded = GatewayError::new(ErrorKind::UpstreamFailed, "overloaded");
        m.forward(StreamItem::Error(overloaded), &mut Vec::new());
        m.upstream_closed(&mut Vec::new(), None);
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
        // A chunk without content still answers: a later break is an ordinary upstream error.
        let mut m = StreamMeter::new(false);
        m.forward(
            chunk(r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#),
            &mut Vec::new(),
        );
        m.upstream_closed(&mut Vec::new(), None);
        assert_eq!(m.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
    }

    #[test]
    fn broken_upstream_becomes_an_error_event() {
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.forward(chunk(CONTENT), &mut out);
        m.upstream_closed(&mut out, None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("closed the stream"));
        assert!(!m.completed());
        assert!(m.error().is_some());
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
        let p = price();
        let base = BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: 6,
            completion_text: "Hi there",
            encoding: Some(Encoding::Llama3),
            upstream_usage: None,
            price: &p,
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
    fn billing_rules() {
        let p = price();
        let usage = Usage::new(5, 2);
        let base = BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: 6,
            completion_text: "Hi there",
            encoding: Some(Encoding::O200kBase),
            upstream_usage: Some(&usage),
            price: &p,
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
        let p = price();
        let usage = Usage::new(u64::MAX / 2, u64::MAX / 3);
        let b = bill(&BillInput {
            status: RequestStatus::Ok,
            delivered_output: true,
            local_prompt_tokens: u64::MAX,
            completion_text: "x",
            encoding: Some(Encoding::O200kBase),
            upstream_usage: Some(&usage),
            price: &p,
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
        let p = price();
        let input = BillInput {
            status: RequestStatus::UpstreamTimeout,
            delivered_output: false,
            local_prompt_tokens: 6,
            completion_text: "",
            encoding: Some(Encoding::O200kBase),
            upstream_usage: None,
            price: &p,
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
                upstream_usage: Some(&usage),
                ..input
            },
            1_000,
        );
        assert_eq!((b.source, b.cost), (UsageSource::Upstream, 9));
    }

    #[test]
    fn usage_chunk_from_local_counts_when_the_provider_sent_none() {
        let mut m = StreamMeter::new(true);
        let mut out = Vec::new();
        m.forward(chunk(CONTENT), &mut out);
        assert!(m.owes_usage());
        out.clear();
        m.local_usage(Usage::new(5, 2), &mut out);
        m.forward(StreamItem::Done, &mut out);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[0].contains(r#""choices":[]"#) && events[0].contains(r#""id":"c""#));
        assert!(events[0].contains(r#""completion_tokens":2"#));
        assert_eq!(events[1], "data: [DONE]");
        // Not owed when the provider sent usage, nor when the client did not ask.
        let mut m = StreamMeter::new(true);
        m.forward(chunk(USAGE), &mut Vec::new());
        assert!(!m.owes_usage());
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.local_usage(Usage::new(5, 2), &mut out);
        assert!(out.is_empty() && !m.owes_usage());
    }

    #[test]
    fn cut_ends_the_stream_cleanly() {
        let mut m = StreamMeter::new(true);
        let mut out = Vec::new();
        m.forward(chunk(CONTENT), &mut out);
        out.clear();
        m.cut(1, Usage::new(5, 2), &mut out);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(
            events[0].contains(r#""finish_reason":"length""#) && events[0].contains(r#""id":"c""#)
        );
        assert!(
            events[1].contains(r#""completion_tokens":2"#) && events[1].contains(r#""choices":[]"#)
        );
        assert_eq!(events[2], "data: [DONE]");
        assert!(m.truncated() && m.completed());
        // Nothing more once cut; and no usage chunk for a client that did not ask.
        let mut more = Vec::new();
        m.forward(StreamItem::Done, &mut more);
        assert!(more.is_empty());
        let mut m = StreamMeter::new(false);
        let mut out = Vec::new();
        m.cut(2, Usage::new(5, 2), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("usage") && text.matches("length").count() == 2);
    }
}
