//! The pure core: no Workers types, everything here is tested with `cargo test`.

pub mod alerts;
pub mod billing;
pub mod calendar;
pub mod console;
pub mod cors;
pub mod csv;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod inbound;
pub mod jsonschema;
pub mod keys;
pub mod meter;
pub mod models_list;
pub mod multipart;
pub mod ndjson;
pub mod openai;
pub mod outbound;
pub mod plugins;
pub mod providers;
pub mod reports;
pub mod routing;
pub mod session;
pub mod sse;
pub mod tokens;
pub mod wallet;
