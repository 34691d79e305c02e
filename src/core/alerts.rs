//! Threshold alerts: when a rule crosses, when it re-arms, what its webhook says and how the
//! webhook is signed and retried. Pure: the edge (`edge::alerts`) reads the observations from D1
//! and does the sending.
//!
//! A rule is *armed* (`fired = None`) or *fired* (`fired = Some(episode)`). An armed rule whose
//! condition holds fires once and records its episode; it fires again only after it re-arms:
//! for monthly rules when the month rolls over (the episode is the month, `2026-11`), for
//! `balance_below` when the balance is back at or above the threshold (a top-up).

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;

use crate::core::calendar::{format_time, Bucket};
use crate::core::error::GatewayError;
use crate::core::keys::constant_time_eq;
use crate::core::outbound::{self, check_destination, SecretUse};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Prompt + completion tokens of the current UTC month above the threshold.
    MonthlyTokensAbove,
    /// Cost (micro-units) of the current UTC month above the threshold.
    MonthlySpendAbove,
    /// Settled balance (spendable + reserved, micro-units) below the threshold.
    BalanceBelow,
}

impl AlertKind {
    pub const ALL: [&'static str; 3] = [
        "monthly_tokens_above",
        "monthly_spend_above",
        "balance_below",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MonthlyTokensAbove => "monthly_tokens_above",
            AlertKind::MonthlySpendAbove => "monthly_spend_above",
            AlertKind::BalanceBelow => "balance_below",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        match s {
            "monthly_tokens_above" => Some(AlertKind::MonthlyTokensAbove),
            "monthly_spend_above" => Some(AlertKind::MonthlySpendAbove),
            "balance_below" => Some(AlertKind::BalanceBelow),
            _ => None,
        }
    }

    /// The unit of the threshold and the observed value.
    pub fn unit(self) -> &'static str {
        match self {
            AlertKind::MonthlyTokensAbove => "tokens",
            AlertKind::MonthlySpendAbove | AlertKind::BalanceBelow => "micro-units",
        }
    }
}

/// A tenant's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The current UTC month, `2026-11`.
    pub month: String,
    /// Prompt + completion tokens billed this month.
    pub month_tokens: u64,
    /// Micro-units charged this month.
    pub month_cost: u64,
    /// Spendable balance plus credit reserved by requests in flight.
    pub balance: u64,
}

impl Observation {
    /// The month label of a time.
    pub fn month_of(now_ms: u64) -> String {
        Bucket::Month.label(now_ms / crate::core::calendar::DAY_MS)
    }

    /// The observed value a rule of `kind` compares.
    pub fn value(&self, kind: AlertKind) -> u64 {
        match kind {
            AlertKind::MonthlyTokensAbove => self.month_tokens,
            AlertKind::MonthlySpendAbove => self.month_cost,
            AlertKind::BalanceBelow => self.balance,
        }
    }
}

/// The episode a fired `balance_below` rule records.
pub const BALANCE_EPISODE: &str = "below";

/// What to do with a rule after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The condition has just been crossed: send one webhook and record `episode`.
    Fire { episode: String },
    /// The condition cleared or its period rolled over: arm again.
    Rearm,
    /// Nothing changed.
    Keep,
}

/// Decides a rule's next state. Monthly rules compare `value > threshold`; `balance_below`
/// compares `balance < threshold`.
pub fn evaluate(
    kind: AlertKind,
    threshold: u64,
    fired: Option<&str>,
    obs: &Observation,
) -> Decision {
    let value = obs.value(kind);
    let (holds, episode) = match kind {
        AlertKind::MonthlyTokensAbove | AlertKind::MonthlySpendAbove => {
            (value > threshold, obs.month.as_str())
        }
        AlertKind::BalanceBelow => (value < threshold, BALANCE_EPISODE),
    };
    match (holds, fired) {
        (true, Some(done)) if done == episode => Decision::Keep,
        (true, _) => Decision::Fire {
            episode: episode.to_string(),
        },
        // A monthly rule fired for this month stays fired until the month rolls over, even when
        // a figure lags below the threshold (with wallets the scheduled check reads D1's exported
        // rows, which trail the wallet's settlements by up to a few seconds): re-arming it here
        // would send the same month's crossing twice.
        (false, Some(done)) if kind != AlertKind::BalanceBelow && done == episode => Decision::Keep,
        (false, Some(_)) => Decision::Rearm,
        (false, None) => Decision::Keep,
    }
}

/// A rule as the payload describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub kind: AlertKind,
    pub threshold: u64,
}

/// The webhook body of a crossing, as sent (and signed) byte for byte.
pub fn payload(event_id: &str, rule: &RuleInfo<'_>, obs: &Observation, now_ms: u64) -> String {
    let value = obs.value(rule.kind);
    let (relation, period) = match rule.kind {
        AlertKind::BalanceBelow => ("below", None),
        _ => ("above", Some(obs.month.as_str())),
    };
    let message = format!(
        "Tenant {} is {relation} its alert threshold: {} is {value} {unit} (threshold {} {unit}){}.",
        rule.tenant_id,
        match rule.kind {
            AlertKind::MonthlyTokensAbove => "tokens this month",
            AlertKind::MonthlySpendAbove => "spend this month",
            AlertKind::BalanceBelow => "the balance",
        },
        rule.threshold,
        period.map(|p| format!(", month {p} UTC")).unwrap_or_default(),
        unit = rule.kind.unit(),
    );
    json!({
        "id": event_id,
        "object": "event",
        "type": "alert.triggered",
        "created_at": now_ms,
        "created": format_time(now_ms),
        "tenant_id": rule.tenant_id,
        "rule": {
            "id": rule.id,
            "kind": rule.kind.as_str(),
            "threshold": rule.threshold,
            "unit": rule.kind.unit(),
        },
        "value": value,
        "period": period,
        "message": message,
    })
    .to_string()
}

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "X-Tollgate-Signature";

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn mac(secret: &[u8], timestamp_s: u64, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

/// The `X-Tollgate-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
/// The timestamp is signed with the body so a captured request cannot be replayed later.
pub fn signature_header(secret: &[u8], timestamp_s: u64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp_s, body)
        .map(|m| hex(&m))
        .unwrap_or_default();
    format!("t={timestamp_s},v1={digest}")
}

/// Checks a signature header as a receiver should: a `v1` that matches (constant time) and a
/// timestamp within `tolerance_s` of `now_s`.
pub fn verify_signature(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> bool {
    let mut timestamp = None;
    let mut candidates = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => candidates.push(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if t.abs_diff(now_s) > tolerance_s {
        return false;
    }
    let Some(expected) = mac(secret, t, body).map(|m| hex(&m)) else {
        return false;
    };
    candidates
        .iter()
        .any(|c| constant_time_eq(c.as_bytes(), expected.as_bytes()))
}

/// Attempts made before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// The wait before the next attempt after `attempts` failed ones: 1 min, 5 min, 30 min, 2 h,
/// 6 h; `None` after [`MAX_ATTEMPTS`] (the delivery is marked failed).
pub fn retry_delay_ms(attempts: u32) -> Option<u64> {
    const MINUTE: u64 = 60_000;
    match attempts {
        0 => Some(0),
        1 => Some(MINUTE),
        2 => Some(5 * MINUTE),
        3 => Some(30 * MINUTE),
        4 => Some(120 * MINUTE),
        5 => Some(360 * MINUTE),
        _ => None,
    }
}

/// Validates a rule's threshold (a non-negative integer that JavaScript numbers hold exactly).
pub fn check_threshold(threshold: i64) -> Result<u64, GatewayError> {
    const MAX_SAFE: i64 = (1 << 53) - 1;
    if !(0..=MAX_SAFE).contains(&threshold) {
        return Err(GatewayError::invalid_param(
            "threshold",
            format!("`threshold` must be an integer from 0 to {MAX_SAFE}."),
        ));
    }
    Ok(threshold as u64)
}

/// Validates a webhook URL: at most 2048 bytes, no whitespace, and a destination the gateway
/// may send to (`core::outbound`: public https hosts only unless `allow_private`, the dev
/// setting `ALLOW_PRIVATE_UPSTREAMS`).
pub fn check_webhook_url(url: &str, allow_private: bool) -> Result<(), GatewayError> {
    let invalid =
        |why: String| GatewayError::invalid_param("webhook_url", format!("`webhook_url` {why}."));
    if url.len() > 2048 || url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "must be a URL of at most 2048 characters without spaces".to_string(),
        ));
    }
    check_destination(url, allow_private).map_err(invalid)
}

/// Validates the NAME of the Worker secret that holds a signing secret (`core::outbound`:
/// prefix `WEBHOOK_` or listed in `WEBHOOK_SECRETS`, never one of the gateway's own secrets).
pub fn check_secret_name(name: &str, allowlist: Option<&str>) -> Result<(), GatewayError> {
    outbound::check_secret_name(name, SecretUse::Webhook, allowlist).map_err(|why| {
        GatewayError::invalid_param("signing_secret", format!("`signing_secret` {why}."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(month: &str, tokens: u64, cost: u64, balance: u64) -> Observation {
        Observation {
            month: month.into(),
            month_tokens: tokens,
            month_cost: cost,
            balance,
        }
    }

    #[test]
    fn monthly_rule_fires_once_per_month() {
        let k = AlertKind::MonthlyTokensAbove;
        // Below or at the threshold: nothing.
        assert_eq!(
            evaluate(k, 500_000, None, &obs("2026-11", 500_000, 0, 0)),
            Decision::Keep
        );
        // Crossing: fire, episode = month.
        let fire = evaluate(k, 500_000, None, &obs("2026-11", 500_001, 0, 0));
        assert_eq!(
            fire,
            Decision::Fire {
                episode: "2026-11".into()
            }
        );
        // Later requests in the same month: nothing more.
        assert_eq!(
            evaluate(k, 500_000, Some("2026-11"), &obs("2026-11", 900_000, 0, 0)),
            Decision::Keep
        );
        // The month rolls over: the new month starts below, re-arm.
        assert_eq!(
            evaluate(k, 500_000, Some("2026-11"), &obs("2026-12", 10, 0, 0)),
            Decision::Rearm
        );
        // A figure of the fired month that lags below the threshold (exported rows trailing the
        // wallet) does not re-arm it: the month's crossing is sent once.
        assert_eq!(
            evaluate(k, 500_000, Some("2026-11"), &obs("2026-11", 400_000, 0, 0)),
            Decision::Keep
        );
        assert_eq!(
            evaluate(
                AlertKind::MonthlySpendAbove,
                100,
                Some("2026-11"),
                &obs("2026-11", 0, 50, 0)
            ),
            Decision::Keep
        );
        // Or it crosses again in the new month before any check saw it below: fire again.
        assert_eq!(
            evaluate(k, 500_000, Some("2026-11"), &obs("2026-12", 600_000, 0, 0)),
            Decision::Fire {
                episode: "2026-12".into()
            }
        );
    }

    #[test]
    fn spend_rule_compares_cost() {
        let k = AlertKind::MonthlySpendAbove;
        assert_eq!(
            evaluate(k, 100, None, &obs("2026-11", 10_000, 100, 0)),
            Decision::Keep
        );
        assert!(matches!(
            evaluate(k, 100, None, &obs("2026-11", 0, 101, 0)),
            Decision::Fire { .. }
        ));
    }

    #[test]
    fn balance_rule_rearms_on_top_up() {
        let k = AlertKind::BalanceBelow;
        assert_eq!(
            evaluate(k, 1000, None, &obs("2026-11", 0, 0, 1000)),
            Decision::Keep
        );
        assert_eq!(
            evaluate(k, 1000, None, &obs("2026-11", 0, 0, 999)),
            Decision::Fire {
                episode: BALANCE_EPISODE.into()
            }
        );
        assert_eq!(
            evaluate(k, 1000, Some("below"), &obs("2026-12", 0, 0, 5)),
            Decision::Keep
        );
        assert_eq!(
            evaluate(k, 1000, Some("below"), &obs("2026-12", 0, 0, 1000)),
            Decision::Rearm
        );
        assert!(matches!(
            evaluate(k, 1000, None, &obs("2026-12", 0, 0, 0)),
            Decision::Fire { .. }
        ));
    }

    #[test]
    fn signature_round_trip_and_tampering() {
        let secret = b"whsec_test";
        let body = br#"{"id":"alr_1-1"}"#;
        let header = signature_header(secret, 1_764_288_000, body);
        assert!(header.starts_with("t=1764288000,v1="));
        assert_eq!(header.len(), "t=1764288000,v1=".len() + 64);
        assert!(verify_signature(&header, secret, body, 1_764_288_100, 300));
        // Wrong secret, changed body, changed timestamp, too old: refused.
        assert!(!verify_signature(
            &header,
            b"other",
            body,
            1_764_288_000,
            300
        ));
        assert!(!verify_signature(
            &header,
            secret,
            br#"{"id":"alr_1-2"}"#,
            1_764_288_000,
            300
        ));
        let moved = header.replace("t=1764288000", "t=1764288001");
        assert!(!verify_signature(&moved, secret, body, 1_764_288_000, 300));
        assert!(!verify_signature(&header, secret, body, 1_764_289_000, 300));
        assert!(!verify_signature("v1=abc", secret, body, 0, 300));
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // HMAC-SHA256 test vector (RFC 4231 case 2): key "Jefe", data "what do ya want for nothing?".
        // With t = "what do ya want for nothing" split as "<t>.<body>" it cannot be expressed, so
        // check the construction directly: the MAC input is "<t>.<body>".
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"12.what do ya want for nothing?");
        let expected = hex(&m.finalize().into_bytes());
        assert_eq!(
            signature_header(b"Jefe", 12, b"what do ya want for nothing?"),
            format!("t=12,v1={expected}")
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff",);
    }

    #[test]
    fn payload_is_json_with_the_crossing() {
        let rule = RuleInfo {
            id: "alr_1",
            tenant_id: "ten_1",
            kind: AlertKind::MonthlyTokensAbove,
            threshold: 500_000,
        };
        let body = payload(
            "alr_1-1",
            &rule,
            &obs("2026-11", 500_010, 7, 9),
            1_764_288_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "alert.triggered");
        assert_eq!(v["id"], "alr_1-1");
        assert_eq!(v["value"], 500_010);
        assert_eq!(v["period"], "2026-11");
        assert_eq!(v["rule"]["kind"], "monthly_tokens_above");
        assert_eq!(v["rule"]["threshold"], 500_000);
        assert_eq!(v["created"], "2025-11-28T00:00:00.000Z");
        let bal = payload(
            "alr_2-1",
            &RuleInfo {
                kind: AlertKind::BalanceBelow,
                threshold: 10,
                ..rule
            },
            &obs("2026-11", 0, 0, 3),
            0,
        );
        let v: serde_json::Value = serde_json::from_str(&bal).unwrap();
        assert_eq!(v["value"], 3);
        assert_eq!(v["period"], serde_json::Value::Null);
    }

    #[test]
    fn backoff_then_give_up() {
        let delays: Vec<_> = (1..=MAX_ATTEMPTS).map(retry_delay_ms).collect();
        assert_eq!(delays[0], Some(60_000));
        assert!(delays.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            _ => false,
        }));
        assert_eq!(retry_delay_ms(MAX_ATTEMPTS), None);
    }

    #[test]
    fn validates_inputs() {
        assert!(check_threshold(-1).is_err());
        assert_eq!(check_threshold(500_000).unwrap(), 500_000);
        assert!(check_webhook_url("ftp://x", true).is_err());
        assert!(check_webhook_url("https://", false).is_err());
        assert!(check_webhook_url("https://hooks.example.com/a b", false).is_err());
        assert!(check_webhook_url("https://hooks.example.com/a", false).is_ok());
        assert!(check_webhook_url("http://hooks.example.com/a", false).is_err());
        assert!(check_webhook_url("https://127.0.0.1:9000/hook", false).is_err());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(check_secret_name("WEBHOOK_SECRET", None).is_ok());
        assert!(check_secret_name("whsec_abc-def", None).is_err());
        assert!(check_secret_name("KEY_PEPPER", Some("KEY_PEPPER")).is_err());
        assert!(check_secret_name("SIGNING", Some("SIGNING")).is_ok());
        assert_eq!(
            AlertKind::parse("balance_below"),
            Some(AlertKind::BalanceBelow)
        );
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k).unwrap().as_str(), k);
        }
    }
}
