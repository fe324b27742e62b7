//! `hearth backup create|restore` on a real home: round trip, refusals
//! that change nothing, and erase taking the backups too.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use hearth::store::DataDir;
use hearth::store::open_or_init;
use hearth_tests::{find_in_bytes, snapshot};

use crate::harness::{Daemon, TestHome, hearth, run, text};

const PASS: &str = "a long backup passphrase";

fn nicknames(home: &TestHome) -> Vec<String> {
    let s = open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    let mut n: Vec<String> = s
        .devices()
        .unwrap()
        .into_iter()
        .filter_map(|d| d.fields.nickname)
        .collect();
    n.sort();
    n
}

#[test]
fn a_backup_round_trips_and_refuses_a_wrong_passphrase_or_a_changed_byte() {
    let daemon = Daemon::start();
    let tag = hex::encode(
        &hearth::store::secret::random_token(128)
            .unwrap()
            .expose()
            .as_bytes()[..6],
    );
    let canary = format!("Cnry{tag}lamp");
    daemon.add("tasmota", &canary);
    daemon.add("shelly", "hall plug");
    let pass = daemon.home.path("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    let out_file = daemon.home.path("home.hearthbackup");

    // Written while hearth runs, private, with no plaintext in it.
    let out = daemon.cli(&[
        "backup",
        "create",
        "--out",
        out_file.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("100%"),
        "a progress bar: {}",
        text(&out.stderr)
    );
    let bytes = std::fs::read(&out_file).unwrap();
    assert_eq!(
        std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        find_in_bytes(
            &bytes,
            &[canary.clone(), "hall plug".into(), "SQLite format".into()]
        )
        .is_empty()
    );
    let audit = daemon.cli_json(&["audit", "verify"]);
    assert_eq!(audit["problem"], serde_json::Value::Null);

    // Changes after the backup, which the restore undoes.
    let third = daemon.add("esphome", "garden light");
    let out = daemon.cli(&["devices", "forget", third.id()]);
    assert!(out.status.success());
    daemon.add("esphome", "after the backup");

    // Refused while hearth runs.
    let restore = |home: &TestHome, file: &std::path::Path, pass: &std::path::Path| {
        run(
            hearth()
                .args(["backup", "restore"])
                .arg(file)
                .arg("--passphrase-file")
                .arg(pass)
                .arg("--data-dir")
                .arg(home.data_dir()),
            Duration::from_secs(60),
        )
    };
    let out = restore(&daemon.home, &out_file, &pass);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let home = daemon.stop_keeping_home();
    let before = snapshot(&home.data_dir());

    // A wrong passphrase: refused, clearly, and nothing changed.
    let wrong = home.path("wrong");
    std::fs::write(&wrong, "not the passphrase at all\n").unwrap();
    let out = restore(&home, &out_file, &wrong);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("wrong passphrase"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(&home.data_dir()), before);

    // One byte changed anywhere: refused as altered, nothing changed.
    for at in [30, bytes.len() / 2, bytes.len() - 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let tampered = home.path("tampered");
        std::fs::write(&tampered, &bad).unwrap();
        let out = restore(&home, &tampered, &pass);
        assert_eq!(out.status.code(), Some(65), "byte {at}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("altered or damaged"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(snapshot(&home.data_dir()), before);
    }
    let out = restore(&home, &home.path("pass"), &pass);
    assert_eq!(out.status.code(), Some(65), "not a backup: {}", text(&out.stderr));

    // The right one: back to the moment of the backup.
    let mut want = vec![canary.clone(), "hall plug".to_owned()];
    want.sort();
    assert_ne!(nicknames(&home), want);
    let out = restore(&home, &out_file, &pass);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(nicknames(&home), want);
    let s = open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    assert!(s.verify_audit().unwrap().verified());
    let events: Vec<String> = s.audit(50).unwrap().into_iter().map(|e| e.event).collect();
    assert!(events.contains(&"restored".to_owned()), "{events:?}");
    drop(s);

    // On a new hub (no data directory at all), the backup brings its key.
    let fresh = TestHome::new();
    let out = restore(&fresh, &out_file, &pass);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(nicknames(&fresh), want);

    // And it runs.
    let daemon = Daemon::start_in_with(home, "");
    let listed = daemon.cli_json(&["devices", "list"]);
    assert!(listed.to_string().contains("hall plug"));

    // Erase takes the backups hearth wrote.
    let home = daemon.stop_keeping_home();
    let out = home.erase();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("backup overwritten and removed"));
    assert!(!out_file.exists());
}
