//! The OpenAI-compatible routes.

pub mod chat;
pub mod models;
pub mod responses;
pub mod tokens;
