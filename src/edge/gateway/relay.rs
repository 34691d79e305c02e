//! Relays a stream to the client as it arrives, metering on the way.
//!
//! The relay is a pump that runs in `wait_until`, not inside the client's reads: it reads the
//! provider, decodes, meters, and pushes what the client should receive into a small bounded
//! channel whose receiving end is the response body. So its clocks run whatever the client does:
//! - a client that reads slowly (or not at all) only fills the channel; the pump waits for room
//!   no longer than the request's wall-clock deadline, which ends the stream like a reservation
//!   cut (`truncated`) before the scheduled sweep could take the reservation for dead;
//! - a client that left is seen at the next chunk (the runtime drops the body, the channel is
//!   closed); the pump then keeps reading the provider, forwarding nothing, until the provider
//!   ends or the drain deadline passes, so that the row gets the provider's usage
//!   (`client_abort`; see the README's table of endings for the rule when none comes).
//!
//! Whatever happens, [`relay`]'s future resolves exactly once with the [`StreamEnd`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::task::ArcWake;
use futures::{SinkExt, Stream, StreamExt};
use worker::{AbortController, ByteStream, Delay};

use super::guard::StreamGuard;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::inbound::client::ClientEncoder;
use crate::core::meter::{RequestStatus, StreamMeter};
use crate::core::openai::Usage;
use crate::core::providers::{StreamDecoder, StreamItem};
use crate::core::routing::drain_until;
use crate::edge::platform::clock::now_ms;

/// Pieces the pump may be ahead of the client before it waits for room.
const CHANNEL_PIECES: usize = 8;

/// How often a pump waiting on a silent provider checks whether its client is still there.
const CLIENT_CHECK_MS: u64 = 1_000;

/// Where stream bytes come from.
pub enum Source {
    /// A provider's response body. Dropping the controller aborts the fetch.
    Upstream {
        body: ByteStream,
        abort: Option<AbortController>,
        /// The wait for the first chunk (the route's first-byte timeout).
        first_byte_timeout_ms: u64,
        /// The longest gap between two later chunks.
        idle_timeout_ms: u64,
        received: bool,
        /// The timer of those two timeouts, kept from read to read (see [`Alarm`]).
        alarm: Alarm,
    },
    /// A local model's events (the built-in echo model), made as they are pulled, paced by
    /// `delay_ms`.
    Local {
        events: crate::core::providers::LocalEvents,
        delay_ms: u64,
        started: bool,
    },
}

impl Source {
    /// The next bytes; `None` once the source has ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, GatewayError> {
        match self {
            Source::Upstream {
                body,
                abort,
                first_byte_timeout_ms,
                idle_timeout_ms,
                received,
                alarm,
            } => {
                let wait_ms = if *received {
                    *idle_timeout_ms
                } else {
                    *first_byte_timeout_ms
                };
                let mut now = now_ms();
                let silent_until = now.saturating_add(wait_ms);
                let mut read = body.next();
                let read = loop {
                    match select(&mut read, alarm.at_the_latest(silent_until, now)).await {
                        Either::Left((read, _)) => break Some(read),
                        Either::Right(_) => {
                            alarm.rang();
                            now = now_ms();
                            if now >= silent_until {
                                break None;
                            }
                        }
                    }
                };
                match read {
                    Some(Some(Ok(bytes))) => {
                        *received = true;
                        Ok(Some(bytes))
                    }
                    Some(Some(Err(e))) => Err(GatewayError::new(
                        ErrorKind::UpstreamFailed,
                        format!("The provider's stream broke off: {e}"),
                    )),
                    Some(None) => {
                        // The provider closed its stream: nothing left to abort.
                        *abort = None;
                        Ok(None)
                    }
                    // Nothing yet: the provider accepted the request and may be working on it.
                    None if !*received => Err(GatewayError::new(
                        ErrorKind::UpstreamUnanswered,
                        format!("The provider sent nothing for {wait_ms} ms."),
                    )),
                    None => Err(GatewayError::new(
                        ErrorKind::UpstreamTimeout,
                        format!("The provider sent nothing for {wait_ms} ms."),
                    )),
                }
            }
            Source::Local {
                events,
                delay_ms,
                started,
            } => {
                let next = events.next();
                if *started && *delay_ms > 0 && next.is_some() {
                    Delay::from(Duration::from_millis(*delay_ms)).await;
                }
                *started = true;
                Ok(next)
            }
        }
    }

    /// Stops the upstream fetch, if there is one.
    pub(crate) fn abort(&mut self) {
        if let Source::Upstream { abort, .. } = self {
            if let Some(controller) = abort.take() {
                // A plain reason: the default one is a `DOMException`, built with its stack for
                // nobody (the fetch's body is no longer read).
                controller.abort_with_reason("tollgate: relay finished");
            }
        }
    }
}

/// The clocks of one relay.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// When the request started (UTC ms), for the time to first byte.
    pub started_at: u64,
    /// The wall-clock end of the whole relay (UTC ms), below the stale-reservation sweep.
    pub deadline: u64,
    /// How long the provider is still read after the client left.
    pub drain_ms: u64,
}

/// How a relayed stream ended.
#[derive(Debug)]
pub struct StreamEnd {
    pub status: RequestStatus,
    pub completion_text: String,
    /// The provider's `finish_reason` over the choices (`StreamMeter::finish_reason`).
    pub finish_reason: Option<String>,
    pub upstream_usage: Option<Usage>,
    pub error: Option<GatewayError>,
    /// The row's `error_code` when the end is not an error: `stream_deadline`, `drain_deadline`.
    pub code: Option<&'static str>,
    /// For the charge ([`crate::core::meter::BillInput`]): output reached the client, or the
    /// provider started and then broke off (`StreamMeter::error_is_charged`).
    pub delivered_output: bool,
    /// The provider may have produced more than the gateway saw and sent no usage: the
    /// reservation is charged (README, "how a request ends").
    pub usage_unknown: bool,
    pub ttfb_ms: Option<u64>,
    pub ended_at: u64,
    /// Micro-units the stream added to its reservation (see [`StreamGuard`]).
    pub extended: u64,
}

/// Waits until `at` (UTC ms).
fn sleep_until(at: u64) -> Delay {
    Delay::from(Duration::from_millis(at.saturating_sub(now_ms())))
}

/// One timer kept from read to read of a stream, instead of one new timer per read.
///
/// Hot path (every chunk of every stream). A read of the provider waits on two clocks, the idle
/// timeout and the client check (`ClientEnd::wait`); with a fresh `Delay` for each, every chunk
/// cost two `setTimeout`s, two closures handed to JavaScript and two `clearTimeout`s, while the
/// chunks of a stream come milliseconds apart and the clocks are a second or more long. An alarm
/// keeps its timer as long as it rings no later than the time asked for: a timer that rings early
/// only makes the caller look at its clocks and ask again, so a busy stream arms about one timer
/// per clock period, not two per chunk.
///
/// A kept timer may be awaited by more than one task (a media body's reads run in the body's
/// pulls, one task each): [`Timer`] wakes whichever polled it last.
#[derive(Default)]
pub struct Alarm {
    /// When the armed timer rings (UTC ms), and the timer.
    armed: Option<(u64, Timer)>,
}

impl Alarm {
    /// A timer that rings no later than `at` (UTC ms; it is `now`), possibly earlier: the one
    /// armed, if it rings no later, else a new one. After it rang, call [`Alarm::rang`].
    fn at_the_latest(&mut self, at: u64, now: u64) -> &mut Timer {
        let timer = || (at, Timer::new(at.saturating_sub(now)));
        if self.armed.as_ref().is_none_or(|(when, _)| *when > at) {
            self.armed = Some(timer());
        }
        &mut self.armed.get_or_insert_with(timer).1
    }

    /// The timer rang: the next wait arms a new one.
    fn rang(&mut self) {
        self.armed = None;
    }
}

/// A `Delay` that wakes the task that polled it last. workers-rs's `Delay` keeps the waker of its
/// first poll only; this one is polled with a forwarding waker whose target each poll updates.
pub struct Timer {
    delay: Delay,
    target: Arc<WakeTarget>,
    forward: Waker,
}

/// Where a [`Timer`]'s ring goes: the waker of its last poll.
struct WakeTarget(Mutex<Option<Waker>>);

impl ArcWake for WakeTarget {
    fn wake_by_ref(arc: &Arc<Self>) {
        let waker = arc.0.lock().ok().and_then(|mut slot| slot.take());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Timer {
    fn new(ms: u64) -> Self {
        let target = Arc::new(WakeTarget(Mutex::new(None)));
        Timer {
            delay: Delay::from(Duration::from_millis(ms)),
            forward: futures::task::waker(target.clone()),
            target,
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Ok(mut slot) = this.target.0.lock() {
            *slot = Some(cx.waker().clone());
        }
        Pin::new(&mut this.delay).poll(&mut Context::from_waker(&this.forward))
    }
}

/// The client's end of a pushed stream and the clocks that bound it: the relay's, and the
/// plugin tool loop's (`edge::plugins::live`). The pushing side owns it; the response body is
/// the receiving end of its channel.
pub(crate) struct ClientEnd {
    limits: Limits,
    /// `None` once the client has left (or the stream was ended for it).
    sender: Option<mpsc::Sender<Vec<u8>>>,
    /// When the client was seen gone.
    left_at: Option<u64>,
    /// The timer of [`ClientEnd::wait`], kept from read to read.
    alarm: Alarm,
}

impl ClientEnd {
    /// A client end and the response body it feeds.
    pub(crate) fn channel(
        limits: Limits,
    ) -> (
        Self,
        impl Stream<Item = Result<Vec<u8>, worker::Error>> + 'static,
    ) {
        let (tx, rx) = mpsc::channel(CHANNEL_PIECES);
        let end = ClientEnd {
            limits,
            sender: Some(tx),
            left_at: None,
            alarm: Alarm::default(),
        };
        (end, rx.map(Ok))
    }

    /// The client is still there (as far as the gateway knows).
    pub(crate) fn here(&self) -> bool {
        self.sender.is_some()
    }

    /// The client was seen gone (not: the stream was ended for it).
    pub(crate) fn left(&self) -> bool {
        self.left_at.is_some()
    }

    /// Until when (UTC ms) the provider is read: the deadline, or the drain's after the client
    /// left.
    fn until(&self) -> u64 {
        match self.left_at {
            Some(left) => drain_until(left, self.limits.drain_ms, self.limits.deadline),
            None => self.limits.deadline,
        }
    }

    /// The deadline (or the drain's) has passed.
    pub(crate) fn out_of_time(&self) -> bool {
        now_ms() >= self.until()
    }

    /// Notes a client that hung up since it was last looked at.
    pub(crate) fn check(&mut self) {
        if self.sender.as_ref().is_some_and(|c| c.is_closed()) {
            self.gone();
        }
    }

    fn gone(&mut self) {
        self.sender = None;
        self.left_at = Some(now_ms());
    }

    /// Awaits `read` (one read of the provider, kept alive across the checks: a dropped read
    /// would lose its bytes); `None` if the deadline (or the drain's) passes first. While it
    /// waits, the client is looked at at least every `CLIENT_CHECK_MS` (one [`Alarm`]): a client that hung up while the
    /// provider is silent (a long think, a stalled provider) starts the drain clock then, not at
    /// the provider's next chunk — else the settlement could wait for the stream deadline, past
    /// what `wait_until` allows.
    pub(crate) async fn wait<F: Future + Unpin>(&mut self, mut read: F) -> Option<F::Output> {
        loop {
            let until = self.until();
            let now = now_ms();
            if now >= until {
                return None;
            }
            let wake = match &self.sender {
                Some(_) => until.min(now.saturating_add(CLIENT_CHECK_MS)),
                None => until,
            };
            match select(&mut read, self.alarm.at_the_latest(wake, now)).await {
                Either::Left((read, _)) => return Some(read),
                Either::Right(_) => {
                    self.alarm.rang();
                    self.check();
                }
            }
        }
    }

    /// Sends `bytes` to the client, waiting for room no later than the deadline. `Some(true)`:
    /// sent; `Some(false)`: the client left (noted; the bytes are dropped) or was already gone;
    /// `None`: the deadline passed.
    pub(crate) async fn deliver(&mut self, bytes: Vec<u8>) -> Option<bool> {
        let Some(client) = &mut self.sender else {
            return Some(false);
        };
        let sent = match select(client.send(bytes), sleep_until(self.limits.deadline)).await {
            Either::Left((sent, _)) => Some(sent.is_ok()),
            Either::Right(_) => None,
        };
        if sent == Some(false) {
            self.gone();
        }
        sent
    }

    /// Best effort, no wait: a client too slow to have room for the end gets a stream that stops.
    pub(crate) fn try_send(&mut self, bytes: Vec<u8>) {
        if let Some(client) = &mut self.sender {
            let _ = client.try_send(bytes);
        }
    }

    /// Ends the client's stream.
    pub(crate) fn close(&mut self) {
        self.sender = None;
    }
}

struct Pump {
    source: Source,
    decoder: Box<dyn StreamDecoder>,
    meter: StreamMeter,
    encoder: ClientEncoder,
    guard: Option<StreamGuard>,
    started_at: u64,
    ttfb_ms: Option<u64>,
    client: ClientEnd,
}

impl Pump {
    async fn run(mut self) -> StreamEnd {
        loop {
            let next = self.client.wait(Box::pin(self.source.next())).await;
            let Some(read) = next else {
                return self.out_of_time();
            };
            let mut out = Vec::new();
            let finished = match read {
                Ok(Some(bytes)) => {
                    let items = self.decoder.push(&bytes);
                    self.forward(items, &mut out).await;
                    self.meter.completed() || self.meter.error().is_some()
                }
                Ok(None) => {
                    let mut items = self.decoder.finish();
                    // The decoder's complaint that the stream is incomplete is not the
                    // provider's answer: it goes with the close (see `upstream_closed`).
                    let incomplete = match items.last() {
                        Some(StreamItem::Error(_)) => match items.pop() {
                            Some(StreamItem::Error(e)) => Some(e),
                            _ => None,
                        },
                        _ => None,
                    };
                    self.forward(items, &mut out).await;
                    self.encoder
                        .upstream_closed(&mut self.meter, &mut out, incomplete);
                    true
                }
                Err(e) => {
                    self.encoder
                        .upstream_closed(&mut self.meter, &mut out, Some(e));
                    true
                }
            };
            if !out.is_empty() && !self.deliver(out).await {
                return self.out_of_time();
            }
            if finished {
                return self.finish(None, false);
            }
        }
    }

    /// Forwards `items` through the meter. While the client is there, each is checked first by
    /// the guard (the stream is cut cleanly at the first item the reservation cannot pay for), and
    /// a client that asked for usage gets a usage chunk of local counts before `[DONE]` when the
    /// provider sent none. After the client left, items are only metered.
    async fn forward(&mut self, items: Vec<StreamItem>, out: &mut Vec<u8>) {
        for item in items {
            if self.client.here() {
                if let Some(guard) = &mut self.guard {
                    if !self.meter.completed() && !guard.admit(self.meter.text(), &item).await {
                        let usage = guard.usage(self.meter.text());
                        self.encoder.cut(&mut self.meter, guard.choices, usage, out);
                        return;
                    }
                    if matches!(item, StreamItem::Done) && self.encoder.owes_usage(&self.meter) {
                        let usage = guard.usage(self.meter.text());
                        self.encoder.local_usage(&self.meter, usage, out);
                    }
                }
            }
            self.encoder.forward(&mut self.meter, item, out);
        }
    }

    /// Sends `bytes` to the client, waiting for room no later than the deadline. `false`: the
    /// deadline passed. A client that left is noted, and the bytes are dropped.
    async fn deliver(&mut self, bytes: Vec<u8>) -> bool {
        match self.client.deliver(bytes).await {
            Some(true) => {
                if self.ttfb_ms.is_none() {
                    self.ttfb_ms = Some(now_ms().saturating_sub(self.started_at));
                }
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// The deadline (or, after the client left, the drain deadline) passed. A client still there
    /// gets a clean end like a reservation cut (what fits in the channel); a drain that did not
    /// reach the provider's usage leaves it unknown.
    fn out_of_time(mut self) -> StreamEnd {
        if self.client.left() {
            let unknown = self.meter.upstream_usage().is_none();
            return self.finish(Some("drain_deadline"), unknown);
        }
        let mut out = Vec::new();
        let choices = self.guard.as_ref().map_or(1, |g| g.choices);
        let usage = match &self.guard {
            Some(guard) => guard.usage(self.meter.text()),
            None => Usage::new(0, crate::core::meter::estimate_tokens(self.meter.text())),
        };
        self.encoder.cut(&mut self.meter, choices, usage, &mut out);
        self.client.try_send(out);
        self.finish(Some("stream_deadline"), false)
    }

    /// Ends the relay: stops the provider, closes the client's stream, and says how it ended.
    fn finish(mut self, code: Option<&'static str>, usage_unknown: bool) -> StreamEnd {
        self.source.abort();
        self.client.close();
        let error = self.meter.error().cloned();
        let delivered_output = self.meter.delivered_output();
        // Nothing arrived before the first-byte timeout, or nothing parseable before the end: the
        // provider accepted the request and may have worked on it, like a plain request that
        // timed out or answered an unusable 2xx.
        let billed_unseen = !delivered_output
            && error
                .as_ref()
                .is_some_and(GatewayError::provider_may_have_billed);
        let status = if self.client.left() {
            RequestStatus::ClientAbort
        } else if billed_unseen {
            match error.as_ref().map(|e| e.kind) {
                Some(ErrorKind::UpstreamUnusable) => RequestStatus::UpstreamUnusable,
                _ => RequestStatus::UpstreamTimeout,
            }
        } else if error.is_some() {
            RequestStatus::UpstreamError
        } else if self.meter.truncated() {
            RequestStatus::Truncated
        } else {
            RequestStatus::Ok
        };
        StreamEnd {
            status,
            completion_text: self.meter.text().to_string(),
            finish_reason: self.meter.finish_reason().map(str::to_string),
            upstream_usage: self.meter.upstream_usage().cloned(),
            error,
            code,
            // For the charge: a stream the provider started and then broke off is charged the
            // prompt and what it sent, even with no output yet (docs/money.md).
            delivered_output: self.meter.error_is_charged(),
            usage_unknown: usage_unknown || billed_unseen,
            ttfb_ms: self.ttfb_ms,
            ended_at: now_ms(),
            extended: self.guard.as_ref().map_or(0, |g| g.extended),
        }
    }
}

/// Starts relaying `source`: returns the client-facing byte stream and the pump, a future to run
/// in `wait_until` that relays until the end and resolves with it.
pub fn relay(
    source: Source,
    decoder: Box<dyn StreamDecoder>,
    meter: StreamMeter,
    encoder: ClientEncoder,
    guard: Option<StreamGuard>,
    limits: Limits,
) -> (
    impl Stream<Item = Result<Vec<u8>, worker::Error>> + 'static,
    impl Future<Output = StreamEnd> + 'static,
) {
    let (client, body) = ClientEnd::channel(limits);
    let pump = Pump {
        source,
        decoder,
        meter,
        encoder,
        guard,
        started_at: limits.started_at,
        ttfb_ms: None,
        client,
    };
    (body, pump.run())
}

#[cfg(test)]
mod tests {
    use super::{Alarm, WakeTarget};
    use futures::task::ArcWake;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    struct Counter(AtomicUsize);

    impl ArcWake for Counter {
        fn wake_by_ref(arc: &Arc<Self>) {
            arc.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_timer_rings_for_the_task_that_polled_it_last() {
        let (first, last) = (
            Arc::new(Counter(AtomicUsize::new(0))),
            Arc::new(Counter(AtomicUsize::new(0))),
        );
        let target = Arc::new(WakeTarget(Mutex::new(None)));
        let forward = futures::task::waker(target.clone());
        // Polled by one task (the answer's), then by another (a pull of the body).
        for task in [&first, &last] {
            *target.0.lock().unwrap() = Some(futures::task::waker(Arc::clone(task)));
        }
        forward.wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(last.0.load(Ordering::SeqCst), 1);
        // Rung once: a second ring before the next poll wakes nobody.
        forward.wake_by_ref();
        assert_eq!(last.0.load(Ordering::SeqCst), 1);
    }

    fn rings_at(alarm: &Alarm) -> Option<u64> {
        alarm.armed.as_ref().map(|(at, _)| *at)
    }

    #[test]
    fn an_alarm_keeps_its_timer_while_it_rings_early_enough() {
        let mut alarm = Alarm::default();
        alarm.at_the_latest(2_000, 1_000);
        assert_eq!(rings_at(&alarm), Some(2_000));
        // Later reads of a busy stream ask for later times: the armed timer serves them all.
        for (at, now) in [(2_010, 1_010), (2_500, 1_500), (60_000, 1_900)] {
            alarm.at_the_latest(at, now);
            assert_eq!(rings_at(&alarm), Some(2_000), "re-armed for {at}");
        }
        // An earlier time needs a new timer.
        alarm.at_the_latest(1_950, 1_901);
        assert_eq!(rings_at(&alarm), Some(1_950));
        // Once it rang, the next wait arms a new one.
        alarm.rang();
        assert_eq!(rings_at(&alarm), None);
        alarm.at_the_latest(3_000, 1_960);
        assert_eq!(rings_at(&alarm), Some(3_000));
    }
}
