//! The edge half of [`OutputGuard`]: checks each chunk of a stream before it is forwarded, grows
//! the reservation (in D1, or in the tenant's wallet with `WALLETS`) when the client set no
//! `max_tokens`, and says when to cut.

use crate::edge::store;
use worker::Env;

use crate::core::billing::guard::{OutputDecision, OutputGuard};
use crate::core::billing::tiers::{output_reservation_micros_tiered, PriceSheet};
use crate::core::openai::{ChatCompletionChunk, ChunkChoice, Delta, Usage};
use crate::core::providers::StreamItem;
use crate::core::tokens::Encoding;
use crate::edge::platform::d1 as db;

/// Everything a stream needs to keep its output paid for.
pub struct StreamGuard {
    pub env: Env,
    pub request_id: String,
    pub guard: OutputGuard,
    pub encoding: Option<Encoding>,
    pub sheet: PriceSheet,
    pub multiplier_bps: u64,
    pub prompt_tokens: u64,
    pub choices: u64,
    /// Micro-units added to the reservation by extensions so far.
    pub extended: u64,
    /// The reservation is in the tenant's wallet (`WALLETS`): extensions go there.
    pub wallet: Option<WalletHold>,
}

/// Where a wallet reservation lives, and how many extensions it had.
pub struct WalletHold {
    pub tenant_id: String,
    pub extensions: u32,
}

impl StreamGuard {
    /// Whether `item` may be forwarded after `delivered` (all output so far). `false`: cut the
    /// stream before it.
    pub async fn admit(&mut self, delivered: &str, item: &StreamItem) -> bool {
        let StreamItem::Chunk { chunk, .. } = item else {
            return true;
        };
        let mut added = String::new();
        chunk.append_generated_text(&mut added);
        if added.is_empty() {
            return true;
        }
        loop {
            match self.guard.check(delivered, &added) {
                OutputDecision::Continue => return true,
                OutputDecision::Cut => return false,
                OutputDecision::Extend { tokens } => {
                    // At the tier of the request's prompt, like its reservation.
                    let amount = output_reservation_micros_tiered(
                        self.prompt_tokens,
                        tokens,
                        &self.sheet,
                        self.multiplier_bps,
                    );
                    let extended = match &mut self.wallet {
                        Some(hold) => {
                            let number = hold.extensions.saturating_add(1);
                            let granted = super::wallet::extend(
                                &self.env,
                                &hold.tenant_id,
                                &self.request_id,
                                number,
                                amount,
                            )
                            .await;
                            if matches!(granted, Ok(true)) {
                                hold.extensions = number;
                            }
                            granted
                        }
                        None => match db::database(&self.env) {
                            Ok(database) => store::ledger::extend_reservation(
                                &database,
                                &self.request_id,
                                amount,
                            )
                            .await
                            .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    match extended {
                        Ok(true) => {
                            self.extended = self.extended.saturating_add(amount);
                            self.guard.extended(tokens);
                        }
                        Ok(false) => return false,
                        Err(e) => {
                            worker::console_error!(
                                "extending the reservation of {} failed: {e}",
                                self.request_id
                            );
                            return false;
                        }
                    }
                }
            }
        }
    }

    /// [`Self::admit`] for the generated text `added` by one event of a stream that is not chat
    /// (a native passthrough, `gateway::native`): offered as a one-choice chunk, so both kinds of
    /// stream share one check and one way to grow the reservation.
    pub async fn admit_text(&mut self, delivered: &str, added: &str) -> bool {
        let chunk = ChatCompletionChunk {
            id: String::new(),
            object: String::new(),
            created: 0,
            model: String::new(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    content: Some(added.to_string()),
                    ..Delta::default()
                },
                finish_reason: None,
                extra: Default::default(),
            }],
            usage: None,
            extra: Default::default(),
        };
        let item = StreamItem::Chunk { chunk, raw: None };
        self.admit(delivered, &item).await
    }

    /// The usage reported to the client when the stream is cut: local counts, as billed.
    pub fn usage(&self, delivered: &str) -> Usage {
        let completion = match self.encoding {
            Some(enc) => enc.count(delivered),
            None => crate::core::meter::estimate_tokens(delivered),
        };
        Usage::new(self.prompt_tokens, completion)
    }
}
