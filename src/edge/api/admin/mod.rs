//! The operator's API under `/admin/*`, one file per resource.

pub mod plugins;
