//! Layer 3 of the edge: HTTP in and out. The router (one path table), the responses and the
//! body parser (`http`), and one handler file per route or admin resource, which decodes, calls
//! the layers below (`plugins`, `gateway`, `store`) and encodes.

pub mod admin;
pub mod anthropic;
pub mod http;
pub mod openai;
pub mod router;
pub mod tollgate;

pub use router::serve;
