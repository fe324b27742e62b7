//! kill -9 during a burst of writes, 50 times: the store stays intact and
//! keeps every write the writer reported as committed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hearth::store::open_or_init;
use hearth::store::secret::TokenHash;
use hearth::store::{DataDir, DeviceId};

use crate::harness::{TestHome, store_writer};

#[test]
fn sigkill_during_writes_loses_nothing_committed() {
    let home = TestHome::new();
    let mut devices: Vec<(String, String)> = Vec::new();
    let mut credentials: Vec<String> = Vec::new();
    let mut noise = hearth_tests::Noise::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..50 {
        let mut child = store_writer()
            .arg(home.data_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it commit a varying number of writes, then kill it mid-burst.
        let target = 5 + (noise.next_u64() % 60) as usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reported = Vec::new();
        while reported.len() < target {
            assert!(Instant::now() < deadline, "round {round}: writer too slow");
            match lines.next() {
                Some(Ok(line)) => reported.push(line),
                _ => {
                    let mut err = String::new();
                    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                    panic!("round {round}: writer stopped early: {err}");
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Lines already in the pipe were committed too.
        reported.extend(lines.map_while(Result::ok));
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "round {round}"
        );
        for line in reported {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("device"), Some(id), Some(nick)) => devices.push((id.into(), nick.into())),
                (Some("credential"), Some(hash), None) => credentials.push(hash.into()),
                _ => panic!("round {round}: unexpected line {line:?}"),
            }
        }
    }

    // open_or_init runs the full integrity check and opens every sealed value.
    let store = open_or_init(&DataDir::new(home.data_dir()), None).expect("store opens after 50 kills");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert!(
        devices.len() >= 50 * 5 * 3 / 4 - 10,
        "only {} device writes",
        devices.len()
    );
    for (id, nick) in &devices {
        let id = DeviceId::parse(id).expect("id");
        let device = store
            .device(&id)
            .unwrap()
            .unwrap_or_else(|| panic!("device {id} lost"));
        assert_eq!(device.fields.nickname.as_deref(), Some(nick.as_str()));
    }
    for hash in &credentials {
        let bytes = hex::decode(hash).unwrap();
        let hash = TokenHash::from_slice(&bytes).unwrap();
        let found = store.find_credential("mqtt_password", &hash).unwrap();
        assert!(found.is_some(), "credential lost");
    }
}
