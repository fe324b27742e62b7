//! Discovery over mDNS: browses the configured service types, classifies
//! what it hears, and proposes devices as pending.
//!
//! Discovery can only propose. It never adopts, never issues a credential,
//! and never changes an adopted device's identity because an advert said so.

pub mod classify;
pub mod pending;
