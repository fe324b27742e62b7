//! hearth's integration tests: one binary, one harness.

mod adoption;
mod backup;
mod bridge;
mod broker;
mod cli;
mod corpus;
mod crash;
mod demo;
mod discovery;
mod forget;
mod ha_live;
mod harness;
mod homeassistant;
mod http;
mod hub;
mod keys;
mod lifecycle;
mod matter;
mod matter_safety;
mod mqtt;
mod package;
mod relay;
mod relay_tools;
mod store;
mod systemd;
mod tls_scan;
