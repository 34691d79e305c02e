//! What a call is reserved at ([`count`]), its reservation on the key's balance, and the
//! explanation of a refusal.

use worker::D1Database;

use super::admit::Admitted;
use crate::core::billing::tiers::reservation_micros_tiered;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::openai::ChatCompletionRequest;
use crate::core::tokens::{prompt_tokens_for_reservation, MediaRules};
use crate::edge::store;

/// What a call is reserved at, counted before anything is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count {
    /// The prompt as counted here (text, images, audio and files, priced conservatively).
    pub local_prompt_tokens: u64,
    /// Output tokens the reservation covers (`max_tokens` or the model's, times `n`).
    pub max_output: u64,
    /// Micro-units to reserve.
    pub reserved: u64,
}

/// Counts `chat` for `admitted`: 400 for a part that cannot be priced.
pub(crate) fn count(
    admitted: &Admitted,
    chat: &ChatCompletionRequest,
) -> Result<Count, GatewayError> {
    let model = &admitted.model;
    let media = MediaRules::for_model(admitted.kind, &[&model.upstream_model, &model.name]);
    let local_prompt_tokens = prompt_tokens_for_reservation(admitted.encoding, media, chat)?;
    let max_output = chat
        .requested_max_output()
        .unwrap_or(model.max_output_tokens)
        .saturating_mul(chat.choices());
    // A prompt above the long-context threshold reserves at the long tier (the whole request
    // moves to it).
    let reserved = reservation_micros_tiered(
        local_prompt_tokens,
        max_output,
        &admitted.sheet,
        model.multiplier_bps,
    );
    Ok(Count {
        local_prompt_tokens,
        max_output,
        reserved,
    })
}

/// Reserves `count.reserved` micro-units for the call `id` of `key_id`; a refusal is
/// explained ([`refusal`]).
pub(crate) async fn reserve(
    db: &D1Database,
    id: &str,
    key_id: &str,
    count: &Count,
    started_at: u64,
) -> Result<(), GatewayError> {
    if store::ledger::reserve(db, id, key_id, count.reserved, started_at).await? {
        return Ok(());
    }
    Err(refusal(
        db,
        key_id,
        count.reserved,
        count.local_prompt_tokens,
        count.max_output,
    )
    .await)
}

/// Explains why a reservation was refused.
pub(crate) async fn refusal(
    db: &D1Database,
    key_id: &str,
    needed: u64,
    prompt_tokens: u64,
    max_output: u64,
) -> GatewayError {
    match store::keys::key_state(db, key_id).await {
        Ok(Some(state)) if state.revoked_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "Incorrect API key provided: this key has been revoked.",
        ),
        Ok(Some(state)) if state.disabled_at.is_some() => GatewayError::new(
            ErrorKind::InvalidApiKey,
            "This API key's tenant is disabled.",
        ),
        Ok(Some(state)) if state.debt > 0 => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "You exceeded your current quota: earlier requests cost {} micro-units more than \
                 your balance covered, and this debt must be paid before new requests. Add credit \
                 (it pays the debt first).",
                state.debt
            ),
        ),
        Ok(Some(state)) => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "You exceeded your current quota: this request may cost up to {needed} micro-units \
                 ({prompt_tokens} prompt tokens and up to {max_output} completion tokens) but the \
                 available balance is {}. Top up, or lower max_tokens.",
                state.balance.saturating_add(state.allowance_remaining)
            ),
        ),
        Ok(None) => GatewayError::new(ErrorKind::InvalidApiKey, "Incorrect API key provided."),
        Err(e) => e,
    }
}
