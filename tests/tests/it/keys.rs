//! Data key rotation from the outside: the real binary, killed with
//! SIGKILL at random points, and every value opened afterwards.

use std::time::{Duration, Instant};

use hearth::store::open_or_init;
use hearth::store::secret::{Secret, TokenHash};
use hearth::store::{Actor, AuditEvent, DataDir, DeviceFields, DeviceKind, Store};
use hearth_tests::find_in_bytes;

use crate::harness::{Daemon, TestHome, hearth, text};

const DEVICES: usize = 1500;
const AUDIT: usize = 1500;

fn open(home: &TestHome) -> Store {
    open_or_init(&DataDir::new(home.data_dir()), None).expect("every sealed value opens")
}

/// A home big enough that a rotation takes many batches.
fn fill(home: &TestHome) {
    let mut s = open(home);
    for i in 0..DEVICES {
        let mut f = DeviceFields::new(DeviceKind::Bulb, "tasmota");
        f.nickname = Some(format!("lamp {i}"));
        f.mac = Some(format!("aa:bb:cc:00:{:02x}:{:02x}", i / 256, i % 256));
        s.insert_device(&f).unwrap();
    }
    s.create_owner(
        "owner@example.org",
        &Secret::new(hearth::store::secret::hash_password("a long enough password").unwrap()),
    )
    .unwrap();
    s.put_credential("owner:x", "session", &TokenHash::of("token"), None)
        .unwrap();
    for i in 0..AUDIT {
        s.append_audit(&AuditEvent::ok(
            hearth::store::AuditKind::Login,
            Actor::Visitor,
            format!("from 192.0.2.{}", i % 250),
        ))
        .unwrap();
    }
}

/// Every value opens (the store checks each sealed value as it opens) and
/// reads back as written; look-ups by blind index find their rows.
fn check(home: &TestHome) -> bool {
    let s = open(home);
    let devices = s.devices().unwrap();
    assert_eq!(devices.len(), DEVICES);
    let mut names: Vec<String> = devices
        .iter()
        .map(|d| d.fields.nickname.clone().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..DEVICES).map(|i| format!("lamp {i}")).collect();
    want.sort();
    assert_eq!(names, want);
    for i in [0, DEVICES / 2, DEVICES - 1] {
        let mac = format!("AA:BB:CC:00:{:02x}:{:02x}", i / 256, i % 256);
        let d = s.device_by_mac(&mac).unwrap().expect("found by its MAC");
        assert_eq!(d.fields.nickname.unwrap(), format!("lamp {i}"));
    }
    assert!(s.owner_by_email("owner@example.org").unwrap().is_some());
    assert!(s.verify_audit().unwrap().verified());
    assert!(s.audit(10_000).unwrap().len() >= AUDIT);
    s.rotating()
}

/// A small xorshift, seeded from the clock: the kill points differ on every
/// run, and the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn rotation_survives_sigkill_at_random_points_fifty_times() {
    let home = TestHome::new();
    fill(&home);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill points seeded with {seed}");
    let mut rng = Rng(seed);

    // How long one whole rotation takes here, to spread the kills over it.
    let t = Instant::now();
    let out = hearth()
        .args(["keys", "rotate", "--data-dir"])
        .arg(home.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let whole = t.elapsed().as_millis().max(50) as u64;
    assert!(
        text(&out.stderr).contains("100%"),
        "a progress bar: {}",
        text(&out.stderr)
    );
    assert!(!check(&home));

    let mut cut_short = 0;
    let mut finished = 0;
    for round in 0..50 {
        let mut child = hearth()
            .args(["keys", "rotate", "--data-dir"])
            .arg(home.data_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.next(whole * 5 / 4)));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let status = child.wait().unwrap();
        if status.success() {
            finished += 1;
        }
        let rotating = check(&home);
        if rotating {
            cut_short += 1;
        }
        eprintln!(
            "round {round}: exit {status:?}, rotation {}",
            if rotating { "cut short" } else { "whole" }
        );
    }
    // The kills landed both inside rotations and between them.
    assert!(
        cut_short >= 5,
        "only {cut_short} of 50 kills cut a rotation short"
    );
    assert!(cut_short < 50 || finished > 0);

    // Resumed to the end: one data key left, under which every row is.
    let out = hearth()
        .args(["keys", "rotate", "--data-dir"])
        .arg(home.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!check(&home));
    let db = std::fs::read(DataDir::new(home.data_dir()).db_path()).unwrap();
    let conn = rusqlite::Connection::open(DataDir::new(home.data_dir()).db_path()).unwrap();
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM data_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1);
    assert!(find_in_bytes(&db, &["lamp 1".to_owned()]).is_empty());
}

#[test]
fn a_running_hearth_rotates_in_the_background_and_resumes_after_sigkill() {
    let home = TestHome::new();
    fill(&home);
    let daemon = Daemon::start_in_with(home, "");
    let out = daemon.cli(&["keys", "rotate", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["finished"], true);
    assert!(text(&out.stderr).contains("100%"));
    let out = daemon.cli(&["keys", "status"]);
    assert!(text(&out.stdout).contains("no rotation under way"));

    // Started, then the daemon killed mid-way: the next start resumes.
    let mut cli = hearth()
        .args(["keys", "rotate", "--data-dir"])
        .arg(daemon.home.data_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(cli.stderr.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("re-sealing"), "{first}");
    let home = daemon.kill_keeping_home();
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(check(&home), "the kill landed mid-rotation");
    let daemon = Daemon::start_in_with(home, "");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = daemon.cli(&["keys", "status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["finished"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation never finished: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let home = daemon.stop_keeping_home();
    assert!(!check(&home));
    let s = open(&home);
    let rotated = s
        .audit(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "keys_rotated")
        .collect::<Vec<_>>();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(rotated.iter().any(|e| e.actor == "cli"));
}

fn verify(home: &TestHome, passphrase_file: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = hearth();
    cmd.args(["audit", "verify", "--data-dir"]).arg(home.data_dir());
    if let Some(p) = passphrase_file {
        cmd.env("HEARTH_PASSPHRASE_FILE", p);
    }
    crate::harness::run(&mut cmd, Duration::from_secs(60))
}

#[test]
fn rewrap_moves_to_a_new_key_file_to_a_passphrase_and_back() {
    let home = TestHome::new();
    {
        let mut s = open(&home);
        let mut f = DeviceFields::new(DeviceKind::Plug, "shelly");
        f.nickname = Some("hall plug".into());
        s.insert_device(&f).unwrap();
    }
    let dir = DataDir::new(home.data_dir());
    let key = dir.default_key_path();
    let old = std::fs::read(&key).unwrap();

    // A new key file: the old key opens nothing any more.
    let rewrap = |extra: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = hearth();
        cmd.args(["keys", "rewrap", "--data-dir"])
            .arg(home.data_dir())
            .args(extra);
        if let Some(p) = env {
            cmd.env("HEARTH_PASSPHRASE_FILE", p);
        }
        crate::harness::run(&mut cmd, Duration::from_secs(60))
    };
    let out = rewrap(&[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new = std::fs::read(&key).unwrap();
    assert_ne!(new, old);
    let stale = home.path("old.key");
    std::fs::write(&stale, &old).unwrap();
    crate::harness::set_mode(&stale, 0o600);
    let master = hearth::store::files::load_master_key(&stale).unwrap();
    assert!(matches!(
        Store::open(&dir.db_path(), &master, &stale),
        Err(hearth::store::StoreError::WrongKey { .. })
    ));
    assert!(verify(&home, None).status.success());

    // Passphrase mode: no key file left; the passphrase opens the store,
    // its absence or a wrong one is refused with a clear message.
    let pass = home.path("pass");
    std::fs::write(&pass, "a long store passphrase\n").unwrap();
    crate::harness::set_mode(&pass, 0o600);
    let out = rewrap(&["--passphrase-file", pass.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!key.exists(), "the key file is removed");
    let kdf = hearth::store::files::passphrase_kdf(&dir.db_path())
        .unwrap()
        .unwrap();
    assert!(kdf.m_kib >= 64 * 1024 && kdf.t >= 1, "{kdf:?}");
    let out = verify(&home, None);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("passphrase mode"),
        "{}",
        text(&out.stderr)
    );
    let wrong = home.path("wrong");
    std::fs::write(&wrong, "not the store passphrase\n").unwrap();
    crate::harness::set_mode(&wrong, 0o600);
    assert_eq!(verify(&home, Some(&wrong)).status.code(), Some(77));
    let out = verify(&home, Some(&pass));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A passphrase file others can read is refused.
    crate::harness::set_mode(&pass, 0o644);
    assert_eq!(verify(&home, Some(&pass)).status.code(), Some(77));
    crate::harness::set_mode(&pass, 0o600);

    // And back to a key file.
    let out = rewrap(&[], Some(&pass));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(key.exists());
    assert!(
        hearth::store::files::passphrase_kdf(&dir.db_path())
            .unwrap()
            .is_none()
    );
    assert!(verify(&home, None).status.success());
    let s = open(&home);
    assert_eq!(
        s.devices().unwrap()[0].fields.nickname.as_deref(),
        Some("hall plug")
    );
    let events: Vec<String> = s.audit(20).unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(
        events.iter().filter(|e| *e == "keys_rewrapped").count(),
        3,
        "{events:?}"
    );
}
