//! The install's setup code: a passcode and a discriminator drawn at random
//! once, kept sealed, and shown to the owner as the 11-digit manual pairing
//! code and the `MT:` QR text. It must never be a well-known test code,
//! reach a log, or print in `Debug`.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};
use rs_matter::BasicCommData;
use rs_matter::dm::clusters::basic_info::BasicInfoConfig;
use rs_matter::pairing::DiscoveryCapabilities;
use rs_matter::pairing::qr::{CommFlowType, QrPayload, no_optional_data};
use rs_matter::sc::pase::{Spake2pVerifierPassword, Spake2pVerifierPasswordRef};

use crate::store::crypto::fill_random;
use crate::store::{CryptoError, Store, StoreError};

/// The sealed record it is kept in.
const RECORD: &str = "matter_setup";

/// The largest passcode the spec allows.
const MAX_PASSCODE: u32 = 99_999_998;

/// Passcodes the spec forbids, as too easy to guess.
const INVALID_PASSCODES: &[u32] = &[
    0, 11_111_111, 22_222_222, 33_333_333, 44_444_444, 55_555_555, 66_666_666, 77_777_777, 88_888_888,
    99_999_999, 12_345_678, 87_654_321,
];

/// The SDK's example code: every test device in the world has it.
const TEST_PASSCODE: u32 = 20_202_021;
const TEST_DISCRIMINATOR: u16 = 3840;

/// This install's passcode and discriminator.
#[derive(Clone, PartialEq, Eq)]
pub struct Setup {
    passcode: u32,
    discriminator: u16,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Setup(redacted)")
    }
}

/// What `hearth matter pair` shows.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Codes {
    /// The 11-digit manual pairing code.
    pub manual: String,
    /// The same, grouped `XXXX-XXX-XXXX` for reading aloud.
    pub manual_pretty: String,
    /// The QR code's text, `MT:…`.
    pub qr: String,
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codes(redacted)")
    }
}

/// The QR code's smallest side on the dashboard, in pixels: a phone's
/// camera reads it from arm's length, and it fits a 390 px wide screen.
const QR_MIN_SIZE: u32 = 240;

impl Codes {
    /// The `MT:` text as a QR code, in the alphanumeric mode its base-38
    /// alphabet fits: bigger modules for a camera than byte mode.
    fn qr_code(&self) -> QrCode {
        QrCode::with_error_correction_level(self.qr.as_bytes(), EcLevel::M)
            .expect("a Matter payload (22 characters) fits a QR code")
    }

    /// The QR code as SVG: black on white with the standard quiet zone,
    /// colours as `fill` attributes (the dashboard's CSP forbids inline
    /// style).
    pub fn qr_svg(&self) -> String {
        self.qr_code()
            .render::<svg::Color>()
            .quiet_zone(true)
            .min_dimensions(QR_MIN_SIZE, QR_MIN_SIZE)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build()
    }

    /// The QR code for a terminal: two modules a character, dark modules
    /// as the terminal's background, so it scans on a dark terminal too.
    pub fn qr_terminal(&self) -> String {
        self.qr_code()
            .render::<unicode::Dense1x2>()
            .quiet_zone(true)
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .build()
    }
}

impl Setup {
    /// Whether rs-matter and the spec accept it, and it is not the test code.
    fn valid(passcode: u32, discriminator: u16) -> bool {
        (1..=MAX_PASSCODE).contains(&passcode)
            && !INVALID_PASSCODES.contains(&passcode)
            && passcode != TEST_PASSCODE
            && discriminator <= 0x0FFF
            && discriminator != TEST_DISCRIMINATOR
    }

    /// A fresh random setup code.
    pub fn generate() -> Result<Setup, CryptoError> {
        loop {
            let mut b = [0u8; 6];
            fill_random(&mut b)?;
            // Rejection sampling keeps the passcode uniform over 2^27 and
            // the discriminator over 2^12 before the validity filter.
            let passcode = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x07FF_FFFF;
            let discriminator = u16::from_le_bytes([b[4], b[5]]) & 0x0FFF;
            if Setup::valid(passcode, discriminator) {
                return Ok(Setup {
                    passcode,
                    discriminator,
                });
            }
        }
    }

    fn encode(&self) -> [u8; 6] {
        let mut out = [0u8; 6];
        out[..4].copy_from_slice(&self.passcode.to_le_bytes());
        out[4..].copy_from_slice(&self.discriminator.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Setup> {
        let bytes: [u8; 6] = bytes.try_into().ok()?;
        let passcode = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let discriminator = u16::from_le_bytes([bytes[4], bytes[5]]);
        Setup::valid(passcode, discriminator).then_some(Setup {
            passcode,
            discriminator,
        })
    }

    /// The install's setup code, drawn and sealed on first use.
    pub fn load_or_create(store: &mut Store) -> Result<Setup, StoreError> {
        if let Some(bytes) = store.secret(RECORD)? {
            return Setup::decode(&bytes).ok_or(StoreError::SealedValue {
                table: "secrets",
                column: "value",
                id: RECORD.into(),
                source: CryptoError::Malformed("the Matter setup code is malformed"),
            });
        }
        let setup = Setup::generate()?;
        store.put_secret(RECORD, &setup.encode())?;
        Ok(setup)
    }

    /// What rs-matter takes to run PASE with it.
    pub fn comm_data(&self) -> BasicCommData {
        BasicCommData {
            password: Spake2pVerifierPassword::new_from_ref(Spake2pVerifierPasswordRef::new(
                &self.passcode.to_le_bytes(),
            )),
            discriminator: self.discriminator,
        }
    }

    /// The codes an owner types or scans, for the device `info` describes.
    pub fn codes(&self, info: &BasicInfoConfig<'_>) -> Codes {
        let comm = self.comm_data();
        let payload = QrPayload::new_from_basic_info(
            DiscoveryCapabilities::IP,
            CommFlowType::Standard,
            comm.clone(),
            info,
            no_optional_data,
        );
        let mut buf = [0u8; 256];
        let qr = payload
            .as_str(&mut buf)
            .map(|(s, _)| s.to_owned())
            .expect("a valid payload fits 256 bytes");
        Codes {
            manual: comm.compute_pairing_code().as_str().to_owned(),
            manual_pretty: comm.compute_pretty_pairing_code().as_str().to_owned(),
            qr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_valid_random_and_never_the_test_code() {
        let a = Setup::generate().unwrap();
        let b = Setup::generate().unwrap();
        for s in [&a, &b] {
            assert!(Setup::valid(s.passcode, s.discriminator));
        }
        assert_ne!(a, b, "two draws of 2^39 values collided");
        assert!(!Setup::valid(TEST_PASSCODE, 1));
        assert!(!Setup::valid(1, TEST_DISCRIMINATOR));
        for bad in INVALID_PASSCODES {
            assert!(!Setup::valid(*bad, 1));
        }
        assert!(!Setup::valid(MAX_PASSCODE + 1, 1));
        assert!(!Setup::valid(1, 0x1000));
        assert!(Setup::valid(1, 0) && Setup::valid(MAX_PASSCODE, 0x0FFF));
        assert_eq!(format!("{a:?}"), "Setup(redacted)");
    }

    #[test]
    fn the_code_is_drawn_once_and_kept_sealed() {
        let (dir, store) = crate::matter::kv::tests::store();
        let first = Setup::load_or_create(&mut store.lock().unwrap()).unwrap();
        let again = Setup::load_or_create(&mut store.lock().unwrap()).unwrap();
        assert_eq!(first, again);
        let manual = first.codes(&crate::matter::device_info()).manual;
        drop(store);
        let mut bytes = std::fs::read(dir.path().join("hearth.db")).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("hearth.db-wal")) {
            bytes.extend(wal);
        }
        assert!(!bytes.windows(6).any(|w| w == first.encode()));
        assert!(!bytes.windows(11).any(|w| w == manual.as_bytes()));
    }

    /// The codes decode, with rs-matter's own parsers, to the passcode and
    /// discriminator they were made from.
    #[test]
    fn the_codes_decode_back() {
        let setup = Setup::generate().unwrap();
        let info = crate::matter::device_info();
        let codes = setup.codes(&info);
        assert_eq!(codes.manual.len(), 11);
        assert!(codes.manual.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(codes.manual_pretty.replace('-', ""), codes.manual);
        let manual = QrPayload::parse_pairing_code(&codes.manual).unwrap();
        assert_eq!(manual.passcode(), setup.passcode);
        assert_eq!(manual.short_discriminator(), (setup.discriminator >> 8) as u8);
        assert!(codes.qr.starts_with("MT:"), "{}", codes.qr.len());
        let mut buf = [0u8; 256];
        let qr = QrPayload::parse(&codes.qr, &mut buf).unwrap();
        assert_eq!(qr.passcode(), setup.passcode);
        assert_eq!(qr.discriminator(), setup.discriminator);
        assert_eq!((qr.vid(), qr.pid()), (info.vid, info.pid));
        // Both renderings carry a whole QR code, without inline style.
        let svg = codes.qr_svg();
        assert!(svg.contains("<svg") && svg.contains("<path"), "{}", svg.len());
        assert!(!svg.to_lowercase().contains("style"));
        assert!(!svg.contains(&codes.qr) && !svg.contains(&codes.manual));
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!((QR_MIN_SIZE..QR_MIN_SIZE * 2).contains(&width), "{width}");
        let text = codes.qr_terminal();
        let rows: Vec<&str> = text.lines().collect();
        let side = codes.qr_code().width() + 8;
        assert_eq!(rows.len(), side.div_ceil(2));
        assert!(rows.iter().all(|r| r.chars().count() == side));
        // A flipped digit fails the Verhoeff check.
        let mut wrong = codes.manual.into_bytes();
        wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
        assert!(QrPayload::parse_pairing_code(std::str::from_utf8(&wrong).unwrap()).is_err());
    }
}
