//! A media request's ticket extension (`Pending::media`): its endpoint, unit prices, the usage
//! its reservation covers and, once answered, its bill; how that bill is charged and what its
//! usage row records (schema 0012). A leaf of the gateway (used by `ticket`, `settle` and
//! `media`), so that none of them imports another in a circle.

use crate::core::billing::units::{cost_micros_scaled, MediaUsage, UnitPrices};
use crate::core::billing::Price;
use crate::core::meter::{self, RequestStatus, UsageSource};
use crate::core::providers::media::bill::{Billed, Source as BillSource};
use crate::core::providers::media::MediaApi;
use crate::edge::store::ledger::UsageMedia;

/// The ticket's figures a media bill needs.
pub(crate) struct Charge<'a> {
    pub price: &'a Price,
    pub multiplier_bps: u64,
    pub local_prompt_tokens: u64,
    /// The reservation with its extensions.
    pub reserved: u64,
}

/// What the settlement of a media request needs beyond a chat ticket (`Pending::media`).
#[derive(Debug, Clone)]
pub(crate) struct MediaTicket {
    pub api: MediaApi,
    pub units: UnitPrices,
    /// The usage the reservation covers (charged when the answer is unknown).
    pub reserved: MediaUsage,
    /// The bill of a request answered, set before settlement.
    pub billed: Option<Billed>,
}

impl MediaTicket {
    /// The usage a request that ended with `end` is billed on, and whose figures it rests on.
    fn usage(&self, status: RequestStatus, usage_unknown: bool) -> (MediaUsage, UsageSource) {
        if usage_unknown {
            return (self.reserved, UsageSource::Local);
        }
        match (&self.billed, status) {
            (Some(b), _) => (
                b.usage,
                match b.source {
                    BillSource::Upstream => UsageSource::Upstream,
                    BillSource::Local => UsageSource::Local,
                },
            ),
            // Answered but not billed from the answer: the reservation's usage.
            (None, RequestStatus::Ok) => (self.reserved, UsageSource::Local),
            // A failure before any output: free.
            (None, _) => (MediaUsage::default(), UsageSource::Local),
        }
    }

    /// The bill of a request that ended with `status` (`Pending::bill` for a media ticket):
    /// `reserved` (with its extensions) is what an unknown usage is charged.
    pub(crate) fn bill(
        &self,
        c: &Charge,
        status: RequestStatus,
        usage_unknown: bool,
    ) -> meter::Bill {
        let (usage, source) = self.usage(status, usage_unknown);
        let cost = if usage_unknown {
            c.reserved
        } else {
            cost_micros_scaled(&usage, c.price, &self.units, c.multiplier_bps)
        };
        let t = usage.tokens;
        meter::Bill {
            prompt_tokens: t.prompt_tokens,
            cached_prompt_tokens: t.cached_prompt_tokens,
            completion_tokens: t.completion_tokens,
            reasoning_tokens: t.reasoning_tokens,
            upstream_prompt_tokens: (source == UsageSource::Upstream).then_some(t.prompt_tokens),
            upstream_completion_tokens: (source == UsageSource::Upstream)
                .then_some(t.completion_tokens),
            local_prompt_tokens: c.local_prompt_tokens,
            local_completion_tokens: 0,
            source,
            cost,
            // Media models have no cache-write or long-context prices (docs/media.md).
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            long_context: false,
        }
    }

    /// The media columns of the usage row (schema 0012).
    pub(crate) fn columns(&self, status: RequestStatus, usage_unknown: bool) -> UsageMedia {
        let (usage, _) = self.usage(status, usage_unknown);
        let (unit, quantity) = usage.row_quantity();
        UsageMedia {
            api: self.api.usage_api().to_string(),
            unit: unit.as_str().to_string(),
            quantity,
            unit_price: usage.metered.map(|m| m.unit_price),
            image_input_tokens: usage.image_input_tokens,
            audio_input_tokens: usage.audio_input_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::billing::units::Unit;
    use crate::core::billing::TokenUsage;

    fn ticket(billed: Option<Billed>) -> MediaTicket {
        MediaTicket {
            api: MediaApi::Speech,
            units: UnitPrices::default(),
            reserved: MediaUsage::metered(Unit::Characters, 40, 15_000_000),
            billed,
        }
    }

    #[test]
    fn what_a_media_request_is_billed_on() {
        let billed = Billed {
            usage: MediaUsage::metered(Unit::Characters, 25, 15_000_000),
            source: BillSource::Local,
        };
        // Answered: the bill made from the answer.
        let t = ticket(Some(billed));
        let (u, s) = t.usage(RequestStatus::Ok, false);
        assert_eq!((u, s), (billed.usage, UsageSource::Local));
        // The client left a stream: still the answer's bill (the provider did the work).
        assert_eq!(t.usage(RequestStatus::ClientAbort, false).0, billed.usage);
        // The provider may have billed, the answer unknown: the reservation.
        let t = ticket(None);
        assert_eq!(t.usage(RequestStatus::UpstreamUnusable, true).0, t.reserved);
        // Failed before any output: free.
        let (u, _) = t.usage(RequestStatus::UpstreamError, false);
        assert_eq!(u, MediaUsage::default());
        // The row's media columns.
        let c = ticket(Some(billed)).columns(RequestStatus::Ok, false);
        assert_eq!(
            (c.api.as_str(), c.unit.as_str(), c.quantity, c.unit_price),
            ("speech", "characters", 25, Some(15_000_000))
        );
        let tokens = Billed {
            usage: MediaUsage {
                tokens: TokenUsage {
                    prompt_tokens: 20,
                    completion_tokens: 4,
                    ..TokenUsage::default()
                },
                audio_input_tokens: 15,
                ..MediaUsage::default()
            },
            source: BillSource::Upstream,
        };
        let c = ticket(Some(tokens)).columns(RequestStatus::Ok, false);
        assert_eq!(
            (
                c.unit.as_str(),
                c.quantity,
                c.unit_price,
                c.audio_input_tokens
            ),
            ("tokens", 24, None, 15)
        );
    }
}
