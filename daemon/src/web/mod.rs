//! The LAN dashboard: HTTPS, owner accounts, the JSON API and the embedded
//! pages.

pub mod assets;
pub mod password;
pub mod throttle;
pub mod totp;
