//! The D1 side of `Idempotency-Key` (rules in [`crate::core::idempotency`]).

use serde::Deserialize;
use serde_json::Value;
use worker::D1Database;

use crate::core::error::GatewayError;
use crate::core::idempotency::{
    body_digest, decide, validate_key, KeyRecord, Seen, MAX_STORED_RESPONSE, TTL_MS,
};
use crate::edge::platform::d1 as db;

/// A key claimed by the request in flight.
#[derive(Debug, Clone)]
pub struct ClaimedKey {
    pub tenant_id: String,
    pub key: String,
    pub request_id: String,
}

/// The outcome of [`claim`].
pub enum Claim {
    /// No `Idempotency-Key` header: run the request.
    None,
    /// The key is ours now: run the request, then [`complete`] or [`release`] it.
    Fresh(ClaimedKey),
    /// The key's first request completed: answer with its stored JSON body (nothing is
    /// charged), marked `idempotent-replayed` and with the first request's id.
    Replay {
        http_status: u16,
        body: String,
        request_id: String,
    },
}

#[derive(Deserialize)]
struct Row {
    body_digest: String,
    request_id: String,
    state: String,
    stream: u8,
    http_status: Option<u16>,
    response: Option<String>,
    created_at: u64,
}

/// Claims the `Idempotency-Key` header's value `header` (none: [`Claim::None`]) for `request_id` (one conditional insert),
/// or answers from the key's record.
pub async fn claim(
    db: &D1Database,
    header: Option<String>,
    tenant_id: &str,
    request_id: &str,
    body: &[u8],
    stream: bool,
    now: u64,
) -> Result<Claim, GatewayError> {
    let Some(header) = header else {
        return Ok(Claim::None);
    };
    let key = validate_key(header.trim())?.to_string();
    let digest = body_digest(body);
    for _ in 0..2 {
        let inserted: Option<Value> = db::first(
            db,
            "INSERT INTO idempotency_keys (tenant_id, key, body_digest, request_id, state, stream,
               created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)
             ON CONFLICT (tenant_id, key) DO NOTHING RETURNING key",
            &[
                tenant_id.into(),
                key.as_str().into(),
                digest.as_str().into(),
                request_id.into(),
                i64::from(stream).into(),
                now.into(),
            ],
        )
        .await?;
        if inserted.is_some() {
            return Ok(Claim::Fresh(ClaimedKey {
                tenant_id: tenant_id.to_string(),
                key,
                request_id: request_id.to_string(),
            }));
        }
        let row: Option<Row> = db::first(
            db,
            "SELECT body_digest, request_id, state, stream, http_status, response, created_at
             FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2",
            &[tenant_id.into(), key.as_str().into()],
        )
        .await?;
        // Released between our insert and our read: try the insert again.
        let Some(row) = row else { continue };
        let record = KeyRecord {
            body_digest: row.body_digest,
            request_id: row.request_id,
            done: row.state == "done",
            stream: row.stream != 0,
            http_status: row.http_status,
            response: row.response,
            created_at: row.created_at,
        };
        match decide(&record, &digest, now) {
            Seen::Expired => {
                db::run(
                    db,
                    "DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2
                       AND created_at = ?3",
                    &[
                        tenant_id.into(),
                        key.as_str().into(),
                        record.created_at.into(),
                    ],
                )
                .await?;
            }
            Seen::Replay { http_status, body } => {
                return Ok(Claim::Replay {
                    http_status,
                    body,
                    request_id: record.request_id,
                });
            }
            Seen::Refuse(err) => return Err(err),
        }
    }
    Err(GatewayError::new(
        crate::core::error::ErrorKind::Conflict,
        "A request with this Idempotency-Key is starting concurrently; retry later.",
    )
    .with_code("idempotency_key_in_progress"))
}

/// Marks the key done. A plain response body is kept for replay when it is small enough.
pub async fn complete(
    db: &D1Database,
    key: &ClaimedKey,
    http_status: u16,
    body: Option<&[u8]>,
) -> Result<(), GatewayError> {
    let stored = body
        .filter(|b| b.len() <= MAX_STORED_RESPONSE)
        .and_then(|b| std::str::from_utf8(b).ok());
    db::run(
        db,
        "UPDATE idempotency_keys SET state = 'done', http_status = ?4, response = ?5
         WHERE tenant_id = ?1 AND key = ?2 AND request_id = ?3",
        &[
            key.tenant_id.as_str().into(),
            key.key.as_str().into(),
            key.request_id.as_str().into(),
            i64::from(http_status).into(),
            stored.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Forgets the key (its request was not charged), so a retry runs normally.
pub async fn release(db: &D1Database, key: &ClaimedKey) -> Result<(), GatewayError> {
    db::run(
        db,
        "DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2 AND request_id = ?3",
        &[
            key.tenant_id.as_str().into(),
            key.key.as_str().into(),
            key.request_id.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes records older than the 24-hour window (for a scheduled job); returns how many.
pub async fn purge_idempotency_keys(db: &D1Database, now: u64) -> Result<usize, GatewayError> {
    let deleted: Vec<Value> = db::all(
        db,
        "DELETE FROM idempotency_keys WHERE created_at <= ?1 RETURNING key",
        &[now.saturating_sub(TTL_MS).into()],
    )
    .await?;
    Ok(deleted.len())
}

/// The lease of `Idempotency-Key`s: a key still `pending` since before `cutoff` whose request
/// holds no reservation is either done (its request has a usage row: marked done, so a retry is
/// refused as used, unless that request was charged nothing and failed: then released) or dead
/// (no usage row: released, so a retry runs). Returns how many keys it changed.
pub async fn release_stale_idempotency_keys(
    db: &D1Database,
    cutoff: u64,
) -> Result<usize, GatewayError> {
    let stale = "i.state = 'pending' AND i.created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = i.request_id)";
    let results = db::batch(
        db,
        vec![
            db::statement(
                db,
                &format!(
                    "UPDATE idempotency_keys AS i SET state = 'done',
                       http_status = (SELECT u.http_status FROM usage u WHERE u.request_id = i.request_id)
                     WHERE {stale} AND EXISTS (SELECT 1 FROM usage u WHERE u.request_id = i.request_id
                       AND NOT (u.cost = 0 AND u.status = 'upstream_error'))
                     RETURNING key"
                ),
                &[cutoff.into()],
            )?,
            db::statement(
                db,
                &format!("DELETE FROM idempotency_keys AS i WHERE {stale} RETURNING key"),
                &[cutoff.into()],
            )?,
        ],
    )
    .await?;
    Ok(results
        .iter()
        .map(|r| {
            r.results::<serde_json::Value>()
                .map_or(0, |rows| rows.len())
        })
        .sum())
}
