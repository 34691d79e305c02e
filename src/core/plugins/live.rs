//! A tool loop streamed live: what the client sees of each model round while the gateway runs
//! plugin calls between rounds. Pure; the edge (`src/edge/plugins/live.rs`) does the I/O.
//!
//! Every round is requested from the model as a stream. [`LiveRound`] takes the round's decoded
//! items and writes at once what the client should receive: content deltas, and the deltas of
//! the client's own tool calls, under the stream's one id. Deltas of tool calls the gateway owns
//! (plugin tools) are kept back and assembled ([`ToolCallAssembler`]). A round's finish reason is
//! held until the round ends ([`LiveRound::end`]): then either the gateway runs the plugin calls
//! and the same client stream continues with the next round, or [`LiveRound::finish`] writes the
//! finish chunk, the usage chunk (if the client asked for it) and `[DONE]`.
//!
//! The provider's own usage chunks and `[DONE]` are never forwarded: the stream's usage is the sum
//! over its rounds and is known only at the end.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::split_tool_name;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::{fold_finish_reason, RequestStatus};
use crate::core::openai::{
    ChatCompletionChunk, ChunkChoice, Delta, FunctionCall, ToolCall, ToolCallDelta, Usage,
};
use crate::core::providers::StreamItem;
use crate::core::sse::{encode_data, DONE};

/// Builds complete tool calls from streamed deltas, the way OpenAI's SDKs do: the first delta of
/// a call (per choice and `index`) brings its `id`, `type` and `function.name`; later deltas
/// append fragments of `function.arguments`.
///
/// Calls are kept in a map keyed by (choice, index): each delta finds its call in O(log n), so a
/// model emitting thousands of calls costs no quadratic search, and a choice's calls come out
/// ordered by index without sorting.
#[derive(Debug, Default, Clone)]
pub struct ToolCallAssembler {
    calls: BTreeMap<(u32, u32), ToolCall>,
}

impl ToolCallAssembler {
    /// Adds one delta of choice `choice`.
    pub fn push(&mut self, choice: u32, delta: &ToolCallDelta) {
        let call = self
            .calls
            .entry((choice, delta.index))
            .or_insert_with(|| ToolCall {
                id: String::new(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: String::new(),
                    arguments: String::new(),
                },
            });
        if let Some(id) = delta.id.as_deref().filter(|s| !s.is_empty()) {
            call.id = id.to_string();
        }
        if let Some(kind) = delta.kind.as_deref().filter(|s| !s.is_empty()) {
            call.kind = kind.to_string();
        }
        if let Some(f) = &delta.function {
            if let Some(name) = f.name.as_deref().filter(|s| !s.is_empty()) {
                call.function.name = name.to_string();
            }
            if let Some(args) = &f.arguments {
                call.function.arguments.push_str(args);
            }
        }
    }

    /// The calls of `choice` with their `index`, ordered by it.
    fn indexed(&self, choice: u32) -> impl Iterator<Item = (u32, &ToolCall)> {
        self.calls
            .range((choice, 0)..=(choice, u32::MAX))
            .map(|(&(_, index), call)| (index, call))
    }

    /// The calls of `choice`, ordered by their `index`.
    pub fn calls(&self, choice: u32) -> Vec<ToolCall> {
        self.indexed(choice).map(|(_, call)| call.clone()).collect()
    }
}

/// `id`, `model` and `created` of the client's stream: those of the first chunk of the first
/// round, kept for every later chunk so the client sees one completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHead {
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// Where a streamed tool call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallRoute {
    /// A plugin tool: kept back, run by the gateway.
    Plugin,
    /// The client's own tool, forwarded under this index (its position among the client calls).
    Client(u32),
}

/// How a round ended, once its stream is complete.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundEnd {
    /// The model called plugins (and no client tool): run `calls`, append the assistant message
    /// (`content` and the calls) and their results, and continue with the next round.
    CallPlugins {
        content: Option<String>,
        calls: Vec<ToolCall>,
    },
    /// The answer is complete: end the stream with [`LiveRound::finish`].
    Answer,
}

/// One model round of a live tool loop (see the module documentation).
#[derive(Debug)]
pub struct LiveRound {
    plugins: Vec<String>,
    last: bool,
    keep_role: bool,
    head: Option<StreamHead>,
    /// Everything the round generated (content, refusals, tool names and arguments, including
    /// the calls kept back): what the local completion count measures.
    text: String,
    /// The content of choice 0, for the assistant message of the next round.
    content: String,
    usage: Option<Usage>,
    assembler: ToolCallAssembler,
    /// The route of each (choice, tool-call index), decided by the call's first delta.
    routes: BTreeMap<(u32, u32), CallRoute>,
    client_calls: BTreeMap<u32, u32>,
    finish: BTreeMap<u32, String>,
    /// The provider's finish reasons folded over the choices ([`fold_finish_reason`]), as the
    /// provider gave them (before a kept-back `tool_calls` becomes `stop`): what the round's
    /// bill needs to know whether the model ended its turn.
    finish_reason: Option<String>,
    done: bool,
    error: Option<GatewayError>,
    truncated: bool,
    /// The provider sent something parseable: a chunk, `[DONE]` or an error event of its own
    /// (keep-alives do not count), as in the plain stream's meter.
    answered: bool,
}

impl LiveRound {
    /// A round whose tool calls to any of `plugins` (plugin ids) are the gateway's. `head` is the
    /// stream's head from earlier rounds (`None` for the first round, which sets it and keeps the
    /// `role` delta); `last` is the last round the loop allows, which never calls plugins.
    pub fn new(plugins: Vec<String>, head: Option<StreamHead>, last: bool) -> Self {
        LiveRound {
            plugins,
            last,
            keep_role: head.is_none(),
            head,
            text: String::new(),
            content: String::new(),
            usage: None,
            assembler: ToolCallAssembler::default(),
            routes: BTreeMap::new(),
            client_calls: BTreeMap::new(),
            finish: BTreeMap::new(),
            finish_reason: None,
            done: false,
            error: None,
            truncated: false,
            answered: false,
        }
    }

    fn owns(&self, name: &str) -> bool {
        split_tool_name(name).is_some_and(|(p, _)| self.plugins.iter().any(|x| x == p))
    }

    /// Takes one decoded item and appends what the client should receive now to `out`.
    pub fn push(&mut self, item: StreamItem, out: &mut Vec<u8>) {
        if self.is_over() {
            return;
        }
        if !matches!(item, StreamItem::KeepAlive(_)) {
            self.answered = true;
        }
        match item {
            StreamItem::KeepAlive(raw) => out.extend_from_slice(&raw),
            StreamItem::Done => self.done = true,
            StreamItem::Error(err) => {
                out.extend_from_slice(&encode_data(&crate::core::inbound::openai::error_body(
                    &err,
                )));
                self.error = Some(err);
            }
            StreamItem::Chunk { chunk, raw } => self.chunk(chunk, raw, out),
        }
    }

    fn chunk(&mut self, mut chunk: ChatCompletionChunk, raw: Option<Vec<u8>>, out: &mut Vec<u8>) {
        let mut changed = false;
        if let Some(usage) = chunk.usage.take() {
            // The client gets the sum over rounds at the end.
            self.usage = Some(usage);
            changed = true;
        }
        chunk.append_generated_text(&mut self.text);
        match &self.head {
            None if !chunk.id.is_empty() => {
                self.head = Some(StreamHead {
                    id: chunk.id.clone(),
                    model: chunk.model.clone(),
                    created: chunk.created,
                });
            }
            Some(head) if chunk.id != head.id || chunk.created != head.created => {
                chunk.id = head.id.clone();
                chunk.created = head.created;
                changed = true;
            }
            _ => {}
        }
        for choice in &mut chunk.choices {
            if !self.keep_role && choice.delta.role.take().is_some() {
                changed = true;
            }
            if choice.index == 0 {
                if let Some(c) = &choice.delta.content {
                    self.content.push_str(c);
                }
            }
            if let Some(deltas) = choice.delta.tool_calls.take() {
                let mut kept = Vec::with_capacity(deltas.len());
                for mut delta in deltas {
                    self.assembler.push(choice.index, &delta);
                    match self.route(choice.index, &delta) {
                        CallRoute::Plugin => changed = true,
                        CallRoute::Client(index) => {
                            if delta.index != index {
                                delta.index = index;
                                changed = true;
                            }
                            kept.push(delta);
                        }
                    }
                }
                if !kept.is_empty() {
                    choice.delta.tool_calls = Some(kept);
                }
            }
            if let Some(reason) = choice.finish_reason.take() {
                fold_finish_reason(&mut self.finish_reason, &reason);
                self.finish.insert(choice.index, reason);
                changed = true;
            }
        }
        if !changed {
            match raw {
                Some(raw) => out.extend_from_slice(&raw),
                None => write_chunk(&chunk, out),
            }
            return;
        }
        chunk.choices.retain(|c| !is_empty_choice(c));
        if !chunk.choices.is_empty() {
            write_chunk(&chunk, out);
        }
    }

    /// The route of a tool-call delta: decided by the name in the call's first delta.
    fn route(&mut self, choice: u32, delta: &ToolCallDelta) -> CallRoute {
        let key = (choice, delta.index);
        if let Some(route) = self.routes.get(&key) {
            return *route;
        }
        let name = delta
            .function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .unwrap_or("");
        let route = if self.owns(name) {
            CallRoute::Plugin
        } else {
            let next = self.client_calls.entry(choice).or_insert(0);
            let route = CallRoute::Client(*next);
            *next += 1;
            route
        };
        self.routes.insert(key, route);
        route
    }

    /// The upstream connection ended (or broke). If it ended without `[DONE]` or an error, the
    /// client gets an error event and the round counts as failed.
    ///
    /// The plain stream's "answered" rule ([`crate::core::meter::StreamMeter::upstream_closed`])
    /// holds for a round too: a 2xx stream that ends before anything parseable arrived (an HTML
    /// page, garbage, an empty body) is `UpstreamUnusable`, which the provider may have billed;
    /// one that got no byte before its first-byte timeout keeps `UpstreamUnanswered`.
    pub fn upstream_closed(&mut self, broken: Option<GatewayError>, out: &mut Vec<u8>) {
        if self.is_over() {
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
            // Same words, the kind that is charged.
            GatewayError::new(ErrorKind::UpstreamUnusable, err.message)
        };
        out.extend_from_slice(&encode_data(&crate::core::inbound::openai::error_body(
            &err,
        )));
        self.error = Some(err);
    }

    /// The status of the round's usage row once it is over, and whether its usage is unknown
    /// (then the reservation is charged): the rule of a plain stream's end (docs/money.md, "How
    /// a request ends"). A round that failed before it generated anything, in a way the provider
    /// may have billed (no byte before the first-byte timeout, a 2xx with nothing parseable), is
    /// `upstream_timeout` / `upstream_unusable` and charged the reservation; any other failure is
    /// `upstream_error`, charged what was generated (nothing, if nothing was).
    pub fn status(&self, client_left: bool) -> (RequestStatus, bool) {
        let billed_unseen = !self.generated_output()
            && self
                .error
                .as_ref()
                .is_some_and(GatewayError::provider_may_have_billed);
        let status = if client_left {
            RequestStatus::ClientAbort
        } else if billed_unseen {
            match self.error.as_ref().map(|e| e.kind) {
                Some(ErrorKind::UpstreamUnusable) => RequestStatus::UpstreamUnusable,
                _ => RequestStatus::UpstreamTimeout,
            }
        } else if self.error.is_some() {
            RequestStatus::UpstreamError
        } else if self.truncated {
            RequestStatus::Truncated
        } else {
            RequestStatus::Ok
        };
        (status, billed_unseen)
    }

    /// Whether the round's stream is over: completed, failed or cut.
    pub fn is_over(&self) -> bool {
        self.done || self.error.is_some() || self.truncated
    }

    /// What a completed round leads to. Calls to plugins are run only when the model called no
    /// client tool in the same message (those end the stream, the plugin calls dropped) and this
    /// is not the last round.
    pub fn end(&self) -> RoundEnd {
        let has_client_calls = self.client_calls.values().any(|n| *n > 0);
        let plugin_calls: Vec<ToolCall> = self
            .assembler
            .indexed(0)
            .filter(|(index, _)| self.routes.get(&(0, *index)) == Some(&CallRoute::Plugin))
            .map(|(_, call)| call.clone())
            .collect();
        if plugin_calls.is_empty() || has_client_calls || self.last {
            return RoundEnd::Answer;
        }
        RoundEnd::CallPlugins {
            content: (!self.content.is_empty()).then(|| self.content.clone()),
            calls: plugin_calls,
        }
    }

    /// Ends the client's stream after the answer: the held finish chunk of each choice (a
    /// `tool_calls` finish whose calls were all kept back becomes `stop`), the usage chunk when
    /// `usage` is given, and `[DONE]`.
    pub fn finish(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        let finish = std::mem::take(&mut self.finish);
        for (index, reason) in finish {
            let client_calls = self.client_calls.get(&index).copied().unwrap_or(0);
            let reason = if reason == "tool_calls" && client_calls == 0 {
                "stop".to_string()
            } else {
                reason
            };
            write_chunk(
                &self.synthetic(vec![finish_choice(index, reason)], None),
                out,
            );
        }
        self.close(usage, out);
    }

    /// Ends the client's stream before the provider did, because the output reached what the
    /// reservation covers: a `length` finish, the usage chunk when `usage` is given, `[DONE]`.
    pub fn cut(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        if self.is_over() {
            return;
        }
        write_chunk(
            &self.synthetic(vec![finish_choice(0, "length".to_string())], None),
            out,
        );
        self.close(usage, out);
        self.truncated = true;
    }

    fn close(&mut self, usage: Option<Usage>, out: &mut Vec<u8>) {
        if let Some(usage) = usage {
            write_chunk(&self.synthetic(Vec::new(), Some(usage)), out);
        }
        out.extend_from_slice(&encode_data(DONE));
    }

    fn synthetic(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk {
        let head = self.head.clone().unwrap_or_default();
        ChatCompletionChunk {
            id: head.id,
            object: "chat.completion.chunk".to_string(),
            created: head.created,
            model: head.model,
            choices,
            usage,
            extra: Map::new(),
        }
    }

    /// The stream's head, for the next round.
    pub fn head(&self) -> Option<StreamHead> {
        self.head.clone()
    }

    /// Everything the round generated so far, including the tool calls kept back.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The provider's finish reason for this round ([`fold_finish_reason`] over its choices),
    /// if it gave one: `"length"` when the provider cut every choice at `max_tokens`, so the
    /// round generated no end-of-turn token. A cut by the gateway ([`LiveRound::cut`]) is not a
    /// provider's finish and is not reported here.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// The provider's usage for this round, if it sent one.
    pub fn upstream_usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    pub fn error(&self) -> Option<&GatewayError> {
        self.error.as_ref()
    }

    /// Whether [`LiveRound::cut`] ended the round.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Whether the provider generated anything in this round (billing of broken rounds).
    pub fn generated_output(&self) -> bool {
        !self.text.is_empty()
    }
}

fn finish_choice(index: u32, reason: String) -> ChunkChoice {
    ChunkChoice {
        index,
        delta: Delta::default(),
        finish_reason: Some(reason),
        extra: Map::new(),
    }
}

/// A choice that carries nothing once the gateway has taken its parts out.
fn is_empty_choice(c: &ChunkChoice) -> bool {
    let d = &c.delta;
    c.finish_reason.is_none()
        && d.role.is_none()
        && d.content.as_deref().unwrap_or("").is_empty()
        && d.refusal.is_none()
        && d.tool_calls.as_ref().is_none_or(Vec::is_empty)
        && d.extra.values().all(Value::is_null)
        && c.extra.values().all(Value::is_null)
}

fn write_chunk(chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
    if let Ok(json) = serde_json::to_string(chunk) {
        out.extend_from_slice(&encode_data(&json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sse::SseParser;

    fn item(json: &str) -> StreamItem {
        StreamItem::Chunk {
            chunk: serde_json::from_str(json).unwrap(),
            raw: Some(encode_data(json)),
        }
    }

    fn events(out: &[u8]) -> Vec<String> {
        SseParser::new()
            .push(out)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.data)
            .collect()
    }

    fn chunks(out: &[u8]) -> Vec<Value> {
        events(out)
            .iter()
            .filter(|d| d.as_str() != DONE)
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    const ROLE: &str = r#"{"id":"c1","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#;
    const USAGE: &str = r#"{"id":"c1","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57}}"#;

    fn text(id: &str, t: &str) -> String {
        format!(
            r#"{{"id":"{id}","created":5,"model":"m","choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]}}"#,
            serde_json::to_string(t).unwrap()
        )
    }

    fn call_delta(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> String {
        let mut d = serde_json::json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            d["id"] = id.into();
            d["type"] = "function".into();
        }
        if let Some(name) = name {
            d["function"]["name"] = name.into();
        }
        serde_json::json!({"id": "c1", "created": 5, "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": [d]}, "finish_reason": null}]})
        .to_string()
    }

    fn finish(id: &str, reason: &str) -> String {
        format!(
            r#"{{"id":"{id}","created":5,"model":"m","choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#
        )
    }

    #[test]
    fn assembles_tool_calls_from_fragments() {
        let mut a = ToolCallAssembler::default();
        let d = |json: &str| serde_json::from_str::<ToolCallDelta>(json).unwrap();
        a.push(
            0,
            &d(r#"{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":""}}"#),
        );
        a.push(
            0,
            &d(r#"{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{\"ci"}}"#),
        );
        a.push(
            0,
            &d(r#"{"index":0,"function":{"arguments":"ty\":\"北京\"}"}}"#),
        );
        a.push(0, &d(r#"{"index":1,"function":{"arguments":"{}"}}"#));
        a.push(1, &d(r#"{"index":0,"id":"z","function":{"name":"h"}}"#));
        let calls = a.calls(0);
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.name.as_str()),
            ("a", "f")
        );
        assert_eq!(calls[0].function.arguments, r#"{"city":"北京"}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(a.calls(1)[0].function.name, "h");
        assert!(a.calls(2).is_empty());
    }

    #[test]
    fn many_interleaved_calls_come_back_whole_and_in_index_order() {
        // 300 plugin calls whose first deltas arrive in reverse index order, then their
        // arguments interleaved: every call is assembled from its own fragments.
        let mut r = LiveRound::new(vec!["weather".into()], None, false);
        let mut out = Vec::new();
        r.push(item(ROLE), &mut out);
        let n = 300u32;
        for i in (0..n).rev() {
            let id = format!("call_{i}");
            r.push(
                item(&call_delta(
                    i,
                    Some(&id),
                    Some("weather__get_forecast"),
                    "{",
                )),
                &mut out,
            );
        }
        for i in 0..n {
            r.push(
                item(&call_delta(i, None, None, &format!("\"d\":{i}"))),
                &mut out,
            );
        }
        for i in (0..n).step_by(7) {
            r.push(item(&call_delta(i, None, None, "}")), &mut out);
        }
        r.push(item(&finish("c1", "tool_calls")), &mut out);
        r.push(StreamItem::Done, &mut out);
        let RoundEnd::CallPlugins { calls, .. } = r.end() else {
            panic!("expected plugin calls")
        };
        assert_eq!(calls.len(), n as usize);
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(call.id, format!("call_{i}"));
            let closing = if i % 7 == 0 { "}" } else { "" };
            assert_eq!(call.function.arguments, format!("{{\"d\":{i}{closing}"));
        }
    }

    #[test]
    fn plugin_round_streams_text_and_keeps_plugin_calls_back() {
        let mut r = LiveRound::new(vec!["weather".into()], None, false);
        let mut out = Vec::new();
        r.push(item(ROLE), &mut out);
        r.push(item(&text("c1", "Let me check. ")), &mut out);
        let sent = out.len();
        r.push(
            item(&call_delta(
                0,
                Some("call_1"),
                Some("weather__get_forecast"),
                "",
            )),
            &mut out,
        );
        r.push(item(&call_delta(0, None, None, r#"{"city":"#)), &mut out);
        r.push(item(&call_delta(0, None, None, r#""Oslo"}"#)), &mut out);
        r.push(item(&finish("c1", "tool_calls")), &mut out);
        r.push(item(USAGE), &mut out);
        assert_eq!(
            out.len(),
            sent,
            "nothing of the plugin call reaches the client"
        );
        r.push(StreamItem::Done, &mut out);
        assert!(r.is_over() && r.error().is_none());
        let ev = events(&out);
        // The role chunk and the text, forwarded byte for byte.
        assert_eq!(ev, vec![ROLE.to_string(), text("c1", "Let me check. ")]);
        assert_eq!(r.upstream_usage().unwrap().completion_tokens, 7);
        assert_eq!(
            r.text(),
            r#"Let me check. weather__get_forecast{"city":"Oslo"}"#
        );
        match r.end() {
            RoundEnd::CallPlugins { content, calls } => {
                assert_eq!(content.as_deref(), Some("Let me check. "));
                assert_eq!(calls.len(), 1);
                assert_eq!(calls[0].id, "call_1");
                assert_eq!(calls[0].function.arguments, r#"{"city":"Oslo"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.head().unwrap().id, "c1");
    }

    #[test]
    fn later_rounds_continue_the_same_completion_and_end_it_once() {
        let head = StreamHead {
            id: "c1".into(),
            model: "m".into(),
            created: 5,
        };
        let mut r = LiveRound::new(vec!["weather".into()], Some(head), false);
        let mut out = Vec::new();
        r.push(item(&ROLE.replace("c1", "c2")), &mut out);
        assert!(out.is_empty(), "the second role chunk is dropped");
        r.push(item(&text("c2", "Sunny")), &mut out);
        r.push(item(&finish("c2", "stop")), &mut out);
        r.push(item(&USAGE.replace("c1", "c2")), &mut out);
        r.push(StreamItem::Done, &mut out);
        assert_eq!(r.end(), RoundEnd::Answer);
        r.finish(Some(Usage::new(100, 14)), &mut out);
        let ev = events(&out);
        assert_eq!(ev.last().unwrap(), DONE);
        let cs = chunks(&out);
        assert_eq!(cs.len(), 3);
        assert!(cs.iter().all(|c| c["id"] == "c1" && c["created"] == 5));
        assert_eq!(cs[0]["choices"][0]["delta"]["content"], "Sunny");
        assert_eq!(cs[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(cs[2]["usage"]["total_tokens"], 114);
        assert_eq!(cs[2]["choices"].as_array().unwrap().len(), 0);
        // Without usage asked for: finish and [DONE] only.
        let mut r = LiveRound::new(vec![], None, false);
        let mut out = Vec::new();
        r.push(item(&finish("c1", "stop")), &mut out);
        r.push(StreamItem::Done, &mut out);
        r.finish(None, &mut out);
        assert_eq!(events(&out).len(), 2);
    }

    #[test]
    fn client_tools_are_forwarded_renumbered_and_end_the_stream() {
        let mut r = LiveRound::new(vec!["weather".into()], None, false);
        let mut out = Vec::new();
        r.push(
            item(&call_delta(
                0,
                Some("call_p"),
                Some("weather__get_forecast"),
                "{}",
            )),
            &mut out,
        );
        assert!(out.is_empty());
        r.push(
            item(&call_delta(1, Some("call_c"), Some("get_time"), "")),
            &mut out,
        );
        r.push(
            item(&call_delta(1, None, None, r#"{"tz":"UTC"}"#)),
            &mut out,
        );
        r.push(item(&finish("c1", "tool_calls")), &mut out);
        r.push(StreamItem::Done, &mut out);
        assert_eq!(r.end(), RoundEnd::Answer);
        r.finish(None, &mut out);
        let cs = chunks(&out);
        assert_eq!(cs.len(), 3);
        let first = &cs[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(first["index"], 0);
        assert_eq!(first["id"], "call_c");
        assert_eq!(first["function"]["name"], "get_time");
        assert_eq!(
            cs[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            r#"{"tz":"UTC"}"#
        );
        assert_eq!(cs[2]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn the_last_round_never_calls_plugins() {
        let mut r = LiveRound::new(vec!["weather".into()], None, true);
        let mut out = Vec::new();
        r.push(item(&text("c1", "Hm.")), &mut out);
        r.push(
            item(&call_delta(
                0,
                Some("x"),
                Some("weather__get_forecast"),
                "{}",
            )),
            &mut out,
        );
        r.push(item(&finish("c1", "tool_calls")), &mut out);
        r.push(StreamItem::Done, &mut out);
        assert_eq!(r.end(), RoundEnd::Answer);
        r.finish(None, &mut out);
        let cs = chunks(&out);
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn finish_reason_riding_on_content_is_held_and_content_sent() {
        let mut r = LiveRound::new(vec![], None, false);
        let mut out = Vec::new();
        r.push(
            item(r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#),
            &mut out,
        );
        let cs = chunks(&out);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["choices"][0]["delta"]["content"], "end");
        assert!(cs[0]["choices"][0]["finish_reason"].is_null());
        assert!(cs[0].get("usage").is_none());
        assert_eq!(r.upstream_usage().unwrap().total_tokens, 2);
    }

    #[test]
    fn a_round_with_nothing_parseable_is_unusable_and_charged() {
        // An HTML page (or garbage) read as SSE: ignored lines, i.e. keep-alives only.
        let mut r = LiveRound::new(vec![], Some(StreamHead::default()), false);
        let mut out = Vec::new();
        r.push(StreamItem::KeepAlive(b"<html>\n\n".to_vec()), &mut out);
        r.upstream_closed(None, &mut out);
        assert_eq!(r.error().map(|e| e.kind), Some(ErrorKind::UpstreamUnusable));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("upstream_unusable"));
        assert_eq!(r.status(false), (RequestStatus::UpstreamUnusable, true));
        // The client left meanwhile: its row is client_abort, still charged the reservation.
        assert_eq!(r.status(true), (RequestStatus::ClientAbort, true));

        // Broken off before anything parseable: unusable too.
        let mut r = LiveRound::new(vec![], None, false);
        let broke = GatewayError::new(ErrorKind::UpstreamFailed, "broke off");
        r.upstream_closed(Some(broke), &mut Vec::new());
        assert_eq!(r.status(false), (RequestStatus::UpstreamUnusable, true));

        // No byte before the first-byte timeout: a timeout, charged.
        let mut r = LiveRound::new(vec![], None, false);
        let silent = GatewayError::new(ErrorKind::UpstreamUnanswered, "nothing");
        r.upstream_closed(Some(silent), &mut Vec::new());
        assert_eq!(r.status(false), (RequestStatus::UpstreamTimeout, true));

        // The provider's own error event is an answer: free upstream_error, as before.
        let mut r = LiveRound::new(vec![], None, false);
        let overloaded = GatewayError::new(ErrorKind::UpstreamFailed, "overloaded");
        r.push(StreamItem::Error(overloaded), &mut Vec::new());
        r.upstream_closed(None, &mut Vec::new());
        assert_eq!(r.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
        assert_eq!(r.status(false), (RequestStatus::UpstreamError, false));

        // Output, then the connection broke: upstream_error, charged what was generated.
        let mut r = LiveRound::new(vec![], None, false);
        r.push(item(&text("c1", "partial")), &mut Vec::new());
        r.upstream_closed(None, &mut Vec::new());
        assert_eq!(r.error().map(|e| e.kind), Some(ErrorKind::UpstreamFailed));
        assert_eq!(r.status(false), (RequestStatus::UpstreamError, false));

        // Chunks and [DONE]: ok; cut: truncated.
        let mut r = LiveRound::new(vec![], None, false);
        r.push(item(&text("c1", "fine")), &mut Vec::new());
        r.push(StreamItem::Done, &mut Vec::new());
        assert_eq!(r.status(false), (RequestStatus::Ok, false));
        let mut r = LiveRound::new(vec![], None, false);
        r.push(item(&text("c1", "long")), &mut Vec::new());
        r.cut(None, &mut Vec::new());
        assert_eq!(r.status(false), (RequestStatus::Truncated, false));
    }

    #[test]
    fn a_round_reports_the_providers_finish_reason_to_its_bill() {
        use crate::core::billing::tiers::PriceSheet;
        use crate::core::billing::Price;
        use crate::core::meter::{bill, BillInput, LENGTH};
        use crate::core::tokens::Encoding;

        // A round whose provider stopped at max_tokens, one that stopped, one that called tools,
        // and one that the provider never finished (the gateway's cut is not a finish).
        let round = |reason: Option<&str>| {
            let mut r = LiveRound::new(vec![], None, false);
            r.push(item(&text("c1", "Hi there")), &mut Vec::new());
            if let Some(reason) = reason {
                r.push(item(&finish("c1", reason)), &mut Vec::new());
            }
            r.push(StreamItem::Done, &mut Vec::new());
            r
        };
        assert_eq!(round(Some("length")).finish_reason(), Some(LENGTH));
        assert_eq!(round(Some("stop")).finish_reason(), Some("stop"));
        assert_eq!(
            round(Some("tool_calls")).finish_reason(),
            Some("tool_calls")
        );
        assert_eq!(round(None).finish_reason(), None);
        let mut cut = LiveRound::new(vec![], None, false);
        cut.push(item(&text("c1", "Hi there")), &mut Vec::new());
        cut.cut(None, &mut Vec::new());
        assert_eq!(cut.finish_reason(), None);
        // Held for the client's finish chunk, still reported after it was written.
        let mut r = round(Some("length"));
        r.finish(None, &mut Vec::new());
        assert_eq!(r.finish_reason(), Some(LENGTH));
        // Several choices: "length" only when every choice was cut.
        let mut r = LiveRound::new(vec![], None, false);
        let two = |a: &str, b: &str| {
            format!(
                r#"{{"id":"c1","created":5,"model":"m","choices":[{{"index":0,"delta":{{}},"finish_reason":"{a}"}},{{"index":1,"delta":{{}},"finish_reason":"{b}"}}]}}"#
            )
        };
        r.push(item(&two("length", "stop")), &mut Vec::new());
        assert_eq!(r.finish_reason(), Some("stop"));

        // What the round's bill makes of it: an open family's end-of-turn token is counted
        // only for a round that ended its turn.
        let price = Price {
            input: 1_000_000,
            output: 2_000_000,
            ..Price::default()
        };
        let billed = |r: &LiveRound| {
            bill(&BillInput {
                status: r.status(false).0,
                delivered_output: r.generated_output(),
                local_prompt_tokens: 6,
                completion_text: r.text(),
                finish_reason: r.finish_reason(),
                encoding: Some(Encoding::Qwen3),
                upstream_usage: r.upstream_usage().map(crate::core::meter::tiered_usage),
                sheet: &PriceSheet::flat(price),
                multiplier_bps: 10_000,
                reserved: 1_000,
            })
            .completion_tokens
        };
        let tokens = Encoding::Qwen3.count("Hi there");
        assert_eq!(billed(&round(Some("length"))), tokens);
        assert_eq!(billed(&round(Some("stop"))), tokens + 1);
    }

    #[test]
    fn broken_and_cut_rounds() {
        let mut r = LiveRound::new(vec![], None, false);
        let mut out = Vec::new();
        r.push(item(&text("c1", "partial")), &mut out);
        r.upstream_closed(None, &mut out);
        assert!(r.is_over() && r.error().is_some() && r.generated_output());
        assert!(events(&out)[1].contains("closed the stream"));
        // Nothing more once over.
        let before = out.len();
        r.push(item(&text("c1", "late")), &mut out);
        assert_eq!(out.len(), before);

        let mut r = LiveRound::new(vec![], None, false);
        let mut out = Vec::new();
        r.push(item(&text("c1", "a lot")), &mut out);
        r.cut(Some(Usage::new(3, 4)), &mut out);
        assert!(r.truncated() && r.is_over());
        let ev = events(&out);
        assert_eq!(ev.len(), 4);
        assert!(ev[1].contains(r#""finish_reason":"length""#) && ev[1].contains(r#""id":"c1""#));
        assert!(ev[2].contains(r#""completion_tokens":4"#));
        assert_eq!(ev[3], DONE);
        assert!(!LiveRound::new(vec![], None, false).generated_output());
    }
}
