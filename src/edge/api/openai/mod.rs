//! The OpenAI-compatible routes.

pub mod audio;
pub mod chat;
pub mod embeddings;
pub mod images;
pub mod models;
pub mod responses;
pub mod tokens;
