//! The owner password policy: long enough, not absurdly long, not a common
//! password (even dressed up with digits, symbols or look-alike characters),
//! not predictable, not the username.
//!
//! It checks only; hashing lives in `crate::store::secret`. Errors say what to do
//! and never echo the password.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Fewest characters (not bytes) a password may have: twelve, the minimum
/// OWASP ASVS 4.0 (2.1.1) sets, since this one password guards the whole
/// home when two-factor is off.
pub const MIN_CHARS: usize = 12;
/// Most bytes a password may have: argon2 would take more, but nobody types
/// more, and it bounds the work spent here.
pub const MAX_BYTES: usize = 1024;

/// The most common leaked passwords and keyboard patterns, lowercase, one a
/// line. Variants with digits or symbols around a listed word are caught by
/// the rule, so the list holds mostly the bare words.
const COMMON: &str = include_str!("common-passwords.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the password is too short: use at least {MIN_CHARS} characters; \
         a few unrelated words make a long password that is easy to remember"
    )]
    TooShort,
    #[error("the password is too long: use at most {MAX_BYTES} bytes")]
    TooLong,
    #[error("the password must not be your username; choose something else")]
    Username,
    #[error(
        "this is one of the most common passwords, even with digits or symbols added; \
         choose something others would not guess, such as a few unrelated words"
    )]
    Common,
    #[error(
        "a repeated character, a repeated pattern or a simple sequence is easy to guess; \
         choose something less predictable, such as a few unrelated words"
    )]
    Predictable,
}

/// Checks a new owner password against the policy.
pub fn check(password: &str, username: &str) -> Result<(), PolicyError> {
    if password.len() > MAX_BYTES {
        return Err(PolicyError::TooLong);
    }
    if password.chars().count() < MIN_CHARS {
        return Err(PolicyError::TooShort);
    }
    let lower = password.to_lowercase();
    if is_username(&lower, username) {
        return Err(PolicyError::Username);
    }
    if is_common(&lower) {
        return Err(PolicyError::Common);
    }
    let core = core(&lower);
    if is_predictable(&lower) || (core.chars().count() >= 6 && is_predictable(core)) {
        return Err(PolicyError::Predictable);
    }
    Ok(())
}

struct List {
    words: HashSet<&'static str>,
    /// Characters in the longest entry: no longer middle can match.
    longest: usize,
}

fn list() -> &'static List {
    static LIST: OnceLock<List> = OnceLock::new();
    LIST.get_or_init(|| {
        let words: HashSet<&'static str> = COMMON.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let longest = words.iter().map(|w| w.chars().count()).max().unwrap_or(0);
        List { words, longest }
    })
}

/// Whether `lower` is some middle part, at most `max_chars` long, with only
/// digits and symbols (anything but letters) before and after it, for which
/// `hit` holds. The whole string is one such middle.
fn decorated(lower: &str, max_chars: usize, mut hit: impl FnMut(&str) -> bool) -> bool {
    let bounds: Vec<usize> = lower
        .char_indices()
        .map(|(i, _)| i)
        .chain([lower.len()])
        .collect();
    let n = bounds.len() - 1;
    let lead = lower.chars().take_while(|c| !c.is_alphabetic()).count();
    let trail = lower.chars().rev().take_while(|c| !c.is_alphabetic()).count();
    for start in 0..=lead.min(n) {
        let first_end = (start + 1).max(n.saturating_sub(trail));
        let last_end = n.min(start + max_chars);
        for end in first_end..=last_end {
            if hit(&lower[bounds[start]..bounds[end]]) {
                return true;
            }
        }
    }
    false
}

/// The part between the leading and trailing non-letters; the whole string
/// when it holds no letter.
fn core(lower: &str) -> &str {
    let trimmed = lower.trim_matches(|c: char| !c.is_alphabetic());
    if trimmed.is_empty() { lower } else { trimmed }
}

fn is_username(lower: &str, username: &str) -> bool {
    let user = username.trim().to_lowercase();
    if user.is_empty() {
        return false;
    }
    // An e-mail address as username: its local part counts too.
    let local = user.split('@').next().filter(|l| !l.is_empty()).unwrap_or(&user);
    decorated(lower, user.chars().count(), |m| m == user || m == local)
}

fn is_common(lower: &str) -> bool {
    let list = list();
    let listed = |m: &str| {
        list.words.contains(m)
            || unleet(m, 'i').is_some_and(|u| list.words.contains(u.as_str()))
            || unleet(m, 'l').is_some_and(|u| list.words.contains(u.as_str()))
    };
    if decorated(lower, list.longest, listed) {
        return true;
    }
    // A listed word said twice or more: "passwordpassword".
    [lower, core(lower)]
        .into_iter()
        .any(|s| repeated_unit(s).is_some_and(&listed))
}

/// `text` with look-alike digits and symbols read as letters (`p@ssw0rd`),
/// `one` standing for what `1` becomes; `None` when nothing changes.
fn unleet(text: &str, one: char) -> Option<String> {
    let mut changed = false;
    let out = text
        .chars()
        .map(|c| {
            let letter = match c {
                '@' | '4' => 'a',
                '8' => 'b',
                '3' => 'e',
                '1' | '|' => one,
                '!' => 'i',
                '0' => 'o',
                '$' | '5' => 's',
                '7' | '+' => 't',
                c => return c,
            };
            changed = true;
            letter
        })
        .collect();
    changed.then_some(out)
}

/// The shortest unit that `text` is two or more copies of.
fn repeated_unit(text: &str) -> Option<&str> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    (1..=n / 2)
        .filter(|p| n.is_multiple_of(*p))
        .find(|&p| chars.chunks(p).all(|chunk| chunk == &chars[..p]))
        .map(|p| {
            let end = text.char_indices().nth(p).map_or(text.len(), |(i, _)| i);
            &text[..end]
        })
}

/// A short pattern repeated (one character, or up to four: "abababab"), or a
/// run ascending or descending along the alphabet, the digits (which wrap:
/// "123456789012") or a keyboard row.
fn is_predictable(text: &str) -> bool {
    if repeated_unit(text).is_some_and(|unit| unit.chars().count() <= 4) {
        return true;
    }
    let chars: Vec<char> = text.chars().collect();
    let pairs = || chars.windows(2).map(|w| (w[0], w[1]));
    chars.len() >= 2 && (pairs().all(|(a, b)| steps(a, b)) || pairs().all(|(a, b)| steps(b, a)))
}

/// Whether `b` comes right after `a` in a sequence people type.
fn steps(a: char, b: char) -> bool {
    const SEQUENCES: [&str; 5] = [
        "abcdefghijklmnopqrstuvwxyz",
        "01234567890",
        "qwertyuiop",
        "asdfghjkl",
        "zxcvbnm",
    ];
    SEQUENCES.iter().any(|s| {
        s.as_bytes()
            .windows(2)
            .any(|w| char::from(w[0]) == a && char::from(w[1]) == b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(table: &[(&str, &str, Result<(), PolicyError>)]) {
        for (password, username, expect) in table {
            assert_eq!(
                check(password, username),
                *expect,
                "{password:?} for {username:?}"
            );
        }
    }

    #[test]
    fn good_passphrases_pass() {
        check_all(&[
            ("correct horse battery staple", "owner@example.org", Ok(())),
            ("Tulip-Anvil-Moss-Harbour-9", "ann", Ok(())),
            ("my cat eats only on tuesdays", "owner", Ok(())),
            ("pässwörter sind lang", "owner", Ok(())),
            ("9f3k!Qz7-mVw2", "owner", Ok(())),
            // A listed word inside a longer phrase is fine.
            ("password is not my thing", "owner", Ok(())),
            ("dragon fruit at the market", "owner", Ok(())),
        ]);
    }

    #[test]
    fn length_counts_characters_and_bounds_bytes() {
        check_all(&[
            ("", "owner", Err(PolicyError::TooShort)),
            ("Tulip-Anvil", "owner", Err(PolicyError::TooShort)),
            ("Tulip-Anvil!", "owner", Ok(())),
            // Eleven two-byte characters are 22 bytes but still too few.
            ("ééééééééééé", "owner", Err(PolicyError::TooShort)),
            ("éàüöçñßøåæœ", "owner", Err(PolicyError::TooShort)),
            ("éàüöçñßøåæœî", "owner", Ok(())),
        ]);
        let mut long = "correct horse battery staple ".repeat(40);
        long.truncate(MAX_BYTES);
        assert_eq!(check(&long, "owner"), Ok(()));
        long.push('x');
        assert_eq!(check(&long, "owner"), Err(PolicyError::TooLong));
        // Bytes, not characters: 513 two-byte characters are 1,026 bytes.
        assert_eq!(check(&"é".repeat(513), "owner"), Err(PolicyError::TooLong));
    }

    #[test]
    fn the_username_is_refused() {
        check_all(&[
            (
                "owner@example.org",
                "owner@example.org",
                Err(PolicyError::Username),
            ),
            (
                "Owner@Example.ORG",
                " owner@example.org ",
                Err(PolicyError::Username),
            ),
            (
                "owner@example.org!!",
                "owner@example.org",
                Err(PolicyError::Username),
            ),
            (
                "2024magnificent",
                "magnificent@example.org",
                Err(PolicyError::Username),
            ),
            ("MAGNIFICENT#2024", "magnificent", Err(PolicyError::Username)),
            ("magnificent123456", "Magnificent", Err(PolicyError::Username)),
            ("magnificent heights", "magnificent", Ok(())),
            ("correct horse battery staple", "", Ok(())),
        ]);
    }

    #[test]
    fn common_passwords_are_refused() {
        check_all(&[
            ("password1234", "owner", Err(PolicyError::Common)),
            ("PASSWORD1234", "owner", Err(PolicyError::Common)),
            ("qwertyuiop12", "owner", Err(PolicyError::Common)),
            ("iloveyou1234", "owner", Err(PolicyError::Common)),
            ("IloveYou1234", "owner", Err(PolicyError::Common)),
            ("123456789012", "owner", Err(PolicyError::Common)),
            // Decorated with digits and symbols on either side.
            ("!!sunshine2024", "owner", Err(PolicyError::Common)),
            ("2024-Football!", "owner", Err(PolicyError::Common)),
            ("trustno1trustno1", "owner", Err(PolicyError::Common)),
            ("123456!!!!!!", "owner", Err(PolicyError::Common)),
            ("1qaz2wsx3edc", "owner", Err(PolicyError::Common)),
            // Look-alike characters.
            ("P@ssw0rd2024!", "owner", Err(PolicyError::Common)),
            ("L3tm31n!!!!!", "owner", Err(PolicyError::Common)),
            // Said twice.
            ("passwordpassword", "owner", Err(PolicyError::Common)),
            ("monkeymonkey1", "owner", Err(PolicyError::Common)),
            // A listed word with letters added is no longer the listed word.
            ("passwordxkcdzq", "owner", Ok(())),
        ]);
    }

    #[test]
    fn predictable_passwords_are_refused() {
        check_all(&[
            ("aaaaaaaaaaaa", "owner", Err(PolicyError::Common)),
            ("zzzzzzzzzzzz", "owner", Err(PolicyError::Predictable)),
            ("            ", "owner", Err(PolicyError::Predictable)),
            ("ZZZZZZZZZZZZZZZZ", "owner", Err(PolicyError::Predictable)),
            ("bcdefghijklm", "owner", Err(PolicyError::Predictable)),
            ("MLKJIHGFEDCB", "owner", Err(PolicyError::Predictable)),
            ("234567890123", "owner", Err(PolicyError::Predictable)),
            // It holds "987654", so the list catches it first.
            ("321098765432", "owner", Err(PolicyError::Common)),
            ("xyxyxyxyxyxy", "owner", Err(PolicyError::Predictable)),
            ("wxyzwxyzwxyz", "owner", Err(PolicyError::Predictable)),
            // A sequence or repeat of letters with digits tacked on.
            ("ghijklmnop!!", "owner", Err(PolicyError::Predictable)),
            ("tttttttt2024", "owner", Err(PolicyError::Predictable)),
            // Short letter runs inside something random are fine.
            ("xy83750192846", "owner", Ok(())),
        ]);
    }

    #[test]
    fn the_bundled_list_is_well_formed() {
        let lines: Vec<&str> = COMMON.lines().collect();
        assert!((300..=500).contains(&lines.len()), "{}", lines.len());
        let distinct: HashSet<&str> = lines.iter().copied().collect();
        assert_eq!(distinct.len(), lines.len(), "duplicates");
        for line in &lines {
            assert!(!line.is_empty() && line.trim() == *line, "{line:?}");
            assert_eq!(line.to_lowercase(), *line);
        }
        for needed in ["password1234", "qwertyuiop12", "123456789012", "iloveyou1234"] {
            assert!(distinct.contains(needed), "{needed}");
        }
        assert_eq!(list().words.len(), lines.len());
    }

    #[test]
    fn runs_wrap_through_the_digits() {
        assert!(is_predictable("321098765432"));
        assert!(is_predictable("890123"));
        assert!(is_predictable("poiuytrewq"));
        assert!(!is_predictable("qwertyasdfgh"));
        assert!(!is_predictable("abcdefghijkm"));
    }

    #[test]
    fn unleet_and_units() {
        assert_eq!(unleet("p@$$w0rd", 'i').as_deref(), Some("password"));
        assert_eq!(unleet("b1ue", 'l').as_deref(), Some("blue"));
        assert_eq!(unleet("plain", 'i'), None);
        assert_eq!(repeated_unit("abcabc"), Some("abc"));
        assert_eq!(repeated_unit("ééé"), Some("é"));
        assert_eq!(repeated_unit("abcab"), None);
        assert_eq!(repeated_unit("a"), None);
    }

    #[test]
    fn worst_case_input_is_checked_quickly() {
        // No letters at all makes every split a candidate.
        let started = std::time::Instant::now();
        let digits: String = (0..MAX_BYTES)
            .map(|i| char::from(b'0' + ((i * 7 + i / 10) % 10) as u8))
            .collect();
        let _ = check(&digits, "owner");
        let _ = check(&"!".repeat(MAX_BYTES), "owner");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
