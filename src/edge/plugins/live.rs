//! The tool loop of a streamed request: every model round streamed live to one client stream.
//!
//! Each round is reserved and requested from the model as a stream; its items go through the
//! round's [`LiveRound`] (content and client tool calls forwarded at once, plugin tool calls kept
//! back) and the [`StreamGuard`] (output never outruns the round's reservation). When a round ends
//! its usage row is settled; if it called plugins, they run and the next round continues the
//! same client stream; otherwise the finish chunk, the usage chunk (summed over every round, when
//! the client asked for it) and `[DONE]` end it.
//!
//! Work that must finish even when the client goes away — settlements, opening a round (which
//! holds a reservation) and plugin calls (which are recorded and may hold a price) — runs as jobs
//! of a queue drained under `ctx.wait_until`; the loop only awaits their results.
//!
//! The loop itself is a pump in `wait_until`, like the plain relay (`gateway::relay`), with the same
//! client end ([`ClientEnd`]) and clocks: the request's wall-clock deadline (below
//! `STALE_RESERVATION_SECONDS`) ends the stream however the client reads, as a cut (`truncated`,
//! `stream_deadline`); a client that left (seen at a chunk, or by the periodic check while the
//! provider is silent) has the round in progress read on until it ends or the drain deadline
//! passes, and settled as `client_abort`; no plugin is called and no round opened for it after.

use std::future::Future;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use worker::{Context, Response, ResponseBuilder};

use super::{
    assistant_message, max_rounds, prepare_round, round_id, round_request, run_calls, send_round,
    set_headers, Scope,
};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::RequestStatus;
use crate::core::openai::{ChatCompletionRequest, ChatMessage, ToolCall, Usage};
use crate::core::plugins::live::{LiveRound, RoundEnd, StreamHead};
use crate::core::plugins::reply::total_usage;
use crate::core::providers::{StreamDecoder, StreamItem};
use crate::core::sse::encode_data;
use crate::edge::gateway::dispatch::Reply;
use crate::edge::gateway::guard::StreamGuard;
use crate::edge::gateway::relay::{ClientEnd, Source};
use crate::edge::gateway::settle::sse_headers;
use crate::edge::gateway::ticket::{End, Pending};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::response as http;

use crate::edge::store::plugins::Enabled;

type Job = LocalBoxFuture<'static, ()>;

/// Starts the loop: the first round is opened before the response, so that its failure (no
/// credit, provider down) is the request's HTTP error; later failures end the stream with an
/// error event.
pub(super) async fn run(
    scope: Rc<Scope>,
    ctx: &Context,
    chat: &ChatCompletionRequest,
    plugins: Vec<Enabled>,
) -> Result<Response, GatewayError> {
    let (jobs, queue) = mpsc::unbounded::<Job>();
    ctx.wait_until(queue.for_each_concurrent(None, |job| job));
    let mut live = Live {
        scope: scope.clone(),
        plugin_ids: plugins.iter().map(|p| p.id().to_string()).collect(),
        plugins: Rc::new(plugins),
        chat: chat.clone(),
        messages: chat.messages.clone(),
        index: 0,
        rounds: max_rounds(&scope.env),
        current: None,
        head: None,
        billed: Vec::new(),
        calls: 0,
        todo: None,
        jobs,
        finished: false,
    };
    live.open_round().await?;
    // The first round's clocks are the request's.
    let limits = live
        .current
        .as_ref()
        .map(|cur| cur.pending.relay_limits())
        .ok_or_else(|| GatewayError::internal("the first plugin round did not open"))?;
    let (client, body) = ClientEnd::channel(limits);
    let mut resp = ResponseBuilder::new()
        .with_status(200)
        .with_headers(sse_headers())
        .from_stream(body)
        .map_err(|e| http::internal("stream response", e))?;
    set_headers(&mut resp, &scope, None, None);
    ctx.wait_until(Pump { live, client }.run());
    Ok(resp)
}

/// The loop and its client.
struct Pump {
    live: Live,
    client: ClientEnd,
}

impl Pump {
    async fn run(mut self) {
        let mut out = Vec::new();
        while !self.live.finished {
            if !self.client.here() && self.live.current.is_none() {
                // The client is gone and its last round settled: nothing more is done for it.
                break;
            }
            if self.client.out_of_time() && self.live.current.is_none() {
                let err = GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    "The tool loop reached the request's time limit.",
                )
                .with_code("stream_deadline");
                self.live.fail(err, &mut out);
                self.client.try_send(std::mem::take(&mut out));
                break;
            }
            self.live.step(&mut self.client, &mut out).await;
            if out.is_empty() {
                continue;
            }
            if self
                .client
                .deliver(std::mem::take(&mut out))
                .await
                .is_none()
            {
                // The client reads too slowly to reach the end before the deadline.
                self.live.out_of_time(false, &mut out);
                self.client.try_send(std::mem::take(&mut out));
                break;
            }
        }
        self.client.close();
        // Nothing more will be queued: let the job queue end once its jobs are done.
        self.live.jobs.close_channel();
    }
}

/// The loop's state, owned by the client's stream.
struct Live {
    scope: Rc<Scope>,
    plugins: Rc<Vec<Enabled>>,
    plugin_ids: Vec<String>,
    chat: ChatCompletionRequest,
    /// The conversation so far: the client's messages, then each plugin round's assistant
    /// message and tool results.
    messages: Vec<ChatMessage>,
    index: u64,
    rounds: u64,
    current: Option<Current>,
    head: Option<StreamHead>,
    /// Billed usage of every finished round.
    billed: Vec<Usage>,
    /// Plugin calls so far (numbers `<request id>.c<n>`).
    calls: u64,
    /// Plugin calls of the round that just ended, run before the next round opens.
    todo: Option<(Option<String>, Vec<ToolCall>)>,
    jobs: mpsc::UnboundedSender<Job>,
    finished: bool,
}

/// The round being streamed.
struct Current {
    pending: Pending,
    source: Source,
    decoder: Box<dyn StreamDecoder>,
    round: LiveRound,
    guard: StreamGuard,
    ttfb_ms: Option<u64>,
}

impl Current {
    /// Passes `items` through the guard and the round. A chunk the reservation cannot pay for
    /// cuts the stream before it; after the client left, items are only metered.
    async fn forward(
        &mut self,
        items: Vec<StreamItem>,
        earlier: &[Usage],
        wants_usage: bool,
        client_here: bool,
        out: &mut Vec<u8>,
    ) {
        for item in items {
            if self.round.is_over() {
                return;
            }
            if client_here && !self.guard.admit(self.round.text(), &item).await {
                let usage = wants_usage.then(|| {
                    let this = self.guard.usage(self.round.text());
                    total_usage(earlier.iter().chain([&this]))
                });
                self.round.cut(usage, out);
                return;
            }
            self.round.push(item, out);
        }
    }

    /// The round's usage row, from what it generated so far. `code`: the row's `error_code` when
    /// the end is not an error; `usage_unknown`: the reservation is charged.
    fn end(&self, status: RequestStatus, code: Option<&str>, usage_unknown: bool) -> End {
        End {
            status,
            http_status: 200,
            error_code: self
                .round
                .error()
                .map(|e| e.code().to_string())
                .or_else(|| code.map(str::to_string)),
            completion_text: self.round.text().to_string(),
            finish_reason: self.round.finish_reason().map(str::to_string),
            upstream_usage: self.round.upstream_usage().cloned(),
            delivered_output: self.round.generated_output(),
            ttfb_ms: self.ttfb_ms,
            ended_at: now_ms(),
            extended: self.guard.extended,
            usage_unknown,
        }
    }
}

impl Live {
    fn spawn(&self, job: impl Future<Output = ()> + 'static) {
        // The queue is drained until every sender is gone, and this is one.
        let _ = self.jobs.unbounded_send(Box::pin(job));
    }

    /// Reserves and requests the next round (as a job: a reservation taken is always settled,
    /// even if the client is gone by the time the provider answers).
    async fn open_round(&mut self) -> Result<(), GatewayError> {
        let last = self.index + 1 == self.rounds;
        let id = round_id(&self.scope.request_id, self.index);
        let round_chat = round_request(&self.chat, &self.messages, &self.plugins, last);
        let scope = self.scope.clone();
        let (tx, rx) = oneshot::channel();
        self.spawn(async move {
            let opened = open(&scope, &round_chat, &id).await;
            if let Err(Ok((pending, mut source))) = tx.send(opened) {
                source.abort();
                pending.settle(End::abandoned()).await;
            }
        });
        let (pending, source) = rx
            .await
            .map_err(|_| GatewayError::internal("a plugin round was dropped"))??;
        let decoder = pending
            .kind
            .adapter()
            .stream_decoder(&pending.response_context());
        self.current = Some(Current {
            guard: pending.stream_guard(),
            pending,
            source,
            decoder,
            round: LiveRound::new(self.plugin_ids.clone(), self.head.clone(), last),
            ttfb_ms: None,
        });
        Ok(())
    }

    /// One step of the loop: runs the plugin calls due, opens the next round if needed, and
    /// reads the provider once (no later than the deadline, or the drain's once the client left).
    /// What the client should receive is appended to `out`.
    async fn step(&mut self, client: &mut ClientEnd, out: &mut Vec<u8>) {
        if self.current.is_none() {
            // Between rounds: no plugin call and no round for a client that left.
            client.check();
            if !client.here() {
                self.finished = true;
                return;
            }
        }
        if let Some((content, calls)) = self.todo.take() {
            if let Err(err) = self.call_plugins(content, calls).await {
                self.fail(err, out);
                return;
            }
            client.check();
            if !client.here() {
                self.finished = true;
                return;
            }
        }
        if self.current.is_none() {
            if let Err(err) = self.open_round().await {
                self.fail(err, out);
                return;
            }
        }
        let wants_usage = self.chat.wants_stream_usage();
        let Some(cur) = self.current.as_mut() else {
            self.finished = true;
            return;
        };
        let Some(read) = client.wait(Box::pin(cur.source.next())).await else {
            self.out_of_time(client.left(), out);
            return;
        };
        let here = client.here();
        match read {
            Ok(Some(bytes)) => {
                let items = cur.decoder.push(&bytes);
                cur.forward(items, &self.billed, wants_usage, here, out)
                    .await;
            }
            Ok(None) => {
                let items = cur.decoder.finish();
                cur.forward(items, &self.billed, wants_usage, here, out)
                    .await;
                cur.round.upstream_closed(None, out);
            }
            Err(e) => cur.round.upstream_closed(Some(e), out),
        }
        if !out.is_empty() && cur.ttfb_ms.is_none() && here {
            cur.ttfb_ms = Some(now_ms().saturating_sub(cur.pending.started_at));
        }
        if cur.round.is_over() {
            self.end_round(out, client.left(), None, false);
        }
    }

    /// The deadline passed during a round. A client still there gets a clean end like a
    /// reservation cut (`stream_deadline`); after the client left, the drain ended before the
    /// provider did (`drain_deadline`; without the provider's usage the reservation is charged).
    fn out_of_time(&mut self, client_left: bool, out: &mut Vec<u8>) {
        let Some(cur) = self.current.as_mut() else {
            self.finished = true;
            return;
        };
        if client_left {
            let unknown = cur.round.upstream_usage().is_none();
            self.end_round(out, true, Some("drain_deadline"), unknown);
            return;
        }
        let usage = self.chat.wants_stream_usage().then(|| {
            let this = cur.guard.usage(cur.round.text());
            total_usage(self.billed.iter().chain([&this]))
        });
        cur.round.cut(usage, out);
        self.end_round(out, false, Some("stream_deadline"), false);
    }

    /// Settles the round that just ended and decides what follows (nothing, once the client
    /// left: the round is `client_abort`).
    fn end_round(
        &mut self,
        out: &mut Vec<u8>,
        client_left: bool,
        code: Option<&str>,
        usage_unknown: bool,
    ) {
        let Some(mut cur) = self.current.take() else {
            return;
        };
        cur.source.abort();
        let (status, billed_unseen) = cur.round.status(client_left);
        let end = cur.end(status, code, usage_unknown || billed_unseen);
        let bill = cur.pending.bill(&end);
        self.billed
            .push(Usage::new(bill.prompt_tokens, bill.completion_tokens));
        self.spawn(cur.pending.settle(end));
        if status != RequestStatus::Ok {
            // The error event or the cut's `[DONE]` has been written.
            self.finished = true;
            return;
        }
        match cur.round.end() {
            RoundEnd::Answer => {
                let usage = self
                    .chat
                    .wants_stream_usage()
                    .then(|| total_usage(&self.billed));
                cur.round.finish(usage, out);
                self.finished = true;
            }
            RoundEnd::CallPlugins { content, calls } => {
                self.head = cur.round.head();
                self.todo = Some((content, calls));
                self.index += 1;
            }
        }
    }

    /// Runs a round's plugin calls (as a job: a call in flight is completed and recorded even if
    /// the client goes away) and appends the assistant message and the results.
    async fn call_plugins(
        &mut self,
        content: Option<String>,
        calls: Vec<ToolCall>,
    ) -> Result<(), GatewayError> {
        self.messages.push(assistant_message(content, &calls));
        let (tx, rx) = oneshot::channel();
        let (scope, plugins, mut seq) = (self.scope.clone(), self.plugins.clone(), self.calls);
        let run = calls.len().min(super::MAX_CALLS_PER_ROUND) as u64;
        self.calls += run;
        self.spawn(async move {
            let (results, _charged) = run_calls(&scope, &plugins, &calls, &mut seq).await;
            let _ = tx.send(results);
        });
        let results = rx
            .await
            .map_err(|_| GatewayError::internal("plugin calls were dropped"))?;
        self.messages.extend(results);
        Ok(())
    }

    /// Ends the stream with an error event.
    fn fail(&mut self, err: GatewayError, out: &mut Vec<u8>) {
        if err.status() >= 500 {
            worker::console_error!("{} (tool loop stream): {err}", self.scope.request_id);
        }
        let err = http::public_error(&err, &self.scope.request_id);
        out.extend_from_slice(&encode_data(&crate::core::inbound::openai::error_body(
            &err,
        )));
        self.finished = true;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // The pump ends every round it opens; this is for a pump the runtime stopped before the
        // end: settle the round in progress with what it generated so far.
        if let Some(mut cur) = self.current.take() {
            cur.source.abort();
            let end = cur.end(RequestStatus::ClientAbort, None, false);
            self.spawn(cur.pending.settle(end));
        }
    }
}

/// Reserves and sends one round; a round that fails after its reservation is settled here.
async fn open(
    scope: &Scope,
    round_chat: &ChatCompletionRequest,
    id: &str,
) -> Result<(Pending, Source), GatewayError> {
    let round = prepare_round(scope, round_chat, id).await?;
    match send_round(scope, &round, round_chat).await {
        Ok(Reply::Stream(source)) => Ok((round.pending, source)),
        Ok(Reply::Plain(_)) => {
            let err = GatewayError::internal("a streamed round answered without a stream");
            round.pending.settle(End::failed(&err)).await;
            Err(err)
        }
        Err(err) => {
            round.pending.settle(End::failed(&err)).await;
            Err(err)
        }
    }
}
