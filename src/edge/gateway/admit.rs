//! Admission: the key may use the model, the model exists, its provider kind, token encoding and
//! price are known. Everything after it is priced with what this returns.

use std::rc::Rc;

use worker::D1Database;

use super::context::Call;
use super::routes;
use crate::core::billing::tiers::PriceSheet;
use crate::core::billing::Price;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::ChatCompletionRequest;
use crate::core::providers::ProviderKind;
use crate::core::tokens::{encoding_for_model, Encoding};
use crate::edge::store;
use crate::edge::store::models::ModelRow;

/// A model a request was admitted to, with how it is counted and priced.
#[derive(Clone)]
pub(crate) struct Admitted {
    pub model: Rc<ModelRow>,
    pub kind: ProviderKind,
    pub encoding: Option<Encoding>,
    /// The base tier's four token prices (media requests are priced on these).
    pub price: Price,
    /// Every price of the version: cache writes and the long-context tier
    /// (`core::billing::tiers`); chat, Responses and Messages requests are priced on it.
    pub sheet: PriceSheet,
}

/// Resolves the request's model (`tollgate/auto` included) for the caller: 404 for an unknown
/// model, 403 for one the key may not use.
pub(crate) async fn admit(
    call: &Call,
    db: &D1Database,
    chat: &mut ChatCompletionRequest,
    body: &[u8],
) -> Result<Admitted, GatewayError> {
    let model_name = routes::resolve_auto(&call.env, chat, body)?;
    let model = store::models::cached_model(db, &model_name, &call.caller.tenant_id)
        .await?
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::ModelNotFound,
                format!("The model `{model_name}` does not exist."),
            )
            .with_code("model_not_found")
        })?;
    if !call.caller.may_use(&model.name) {
        return Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            format!("This API key may not use the model `{}`.", model.name),
        ));
    }
    admitted(model)
}

/// The kind, encoding and price of `model`.
pub(crate) fn admitted(model: Rc<ModelRow>) -> Result<Admitted, GatewayError> {
    let kind = ProviderKind::parse(&model.kind).ok_or_else(|| {
        GatewayError::internal(format!(
            "provider `{}` has unknown kind `{}`",
            model.provider, model.kind
        ))
    })?;
    let encoding = model
        .encoding
        .as_deref()
        .and_then(Encoding::from_name)
        .or_else(|| encoding_for_model(&model.upstream_model))
        .or_else(|| encoding_for_model(&model.name));
    let sheet = model.price_sheet();
    Ok(Admitted {
        model,
        kind,
        encoding,
        price: sheet.base.price,
        sheet,
    })
}
