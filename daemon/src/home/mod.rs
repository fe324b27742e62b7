//! The home: the devices the owner adopted and everything about them.
//! `devices` is the one service that adopts, renames, exposes, forgets and
//! rotates; `vendor` holds everything vendor-specific; `live` is what the
//! devices say about themselves; `canonical` is the one topic scheme every
//! device is seen through; `homeassistant` publishes it to Home Assistant.

pub mod canonical;
pub mod devices;
pub mod homeassistant;
pub mod live;
pub mod vendor;
