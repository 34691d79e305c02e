//! The OpenAI-compatible routes.

pub mod chat;
pub mod models;
pub mod tokens;
