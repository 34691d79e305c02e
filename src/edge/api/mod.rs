//! Layer 3 of the edge: HTTP in and out. The router, the responses, and one handler per route,
//! which decodes, calls the layers below (`gateway`, `store`) and encodes.

pub mod admin;
pub mod http;
pub mod openai;
