//! The engine: what every protocol shares and none of them shapes. Files
//! and batches in memory, a batch's life and the fault decisions, reading
//! request bodies and input files, and the fake model. Protocol modules sit
//! on top and write their own wire shapes (a batch's result lines through
//! the [`results::RenderFn`] they give at create).
//!
//! Layers, each using only those before it: `fake`, `faults`, `model` →
//! `body` → `input` → `files`, `status` → `results` → `batch` →
//! `store`.

pub(crate) mod batch;
pub(crate) mod body;
pub mod fake;
pub(crate) mod faults;
pub(crate) mod files;
pub(crate) mod input;
pub(crate) mod model;
pub(crate) mod results;
pub(crate) mod status;
pub(crate) mod store;
