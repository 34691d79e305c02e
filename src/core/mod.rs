//! The pure core: no Workers types, everything here is tested with `cargo test`.
