//! `GET /v1/models` and `GET /v1/models/{model}`: the models a key may use, in the shape the
//! caller reads (`core::models_list`: OpenAI's list, or Anthropic's for a caller that sends
//! `anthropic-version` or only `x-api-key`). An Anthropic caller's errors are Anthropic-shaped.

use worker::{Env, Request, Response};

use crate::core::error::{ErrorKind, GatewayError};
use crate::core::models_list::{self, ClientFamily, ListedModel};
use crate::edge::api::{anthropic, http};
use crate::edge::platform::d1 as db;
use crate::edge::store;

fn listed(row: &store::models::ModelListRow) -> ListedModel {
    ListedModel {
        id: row.name.clone(),
        created_ms: row.created_at,
        display_name: None,
        kind: row.kind.clone(),
    }
}

fn family(req: &Request) -> ClientFamily {
    ClientFamily::detect(|name| req.headers().get(name).ok().flatten())
}

/// `answer`, with an error in the family's shape.
fn in_shape(
    family: ClientFamily,
    answer: Result<Response, GatewayError>,
    request_id: &str,
) -> Result<Response, GatewayError> {
    match family {
        ClientFamily::Anthropic => anthropic::answer(answer, request_id),
        ClientFamily::OpenAi => answer,
    }
}

/// `GET /v1/models`: the models this key may use; errors in the caller's shape.
pub async fn list_models_for(
    req: &Request,
    env: &Env,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let family = family(req);
    in_shape(family, list(req, env, family).await, request_id)
}

/// `GET /v1/models` (the console's view too), errors left to the caller.
pub async fn list_models(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    list(req, env, family(req)).await
}

async fn list(req: &Request, env: &Env, family: ClientFamily) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let page = match family {
        ClientFamily::Anthropic => {
            let url = req
                .url()
                .map_err(|e| GatewayError::internal(e.to_string()))?;
            models_list::parse_page(url.query().unwrap_or(""))?
        }
        ClientFamily::OpenAi => models_list::Page::default(),
    };
    let rows = store::models::list_names(&db::database(env)?).await?;
    let models: Vec<ListedModel> = rows
        .iter()
        .filter(|r| caller.may_use(&r.name))
        .map(listed)
        .collect();
    http::json(200, &models_list::list_body(family, &models, &page))
}

/// `GET /v1/models/{model}`.
pub async fn get_model(
    req: &Request,
    env: &Env,
    model: &str,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let family = family(req);
    in_shape(family, get(req, env, model, family).await, request_id)
}

async fn get(
    req: &Request,
    env: &Env,
    model: &str,
    family: ClientFamily,
) -> Result<Response, GatewayError> {
    let caller = crate::edge::gateway::auth::live_caller(req, env).await?;
    let row = store::models::get_name(&db::database(env)?, model).await?;
    match row.filter(|r| caller.may_use(&r.name)) {
        Some(r) => http::json(200, &models_list::model_object(family, &listed(&r))),
        None => Err(GatewayError::new(
            ErrorKind::ModelNotFound,
            format!("The model `{model}` does not exist."),
        )),
    }
}
