//! The pure core: no Workers types, everything here is tested with `cargo test`.

pub mod billing;
pub mod error;
pub mod ids;
pub mod keys;
pub mod meter;
pub mod ndjson;
pub mod openai;
pub mod providers;
pub mod routing;
pub mod session;
pub mod sse;
pub mod tokens;
