//! hearth: a local-first home gateway.
//!
//! The library holds every part of the daemon; `main.rs` only calls
//! [`cli::main`]. See ARCHITECTURE.md for the map, the invariants and the
//! arrows allowed between these folders.

pub mod accounts;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod exit;
pub mod home;
pub mod net;
pub mod relay;
pub mod safety;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod web;
