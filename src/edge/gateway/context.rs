//! One request's context: who calls (key, tenant), in which session, under which settings, with
//! which request id and start time. Built once by the API handler; every later step reads it.

use worker::{Env, Headers};

use super::auth::Caller;
use crate::core::error::GatewayError;
use crate::core::{ids, session};
use crate::edge::platform::env::{settings, Settings};

/// The context of one metered request.
#[derive(Clone)]
pub(crate) struct Call {
    pub env: Env,
    pub request_id: String,
    pub caller: Caller,
    pub session_id: String,
    /// The settings, with `session_ttl_seconds` 0 when Tollgate named the session for this
    /// request alone (D1 keeps it; KV gets no copy), in every round of a plugin tool loop too.
    pub settings: Settings,
    pub started_at: u64,
}

impl Call {
    /// The context of a request of `caller` that arrived at `started_at` with `headers`: its
    /// session is the client's `x-session-id` (validated) or a new one named for it.
    pub(crate) fn new(
        env: &Env,
        request_id: &str,
        caller: Caller,
        headers: &Headers,
        started_at: u64,
    ) -> Result<Self, GatewayError> {
        let (session_id, session_named) = match headers.get("x-session-id").ok().flatten() {
            Some(id) => (session::validate_session_id(&id)?.to_string(), true),
            None => (ids::prefixed_id("sess", started_at), false),
        };
        let all = Settings::clone(&settings(env));
        let settings = Settings {
            session_ttl_seconds: if session_named {
                all.session_ttl_seconds
            } else {
                0
            },
            ..all
        };
        Ok(Call {
            env: env.clone(),
            request_id: request_id.to_string(),
            caller,
            session_id,
            settings,
            started_at,
        })
    }
}
