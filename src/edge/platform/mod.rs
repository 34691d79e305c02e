//! Layer 0 of the edge: the Workers platform, with no Tollgate domain in it: settings (`env`), D1
//! (`d1`), KV (`kv`), upstream fetches (`fetch`), a generic isolate cache (`ttl_cache`), the
//! clock (`clock`) and how the wasm futures schedule their rounds (`microtask`). It imports
//! nothing from the layers above (`store`, `gateway`, `api`).

pub mod clock;
pub mod d1;
pub mod env;
pub mod fetch;
pub mod incoming;
pub mod kv;
pub mod microtask;
pub mod response;
pub mod ttl_cache;
