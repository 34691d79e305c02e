//! The Workers shell: HTTP routing, D1, KV, upstream fetches, secrets. The only code that awaits
//! I/O; every decision it makes is delegated to `crate::core`. Four layers, arrows pointing down
//! (docs/architecture.md, enforced by tests/layers.rs): `api` → (`plugins` →) `gateway` →
//! `store` → `platform`; `console` sits beside `api`, `cron` is the scheduled entry.

pub mod api;
pub mod console;
pub mod cron;
pub mod gateway;
pub mod platform;
pub mod plugins;
pub mod store;
