//! hearth: a local-first home gateway.
//!
//! The library holds every part of the daemon; `main.rs` only calls
//! [`cli::main`]. See ARCHITECTURE.md for the map and the invariants.

pub mod admin;
pub mod backup;
pub mod broker;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod discovery;
pub mod erase;
pub mod exit;
pub mod homeassistant;
pub mod keys;
pub mod lockdown;
pub mod metrics;
pub mod pki;
pub mod privacy;
pub mod protection;
pub mod relay;
pub mod secret;
pub mod sim;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod vendor;
pub mod web;
