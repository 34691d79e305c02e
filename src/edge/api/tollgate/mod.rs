//! Tollgate's own tenant routes under `/v1`: usage reports, balance, sessions, redemption.

pub mod balance;
pub mod redeem;
pub mod sessions;
pub mod usage;
