//! Relays a stream to the client as it arrives, metering on the way.
//!
//! Each upstream read is decoded and passed through [`StreamMeter`]; whatever the meter emits is
//! sent at once (no buffering to the end). When the stream ends — finished, failed, or dropped
//! because the client went away — the relay reports a [`StreamEnd`] exactly once through a
//! oneshot channel, which the settlement task (registered with `wait_until`) is waiting on.

use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use worker::{AbortController, ByteStream, Delay};

use super::guard::StreamGuard;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::meter::{RequestStatus, StreamMeter};
use crate::core::openai::Usage;
use crate::core::providers::StreamDecoder;

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
    },
    /// The built-in echo model's events, made as they are pulled, paced by `delay_ms`.
    Local {
        events: crate::core::providers::echo::EchoEvents,
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
                first_byte_timeout_ms,
                idle_timeout_ms,
                received,
                ..
            } => {
                let wait_ms = if *received {
                    *idle_timeout_ms
                } else {
                    *first_byte_timeout_ms
                };
                let timer = Delay::from(Duration::from_millis(wait_ms));
                match select(body.next(), timer).await {
                    Either::Left((Some(Ok(bytes)), _)) => {
                        *received = true;
                        Ok(Some(bytes))
                    }
                    Either::Left((Some(Err(e)), _)) => Err(GatewayError::new(
                        ErrorKind::UpstreamFailed,
                        format!("The provider's stream broke off: {e}"),
                    )),
                    Either::Left((None, _)) => Ok(None),
                    Either::Right(_) => Err(GatewayError::new(
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
                controller.abort();
            }
        }
    }
}

/// How a relayed stream ended.
#[derive(Debug)]
pub struct StreamEnd {
    pub status: RequestStatus,
    pub completion_text: String,
    pub upstream_usage: Option<Usage>,
    pub error: Option<GatewayError>,
    pub delivered_output: bool,
    pub ttfb_ms: Option<u64>,
    pub ended_at: u64,
    /// Micro-units the stream added to its reservation (see [`StreamGuard`]).
    pub extended: u64,
}

struct Relay {
    source: Source,
    decoder: Box<dyn StreamDecoder>,
    meter: StreamMeter,
    started_at: u64,
    ttfb_ms: Option<u64>,
    report: Option<oneshot::Sender<StreamEnd>>,
    finished: bool,
    guard: Option<StreamGuard>,
}

impl Relay {
    async fn next_bytes(&mut self) -> Option<Vec<u8>> {
        while !self.finished {
            let mut out = Vec::new();
            match self.source.next().await {
                Ok(Some(bytes)) => {
                    let items = self.decoder.push(&bytes);
                    self.forward_guarded(items, &mut out).await;
                    if self.meter.completed() || self.meter.error().is_some() {
                        self.end(RequestStatus::Ok);
                    }
                }
                Ok(None) => {
                    let items = self.decoder.finish();
                    self.forward_guarded(items, &mut out).await;
                    self.meter.upstream_closed(&mut out, None);
                    self.end(RequestStatus::Ok);
                }
                Err(e) => {
                    self.meter.upstream_closed(&mut out, Some(e));
                    self.end(RequestStatus::Ok);
                }
            }
            if !out.is_empty() {
                if self.ttfb_ms.is_none() {
                    self.ttfb_ms = Some(super::now_ms().saturating_sub(self.started_at));
                }
                return Some(out);
            }
        }
        None
    }

    /// Forwards `items` through the meter, each checked first by the guard; cuts the stream
    /// cleanly at the first item the reservation cannot pay for.
    async fn forward_guarded(
        &mut self,
        items: Vec<crate::core::providers::StreamItem>,
        out: &mut Vec<u8>,
    ) {
        for item in items {
            if let Some(guard) = &mut self.guard {
                if !self.meter.completed() && !guard.admit(self.meter.text(), &item).await {
                    let usage = guard.usage(self.meter.text());
                    self.meter.cut(guard.choices, usage, out);
                    return;
                }
            }
            self.meter.forward(item, out);
        }
    }

    /// Reports the end once. `status` is what a stream that completed counts as; a stream whose
    /// meter saw an error is an upstream error whatever `status` says.
    fn end(&mut self, status: RequestStatus) {
        self.finished = true;
        self.source.abort();
        let Some(report) = self.report.take() else {
            return;
        };
        let status = if self.meter.error().is_some() {
            RequestStatus::UpstreamError
        } else if self.meter.truncated() {
            RequestStatus::Truncated
        } else if self.meter.completed() {
            RequestStatus::Ok
        } else {
            status
        };
        let _ = report.send(StreamEnd {
            status,
            completion_text: self.meter.text().to_string(),
            upstream_usage: self.meter.upstream_usage().cloned(),
            error: self.meter.error().cloned(),
            delivered_output: self.meter.delivered_output(),
            ttfb_ms: self.ttfb_ms,
            ended_at: super::now_ms(),
            extended: self.guard.as_ref().map_or(0, |g| g.extended),
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The runtime drops the stream when the client disconnects.
        self.end(RequestStatus::ClientAbort);
    }
}

/// Starts relaying `source`; returns the client-facing byte stream and the receiver of its end.
pub fn relay(
    source: Source,
    decoder: Box<dyn StreamDecoder>,
    meter: StreamMeter,
    started_at: u64,
    guard: Option<StreamGuard>,
) -> (
    impl Stream<Item = Result<Vec<u8>, worker::Error>> + 'static,
    oneshot::Receiver<StreamEnd>,
) {
    let (tx, rx) = oneshot::channel();
    let relay = Relay {
        source,
        decoder,
        meter,
        started_at,
        ttfb_ms: None,
        report: Some(tx),
        finished: false,
        guard,
    };
    let stream = futures::stream::unfold(relay, |mut relay| async move {
        relay.next_bytes().await.map(|bytes| (Ok(bytes), relay))
    });
    (stream, rx)
}
