//! Tollgate: an OpenAI-compatible LLM gateway for Cloudflare Workers.
//!
//! `core` is plain Rust with no Workers types, tested natively; `edge` is the thin Workers shell
//! that does the I/O.
pub mod core;
pub mod edge;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    edge::handle(req, env, ctx).await
}
