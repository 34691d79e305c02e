//! Typed calls from the worker to a tenant's wallet through its Durable Object stub.
//!
//! Each call is one `POST` of an [`Envelope`] to the object named by the tenant id. A refusal
//! comes back as `Err(WalletError::Refused)` for the caller to turn into the client's answer
//! (`Refusal::status`, `code`, `retry_after_secs`); storage or transport failures are
//! `WalletError::Failed` (503 for the client: nothing was decided).

use serde::de::DeserializeOwned;
use serde_json::Value;
use worker::js_sys::Reflect;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::DurableObjectNamespace;
use worker::{web_sys, Env};

use super::{Command, Envelope, ExportReport, ReserveAnswer, WalletView, BINDING};
use crate::core::wallet::lease::LeaseAsk;
use crate::core::wallet::{
    BalanceView, Charge, LedgerEntry, LimitsView, Refusal, ReserveRequest, Reserved,
};

/// Why a wallet call did not give a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletError {
    /// The wallet decided no (the rules of `core::wallet`).
    Refused(Refusal),
    /// The object could not be reached or its storage failed; nothing was decided.
    Failed(String),
}

impl std::fmt::Display for WalletError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalletError::Refused(r) => write!(f, "{}", r.message()),
            WalletError::Failed(m) => write!(f, "wallet unavailable: {m}"),
        }
    }
}

/// One tenant's wallet, as seen from the worker.
pub struct WalletClient<'a> {
    env: &'a Env,
    tenant_id: &'a str,
}

impl<'a> WalletClient<'a> {
    pub fn new(env: &'a Env, tenant_id: &'a str) -> Self {
        Self { env, tenant_id }
    }

    async fn call<T: DeserializeOwned>(&self, command: Command) -> Result<T, WalletError> {
        self.start(command)?.answer().await
    }

    /// Sends `command` now (the runtime's fetch to the object is issued before this returns)
    /// without waiting for its answer: [`InFlight::answer`] waits for it.
    pub fn start(&self, command: Command) -> Result<InFlight, WalletError> {
        let failed = |e: String| WalletError::Failed(e);
        let body = serde_json::to_string(&Envelope {
            tenant_id: self.tenant_id.to_string(),
            command,
        })
        .map_err(|e| failed(e.to_string()))?;
        let promise = send(self.env, self.tenant_id, &body).map_err(|e| failed(js_text(&e)))?;
        Ok(InFlight(JsFuture::from(promise)))
    }

    /// A reserve that asks for a lease on the caller's key in the same command.
    pub async fn reserve_leasing(
        &self,
        request: ReserveRequest,
        lease: Option<LeaseAsk>,
    ) -> Result<ReserveAnswer, WalletError> {
        self.call(Command::Reserve { request, lease }).await
    }

    pub async fn reserve(&self, request: ReserveRequest) -> Result<Reserved, WalletError> {
        self.call::<ReserveAnswer>(Command::Reserve {
            request,
            lease: None,
        })
        .await
        .map(|a| a.reserved)
    }

    pub async fn settle(
        &self,
        request_id: &str,
        key_id: &str,
        cost: u64,
        tokens: u64,
        row: serde_json::Map<String, Value>,
    ) -> Result<Charge, WalletError> {
        self.call(Command::Settle {
            request_id: request_id.into(),
            key_id: key_id.into(),
            cost,
            tokens,
            row,
        })
        .await
    }

    /// Grows an open reservation (see `core::wallet::extend`).
    pub async fn extend(
        &self,
        request: crate::core::wallet::extend::ExtendRequest,
    ) -> Result<crate::core::wallet::extend::Extension, WalletError> {
        self.call(Command::Extend { request }).await
    }

    /// [`WalletClient::settle`] with the alert figures before and after the charge (`None` for
    /// a repeated settlement).
    pub async fn settle_observed(
        &self,
        request_id: &str,
        key_id: &str,
        cost: u64,
        tokens: u64,
        row: serde_json::Map<String, Value>,
    ) -> Result<crate::core::wallet::figures::Observed, WalletError> {
        self.call(Command::Settle {
            request_id: request_id.into(),
            key_id: key_id.into(),
            cost,
            tokens,
            row,
        })
        .await
    }

    /// Whether an open reservation was returned.
    pub async fn release(&self, request_id: &str) -> Result<bool, WalletError> {
        let v: Value = self
            .call(Command::Release {
                request_id: request_id.into(),
            })
            .await?;
        Ok(v.get("released").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn adjust(
        &self,
        amount: i64,
        idempotency_key: &str,
        reason: Option<&str>,
    ) -> Result<LedgerEntry, WalletError> {
        self.call(Command::Adjust {
            amount,
            idempotency_key: idempotency_key.into(),
            reason: reason.map(String::from),
        })
        .await
    }

    pub async fn set_plan(&self, allowance: Option<u64>) -> Result<BalanceView, WalletError> {
        self.call(Command::SetPlan { allowance }).await
    }

    pub async fn limits(&self, key_id: Option<&str>) -> Result<LimitsView, WalletError> {
        self.call(Command::GetLimits {
            key_id: key_id.map(String::from),
        })
        .await
    }

    /// `patch` must have been validated (`LimitsPatch::validate`).
    pub async fn set_limits(
        &self,
        key_id: Option<&str>,
        patch: Value,
    ) -> Result<LimitsView, WalletError> {
        self.call(Command::SetLimits {
            key_id: key_id.map(String::from),
            patch,
        })
        .await
    }

    pub async fn set_key_revoked(&self, key_id: &str, revoked: bool) -> Result<(), WalletError> {
        let _: Value = self
            .call(Command::SetKeyRevoked {
                key_id: key_id.into(),
                revoked,
            })
            .await?;
        Ok(())
    }

    pub async fn set_disabled(&self, disabled: bool) -> Result<(), WalletError> {
        let _: Value = self.call(Command::SetDisabled { disabled }).await?;
        Ok(())
    }

    /// The wallet's ledger entries below sequence `before`, newest first, at most `limit`.
    pub async fn ledger(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> Result<crate::core::wallet::ledger::WalletPage, WalletError> {
        self.call(Command::Ledger { before, limit }).await
    }

    pub async fn inspect(&self) -> Result<WalletView, WalletError> {
        self.call(Command::Inspect).await
    }

    pub async fn migrate(&self) -> Result<WalletView, WalletError> {
        self.call(Command::Migrate).await
    }

    pub async fn export(&self) -> Result<ExportReport, WalletError> {
        self.call(Command::Export).await
    }

    // ---- the other money moves (object/money.rs) ----

    /// Reserves a plugin call's price under its call id.
    pub async fn reserve_call(
        &self,
        id: &str,
        key_id: &str,
        amount: u64,
    ) -> Result<Reserved, WalletError> {
        self.call(Command::ReserveCall {
            id: id.into(),
            key_id: key_id.into(),
            amount,
        })
        .await
    }

    /// Charges a plugin call (`cost` 0 for a failed one) and keeps its `plugin_calls` row.
    pub async fn charge_call(
        &self,
        id: &str,
        key_id: &str,
        cost: u64,
        row: serde_json::Map<String, Value>,
    ) -> Result<Charge, WalletError> {
        self.call(Command::ChargeCall {
            id: id.into(),
            key_id: key_id.into(),
            cost,
            row,
        })
        .await
    }

    /// [`WalletClient::set_plan`] applied once per `idempotency_key`.
    pub async fn assign_plan(
        &self,
        allowance: Option<u64>,
        idempotency_key: &str,
    ) -> Result<BalanceView, WalletError> {
        self.call(Command::AssignPlan {
            allowance,
            idempotency_key: idempotency_key.into(),
        })
        .await
    }

    /// The tenant's plan now grants `allowance` from its next period; whether it changed.
    pub async fn set_plan_allowance(&self, allowance: u64) -> Result<bool, WalletError> {
        let v: Value = self.call(Command::SetPlanAllowance { allowance }).await?;
        Ok(v.get("changed").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Test deployments only: moves the wallet's clock `offset_ms` ahead of the real one.
    pub async fn set_clock(&self, offset_ms: i64) -> Result<(), WalletError> {
        let _: Value = self.call(Command::SetClock { offset_ms }).await?;
        Ok(())
    }
}

/// An [`super::Answer`] read straight into the type the command answers with (hot path: no
/// intermediate `serde_json::Value` tree).
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum TypedAnswer<T> {
    Ok(T),
    Refused(Refusal),
}

/// A command sent to a wallet whose answer is still to come.
pub struct InFlight(JsFuture);

impl InFlight {
    /// Waits for the answer.
    pub async fn answer<T: DeserializeOwned>(self) -> Result<T, WalletError> {
        let failed = |e: String| WalletError::Failed(e);
        let response: web_sys::Response = self
            .0
            .await
            .map_err(|e| failed(js_text(&e)))?
            .unchecked_into();
        let text = JsFuture::from(response.text().map_err(|e| failed(js_text(&e)))?)
            .await
            .map_err(|e| failed(js_text(&e)))?
            .as_string()
            .unwrap_or_default();
        let status = response.status();
        if status != 200 {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                .unwrap_or(text);
            return Err(failed(format!("{status}: {message}")));
        }
        match serde_json::from_str::<TypedAnswer<T>>(&text).map_err(|e| failed(e.to_string()))? {
            TypedAnswer::Ok(v) => Ok(v),
            TypedAnswer::Refused(r) => Err(WalletError::Refused(r)),
        }
    }
}

/// Sends one command on the runtime's own objects: `POST` `body` to the wallet named
/// `tenant_id` → the promise of its response. The fetch is issued by this call (a JavaScript
/// promise runs without being awaited), which is what lets a lease's announce travel while the
/// upstream call is made.
///
/// Hot path (two calls per request). workers-rs's `Request`/`Response` wrappers cost here: each
/// conversion reads the `cf` object, the response wrapper takes the body as a stream and `text()`
/// then reads it chunk by chunk through a stream reader (reader, reads, lock release and a
/// microtask per chunk). The runtime's `Response.text()` reads the whole body in one call. Measured
/// with `node bench/profile.mjs` (commit message).
fn send(env: &Env, tenant_id: &str, body: &str) -> Result<worker::js_sys::Promise, JsValue> {
    let binding = Reflect::get(env, &JsValue::from_str(BINDING))?;
    if binding.is_undefined() {
        return Err(JsValue::from_str(&format!("no binding {BINDING}")));
    }
    // The runtime's class has no global constructor to check against (`instanceof`).
    let namespace: DurableObjectNamespace = binding.unchecked_into();
    let stub = namespace.get(&namespace.id_from_name(tenant_id)?)?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    let request = web_sys::Request::new_with_str_and_init("https://wallet/command", &init)?;
    stub.fetch_with_request(&request)
}

/// The text of a JavaScript error (or whatever was thrown).
fn js_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<worker::js_sys::Error>()
                .map(|err| String::from(err.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::{Answer, ReserveAnswer};
    use super::TypedAnswer;
    use crate::core::wallet::{Charge, Refusal, Reserved};

    fn decode<T: serde::de::DeserializeOwned>(answer: &Answer) -> TypedAnswer<T> {
        serde_json::from_str(&serde_json::to_string(answer).unwrap()).unwrap()
    }

    #[test]
    fn the_object_s_answers_read_straight_into_their_types() {
        let charge = Charge {
            cost: 9_007_199_254_740_993, // above 2^53: exact, no float on the way
            reserved: 5,
            allowance_cost: 4,
            beyond_reservation: 3,
            debt: 2,
        };
        let sent = Answer::Ok(serde_json::to_value(charge).unwrap());
        assert!(matches!(decode::<Charge>(&sent), TypedAnswer::Ok(c) if c == charge));

        let reserved = Reserved {
            amount: 7,
            allowance_amount: 1,
            headers: Default::default(),
        };
        let sent = Answer::Ok(
            serde_json::to_value(ReserveAnswer {
                reserved: reserved.clone(),
                lease: None,
            })
            .unwrap(),
        );
        assert!(
            matches!(decode::<ReserveAnswer>(&sent), TypedAnswer::Ok(a) if a.reserved == reserved && a.lease.is_none())
        );

        let refusal = Refusal::Insufficient {
            needed: 10,
            available: 3,
        };
        let sent = Answer::Refused(refusal.clone());
        assert!(matches!(decode::<Charge>(&sent), TypedAnswer::Refused(r) if r == refusal));
    }
}
