//! The owner's safety tools: lockdown, rotating the data key, backup and
//! restore, erase, and the privacy report. Each is one action the owner
//! takes; the standing warnings every part writes live in the store
//! (`store::warnings`).

pub mod backup;
pub mod erase;
pub mod lockdown;
pub mod privacy;
pub mod rotate;
