//! Layer 1 of the edge: where Tollgate's data lives. Every D1 statement and KV key of the data
//! areas below is here, one file per area, each owning its isolate cache; callers get rows and
//! plain functions, never SQL. It uses `platform` (and `core`) only, never `gateway` or `api`.
//!
//! Areas: `keys` (API keys, their KV copies, admin login throttling), `models`, `routes` (extra
//! routes and circuit breakers), `ledger` (reservations, settlement, the stale sweep),
//! `sessions`, `idempotency`, `plugins`, `alerts` (rules as the crossing check reads them) and
//! `pending` (writes kept in KV for replay).

pub mod alerts;
pub mod billing;
pub mod idempotency;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod payments;
pub mod pending;
pub mod plan_requests;
pub mod plugins;
pub mod reports;
pub mod routes;
pub mod sessions;
pub mod tenants;
pub mod wallet;
