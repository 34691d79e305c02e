//! The OpenAI-compatible routes.

pub mod chat;
