//! The owner's safety tools: lockdown, rotating the data key, backup and
//! restore, erase, and the privacy report. Each is one action the owner
//! takes; the standing warnings every part writes live in the store
//! (`store::warnings`).

pub mod backup;
pub mod erase;
pub mod lockdown;
pub mod privacy;
pub mod rotate;

/// "1 session", "2 sessions": a count with a real plural, for the tools'
/// summaries and audit details.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_take_a_real_plural() {
        assert_eq!(super::count(0, "Matter controller"), "0 Matter controllers");
        assert_eq!(super::count(1, "session"), "1 session");
        assert_eq!(super::count(2, "relay link"), "2 relay links");
    }
}
