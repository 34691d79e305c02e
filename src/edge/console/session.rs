//! Console sessions: sign-in and sign-out for both scopes, the session check with CSRF and origin,
//! and turning a signed-in console call into the API call it stands for.

use serde::Deserialize;
use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use super::super::platform::{env as config, ttl_cache as cache};
use crate::core::console::{self as rules, Claims, Scope, SessionError};
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::ids::random_bytes;
use crate::core::keys;
use crate::edge::api::admin;
use crate::edge::api::http;
use crate::edge::gateway::auth;
use crate::edge::platform::clock::now_ms;

/// A signed-in console session.
pub struct Session {
    scope: Scope,
    claims: Claims,
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidApiKey, message).with_code("console_session_required")
}

fn forbidden(message: &str) -> GatewayError {
    GatewayError::new(ErrorKind::ModelNotAllowed, message).with_code("csrf_check_failed")
}

/// The key that seals console cookies: the `CONSOLE_SECRET` secret, else one derived from
/// `KEY_PEPPER` (so a fresh deployment needs no extra secret).
fn console_secret(env: &Env) -> Result<Vec<u8>, GatewayError> {
    if let Some(s) = config::secret(env, "CONSOLE_SECRET") {
        return Ok(s.into_bytes());
    }
    let pepper = auth::pepper(env)?;
    Ok(keys::key_digest(&pepper, "tollgate console cookie secret").into_bytes())
}

fn session_seconds(env: &Env) -> u64 {
    config::settings(env).console_session_seconds
}

/// Whether the operator lets tenants list, create and revoke their own keys in the user center
/// (var `CONSOLE_TENANT_KEYS = "true"`; off by default).
pub fn tenants_manage_keys(env: &Env) -> bool {
    config::settings(env).console_tenant_keys
}

fn random16() -> Result<[u8; 16], GatewayError> {
    let mut b = [0u8; 16];
    random_bytes(&mut b).map_err(|_| GatewayError::internal("no randomness for the session"))?;
    Ok(b)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn request_url(req: &Request) -> Result<url::Url, GatewayError> {
    req.url().map_err(|e| http::internal("url", e))
}

/// Refuses a state-changing request whose `Origin` is not the worker's own.
fn check_origin(req: &Request) -> Result<(), GatewayError> {
    let url = request_url(req)?;
    if rules::same_origin(header(req, "origin").as_deref(), url.as_str()) {
        Ok(())
    } else {
        Err(forbidden(
            "This console request must come from the console's own pages (Origin check).",
        ))
    }
}

impl Session {
    /// The session of `scope` the request carries; for a state-changing request (`write`) also
    /// its CSRF token and same-origin `Origin`.
    pub async fn require(
        req: &Request,
        env: &Env,
        scope: Scope,
        write: bool,
    ) -> Result<Session, GatewayError> {
        let cookies = header(req, "cookie").unwrap_or_default();
        let value = rules::cookie_value(&cookies, scope.cookie_name())
            .ok_or_else(|| unauthorized("Not signed in."))?;
        let claims = rules::open_session(&console_secret(env)?, scope, value, now_ms()).map_err(
            |e| match e {
                SessionError::Expired => {
                    unauthorized("Your console session has expired: sign in again.")
                }
                SessionError::Invalid => unauthorized("Not signed in."),
            },
        )?;
        if write {
            check_origin(req)?;
            if !rules::csrf_matches(&claims.csrf, header(req, "x-csrf-token").as_deref()) {
                return Err(forbidden("Missing or wrong X-CSRF-Token."));
            }
        }
        let session = Session { scope, claims };
        if scope == Scope::Tenant {
            // The key must still be valid (revocation ends the session at once).
            let probe = session.as_tenant_request(req, "/v1/balance", Method::Get, None)?;
            crate::edge::gateway::auth::live_caller(&probe, env).await?;
        }
        Ok(session)
    }

    /// What the page may know of its session: scope, CSRF token, expiry, and the key's id.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "scope": match self.scope { Scope::Tenant => "tenant", Scope::Operator => "operator" },
            "csrf_token": self.claims.csrf,
            "expires_at": self.claims.exp_ms,
            "key_id": self.key_id(),
        })
    }

    /// The id of the session's API key (tenant scope).
    pub fn key_id(&self) -> Option<String> {
        let key = self.claims.key.as_deref()?;
        keys::parse_api_key(key).map(|p| p.key_id.to_string())
    }

    /// The tenant API request this console call stands for: same query string, `path`, the
    /// session's key as bearer token.
    pub fn as_tenant_request(
        &self,
        req: &Request,
        path: &str,
        method: Method,
        body: Option<&[u8]>,
    ) -> Result<Request, GatewayError> {
        let key = self
            .claims
            .key
            .as_deref()
            .ok_or_else(|| unauthorized("Not signed in as a tenant."))?;
        synthesize(req, path, method, &format!("Bearer {key}"), body)
    }

    /// The admin API request this operator call stands for, with the worker's `ADMIN_TOKEN`.
    pub fn as_admin_request(
        &self,
        env: &Env,
        req: &Request,
        path: &str,
        method: Method,
        body: Option<&[u8]>,
    ) -> Result<Request, GatewayError> {
        if self.scope != Scope::Operator {
            return Err(unauthorized("Not signed in as the operator."));
        }
        let token = config::secret(env, "ADMIN_TOKEN")
            .ok_or_else(|| unauthorized("The admin API is disabled (no ADMIN_TOKEN)."))?;
        synthesize(req, path, method, &format!("Bearer {token}"), body)
    }
}

fn synthesize(
    req: &Request,
    path: &str,
    method: Method,
    authorization: &str,
    body: Option<&[u8]>,
) -> Result<Request, GatewayError> {
    let mut url = request_url(req)?;
    url.set_path(path);
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|e| http::internal("set header", e))
    };
    set("authorization", authorization)?;
    if let Some(accept) = header(req, "accept") {
        set("accept", &accept)?;
    }
    if body.is_some() {
        set("content-type", "application/json")?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers.clone());
    if let Some(b) = body {
        init.with_body(Some(worker::js_sys::Uint8Array::from(b).into()));
    }
    Request::new_with_init(url.as_str(), &init).map_err(|e| http::internal("request", e))
}

/// Sets a new session of `scope` (and answers with what the page may know of it).
fn open(
    env: &Env,
    scope: Scope,
    key: Option<String>,
    extra: serde_json::Value,
) -> Result<Response, GatewayError> {
    let seconds = session_seconds(env);
    let claims = Claims {
        key,
        csrf: rules::token_hex(random16()?),
        exp_ms: now_ms() + seconds * 1000,
    };
    let mut nonce = [0u8; 12];
    random_bytes(&mut nonce)
        .map_err(|_| GatewayError::internal("no randomness for the session"))?;
    let value = rules::seal_session(&console_secret(env)?, scope, &claims, nonce);
    let session = Session { scope, claims };
    let mut body = session.describe();
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let mut resp = http::json(200, &body)?;
    resp.headers_mut()
        .set("set-cookie", &rules::session_cookie(scope, &value, seconds))
        .map_err(|e| http::internal("set header", e))?;
    Ok(resp)
}

/// `POST /console/api/login` `{key}`: a tenant key for a session cookie.
pub async fn login(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    check_origin(&req)?;
    #[derive(Deserialize)]
    struct Login {
        key: String,
    }
    let body = http::read_body(&mut req, 4096).await?;
    let login: Login = serde_json::from_slice(&body)
        .map_err(|_| GatewayError::invalid_param("key", "Send {\"key\": \"tg-…\"}."))?;
    let key = login.key.trim().to_string();
    let probe = synthesize(
        &req,
        "/v1/balance",
        Method::Get,
        &format!("Bearer {key}"),
        None,
    )?;
    let caller = crate::edge::gateway::auth::live_caller(&probe, env).await?;
    open(
        env,
        Scope::Tenant,
        Some(key),
        json!({"tenant_id": caller.tenant_id}),
    )
}

/// `POST /console/api/operator/login` `{token}`: the admin token for an operator session cookie.
pub async fn operator_login(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    check_origin(&req)?;
    #[derive(Deserialize)]
    struct Login {
        token: String,
    }
    let body = http::read_body(&mut req, 4096).await?;
    let login: Login = serde_json::from_slice(&body)
        .map_err(|_| GatewayError::invalid_param("token", "Send {\"token\": \"…\"}."))?;
    let probe = synthesize(
        &req,
        "/admin/tenants",
        Method::Get,
        &format!("Bearer {}", login.token.trim()),
        None,
    )?;
    auth::authorize_admin(&probe, env)?;
    open(env, Scope::Operator, None, json!({}))
}

/// `POST /console/api/[operator/]logout`: deletes the cookie (same-origin only).
pub fn logout(req: &Request, scope: Scope) -> Result<Response, GatewayError> {
    check_origin(req)?;
    let mut resp = http::json(200, &json!({"signed_out": true}))?;
    resp.headers_mut()
        .set("set-cookie", &rules::clear_cookie(scope))
        .map_err(|e| http::internal("set header", e))?;
    Ok(resp)
}

/// The tenant of a console request: its session (CSRF checked on a `write`), the live caller
/// behind it (revoked keys and disabled tenants refused as on the API) and the database.
pub async fn tenant_of(
    req: &Request,
    env: &Env,
    write: bool,
) -> Result<(Session, auth::Caller, worker::D1Database), GatewayError> {
    let s = Session::require(req, env, Scope::Tenant, write).await?;
    let probe = s.as_tenant_request(req, "/v1/balance", Method::Get, None)?;
    let caller = auth::live_caller(&probe, env).await?;
    let db = crate::edge::platform::d1::database(env)?;
    Ok((s, caller, db))
}

/// The tenant of a key-management request (`/console/api/keys…`), when the operator lets tenants
/// manage their keys (`CONSOLE_TENANT_KEYS`); done with the admin API's own handlers on the
/// session's tenant only.
async fn key_manager(
    req: &Request,
    env: &Env,
    write: bool,
) -> Result<(Session, auth::Caller, worker::D1Database), GatewayError> {
    let (s, caller, db) = tenant_of(req, env, write).await?;
    if !tenants_manage_keys(env) {
        return Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            "The operator manages the keys of this gateway.",
        )
        .with_code("keys_managed_by_operator"));
    }
    Ok((s, caller, db))
}

/// `GET /console/api/keys`: the tenant's keys (never their secrets).
pub async fn list_keys(req: Request, env: &Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = key_manager(&req, env, false).await?;
    admin::keys::list(&db, &caller.tenant_id).await
}

/// `POST /console/api/keys {name}`: a new key of the tenant (its secret shown once).
pub async fn create_key(mut req: Request, env: &Env) -> Result<Response, GatewayError> {
    let (_, caller, db) = key_manager(&req, env, true).await?;
    let token = config::secret(env, "ADMIN_TOKEN").ok_or_else(|| {
        GatewayError::new(ErrorKind::ModelNotAllowed, "Key management is unavailable.")
            .with_code("keys_managed_by_operator")
    })?;
    let keys_path = format!("/admin/tenants/{}/keys", caller.tenant_id);
    let as_admin = |req: &Request, path: &str, m: Method, body: Option<&[u8]>| {
        synthesize(req, path, m, &format!("Bearer {token}"), body)
    };

    let body = http::read_body(&mut req, 4096).await?;
    let mut r = as_admin(&req, &keys_path, Method::Post, Some(&body))?;
    admin::keys::create(&db, env, &caller.tenant_id, admin::body(&mut r).await?).await
}

/// `DELETE /console/api/keys/{id}`: revokes a key of the tenant (not the session's own).
pub async fn revoke_key(req: Request, env: &Env, id: &str) -> Result<Response, GatewayError> {
    let (s, caller, db) = key_manager(&req, env, true).await?;

    // Only a key of the caller's own tenant, and not the one this session runs on.
    let mut listed = admin::keys::list(&db, &caller.tenant_id).await?;
    let list: serde_json::Value = listed
        .json()
        .await
        .map_err(|e| http::internal("read keys", e))?;
    let own = list["data"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(|k| k["id"].as_str() == Some(id)));
    if !own {
        return Err(GatewayError::new(ErrorKind::NotFound, "No such key."));
    }
    if s.key_id().as_deref() == Some(id) {
        return Err(GatewayError::invalid_param(
            "id",
            "This is the key you are signed in with; sign in with another key to revoke it.",
        ));
    }
    let resp = admin::keys::revoke(&db, env, id).await;
    cache::clear_all();
    resp
}
