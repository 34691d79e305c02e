//! Native passthrough: a client's Responses or Messages request served by a provider that speaks
//! the same API, with the provider's bytes relayed to the client unchanged.
//!
//! Translating `POST /v1/responses` and `POST /v1/messages` to chat completions
//! ([`crate::core::inbound`]) works with every provider, but loses what chat cannot say: Anthropic's
//! thinking signatures, cache-write counts and `cache_control`, OpenAI's encrypted reasoning items
//! and hosted-tool events. So when the provider has the client's own API, the gateway forwards the
//! client's body (model replaced, output cap set, billable options checked) and relays the answer
//! **byte for byte**; it only *observes* the stream to learn what to bill:
//!
//! | client API | provider kinds served natively | module |
//! |---|---|---|
//! | Responses | `azure` (always, on its v1 API path), `openai` on api.openai.com or with `"responses_api": true` in the provider config | [`responses`] |
//! | Messages | `anthropic` | [`messages`] |
//!
//! Every other route is translated to chat ([`serves_natively`] decides).
//!
//! **The observer** ([`NativeStream`]) is sans-I/O, like the chat stream decoders: fed the
//! provider's bytes in whatever pieces they arrive, it parses the SSE events (the shared tolerant
//! parser of [`crate::core::sse`]) and records
//! * the provider's usage ([`NativeUsage`]: input with cache reads and the 5-minute / 1-hour cache
//!   writes, output with reasoning),
//! * whether the provider answered anything parseable (`answered`: a 2xx of nothing parseable is
//!   an unusable answer, charged the reservation, exactly as for chat),
//! * how it ended ([`Ending`]): a terminal event (`response.completed` / `.incomplete`,
//!   `message_stop`), a failure event (`response.failed`, `error`), or nothing yet,
//! * the output text delivered (text, refusals, reasoning and thinking, tool names and
//!   arguments) for the local count when the provider reports no usage, and whether any was.
//!
//! It never changes a byte it is given. Where the *gateway* must end a stream itself (a broken
//! or silent provider, output past what the reservation pays for), the observer writes the
//! ending in the API's own shape ([`NativeStream::close`], [`NativeStream::cut`]); the relay cuts
//! the provider's bytes at [`NativeStream::complete_bytes`], the end of the last whole event, so
//! the client never sees half an event before the gateway's own.
//!
//! Plain (non-stream) answers are observed whole by [`observe_plain`]; the relay sends the body
//! as it came.
//!
//! The public model name: a native answer names the provider's model (the relay does not
//! rewrite relayed bytes); chat answers name the public model. docs/agents.md says so.

pub mod messages;
pub mod responses;

use crate::core::billing::TokenUsage;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::{CacheWrites, CompletionTokensDetails, PromptTokensDetails, Usage};
use crate::core::sse::{SseEvent, SseParser};

use super::{ProviderKind, Route, UpstreamRequest};

/// The inbound APIs that have a native passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    /// OpenAI's Responses API, `POST /v1/responses`.
    Responses,
    /// Anthropic's Messages API, `POST /v1/messages`.
    Messages,
}

impl NativeApi {
    /// The value of `usage.api` for requests of this API.
    pub fn as_str(self) -> &'static str {
        match self {
            NativeApi::Responses => "responses",
            NativeApi::Messages => "messages",
        }
    }
}

/// Whether `route` serves `api` natively (else the request is translated to chat). See the
/// module table; an operator forces translation with `"responses_api": false` in the provider
/// config, and enables the native path on an OpenAI-compatible server with `true`.
pub fn serves_natively(route: &Route, api: NativeApi) -> bool {
    match (api, route.kind) {
        (NativeApi::Messages, ProviderKind::Anthropic) => true,
        (NativeApi::Responses, ProviderKind::OpenAi | ProviderKind::Azure) => {
            match route.config.get("responses_api").and_then(|v| v.as_bool()) {
                Some(on) => on,
                None => {
                    route.kind == ProviderKind::Azure
                        || super::openai::preset_for_url(&route.base_url)
                            .is_some_and(|p| p.name == "openai")
                }
            }
        }
        _ => false,
    }
}

/// A native upstream request, and what the reservation must know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeRequest {
    pub upstream: UpstreamRequest,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The output cap sent to the provider (the reservation covers exactly this).
    pub output_cap: Option<u64>,
}

/// The tokens a native answer reports, in the gateway's terms: every count is a total of its
/// class, and the subsets are parts of it (unlike Anthropic's `input_tokens`, which excludes
/// cache reads and writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeUsage {
    /// All input tokens: uncached, cache reads and cache writes.
    pub prompt_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cached_tokens: u64,
    /// Input tokens written to the cache with the 5-minute lifetime.
    pub cache_write_5m: u64,
    /// Input tokens written to the cache with the 1-hour lifetime.
    pub cache_write_1h: u64,
    /// All output tokens, reasoning / thinking included.
    pub completion_tokens: u64,
    /// The part of the output the provider reports as reasoning (Anthropic reports none apart:
    /// thinking is output).
    pub reasoning_tokens: u64,
}

impl NativeUsage {
    /// The chat-shaped usage, with the cache writes apart (billed at their own prices).
    pub fn to_usage(&self) -> Usage {
        let mut u = Usage::new(self.prompt_tokens, self.completion_tokens);
        u.cache_writes = CacheWrites {
            five_minutes: self.cache_write_5m,
            one_hour: self.cache_write_1h,
        };
        if self.cached_tokens > 0 {
            u.prompt_tokens_details = Some(PromptTokensDetails {
                cached_tokens: self.cached_tokens,
            });
        }
        if self.reasoning_tokens > 0 {
            u.completion_tokens_details = Some(CompletionTokensDetails {
                reasoning_tokens: self.reasoning_tokens,
            });
        }
        u
    }

    /// The counts the price function takes ([`crate::core::billing::tiers`]).
    pub fn tiered(&self) -> crate::core::billing::tiers::TieredUsage {
        crate::core::billing::tiers::TieredUsage {
            tokens: TokenUsage {
                prompt_tokens: self.prompt_tokens,
                cached_prompt_tokens: self.cached_tokens,
                completion_tokens: self.completion_tokens,
                reasoning_tokens: self.reasoning_tokens,
            },
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
        }
    }
}

/// How a native answer ended, as far as the observer has seen.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The provider finished normally (`response.completed`, `message_stop`).
    Completed,
    /// The provider finished early but normally: `response.incomplete` (output cap, content
    /// filter). Billed like a completed answer.
    Incomplete,
    /// The provider reported a failure (`response.failed`, an `error` event), or the gateway
    /// ended the stream because the provider broke off ([`NativeStream::close`]).
    Failed(GatewayError),
    /// The gateway cut the stream at the reservation's cover ([`NativeStream::cut`]).
    Truncated,
}

/// What the observer learnt of one answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Something parseable arrived (an event of the API, or a plain body of its shape).
    pub answered: bool,
    /// The provider had answered and then its stream broke off or went silent
    /// ([`NativeStream::close`]), rather than ending with an event of its own.
    pub broke_off: bool,
    pub ending: Option<Ending>,
    /// The provider's usage, once it reported one.
    pub usage: Option<NativeUsage>,
    /// The generated output delivered (for the local count when there is no usage).
    pub output: String,
    /// How many events carried generated output.
    pub output_events: u64,
}

impl Observed {
    /// Whether the answer ended normally (completed or incomplete).
    pub fn completed(&self) -> bool {
        matches!(self.ending, Some(Ending::Completed | Ending::Incomplete))
    }

    /// Whether any generated output reached the client.
    pub fn delivered_output(&self) -> bool {
        self.output_events > 0
    }

    /// Whether an upstream error that ends this answer is charged (prompt plus the output
    /// received) rather than free: output reached the client, or the provider had started and
    /// then broke off or went silent. Only the provider's own failure event before any output is
    /// free (as `meter::StreamMeter::error_is_charged`).
    pub fn error_is_charged(&self) -> bool {
        self.delivered_output() || self.broke_off
    }

    /// The error of a failed answer.
    pub fn error(&self) -> Option<&GatewayError> {
        match &self.ending {
            Some(Ending::Failed(e)) => Some(e),
            _ => None,
        }
    }

    /// The usage to bill: the provider's when the answer completed; on any other ending its
    /// counts so far with the output raised to `local_output` (the local count of the output
    /// delivered), since a stream that stopped early reports only what it had counted then
    /// (Anthropic's `message_start` says `output_tokens: 1`); `None` when it reported none.
    pub fn billable_usage(&self, local_output: u64) -> Option<NativeUsage> {
        let usage = self.usage?;
        if self.completed() {
            return Some(usage);
        }
        Some(NativeUsage {
            completion_tokens: usage.completion_tokens.max(local_output),
            ..usage
        })
    }

    fn push_output(&mut self, text: &str) {
        if !text.is_empty() {
            self.output.push_str(text);
            self.output_events += 1;
        }
    }

    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
        }
    }
}

/// Per-API state of a stream beyond [`Observed`].
#[derive(Debug)]
enum ApiState {
    Responses(responses::StreamState),
    Messages(messages::StreamState),
}

/// The observer of one native stream (see the module docs).
#[derive(Debug)]
pub struct NativeStream {
    parser: SseParser,
    state: ApiState,
    observed: Observed,
    /// Bytes fed so far.
    fed: u64,
    /// Bytes up to the end of the last whole event.
    complete: u64,
    /// The stream is over for the client: nothing fed later is observed.
    closed: bool,
    /// Why the stream could not be read further (an event over the parser's limit): the relay
    /// stops forwarding and calls [`NativeStream::close`], which reports it.
    unreadable: Option<GatewayError>,
}

impl NativeStream {
    pub fn new(api: NativeApi) -> Self {
        NativeStream {
            parser: SseParser::new(),
            state: match api {
                NativeApi::Responses => ApiState::Responses(Default::default()),
                NativeApi::Messages => ApiState::Messages(Default::default()),
            },
            observed: Observed::default(),
            fed: 0,
            complete: 0,
            closed: false,
            unreadable: None,
        }
    }

    pub fn api(&self) -> NativeApi {
        match self.state {
            ApiState::Responses(_) => NativeApi::Responses,
            ApiState::Messages(_) => NativeApi::Messages,
        }
    }

    /// Observes the next bytes of the provider's stream (which the relay forwards unchanged).
    /// An event larger than the parser's limit ends the observation with an unusable answer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.closed || self.observed.ending.is_some() || self.unreadable.is_some() {
            return;
        }
        self.fed += bytes.len() as u64;
        match self.parser.push(bytes) {
            Ok(events) => {
                for event in events {
                    self.complete += event.raw.len() as u64;
                    self.event(event);
                }
            }
            Err(e) => {
                self.unreadable = Some(GatewayError::new(
                    ErrorKind::UpstreamUnusable,
                    format!("The provider's stream could not be read: {e}."),
                ))
            }
        }
    }

    /// Whether the stream cannot be read further: the relay must stop forwarding and
    /// [`close`](Self::close) it.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable.is_some()
    }

    /// The provider's connection ended: observes what was pending.
    pub fn finish(&mut self) {
        if self.closed || self.observed.ending.is_some() || self.unreadable.is_some() {
            return;
        }
        // A last block without its blank line is observed (a terminal event missing only that
        // still ends the answer) but is not a whole event: `complete` stays before it.
        if let Ok(Some(event)) = self.parser.finish() {
            self.event(event);
        }
    }

    fn event(&mut self, event: SseEvent) {
        if self.observed.ending.is_some() || event.is_empty() {
            return;
        }
        let Some(data) = event.data.as_deref() else {
            return;
        };
        if data == crate::core::sse::DONE {
            return;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
            return; // not an event of the API (an HTML page read as SSE, a stray line)
        };
        match &mut self.state {
            ApiState::Responses(s) => s.event(&value, &mut self.observed),
            ApiState::Messages(s) => s.event(&value, &mut self.observed),
        }
    }

    pub fn observed(&self) -> &Observed {
        &self.observed
    }

    /// The number of bytes fed up to the end of the last whole event: where a relay that ends
    /// the stream itself cuts the provider's bytes.
    pub fn complete_bytes(&self) -> u64 {
        self.complete
    }

    /// Bytes fed so far.
    pub fn fed_bytes(&self) -> u64 {
        self.fed
    }

    /// The provider's connection ended or broke (`broken`: why, when the relay knows). Returns
    /// the bytes the client gets after the provider's (cut at [`Self::complete_bytes`]): nothing
    /// when the stream already ended with a terminal event, else an error event in the API's
    /// shape. A stream with nothing parseable becomes [`ErrorKind::UpstreamUnusable`] (the
    /// provider may have billed it), unless the provider sent no byte before its timeout
    /// ([`ErrorKind::UpstreamUnanswered`]).
    pub fn close(&mut self, broken: Option<GatewayError>) -> Vec<u8> {
        if self.closed {
            return Vec::new();
        }
        self.finish();
        self.closed = true;
        if self.observed.ending.is_some() {
            return Vec::new();
        }
        if let Some(unreadable) = self.unreadable.take() {
            let bytes = self.error_event(&unreadable);
            self.observed.end(Ending::Failed(unreadable));
            return bytes;
        }
        let err = broken.unwrap_or_else(|| {
            GatewayError::new(
                ErrorKind::UpstreamFailed,
                "The provider closed the stream before it was complete.",
            )
        });
        self.observed.broke_off = self.observed.answered;
        let err = if self.observed.answered || err.kind == ErrorKind::UpstreamUnanswered {
            err
        } else {
            GatewayError::new(ErrorKind::UpstreamUnusable, err.message)
        };
        let bytes = self.error_event(&err);
        self.observed.end(Ending::Failed(err));
        bytes
    }

    /// Ends the stream before the provider did, because its output reached what the reservation
    /// covers: closes an open block and writes the API's normal ending for a model stopped by its
    /// output cap (`response.incomplete` with `max_output_tokens`; Anthropic's `message_delta`
    /// with `stop_reason: "max_tokens"` and `message_stop`), with `usage` (local counts) in it.
    /// The relay sends these bytes after the provider's, cut at [`Self::complete_bytes`].
    pub fn cut(&mut self, usage: &NativeUsage) -> Vec<u8> {
        if self.closed || self.observed.ending.is_some() {
            return Vec::new();
        }
        self.closed = true;
        self.observed.end(Ending::Truncated);
        match &mut self.state {
            ApiState::Responses(s) => s.cut(usage),
            ApiState::Messages(s) => s.cut(usage),
        }
    }

    /// The error event the gateway sends in this API's shape.
    pub fn error_event(&mut self, err: &GatewayError) -> Vec<u8> {
        match &mut self.state {
            ApiState::Responses(s) => s.error_event(err),
            ApiState::Messages(_) => messages::error_event(err),
        }
    }
}

/// Observes a plain (non-stream) 2xx body of `api`. A body that is not the API's object is an
/// [`ErrorKind::UpstreamUnusable`] answer (charged the reservation: the provider may have billed
/// it); a Responses object with `status: "failed"` is observed with a failed ending.
pub fn observe_plain(api: NativeApi, body: &[u8]) -> Result<Observed, GatewayError> {
    let unusable = |what: &str| {
        GatewayError::new(
            ErrorKind::UpstreamUnusable,
            format!("The provider's answer could not be read: {what}."),
        )
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| unusable("it is not JSON"))?;
    let mut observed = Observed::default();
    match api {
        NativeApi::Responses => responses::observe_plain(&value, &mut observed),
        NativeApi::Messages => messages::observe_plain(&value, &mut observed),
    }
    .map_err(unusable)?;
    observed.answered = true;
    Ok(observed)
}

/// A non-negative integer member of a JSON object.
fn count(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key).and_then(serde_json::Value::as_u64)
}

/// The request body as a JSON object, or a 400.
fn body_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, GatewayError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(GatewayError::invalid_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(GatewayError::invalid_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Every-split observation of a recorded stream.

    use super::*;

    /// Observes `bytes` fed whole, then split at every byte boundary, then one byte at a time;
    /// asserts every way observes the same and returns it.
    pub fn observe_every_way(api: NativeApi, bytes: &[u8]) -> Observed {
        let whole = {
            let mut s = NativeStream::new(api);
            s.push(bytes);
            s.finish();
            assert_eq!(s.fed_bytes(), bytes.len() as u64);
            s.observed().clone()
        };
        for at in 0..=bytes.len() {
            let mut s = NativeStream::new(api);
            s.push(&bytes[..at]);
            s.push(&bytes[at..]);
            s.finish();
            assert_eq!(s.observed(), &whole, "split at {at}");
        }
        let mut s = NativeStream::new(api);
        for b in bytes {
            s.push(std::slice::from_ref(b));
        }
        s.finish();
        assert_eq!(s.observed(), &whole, "byte by byte");
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(kind: ProviderKind, base: &str, config: serde_json::Value) -> Route {
        Route {
            provider: "p".into(),
            kind,
            base_url: base.into(),
            api_key: Some("k".into()),
            upstream_model: "up".into(),
            max_output_tokens: Some(100),
            config,
        }
    }

    #[test]
    fn which_routes_are_native() {
        let null = serde_json::Value::Null;
        let openai = route(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1",
            null.clone(),
        );
        let compat = route(ProviderKind::OpenAi, "http://127.0.0.1:9/v1", null.clone());
        let azure = route(
            ProviderKind::Azure,
            "https://r.openai.azure.com",
            null.clone(),
        );
        let claude = route(
            ProviderKind::Anthropic,
            "https://api.anthropic.com/v1",
            null,
        );
        assert!(serves_natively(&openai, NativeApi::Responses));
        assert!(serves_natively(&azure, NativeApi::Responses));
        assert!(!serves_natively(&compat, NativeApi::Responses));
        assert!(!serves_natively(&claude, NativeApi::Responses));
        assert!(serves_natively(&claude, NativeApi::Messages));
        assert!(!serves_natively(&openai, NativeApi::Messages));
        let on = route(
            ProviderKind::OpenAi,
            "http://127.0.0.1:9/v1",
            json!({"responses_api": true}),
        );
        assert!(serves_natively(&on, NativeApi::Responses));
        let off = route(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1",
            json!({"responses_api": false}),
        );
        assert!(!serves_natively(&off, NativeApi::Responses));
        let gemini = route(
            ProviderKind::Gemini,
            "https://g",
            json!({"responses_api": true}),
        );
        assert!(!serves_natively(&gemini, NativeApi::Responses));
    }

    #[test]
    fn billable_usage_is_the_providers_when_complete_else_at_least_the_delivered_output() {
        let partial = NativeUsage {
            prompt_tokens: 40,
            cached_tokens: 10,
            completion_tokens: 1,
            ..NativeUsage::default()
        };
        let mut o = Observed {
            usage: Some(partial),
            ..Observed::default()
        };
        let billed = o.billable_usage(7).unwrap();
        assert_eq!((billed.prompt_tokens, billed.cached_tokens), (40, 10));
        assert_eq!(billed.completion_tokens, 7);
        o.usage = Some(NativeUsage {
            completion_tokens: 9,
            ..partial
        });
        assert_eq!(o.billable_usage(7).unwrap().completion_tokens, 9);
        o.ending = Some(Ending::Completed);
        o.usage = Some(partial);
        assert_eq!(
            o.billable_usage(7),
            Some(partial),
            "a completed answer's usage as reported"
        );
        assert_eq!(Observed::default().billable_usage(7), None);
    }

    #[test]
    fn usage_shapes() {
        let u = NativeUsage {
            prompt_tokens: 100,
            cached_tokens: 40,
            cache_write_5m: 10,
            cache_write_1h: 5,
            completion_tokens: 30,
            reasoning_tokens: 20,
        };
        let chat = u.to_usage();
        assert_eq!(chat.prompt_tokens, 100);
        assert_eq!(chat.total_tokens, 130);
        assert_eq!(chat.cached_tokens(), 40);
        assert_eq!(chat.reasoning_tokens(), 20);
        let t = u.tiered();
        assert_eq!(t.tokens.prompt_tokens, 100);
        assert_eq!((t.cache_write_5m, t.cache_write_1h), (10, 5));
        assert_eq!(
            NativeUsage::default().to_usage().prompt_tokens_details,
            None
        );
    }

    #[test]
    fn a_stream_of_nothing_parseable_is_unusable_and_a_silent_one_unanswered() {
        for api in [NativeApi::Responses, NativeApi::Messages] {
            let mut s = NativeStream::new(api);
            s.push(b"<html><body>Bad gateway</body></html>\n\n");
            let tail = s.close(None);
            assert!(!tail.is_empty());
            assert_eq!(
                s.observed().error().map(|e| e.kind),
                Some(ErrorKind::UpstreamUnusable)
            );
            // Nothing after the close is observed, and a second close adds nothing.
            s.push(b"event: x\ndata: {}\n\n");
            assert!(s.close(None).is_empty());

            let mut silent = NativeStream::new(api);
            let unanswered = GatewayError::new(ErrorKind::UpstreamUnanswered, "no answer");
            silent.close(Some(unanswered));
            assert_eq!(
                silent.observed().error().map(|e| e.kind),
                Some(ErrorKind::UpstreamUnanswered)
            );
        }
    }

    #[test]
    fn an_event_over_the_limit_is_unusable_and_the_client_still_gets_an_ending() {
        for api in [NativeApi::Responses, NativeApi::Messages] {
            let mut s = NativeStream::new(api);
            s.parser = SseParser::with_max_event_bytes(64);
            s.push(b"event: x\ndata: {\"type\":\"ping\"}\n\n");
            assert!(!s.is_unreadable());
            s.push(&[b'a'; 100]);
            assert!(s.is_unreadable());
            assert_eq!(s.observed().ending, None);
            let tail = s.close(None);
            assert!(
                String::from_utf8_lossy(&tail).contains("could not be read"),
                "{api:?}"
            );
            assert_eq!(
                s.observed().error().map(|e| e.kind),
                Some(ErrorKind::UpstreamUnusable)
            );
        }
    }

    #[test]
    fn complete_bytes_stop_at_the_last_whole_event() {
        let mut s = NativeStream::new(NativeApi::Messages);
        let first = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
        s.push(first);
        s.push(b"event: content_block_delta\ndata: {\"type\":");
        assert_eq!(s.complete_bytes(), first.len() as u64);
        assert_eq!(s.fed_bytes(), first.len() as u64 + 41);
    }

    #[test]
    fn plain_bodies_that_are_not_the_apis_object_are_unusable() {
        for api in [NativeApi::Responses, NativeApi::Messages] {
            for body in [&b"<html>"[..], b"[]", b"{\"choices\":[]}"] {
                let err = observe_plain(api, body).unwrap_err();
                assert_eq!(err.kind, ErrorKind::UpstreamUnusable, "{api:?} {body:?}");
            }
        }
    }
}
