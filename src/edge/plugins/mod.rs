//! Plugins at the edge: the tool loop and slash commands (README, "Plugins").
//!
//! The API handler offers a request here ([`intercept`]) once the gateway has admitted and
//! routed it (`gateway::prepare`); this layer is built on the gateway's functions, which never
//! call it. If the
//! request enables plugins (its `plugins` field, or the tenant's defaults) the gateway offers
//! them to the model as tools and runs the conversation: each model round is reserved, called
//! and settled like any request (usage row `<request id>` for the first round, then
//! `<request id>.r1`, `.r2`, …, all in the same session); each plugin call is validated, run
//! outside the gateway ([`exec`]) and recorded (`plugin_calls`, id `<request id>.c<n>`).
//!
//! A plain request runs its rounds as plain upstream calls and answers with the last one. A
//! streamed request streams every round live ([`live`]): content reaches the client as the model
//! writes it, plugin calls run between rounds, and the client sees one continuous completion.
//! The last allowed round is sent without the plugin tools.

mod charge;
pub mod exec;
mod live;

use crate::edge::store;
use std::rc::Rc;

use serde_json::Value;
use worker::{Context, D1Database, Env, Response, ResponseBuilder};

use crate::core::error::GatewayError;
use crate::core::jsonschema;
use crate::core::meter::RequestStatus;
use crate::core::openai::{
    ChatCompletionRequest, ChatCompletionResponse, ChatMessage, MessageContent, Role, ToolCall,
    Usage,
};
use crate::core::plugins::command::{command_arguments, split_command};
use crate::core::plugins::reply::{
    command_completion, completion_to_sse, total_usage, CallFailure,
};
use crate::core::plugins::{
    incomplete_note, sealed, split_tool_name, take_commands_opt_in, take_selection, EndpointPolicy,
    Selection,
};
use crate::core::providers::{Route, UpstreamCall};
use crate::edge::gateway::admit::Admitted;
use crate::edge::gateway::auth::{self, Caller};
use crate::edge::gateway::dispatch::{self, Reply};
use crate::edge::gateway::reserve;
use crate::edge::gateway::ticket::{self, End, Order, Pending};
use crate::edge::gateway::Prepared;
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::d1 as db;
use crate::edge::platform::env::{self as config, Settings};
use crate::edge::platform::response as http;
use crate::edge::store::idempotency::{self, ClaimedKey};
use store::plugins::Enabled;

/// Plugin calls executed per round; further calls in the same round get an error result.
const MAX_CALLS_PER_ROUND: usize = 8;

/// What the tool loop needs of a request, owned: a live stream outlives the handler.
pub(crate) struct Scope {
    env: Env,
    db: D1Database,
    request_id: String,
    caller: Caller,
    session_id: String,
    admitted: Admitted,
    route: Route,
    settings: Settings,
    /// The request's claimed `Idempotency-Key`: the plugin path marks it done with what it
    /// answered (the caller releases it when the plugin path fails before charging).
    idempotency: Option<ClaimedKey>,
}

impl Scope {
    fn new(p: &Prepared, idempotency: Option<&ClaimedKey>) -> Result<Self, GatewayError> {
        let call = &p.call;
        Ok(Scope {
            env: call.env.clone(),
            db: db::database(&call.env)?,
            request_id: call.request_id.clone(),
            caller: call.caller.clone(),
            session_id: call.session_id.clone(),
            admitted: p.admitted.clone(),
            route: p.route.clone(),
            settings: call.settings.clone(),
            idempotency: idempotency.cloned(),
        })
    }

    /// Marks the request's `Idempotency-Key` done with the answer sent (plain `body`, kept for
    /// replay) or without one (a stream: retries are refused as `idempotency_key_used`). Runs
    /// before the response leaves, so a retry that arrives after it finds the record.
    async fn complete_key(&self, body: Option<&[u8]>) {
        if let Some(key) = &self.idempotency {
            if let Err(e) = idempotency::complete(&self.db, key, 200, body).await {
                worker::console_error!("idempotency key of {}: {e}", self.request_id);
            }
        }
    }
}

/// The dev setting that allows plugins on `http://127.0.0.1` and other private hosts.
pub(crate) fn policy(env: &Env) -> EndpointPolicy {
    EndpointPolicy {
        allow_local_http: config::settings(env).plugins_allow_local_http,
    }
}

/// The master secret of sealed settings.
pub(crate) fn settings_key(env: &Env) -> Result<Vec<u8>, GatewayError> {
    config::secret(env, "PLUGIN_SETTINGS_KEY")
        .map(String::into_bytes)
        .ok_or_else(|| {
            auth::config_error(
                "Plugin settings need the PLUGIN_SETTINGS_KEY secret, which is not set \
                 (wrangler secret put PLUGIN_SETTINGS_KEY; scripts/dev.sh writes one into \
                 .dev.vars).",
            )
        })
}

fn max_rounds(env: &Env) -> u64 {
    config::settings(env).plugin_max_rounds
}

/// Whether `chat` names a plugin field (its upstream requests must be built again once
/// [`intercept`] removed them).
pub(crate) fn named_in(chat: &ChatCompletionRequest) -> bool {
    crate::core::plugins::PLUGIN_FIELDS
        .iter()
        .any(|f| chat.extra.contains_key(*f))
}

/// Serves the request if it is a slash command or enables plugins; otherwise leaves it to the
/// ordinary path (with the `plugins` field removed).
pub(crate) async fn intercept(
    prepared: &Prepared,
    ctx: &Context,
    idempotency: Option<&ClaimedKey>,
    chat: &mut ChatCompletionRequest,
) -> Result<Option<Response>, GatewayError> {
    let selection = take_selection(&mut chat.extra)?;
    let commands = take_commands_opt_in(&mut chat.extra)?;
    let command = chat
        .messages
        .last()
        .filter(|m| commands && m.role == Role::User)
        .and_then(|m| split_command(&m.text_content()));
    if selection == Selection::Named(Vec::new()) && command.is_none() {
        return Ok(None);
    }
    let enabled =
        store::plugins::enabled_for_tenant(&prepared.db, &prepared.call.caller.tenant_id).await?;
    if let Some(cmd) = command {
        if let Some(plugin) = enabled.iter().find(|p| p.id() == cmd.plugin) {
            // A free command reserves nothing, so D1 is asked here whether the key and its
            // tenant are still live (a cached key record may lag).
            auth::ensure_live(&prepared.db, &prepared.call.caller).await?;
            let scope = Scope::new(prepared, idempotency)?;
            return run_command(&scope, chat, plugin, cmd.api.as_deref(), &cmd.rest)
                .await
                .map(Some);
        }
    }
    let selected: Vec<Enabled> = match selection {
        Selection::Defaults => enabled.into_iter().filter(|p| p.is_default).collect(),
        Selection::Named(names) => {
            let mut out = Vec::new();
            for name in names {
                match enabled.iter().find(|p| p.id() == name) {
                    Some(p) => out.push(p.clone()),
                    None => {
                        return Err(GatewayError::invalid_param(
                            "plugins",
                            format!("The plugin `{name}` is not enabled for this account."),
                        ))
                    }
                }
            }
            out
        }
    };
    if selected.is_empty() {
        return Ok(None);
    }
    if chat.choices() > 1 {
        return Err(GatewayError::invalid_param(
            "n",
            "`n` must be 1 when plugins are enabled.",
        ));
    }
    for tool in chat.tools.iter().flatten() {
        if let Some(f) = &tool.function {
            if split_tool_name(&f.name).is_some_and(|(p, _)| selected.iter().any(|s| s.id() == p)) {
                return Err(GatewayError::invalid_param(
                    "tools",
                    format!("The tool name `{}` is reserved for a plugin.", f.name),
                ));
            }
        }
    }
    let scope = Scope::new(prepared, idempotency)?;
    if chat.is_stream() {
        let scope = Rc::new(scope);
        let response = live::run(scope.clone(), ctx, chat, selected).await?;
        // The first round is reserved and streaming: whatever it and later rounds cost is
        // charged once; a retry with the same key is refused rather than run again.
        scope.complete_key(None).await;
        return Ok(Some(response));
    }
    run_tools(&scope, chat, &selected).await.map(Some)
}

// ---- model rounds -----------------------------------------------------------------------

/// A round ready to send: its settlement record (reservation taken) and its upstream request.
struct Round {
    pending: Pending,
    upstream: UpstreamCall,
}

fn round_id(request_id: &str, index: u64) -> String {
    if index == 0 {
        request_id.to_string()
    } else {
        format!("{request_id}.r{index}")
    }
}

/// Counts, reserves and builds one model round, with the gateway's ticket.
async fn prepare_round(
    scope: &Scope,
    round_chat: &ChatCompletionRequest,
    id: &str,
) -> Result<Round, GatewayError> {
    let started_at = now_ms();
    let count = reserve::count(&scope.admitted, round_chat)?;
    let upstream = scope
        .route
        .kind
        .adapter()
        .build_call(&scope.route, round_chat)?;
    let pending = ticket::issue(Order {
        env: &scope.env,
        id,
        caller: &scope.caller,
        session_id: &scope.session_id,
        session_ttl_seconds: scope.settings.session_ttl_seconds,
        admitted: &scope.admitted,
        route: &scope.route,
        chat: round_chat,
        count,
        started_at,
        idempotency: None,
    })
    .await?;
    Ok(Round { pending, upstream })
}

async fn send_round(
    scope: &Scope,
    round: &Round,
    round_chat: &ChatCompletionRequest,
) -> Result<Reply, GatewayError> {
    dispatch::send(&round.pending, round_chat, &round.upstream, &scope.settings).await
}

/// A finished non-streamed round.
struct RoundResult {
    response: ChatCompletionResponse,
    billed: Usage,
    cost: u64,
}

/// Runs one non-streamed round and settles it before returning.
async fn plain_round(
    scope: &Scope,
    round_chat: &ChatCompletionRequest,
    id: &str,
) -> Result<RoundResult, GatewayError> {
    let round = prepare_round(scope, round_chat, id).await?;
    let reply = send_round(scope, &round, round_chat).await;
    let body = match reply {
        Ok(Reply::Plain(body)) => body,
        Ok(Reply::Stream(_)) => {
            let err = GatewayError::internal("a non-streamed round answered with a stream");
            round.pending.settle(End::failed(&err)).await;
            return Err(err);
        }
        Err(err) => {
            round.pending.settle(End::failed(&err)).await;
            return Err(err);
        }
    };
    let response = match scope
        .route
        .kind
        .adapter()
        .parse_response(&body, &round.pending.response_context())
    {
        Ok(r) => r,
        Err(err) => {
            round.pending.settle(End::failed(&err)).await;
            return Err(err);
        }
    };
    let end = End {
        status: RequestStatus::Ok,
        http_status: 200,
        error_code: None,
        completion_text: response.generated_text(),
        finish_reason: response.finish_reason(),
        upstream_usage: response.usage.clone(),
        delivered_output: true,
        ttfb_ms: Some(now_ms().saturating_sub(round.pending.started_at)),
        ended_at: now_ms(),
        extended: 0,
        usage_unknown: false,
    };
    let bill = round.pending.bill(&end);
    round.pending.settle(end).await;
    Ok(RoundResult {
        response,
        billed: Usage::new(bill.prompt_tokens, bill.completion_tokens),
        cost: bill.cost,
    })
}

/// The request of a round: the conversation so far, plugin tools offered unless this is the
/// last round; streamed when the client streams.
fn round_request(
    chat: &ChatCompletionRequest,
    messages: &[ChatMessage],
    plugins: &[Enabled],
    last: bool,
) -> ChatCompletionRequest {
    let mut r = chat.clone();
    r.messages = messages.to_vec();
    let client_tools = chat.tools.clone().unwrap_or_default();
    if last {
        r.tools = (!client_tools.is_empty()).then_some(client_tools);
        let names_plugin_tool = r
            .extra
            .get("tool_choice")
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str)
            .is_some_and(|n| split_tool_name(n).is_some());
        if r.tools.is_none() || names_plugin_tool {
            r.extra.remove("tool_choice");
        }
        if r.tools.is_none() {
            r.extra.remove("parallel_tool_calls");
        }
    } else {
        let mut tools = client_tools;
        for p in plugins {
            tools.extend(p.manifest.tools());
        }
        r.tools = Some(tools);
    }
    r
}

async fn run_tools(
    scope: &Scope,
    chat: &ChatCompletionRequest,
    plugins: &[Enabled],
) -> Result<Response, GatewayError> {
    let rounds = max_rounds(&scope.env);
    let mut messages = chat.messages.clone();
    let mut billed: Vec<Usage> = Vec::new();
    let mut cost = 0u64;
    let mut calls = 0u64;
    // The last settled round's answer, once money has moved (its plugin calls were run).
    let mut previous: Option<ChatCompletionResponse> = None;
    for index in 0..rounds {
        let last = index + 1 == rounds;
        let id = round_id(&scope.request_id, index);
        let round_chat = round_request(chat, &messages, plugins, last);
        let result = match plain_round(scope, &round_chat, &id).await {
            Ok(result) => result,
            Err(err) => match previous.take() {
                // Earlier rounds and plugin calls were charged: an HTTP error would invite a
                // retry that pays for them again. Answer with what the last round said, and
                // why the loop stopped.
                Some(answer) => {
                    worker::console_warn!(
                        "tool loop of {} stopped at round {index}: {err}",
                        scope.request_id
                    );
                    let answer = stopped_early(answer, &err);
                    return finish(scope, answer, &billed, cost, index, Some(&err)).await;
                }
                None => return Err(err),
            },
        };
        billed.push(result.billed);
        cost += result.cost;
        let mut response = result.response;
        let snapshot = response.clone();
        let Some(choice) = response.choices.first_mut() else {
            return finish(scope, response, &billed, cost, index + 1, None).await;
        };
        let tool_calls = choice.message.tool_calls.clone().unwrap_or_default();
        let owned = |c: &ToolCall| {
            split_tool_name(&c.function.name)
                .is_some_and(|(p, _)| plugins.iter().any(|x| x.id() == p))
        };
        let (mine, theirs): (Vec<ToolCall>, Vec<ToolCall>) =
            tool_calls.into_iter().partition(|c| owned(c));
        if mine.is_empty() {
            return finish(scope, response, &billed, cost, index + 1, None).await;
        }
        if last {
            // No plugin tools were offered this round; a plugin call now is not the client's.
            if theirs.is_empty() && choice.finish_reason.as_deref() == Some("tool_calls") {
                choice.finish_reason = Some("stop".to_string());
            }
            choice.message.tool_calls = (!theirs.is_empty()).then_some(theirs);
            return finish(scope, response, &billed, cost, index + 1, None).await;
        }
        if !theirs.is_empty() {
            // The client's own tools: hand those calls back untouched, without the plugin calls
            // the client could not answer.
            choice.message.tool_calls = Some(theirs);
            return finish(scope, response, &billed, cost, index + 1, None).await;
        }
        messages.push(assistant_message(choice.message.content.clone(), &mine));
        let (results, charged) = run_calls(scope, plugins, &mine, &mut calls).await;
        cost += charged;
        messages.extend(results);
        previous = Some(snapshot);
    }
    Err(GatewayError::internal(
        "the tool loop ended without an answer",
    ))
}

/// The assistant message of a round that called plugins: its content and those calls.
fn assistant_message(content: Option<String>, calls: &[ToolCall]) -> ChatMessage {
    let mut assistant = ChatMessage::text(Role::Assistant, "");
    assistant.content = content.map(MessageContent::Text);
    assistant.tool_calls = Some(calls.to_vec());
    assistant
}

/// Runs the plugin calls of one round (at most [`MAX_CALLS_PER_ROUND`]; the others get an error
/// result); returns their tool messages and what they charged. `seq` numbers the calls of the
/// request.
async fn run_calls(
    scope: &Scope,
    plugins: &[Enabled],
    calls: &[ToolCall],
    seq: &mut u64,
) -> (Vec<ChatMessage>, u64) {
    let mut messages = Vec::with_capacity(calls.len());
    let mut cost = 0;
    for (i, call) in calls.iter().enumerate() {
        let content = if i < MAX_CALLS_PER_ROUND {
            *seq += 1;
            let (text, charged) = tool_call(scope, plugins, call, *seq).await;
            cost += charged;
            text
        } else {
            CallFailure::Unreachable(format!(
                "at most {MAX_CALLS_PER_ROUND} plugin calls are run per round"
            ))
            .tool_content()
        };
        let mut msg = ChatMessage::text(Role::Tool, content);
        msg.tool_call_id = Some(call.id.clone());
        messages.push(msg);
    }
    (messages, cost)
}

/// Answers with the final round's completion, usage summed over every round, and marks the
/// request's idempotency key done with it. `stopped` is the error that ended the loop early
/// (header `x-tollgate-incomplete: <code>`).
async fn finish(
    scope: &Scope,
    mut response: ChatCompletionResponse,
    billed: &[Usage],
    cost: u64,
    rounds: u64,
    stopped: Option<&GatewayError>,
) -> Result<Response, GatewayError> {
    response.usage = Some(total_usage(billed));
    let body = serde_json::to_vec(&response)
        .map_err(|e| GatewayError::internal(format!("encode response: {e}")))?;
    scope.complete_key(Some(&body)).await;
    let mut resp = http::bytes_response(200, "application/json", body)?;
    set_headers(&mut resp, scope, Some(rounds), Some(cost));
    if let Some(err) = stopped {
        let _ = resp.headers_mut().set("x-tollgate-incomplete", err.code());
    }
    Ok(resp)
}

/// The answer of a tool loop that stopped after money moved: the last settled round's message
/// without its plugin calls (they ran, but the model never saw their results), finished as
/// `stop`, with a note saying why it is incomplete.
fn stopped_early(
    mut response: ChatCompletionResponse,
    err: &GatewayError,
) -> ChatCompletionResponse {
    if let Some(choice) = response.choices.first_mut() {
        let note = incomplete_note(err);
        let content = match choice.message.content.take() {
            Some(text) if !text.trim().is_empty() => format!("{text}\n\n{note}"),
            _ => note,
        };
        choice.message.content = Some(content);
        choice.message.tool_calls = None;
        choice.finish_reason = Some("stop".to_string());
    }
    response
}

fn sse_response(body: Vec<u8>) -> Result<Response, GatewayError> {
    Ok(ResponseBuilder::new()
        .with_status(200)
        .with_headers(crate::edge::gateway::settle::sse_headers())
        .fixed(body))
}

fn set_headers(resp: &mut Response, scope: &Scope, rounds: Option<u64>, cost: Option<u64>) {
    let h = resp.headers_mut();
    let _ = h.set("x-request-id", &scope.request_id);
    let _ = h.set("x-session-id", &scope.session_id);
    if let Some(rounds) = rounds {
        let _ = h.set("x-tollgate-rounds", &rounds.to_string());
    }
    if let Some(cost) = cost {
        let _ = h.set("x-tollgate-cost", &cost.to_string());
    }
}

// ---- plugin calls -----------------------------------------------------------------------

/// Runs one tool call; returns the tool message content and what was charged.
async fn tool_call(scope: &Scope, plugins: &[Enabled], call: &ToolCall, seq: u64) -> (String, u64) {
    let found = split_tool_name(&call.function.name).and_then(|(p, a)| {
        let plugin = plugins.iter().find(|x| x.id() == p)?;
        Some((plugin, a))
    });
    let Some((plugin, api)) = found else {
        return (
            CallFailure::UnknownTool(call.function.name.clone()).tool_content(),
            0,
        );
    };
    let raw = call.function.arguments.trim();
    let arguments = if raw.is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str::<Value>(raw)
            .map_err(|e| CallFailure::InvalidArguments(format!("not valid JSON ({e})")))
    };
    let outcome = invoke_plugin(scope, plugin, api, arguments, "tool", seq).await;
    match outcome {
        (Ok(text), charged) => (text, charged),
        (Err(failure), charged) => (failure.tool_content(), charged),
    }
}

/// Validates, runs and records one invocation. Never fails the request: every problem is a
/// [`CallFailure`].
async fn invoke_plugin(
    scope: &Scope,
    plugin: &Enabled,
    api_name: &str,
    arguments: Result<Value, CallFailure>,
    mode: &str,
    seq: u64,
) -> (Result<String, CallFailure>, u64) {
    let call_id = format!("{}.c{seq}", scope.request_id);
    let created_at = now_ms();
    let mut http_status = None;
    let mut latency_ms = 0;
    let mut charged = 0;
    let result = async {
        let api = plugin
            .manifest
            .api(api_name)
            .ok_or_else(|| CallFailure::UnknownTool(format!("{}.{api_name}", plugin.id())))?;
        let arguments = arguments?;
        jsonschema::validate(&api.parameters, &arguments, "arguments")
            .map_err(|e| CallFailure::InvalidArguments(e.to_string()))?;
        let settings = open_settings(scope, plugin)?;
        let price = plugin.price_per_call;
        if price > 0 && !reserve_price(scope, &call_id, price, created_at).await {
            return Err(CallFailure::InsufficientCredit);
        }
        let outcome = exec::invoke(
            &scope.env,
            &plugin.manifest,
            api_name,
            &arguments,
            settings.as_ref(),
            policy(&scope.env),
        )
        .await;
        http_status = outcome.http_status;
        latency_ms = outcome.latency_ms;
        if outcome.result.is_ok() {
            charged = price;
        }
        outcome.result
    }
    .await;
    let status = match &result {
        Ok(_) => "ok",
        Err(f) => f.code(),
    };
    let record = store::plugins::CallRecord {
        id: &call_id,
        request_id: &scope.request_id,
        tenant_id: &scope.caller.tenant_id,
        key_id: &scope.caller.key_id,
        session_id: &scope.session_id,
        plugin_id: plugin.id(),
        api: api_name,
        mode,
        status,
        http_status,
        latency_ms,
        cost: charged,
        created_at,
    };
    if scope.settings.wallets {
        // The charge and the row in the tenant's wallet, retried, then kept in KV (charge.rs).
        charge::record(&scope.env, &record).await;
    } else {
        // Retried like a settlement, then kept in KV for the scheduled handler (store.rs).
        store::plugins::record_call_durably(&scope.env, &scope.db, &record).await;
    }
    (result, charged)
}

/// Holds a call's price before the plugin is called: in the tenant's wallet with `WALLETS`,
/// else in D1. Whether it did.
async fn reserve_price(scope: &Scope, call_id: &str, price: u64, now: u64) -> bool {
    let caller = &scope.caller;
    if scope.settings.wallets {
        return charge::reserve(
            &scope.env,
            &caller.tenant_id,
            &caller.key_id,
            call_id,
            price,
        )
        .await;
    }
    store::ledger::reserve(&scope.db, call_id, &caller.key_id, price, now)
        .await
        .unwrap_or(false)
}

/// The scheduled handler's replay of a call record kept in KV: into the wallet with `WALLETS`
/// (idempotent by call id there), else into D1.
pub(crate) async fn replay_call(
    env: &Env,
    db: &D1Database,
    call: &store::plugins::CallRow,
) -> Result<(), GatewayError> {
    if config::settings(env).wallets {
        return charge::charge_row(env, call)
            .await
            .map_err(GatewayError::internal);
    }
    store::plugins::record_call(db, &call.as_record()).await
}

fn open_settings(scope: &Scope, plugin: &Enabled) -> Result<Option<Value>, CallFailure> {
    let Some(sealed_value) = &plugin.sealed_settings else {
        return Ok(None);
    };
    let broken = |why: String| {
        worker::console_error!("settings of plugin {} unusable: {why}", plugin.id());
        CallFailure::Unreachable("the plugin's settings for this account are unusable".to_string())
    };
    let key = settings_key(&scope.env).map_err(|e| broken(e.message))?;
    let plain = sealed::open(&key, &scope.caller.tenant_id, plugin.id(), sealed_value)
        .map_err(|e| broken(e.to_string()))?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| broken(e.to_string()))
}

// ---- slash commands -----------------------------------------------------------------------

async fn run_command(
    scope: &Scope,
    chat: &ChatCompletionRequest,
    plugin: &Enabled,
    api: Option<&str>,
    rest: &str,
) -> Result<Response, GatewayError> {
    let api_name = match api {
        Some(a) => a.to_string(),
        None => plugin
            .manifest
            .apis
            .first()
            .map(|a| a.name.clone())
            .unwrap_or_default(),
    };
    let arguments = match plugin.manifest.api(&api_name) {
        Some(a) => Ok(command_arguments(a, rest)),
        None => Err(CallFailure::UnknownTool(format!(
            "{}.{api_name}",
            plugin.id()
        ))),
    };
    let (result, charged) = invoke_plugin(scope, plugin, &api_name, arguments, "command", 1).await;
    let text = match result {
        Ok(text) => text,
        Err(failure) => format!(
            "**/{} failed** (`{}`): {}",
            plugin.id(),
            failure.code(),
            failure.message()
        ),
    };
    let response = command_completion(
        &format!("chatcmpl-{}", scope.request_id),
        &chat.model,
        now_ms() / 1000,
        &text,
    );
    let mut resp = if chat.is_stream() {
        scope.complete_key(None).await;
        sse_response(completion_to_sse(&response, chat.wants_stream_usage()))?
    } else {
        let body = serde_json::to_vec(&response)
            .map_err(|e| GatewayError::internal(format!("encode response: {e}")))?;
        scope.complete_key(Some(&body)).await;
        http::bytes_response(200, "application/json", body)?
    };
    set_headers(&mut resp, scope, Some(0), Some(charged));
    Ok(resp)
}
