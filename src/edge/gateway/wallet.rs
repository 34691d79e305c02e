//! The hot path on the tenant's wallet (`WALLETS`, docs/money.md "Wallets"): a chat request (and
//! each plugin round) reserves in its tenant's Durable Object before the upstream call and settles
//! there from `waitUntil`; the wallet keeps the usage row in its outbox (same transaction as the
//! charge) and exports it to D1. No D1 statement on the way. The tenant moves into its wallet on
//! its first money command (the wallet's claim, schema/0011).

use worker::{Env, Response};

use super::auth::Caller;
use super::reserve::Count;
use crate::core::error::{ErrorKind, GatewayError};
use crate::core::wallet::extend::ExtendRequest;
use crate::core::wallet::figures::Figures;
use crate::core::wallet::lease::Took;
use crate::core::wallet::rate::RateHeaders;
use crate::core::wallet::{Refusal, ReserveRequest};
use crate::edge::platform::clock::now_ms;
use crate::edge::platform::env::settings;
use crate::edge::store::ledger::UsageRow;
use crate::edge::store::wallet::client::{InFlight, WalletClient, WalletError};
use crate::edge::store::wallet::Command;

/// How the wallet admitted a call.
pub(crate) struct Admission {
    /// The caller's x-ratelimit-* values (empty without limits).
    pub headers: RateHeaders,
    /// The take of a call admitted on the isolate's lease, sent and not yet answered.
    pub announce: Option<Announce>,
    /// With `WALLET_LEASES`: whether the call was admitted on a lease (`x-tollgate-lease` on a
    /// test deployment).
    pub lease_hit: Option<bool>,
}

/// Reserves `count` for the call `id` in the caller's wallet. With `WALLET_LEASES`, a call whose
/// reservation fits in this isolate's lease on the key is admitted at once: its take is sent to
/// the wallet now (before the upstream call) and answered later ([`Announce::landed`], before the
/// settlement); otherwise the reserve is awaited, asking for a lease when none is being asked.
/// A refusal becomes the client's error (401, 402 `insufficient_quota` or `budget_exceeded`, 429
/// `rate_limit_exceeded` with retry-after); a wallet that cannot be reached is a 503 (nothing was
/// reserved or decided).
pub(crate) async fn reserve(
    env: &Env,
    id: &str,
    caller: &Caller,
    count: &Count,
) -> Result<Admission, GatewayError> {
    let request = ReserveRequest {
        id: id.to_string(),
        key_id: caller.key_id.clone(),
        amount: count.reserved,
        tokens: count.local_prompt_tokens.saturating_add(count.max_output),
    };
    let client = WalletClient::new(env, &caller.tenant_id);
    if !settings(env).wallet_leases {
        return match client.reserve(request).await {
            Ok(reserved) => Ok(Admission {
                headers: reserved.headers,
                announce: None,
                lease_hit: None,
            }),
            Err(e) => Err(wallet_error(e)),
        };
    }
    let slot = (caller.tenant_id.clone(), caller.key_id.clone());
    let now = now_ms();
    if let Some(lease_id) = leases::take(&slot, count.reserved, now) {
        let take = Command::Take {
            lease_id: lease_id.clone(),
            request: request.clone(),
        };
        match client.start(take) {
            Ok(flight) => {
                return Ok(Admission {
                    headers: RateHeaders::default(),
                    announce: Some(Announce {
                        flight,
                        slot,
                        lease_id,
                    }),
                    lease_hit: Some(true),
                })
            }
            // Not sent: the wallet keeps the lease's money until its expiry; reserve instead.
            Err(e) => {
                worker::console_error!("wallet: announcing a lease take: {e}");
                leases::drop_lease(&slot, &lease_id);
            }
        }
    }
    let ask = leases::start_ask(&slot, id, now);
    let asked = ask.is_some();
    let result = client.reserve_leasing(request, ask).await;
    if asked {
        let grant = result.as_ref().ok().and_then(|a| a.lease.clone());
        leases::end_ask(&slot, grant, now_ms());
    }
    match result {
        Ok(answer) => Ok(Admission {
            headers: answer.reserved.headers,
            announce: None,
            lease_hit: Some(false),
        }),
        Err(e) => Err(wallet_error(e)),
    }
}

/// The take of a call admitted on a lease, on its way to the wallet.
pub(crate) struct Announce {
    flight: InFlight,
    slot: (String, String),
    lease_id: String,
}

impl Announce {
    /// Waits for the wallet's answer to the take (the same request's context, before its
    /// settlement). The isolate drops its lease when the wallet closed it or refused the take.
    /// `Err(refusal)`: the wallet's fallback reserve refused the call (its settlement then
    /// charges it as a request without reservation, as today).
    pub(crate) async fn landed(self) -> Result<(), Refusal> {
        match self.flight.answer::<Took>().await {
            Ok(took) => {
                if !took.lease_open {
                    leases::drop_lease(&self.slot, &self.lease_id);
                }
                Ok(())
            }
            Err(WalletError::Refused(r)) => {
                leases::drop_lease(&self.slot, &self.lease_id);
                Err(r)
            }
            Err(WalletError::Failed(e)) => {
                // Unknown whether it landed: the settlement charges the hold if it did, and as
                // beyond a reservation if not; the lease's money returns at its expiry.
                worker::console_error!("wallet: lease take: {e}");
                leases::drop_lease(&self.slot, &self.lease_id);
                Ok(())
            }
        }
    }
}

/// This isolate's leases, by (tenant, key). Plain data shared by the requests of the isolate
/// (no I/O object crosses requests: each request sends and awaits its own take).
mod leases {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use crate::core::wallet::lease::{Grant, LeaseAsk, LocalLease, USE_WINDOW_MS};

    /// An ask older than this is forgotten (its request died before the answer).
    const ASK_TIMEOUT_MS: u64 = 5_000;
    /// Slots kept at most; beyond, those without a usable lease are forgotten.
    const MAX_SLOTS: usize = 4_096;

    #[derive(Default)]
    struct Slot {
        lease: Option<LocalLease>,
        asking_since: Option<u64>,
    }

    type Key = (String, String);

    thread_local! {
        static SLOTS: RefCell<HashMap<Key, Slot>> = RefCell::new(HashMap::new());
    }

    /// Takes `amount` from the key's lease → its id, when it is usable and has it left.
    pub(super) fn take(key: &Key, amount: u64, now: u64) -> Option<String> {
        SLOTS.with(|s| {
            let mut slots = s.borrow_mut();
            let lease = slots.get_mut(key)?.lease.as_mut()?;
            lease.try_take(amount, now).then(|| lease.id.clone())
        })
    }

    /// A lease ask for request `id`, unless another request of this isolate is asking.
    pub(super) fn start_ask(key: &Key, id: &str, now: u64) -> Option<LeaseAsk> {
        SLOTS.with(|s| {
            let mut slots = s.borrow_mut();
            if slots.len() >= MAX_SLOTS && !slots.contains_key(key) {
                slots.retain(|_, slot| slot.lease.as_ref().is_some_and(|l| l.usable(now)));
            }
            let slot = slots.entry(key.clone()).or_default();
            if slot
                .asking_since
                .is_some_and(|t| now.saturating_sub(t) < ASK_TIMEOUT_MS)
            {
                return None;
            }
            slot.asking_since = Some(now);
            Some(LeaseAsk { id: id.to_string() })
        })
    }

    /// The ask is answered: the grant (if any) replaces the key's lease.
    pub(super) fn end_ask(key: &Key, grant: Option<Grant>, now: u64) {
        SLOTS.with(|s| {
            let mut slots = s.borrow_mut();
            let slot = slots.entry(key.clone()).or_default();
            slot.asking_since = None;
            if let Some(g) = grant {
                slot.lease = Some(LocalLease {
                    id: g.lease_id,
                    remaining: g.amount,
                    received_at: now,
                });
            } else if slot
                .lease
                .as_ref()
                .is_some_and(|l| now.saturating_sub(l.received_at) >= USE_WINDOW_MS)
            {
                slot.lease = None;
            }
        })
    }

    /// Forgets lease `lease_id` of the key (closed or refused by the wallet).
    pub(super) fn drop_lease(key: &Key, lease_id: &str) {
        SLOTS.with(|s| {
            if let Some(slot) = s.borrow_mut().get_mut(key) {
                if slot.lease.as_ref().is_some_and(|l| l.id == lease_id) {
                    slot.lease = None;
                }
            }
        })
    }
}

/// A wallet's answer as the client's error.
pub(crate) fn wallet_error(e: WalletError) -> GatewayError {
    match e {
        WalletError::Refused(refusal) => refusal.to_error(),
        WalletError::Failed(message) => {
            worker::console_error!("wallet: {message}");
            GatewayError::new(
                ErrorKind::Unavailable,
                "The account's wallet is temporarily unavailable. Retry shortly.",
            )
        }
    }
}

/// Settles `row` in the tenant's wallet: the charge and the usage row in one wallet transaction
/// (idempotent by request id: a retry after an unseen success changes nothing).
pub(crate) async fn settle(env: &Env, row: &UsageRow) -> Result<(), String> {
    settle_observed(env, row, 0).await.map(|_| ())
}

/// [`settle`], with the alert figures before and after the charge (`None` when the wallet had
/// settled this request before) and the session copy's lifetime for the export.
pub(crate) async fn settle_observed(
    env: &Env,
    row: &UsageRow,
    session_ttl_seconds: u64,
) -> Result<Option<(Figures, Figures)>, String> {
    let map = crate::edge::store::wallet::outbox_row(row, session_ttl_seconds)?;
    let tokens = row.prompt_tokens.saturating_add(row.completion_tokens);
    WalletClient::new(env, &row.tenant_id)
        .settle_observed(&row.request_id, &row.key_id, row.cost, tokens, map)
        .await
        .map(|o| o.figures)
        .map_err(|e| e.to_string())
}

/// Grows the wallet reservation of request `id` by `amount` (its `number`-th extension, so a
/// retried call takes nothing twice) → whether the stream may go on. A refusal (no credit, a
/// budget, a revoked key) or a reservation no longer open is `Ok(false)`: the stream stops at its
/// cover, as on D1.
pub(crate) async fn extend(
    env: &Env,
    tenant_id: &str,
    id: &str,
    number: u32,
    amount: u64,
) -> Result<bool, String> {
    let request = ExtendRequest {
        id: id.to_string(),
        number,
        amount,
    };
    match WalletClient::new(env, tenant_id).extend(request).await {
        Ok(extension) => Ok(extension.granted()),
        Err(WalletError::Refused(_)) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Puts the caller's x-ratelimit-* headers on `resp` (none without rate limits).
pub(crate) fn put_rate_headers(resp: &mut Response, headers: &RateHeaders) {
    for (name, value) in headers.pairs() {
        let _ = resp.headers_mut().set(name, &value);
    }
}
