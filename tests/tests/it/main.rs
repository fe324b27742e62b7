//! hearth's integration tests: one binary, one harness.

mod cli;
mod crash;
mod harness;
mod lifecycle;
mod store;
