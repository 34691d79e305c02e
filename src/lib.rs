//! Tollgate: an OpenAI-compatible LLM gateway for Cloudflare Workers.
//!
//! `core` is plain Rust with no Workers types, tested natively; `edge` is the thin Workers shell
//! that does the I/O. `fetch` answers HTTP; `scheduled` runs the cron tasks (`edge::cron`).
pub mod core;
pub mod edge;

/// The tenant wallet Durable Object class (wrangler.toml `WALLET`).
pub use edge::store::wallet::object::TenantWallet;

use worker::{event, Context, Env, Response, Result, ScheduleContext, ScheduledEvent};

/// Runs once when the wasm module is instantiated, before any request: the wasm futures'
/// executor schedules with `Promise.then`, not workerd's costlier `queueMicrotask`
/// (`edge::platform::microtask`).
#[event(start)]
fn start() {
    edge::platform::microtask::prefer_promise_microtasks();
}

/// The runtime's request is taken as it is and converted without its `cf` object, which nothing
/// reads (`edge::platform::incoming`).
#[event(fetch)]
async fn fetch(req: worker::web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
    edge::api::serve(edge::platform::incoming::request(req), env, ctx).await
}

/// Cron triggers (wrangler.toml `[triggers] crons`): rollups, sweeps, expiry, alert retries.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    edge::cron::run(&env, event.schedule().max(0.0) as u64).await;
}
