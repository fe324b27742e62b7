//! Two-factor codes: RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s steps), the
//! `otpauth://` enrolment URI and its QR code, and single-use recovery codes.
//!
//! This module never prints or logs a secret: [`TotpSecret`]'s `Debug` is
//! redacted and its bytes are zeroed on drop. It keeps no state either; the
//! caller stores the secret and the last step used, which is what makes a
//! code single-use.

use std::fmt;

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use ring::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::crypto::fill_random;
use crate::store::secret::Secret;

/// Length of a generated secret: the HMAC-SHA1 output size, as RFC 4226
/// recommends.
pub const SECRET_LEN: usize = 20;
/// Digits in a code. Six digits and a 30-second step are RFC 6238's
/// defaults, the only values every common authenticator app honours (some
/// ignore `digits` and `period` in an otpauth URI).
pub const DIGITS: u32 = 6;
/// Seconds in a time step (see [`DIGITS`]).
pub const PERIOD: u64 = 30;
/// How many recovery codes an enrolment issues: each works once, and ten
/// outlast years of lost phones while still fitting on one printed page.
pub const RECOVERY_CODES: usize = 10;

/// RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Crockford's base32 alphabet, lowercase: no `i`, `l`, `o` or `u`, so a code
/// read aloud or copied by hand cannot be misread; [`normalize_recovery`]
/// maps the look-alikes back.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the secret is empty; paste the whole key")]
    Empty,
    #[error("the secret is not base32; it may only hold the letters A to Z and the digits 2 to 7")]
    NotBase32,
    #[error("the secret has a character too many or too few; paste the whole key")]
    BadLength,
}

/// A shared TOTP secret. Zeroed on drop; `Debug` never shows it.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A new random secret of [`SECRET_LEN`] bytes from the system's CSPRNG.
    ///
    /// # Panics
    /// If the operating system cannot supply random bytes, which on Linux
    /// means `getrandom(2)` is missing; nothing can be secured then.
    pub fn generate() -> TotpSecret {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        fill_random(&mut bytes).expect("the system random number generator works");
        TotpSecret(bytes)
    }

    /// A secret from stored bytes. RFC 4226 allows any length; hearth's own
    /// are [`SECRET_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> TotpSecret {
        TotpSecret(Zeroizing::new(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32, uppercase, without padding: what authenticator apps
    /// expect when the key is typed in.
    pub fn to_base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// Parses a typed or pasted key. Case, spaces and trailing `=` padding
    /// are forgiven; anything else outside the alphabet is an error.
    pub fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        base32_decode(text).map(TotpSecret)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// RFC 4648 base32 without padding, as authenticator apps show keys. Bits
/// left over after the last whole byte are not checked, as apps do not.
static BASE32_KEYS: std::sync::LazyLock<data_encoding::Encoding> = std::sync::LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str(std::str::from_utf8(BASE32).expect("ASCII"));
    spec.check_trailing_bits = false;
    spec.encoding().expect("a valid base32 specification")
});

fn base32_encode(bytes: &[u8]) -> String {
    BASE32_KEYS.encode(bytes)
}

fn base32_decode(text: &str) -> Result<Zeroizing<Vec<u8>>, TotpError> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b.to_ascii_uppercase())
            .collect(),
    );
    let end = compact.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let symbols = &compact[..end];
    if symbols.is_empty() {
        return Err(TotpError::Empty);
    }
    // The owner's errors in the owner's words: a wrong character, or a
    // length no whole number of bytes has (1, 3 or 6 symbols left over).
    if !symbols.iter().all(|s| matches!(s, b'A'..=b'Z' | b'2'..=b'7')) {
        return Err(TotpError::NotBase32);
    }
    BASE32_KEYS
        .decode(symbols)
        .map(Zeroizing::new)
        .map_err(|_| TotpError::BadLength)
}

/// HOTP (RFC 4226) of `counter`, truncated to `digits` decimal digits.
fn hotp(secret: &TotpSecret, counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = u32::from_be_bytes(mac[offset..offset + 4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    word % 10u32.pow(digits)
}

/// The 6-digit code for time step `unix_step` (Unix time / 30).
pub fn code_at(secret: &TotpSecret, unix_step: u64) -> u32 {
    hotp(secret, unix_step, DIGITS)
}

/// Checks a 6-digit `code` against the steps one before, at, and one after
/// `now_unix`, skipping every step at or before `last_used_step` so a code
/// works once. Returns the step that matched, which the caller must store as
/// the new `last_used_step`.
///
/// All three candidates are computed and compared in constant time, so the
/// answer's timing does not tell which step (if any) matched.
pub fn verify(secret: &TotpSecret, code: &str, now_unix: u64, last_used_step: Option<u64>) -> Option<u64> {
    let given = code.as_bytes();
    if given.len() != DIGITS as usize || !given.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let now = now_unix / PERIOD;
    let mut matched = None;
    for step in [now.checked_sub(1), Some(now), now.checked_add(1)]
        .into_iter()
        .flatten()
    {
        let expected = format_code(code_at(secret, step));
        let fresh = last_used_step.is_none_or(|last| step > last);
        if bool::from(expected.ct_eq(given)) && fresh {
            // Later steps win: storing the highest match closes the most.
            matched = Some(step);
        }
    }
    matched
}

/// A code as its six ASCII digits, leading zeros kept.
fn format_code(code: u32) -> [u8; DIGITS as usize] {
    let mut out = [b'0'; DIGITS as usize];
    let mut rest = code;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// The Key URI that authenticator apps import:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
/// The result holds the secret: show it to the owner, never log it.
pub fn otpauth_uri(secret: &TotpSecret, account: &str, issuer: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// Everything but RFC 3986's unreserved characters is percent-encoded, so
/// a `:` , `?`, `&`, `#`, `/` or space in a name cannot change the URI's
/// shape.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// Side of the QR code's SVG, at least; modules are whole pixels, so the
/// result is this or a little more.
const QR_MIN_SIZE: u32 = 240;

/// The enrolment URI as an SVG QR code: black modules on white, with the
/// standard 4-module quiet zone, about 240 px square. Colours are `fill`
/// attributes, because the dashboard's CSP forbids inline style.
///
/// A URI too long for any QR code (over 2 KB, which no real account name
/// reaches) gives a blank white square; the owner can still type the key.
pub fn qr_svg(uri: &str) -> String {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::L));
    match code {
        Ok(code) => code
            .render::<svg::Color>()
            .quiet_zone(true)
            .min_dimensions(QR_MIN_SIZE, QR_MIN_SIZE)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
        Err(_) => format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{s}" height="{s}" viewBox="0 0 {s} {s}"><rect width="{s}" height="{s}" fill="#ffffff"/></svg>"##,
            s = QR_MIN_SIZE
        ),
    }
}

/// Ten fresh recovery codes, `xxxx-xxxx-xxxx`, each 60 random bits in
/// Crockford's lowercase base32. Store only `TokenHash::of` of their
/// [`normalize_recovery`] form.
///
/// # Panics
/// If the operating system cannot supply random bytes (see
/// [`TotpSecret::generate`]).
pub fn recovery_codes() -> Vec<Secret> {
    (0..RECOVERY_CODES).map(|_| recovery_code()).collect()
}

fn recovery_code() -> Secret {
    let mut bytes = Zeroizing::new([0u8; 8]);
    fill_random(bytes.as_mut()).expect("the system random number generator works");
    let mut bits = Zeroizing::new(u64::from_be_bytes(*bytes));
    let mut code = Zeroizing::new(String::with_capacity(14));
    // Twelve symbols of 5 bits each: exactly 60 bits, with no modulo bias.
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(RECOVERY_ALPHABET[(*bits & 0x1f) as usize] as char);
        *bits >>= 5;
    }
    Secret::new(code.as_str())
}

/// The canonical form of a typed recovery code: lowercase, without spaces or
/// dashes, with the look-alikes `o`, `i` and `l` read as `0`, `1` and `1`.
pub fn normalize_recovery(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::store::secret::TokenHash;

    /// RFC 6238 appendix B's SHA-1 seed.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890")
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let expect = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, code) in expect.into_iter().enumerate() {
            assert_eq!(code_at(&rfc_secret(), counter as u64), code, "counter {counter}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        let table: [(u64, u32); 6] = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        let secret = rfc_secret();
        for (time, code8) in table {
            let step = time / PERIOD;
            assert_eq!(hotp(&secret, step, 8), code8, "T = {time}");
            assert_eq!(code_at(&secret, step), code8 % 1_000_000, "T = {time}");
            let text = format!("{:06}", code8 % 1_000_000);
            assert_eq!(verify(&secret, &text, time, None), Some(step), "T = {time}");
        }
    }

    #[test]
    fn leading_zeros_are_kept() {
        // T = 1111111109 gives 07081804, whose last six digits are 081804.
        assert_eq!(&format_code(81804), b"081804");
        assert_eq!(verify(&rfc_secret(), "081804", 1111111109, None), Some(37037036));
        assert_eq!(verify(&rfc_secret(), "81804", 1111111109, None), None);
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let table = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in table {
            assert_eq!(base32_encode(plain.as_bytes()), encoded, "{plain:?}");
            if !plain.is_empty() {
                assert_eq!(base32_decode(encoded).unwrap().as_slice(), plain.as_bytes());
            }
        }
    }

    #[test]
    fn base32_forgives_case_spaces_and_padding() {
        let s = TotpSecret::from_base32("mzxw 6ytb oi======").unwrap();
        assert_eq!(s.as_bytes(), b"foobar");
        let s = TotpSecret::from_base32("  MZXW6YQ=\n").unwrap();
        assert_eq!(s.as_bytes(), b"foob");
    }

    #[test]
    fn base32_refuses_what_is_not_base32() {
        let table = [
            ("MZXW1YTB", TotpError::NotBase32),
            ("MZXW8YTB", TotpError::NotBase32),
            ("MZXW-YTB", TotpError::NotBase32),
            ("MZ=XW6YTB", TotpError::NotBase32),
            ("MZXWÄYTB", TotpError::NotBase32),
            ("", TotpError::Empty),
            ("  ==", TotpError::Empty),
            ("M", TotpError::BadLength),
            ("MZX", TotpError::BadLength),
            ("MZXW6Y", TotpError::BadLength),
        ];
        for (text, err) in table {
            assert_eq!(TotpSecret::from_base32(text).unwrap_err(), err, "{text:?}");
        }
    }

    #[test]
    fn base32_round_trips() {
        for len in 0..=41 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let s = TotpSecret::from_bytes(&bytes);
            let text = s.to_base32();
            assert!(!text.contains('='), "{text}");
            assert_eq!(text, text.to_uppercase());
            if len > 0 {
                assert_eq!(
                    TotpSecret::from_base32(&text).unwrap().as_bytes(),
                    bytes.as_slice()
                );
            }
        }
        let s = TotpSecret::generate();
        assert_eq!(s.as_bytes().len(), SECRET_LEN);
        assert_eq!(s.to_base32().len(), 32);
        assert_eq!(
            TotpSecret::from_base32(&s.to_base32().to_lowercase())
                .unwrap()
                .as_bytes(),
            s.as_bytes()
        );
        assert_ne!(TotpSecret::generate().as_bytes(), s.as_bytes());
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = TotpSecret::from_bytes(b"12345678901234567890");
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "TotpSecret(..)");
        assert!(!dbg.contains(&s.to_base32()));
    }

    fn code_text(secret: &TotpSecret, step: u64) -> String {
        format!("{:06}", code_at(secret, step))
    }

    #[test]
    fn window_is_one_step_either_side() {
        let secret = TotpSecret::generate();
        let now = 1_700_000_015; // the middle of a step
        let step = now / PERIOD;
        for delta in [-1i64, 0, 1] {
            let s = step.checked_add_signed(delta).unwrap();
            assert_eq!(
                verify(&secret, &code_text(&secret, s), now, None),
                Some(s),
                "{delta}"
            );
        }
        for delta in [-2i64, 2, -3, 3] {
            let s = step.checked_add_signed(delta).unwrap();
            let code = code_text(&secret, s);
            // A code that happens to repeat inside the window would match
            // legitimately; that is a one-in-a-million coincidence.
            let collides = [-1i64, 0, 1]
                .iter()
                .any(|d| code_text(&secret, step.checked_add_signed(*d).unwrap()) == code);
            if !collides {
                assert_eq!(verify(&secret, &code, now, None), None, "{delta}");
            }
        }
    }

    #[test]
    fn window_edges_follow_the_clock() {
        let secret = rfc_secret();
        // The code for step 10 is good from 270 s to 359 s, and not outside.
        let code = code_text(&secret, 10);
        assert_eq!(verify(&secret, &code, 269, None), None);
        assert_eq!(verify(&secret, &code, 270, None), Some(10));
        assert_eq!(verify(&secret, &code, 359, None), Some(10));
        assert_eq!(verify(&secret, &code, 360, None), None);
        // Step 0 has no step before it.
        assert_eq!(verify(&secret, &code_text(&secret, 0), 0, None), Some(0));
    }

    #[test]
    fn replays_are_refused() {
        let secret = TotpSecret::generate();
        let now = 1_700_000_000;
        let step = now / PERIOD;
        let code = code_text(&secret, step);
        let used = verify(&secret, &code, now, None).unwrap();
        assert_eq!(verify(&secret, &code, now, Some(used)), None);
        assert_eq!(verify(&secret, &code, now + 20, Some(used)), None);
        // An older code inside the window is refused once a later one is used.
        assert_eq!(
            verify(&secret, &code_text(&secret, step - 1), now, Some(step)),
            None
        );
        // The next step's code is still good.
        let next = code_text(&secret, step + 1);
        assert_eq!(verify(&secret, &next, now + 30, Some(step)), Some(step + 1));
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = rfc_secret();
        let good = code_text(&secret, 1);
        assert_eq!(verify(&secret, &good, 59, None), Some(1));
        let spaced = format!("{} {}", &good[..3], &good[3..]);
        let signed = format!("+{}", &good[1..]);
        let long = format!("{good}0");
        let padded = format!(" {good}");
        for bad in [
            "",
            "12345",
            "abcdef",
            "12345a",
            "１２３４５６",
            &spaced,
            &signed,
            &long,
            &padded,
        ] {
            assert_eq!(verify(&secret, bad, 59, None), None, "{bad:?}");
        }
    }

    #[test]
    fn otpauth_uri_is_encoded() {
        let secret = rfc_secret();
        let uri = otpauth_uri(&secret, "ann lee@example.org", "hearth");
        assert_eq!(
            uri,
            format!(
                "otpauth://totp/hearth:ann%20lee%40example.org?secret={}&issuer=hearth\
                 &algorithm=SHA1&digits=6&period=30",
                secret.to_base32()
            )
        );
        let uri = otpauth_uri(&secret, "a:b?c&d=e#f/g", "Home & Co");
        assert!(
            uri.starts_with("otpauth://totp/Home%20%26%20Co:a%3Ab%3Fc%26d%3De%23f%2Fg?secret="),
            "{uri}"
        );
        assert!(uri.contains("&issuer=Home%20%26%20Co&"), "{uri}");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn qr_svg_has_no_inline_style() {
        let uri = otpauth_uri(&TotpSecret::generate(), "owner@example.org", "hearth");
        let svg = qr_svg(&uri);
        assert!(!svg.to_lowercase().contains("style"), "{svg}");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains(r##"fill="#000000""##), "{svg}");
        assert!(svg.contains(r##"fill="#ffffff""##), "{svg}");
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!((240..=300).contains(&width), "{width}");
        // The quiet zone: no module is drawn on the outer edge.
        let path = svg.split(" d=\"").nth(1).unwrap();
        assert!(!path.starts_with("M0 0"), "{path}");
        // A URI no QR code can hold still gives an SVG, blank and style-free.
        let blank = qr_svg(&"x".repeat(5000));
        assert!(blank.starts_with("<svg") && !blank.contains("style") && !blank.contains("<path"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: HashSet<&str> = codes.iter().map(Secret::expose).collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for code in &codes {
            let text = code.expose();
            assert_eq!(text.len(), 14, "{text}");
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(groups.len(), 3, "{text}");
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(
                groups.concat().bytes().all(|b| RECOVERY_ALPHABET.contains(&b)),
                "{text}"
            );
            let normal = normalize_recovery(text);
            assert_eq!(normal, groups.concat());
            // What the owner types back, however spaced or cased, hashes alike.
            let typed = format!(" {} ", text.to_uppercase().replace('-', " - "));
            assert!(TokenHash::of(&normal).matches(&normalize_recovery(&typed)));
        }
        assert_eq!(normalize_recovery("AB0I-L1 oz"), "ab01110z");
    }

    #[test]
    fn recovery_codes_use_every_symbol() {
        // 200 codes hold 2,400 symbols; a stuck bit would leave half of the
        // alphabet unused.
        let seen: HashSet<char> = (0..20)
            .flat_map(|_| recovery_codes())
            .flat_map(|c| normalize_recovery(c.expose()).chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(seen.len(), 32);
    }
}
