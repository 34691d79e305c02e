//! Tollgate: an OpenAI-compatible LLM gateway for Cloudflare Workers.
//!
//! `core` is plain Rust with no Workers types; `edge` is the thin Workers shell.
pub mod core;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok("tollgate")
}
