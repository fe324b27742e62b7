//! The encrypted store, read from the outside: canaries, swapped values, and
//! recovery from a wrong key or a damaged file.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hearth::store::open_or_init;
use hearth::store::secret::{Secret, TokenHash, hash_password};
use hearth::store::{DataDir, DeviceFields, DeviceKind, DeviceStatus, Store, StoreError, UnixTime};
use hearth_tests::{find_canaries, find_in_bytes, snapshot};

use crate::harness::{TestHome, hearth, run, set_mode, text};

fn canaries() -> Vec<String> {
    let tag = hex::encode(
        hearth::store::secret::random_token(128)
            .unwrap()
            .expose()
            .as_bytes(),
    )[..12]
        .to_owned();
    (0..20).map(|i| format!("Cnry{tag}x{i:02}")).collect()
}

fn open(home: &TestHome) -> Store {
    open_or_init(&DataDir::new(home.data_dir()), None).expect("open store")
}

/// Twenty canaries go through the public API into every kind of sealed field
/// (and into the secrets that are only ever stored hashed). None may appear
/// in any file of the data directory, in UTF-8 or UTF-16, while the store is
/// open (WAL and shared memory present) or after it is closed.
#[test]
fn canaries_never_reach_the_disk() {
    let home = TestHome::new();
    let c = canaries();
    let mut store = open(&home);

    let mut a = DeviceFields::new(DeviceKind::Camera, c[0].clone());
    a.nickname = Some(c[1].clone());
    a.room = Some(c[2].clone());
    a.vendor = Some(c[3].clone());
    a.model = Some(c[4].clone());
    a.firmware = Some(c[5].clone());
    a.mac = Some(c[6].clone());
    a.ssid = Some(c[7].clone());
    a.stream_url = Some(format!("rtsp://{}/live", c[8]));
    a.device_secret = Some(Secret::new(c[9].clone()));
    a.addresses = vec![
        "10.213.77.41".parse().unwrap(),
        "fd00:dead:beef::77".parse().unwrap(),
    ];
    a.last_seen = Some(UnixTime::now());
    let dev_a = store.insert_device(&a).unwrap();

    // A rename writes new values over old ones; both must stay sealed.
    let mut renamed = a.clone();
    renamed.nickname = Some(c[10].clone());
    renamed.room = Some(c[11].clone());
    renamed.status = DeviceStatus::Adopted;
    store.update_device(&dev_a.id, &renamed).unwrap();

    // A forgotten device's values must not linger either.
    let mut b = DeviceFields::new(DeviceKind::Bulb, "generic");
    b.nickname = Some(c[12].clone());
    b.ssid = Some(c[13].clone());
    let dev_b = store.insert_device(&b).unwrap();
    assert!(store.forget_device(&dev_b.id).unwrap());

    // Owner: e-mail sealed, password only as a sealed argon2id hash.
    let email = format!("{}@example.org", c[14]);
    let phc = hash_password(&c[15]).unwrap();
    let owner = store.create_owner(&email, &Secret::new(phc)).unwrap();
    store.record_login(&owner.id, UnixTime::now()).unwrap();

    // Tokens: only their SHA-256 is stored.
    for token in &c[16..20] {
        store
            .put_credential(
                &format!("device:{}", dev_a.id),
                "mqtt_password",
                &TokenHash::of(token),
                None,
            )
            .unwrap();
    }

    // The API gives everything back.
    let got = store.device(&dev_a.id).unwrap().unwrap();
    assert_eq!(got.fields, renamed);
    assert_eq!(
        store.device_by_mac(&c[6].to_uppercase()).unwrap().unwrap().id,
        dev_a.id
    );
    assert_eq!(
        store
            .owner_by_email(&email.to_uppercase())
            .unwrap()
            .unwrap()
            .email,
        email
    );
    assert!(
        store
            .find_credential("mqtt_password", &TokenHash::of(&c[17]))
            .unwrap()
            .is_some()
    );

    let mut all = c.clone();
    all.extend(["10.213.77.41".into(), "fd00:dead:beef::77".into()]);
    let dir = home.data_dir();
    assert!(
        dir.join("hearth.db-wal").exists(),
        "the open store should have a WAL for this test to mean anything"
    );
    assert_eq!(
        find_canaries(&dir, &all),
        vec![],
        "canaries found while the store is open"
    );
    drop(store);
    assert_eq!(find_canaries(&dir, &all), vec![], "canaries found after close");

    // The scanner itself can find a canary, in each encoding.
    for enc in hearth_tests::encodings(&c[3]) {
        assert_eq!(
            find_in_bytes(&[b"xx".as_slice(), &enc, b"yy"].concat(), &all),
            vec![c[3].clone()]
        );
    }
    // And the store reopens with every value intact.
    let store = open(&home);
    assert_eq!(store.device(&dev_a.id).unwrap().unwrap().fields, renamed);
    assert_eq!(store.devices().unwrap().len(), 1);
}

fn raw(home: &TestHome) -> rusqlite::Connection {
    rusqlite::Connection::open(home.data_dir().join("hearth.db")).unwrap()
}

/// A sealed value copied by raw SQL into another row, another column or
/// another table does not open, and the error names where.
#[test]
fn swapped_values_fail_to_open() {
    let home = TestHome::new();
    let mut store = open(&home);
    let mut fields = DeviceFields::new(DeviceKind::Bulb, "generic");
    fields.nickname = Some("Kitchen".into());
    let a = store.insert_device(&fields).unwrap();
    fields.nickname = Some("Bedroom".into());
    let b = store.insert_device(&fields).unwrap();
    let phc = Secret::new(hash_password("a long owner passphrase").unwrap());
    let owner = store.create_owner("owner@example.org", &phc).unwrap();
    store.record_login(&owner.id, UnixTime::now()).unwrap();
    let db = raw(&home);

    // Another row: a's sealed record into b.
    db.execute(
        "UPDATE devices SET record = (SELECT record FROM devices WHERE id = ?1) WHERE id = ?2",
        [a.id.as_str(), b.id.as_str()],
    )
    .unwrap();
    match store.device(&b.id) {
        Err(StoreError::SealedValue {
            table, column, id, ..
        }) => {
            assert_eq!((table, column, id.as_str()), ("devices", "record", b.id.as_str()));
        }
        other => panic!("expected a sealed-value error, got {other:?}"),
    }
    let msg = store.device(&b.id).unwrap_err().to_string();
    assert!(
        msg.contains("devices.record") && msg.contains(b.id.as_str()),
        "{msg}"
    );
    // a is untouched and still opens.
    assert_eq!(
        store.device(&a.id).unwrap().unwrap().fields.nickname.as_deref(),
        Some("Kitchen")
    );

    // Another column: the owner's last-login envelope into its record column.
    db.execute(
        "UPDATE owners SET record = last_login WHERE id = ?1",
        [owner.id.as_str()],
    )
    .unwrap();
    match store.owner_by_email("owner@example.org") {
        Err(StoreError::SealedValue {
            table: "owners",
            column: "record",
            ..
        }) => {}
        other => panic!("expected a sealed-value error, got {other:?}"),
    }

    // Another table: a device's record into the owner's record column.
    db.execute(
        "UPDATE owners SET record = (SELECT record FROM devices WHERE id = ?1)",
        [a.id.as_str()],
    )
    .unwrap();
    assert!(matches!(
        store.owner_by_email("owner@example.org"),
        Err(StoreError::SealedValue {
            table: "owners",
            column: "record",
            ..
        })
    ));
    drop(store);
    drop(db);

    // At start, the same damage stops hearth with the "corrupt" exit code,
    // naming the first damaged value it meets.
    let out = run(&mut home.run_cmd(), Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(
        stderr.contains(&format!("devices.record of row {} does not open", b.id)),
        "{stderr}"
    );
}

/// Runs `hearth run` on a damaged home and checks the exit code, a phrase of
/// the message, and that no file changed, appeared or vanished.
#[track_caller]
fn refuses_unchanged(home: &TestHome, code: i32, phrase: &str) {
    // The config file is written first, so the snapshot includes it.
    let mut cmd = home.run_cmd();
    let before = snapshot(home.tmp.path());
    let out = run(&mut cmd, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(phrase), "stderr lacks {phrase:?}: {stderr}");
    assert_eq!(
        snapshot(home.tmp.path()),
        before,
        "files changed; stderr: {stderr}"
    );
}

fn home_with_a_device() -> (TestHome, String) {
    let home = TestHome::new();
    home.init();
    let mut store = open(&home);
    let mut fields = DeviceFields::new(DeviceKind::Camera, "generic");
    fields.nickname = Some("Front door".into());
    fields.addresses = vec![IpAddr::from([192, 168, 4, 20])];
    let id = store.insert_device(&fields).unwrap().id.to_string();
    drop(store);
    (home, id)
}

#[test]
fn wrong_key_is_refused_and_nothing_changes() {
    let (home, _) = home_with_a_device();
    let key = home.data_dir().join("master.key");
    std::fs::remove_file(&key).unwrap();
    let other = home.path("other");
    hearth::store::files::write_new_key(&{
        std::fs::create_dir(&other).unwrap();
        other.join("k")
    })
    .unwrap();
    std::fs::copy(other.join("k"), &key).unwrap();
    set_mode(&key, 0o600);
    refuses_unchanged(&home, 77, "does not open the store");
}

#[test]
fn missing_or_exposed_key_is_refused() {
    let (home, _) = home_with_a_device();
    let key = home.data_dir().join("master.key");
    set_mode(&key, 0o644);
    refuses_unchanged(&home, 77, "chmod 600");
    set_mode(&key, 0o600);
    std::fs::rename(&key, home.path("moved.key")).unwrap();
    refuses_unchanged(&home, 77, "does not exist");
}

#[test]
fn exposed_data_dir_is_refused() {
    let (home, _) = home_with_a_device();
    set_mode(&home.data_dir(), 0o755);
    refuses_unchanged(&home, 77, "chmod 700");
}

#[test]
fn truncated_database_is_refused_and_nothing_changes() {
    let (home, _) = home_with_a_device();
    let db = home.data_dir().join("hearth.db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2 + 7)
        .unwrap();
    refuses_unchanged(&home, 65, "corrupt");
}

/// Flips one byte in the middle of a sealed value on disk.
#[test]
fn flipped_bytes_in_a_value_are_refused_and_nothing_changes() {
    let (home, id) = home_with_a_device();
    let db = home.data_dir().join("hearth.db");
    let sealed: Vec<u8> = raw(&home)
        .query_row("SELECT record FROM devices WHERE id = ?1", [&id], |r| r.get(0))
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes
        .windows(sealed.len())
        .position(|w| w == sealed.as_slice())
        .expect("the sealed value is in the file");
    bytes[at + sealed.len() / 2] ^= 0x20;
    std::fs::write(&db, &bytes).unwrap();
    refuses_unchanged(&home, 65, "devices.record");
}

#[test]
fn flipped_bytes_in_the_header_are_refused() {
    let (home, _) = home_with_a_device();
    let db = home.data_dir().join("hearth.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[3] ^= 0xff;
    std::fs::write(&db, &bytes).unwrap();
    refuses_unchanged(&home, 65, "SQLite header");
}

/// Flips a run of bytes across a b-tree page: SQLite's integrity check or a
/// value's tag must catch it.
#[test]
fn flipped_bytes_in_a_page_are_refused() {
    let (home, _) = home_with_a_device();
    let db = home.data_dir().join("hearth.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Damage the schema where it is stored: the devices table's own
    // definition (on page 1, or on a page of its own once the schema
    // outgrows page 1).
    let at = bytes
        .windows(20)
        .position(|w| w == b"CREATE TABLE devices")
        .expect("the schema in the file");
    for b in &mut bytes[at..at + 50] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    refuses_unchanged(&home, 65, "corrupt");
}

#[test]
fn a_directory_of_other_files_is_never_initialised() {
    let home = TestHome::new();
    std::fs::create_dir(home.data_dir()).unwrap();
    set_mode(&home.data_dir(), 0o700);
    std::fs::write(home.data_dir().join("notes.txt"), "mine").unwrap();
    refuses_unchanged(&home, 65, "not empty but holds no hearth store");
    // init says the same and changes nothing.
    let before = snapshot(home.tmp.path());
    let out = run(
        hearth().arg("init").arg("--data-dir").arg(home.data_dir()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(snapshot(home.tmp.path()), before);
}

/// A deleted database is not re-created: the key is still there, so the
/// directory is not empty.
#[test]
fn a_lost_database_is_not_recreated() {
    let (home, _) = home_with_a_device();
    std::fs::remove_file(home.data_dir().join("hearth.db")).unwrap();
    refuses_unchanged(&home, 65, "holds no hearth store");
}

#[test]
fn init_makes_private_files_and_fresh_keys() {
    let (a, b) = (TestHome::new(), TestHome::new());
    a.init();
    b.init();
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&a.data_dir()), 0o700);
    assert_eq!(mode(&a.data_dir().join("master.key")), 0o600);
    assert_eq!(mode(&a.data_dir().join("hearth.db")), 0o600);
    let ka = std::fs::read(a.data_dir().join("master.key")).unwrap();
    let kb = std::fs::read(b.data_dir().join("master.key")).unwrap();
    assert_ne!(ka, kb, "two installs must not share a key");
    assert_eq!(ka.len(), 65);

    // A second init changes nothing and says so.
    let before = snapshot(a.tmp.path());
    let out = run(
        hearth().arg("init").arg("--data-dir").arg(a.data_dir()),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("nothing was changed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(a.tmp.path()), before);
}

/// The systemd credential is used when present, and init then writes no key
/// into the data directory.
#[test]
fn systemd_credential_supplies_the_key() {
    let home = TestHome::new();
    let creds = home.path("creds");
    std::fs::create_dir(&creds).unwrap();
    hearth::store::files::write_new_key(&creds.join("hearth.key")).unwrap();
    set_mode(&creds.join("hearth.key"), 0o400);
    let out = run(
        hearth()
            .arg("init")
            .arg("--data-dir")
            .arg(home.data_dir())
            .env("CREDENTIALS_DIRECTORY", &creds),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!home.data_dir().join("master.key").exists());
    // Without the credential the store does not open.
    refuses_unchanged(&home, 77, "does not exist");
}

/// The audit log is a keyed hash chain: an entry edited in the raw file is
/// named by `hearth audit verify`, offline and through the running daemon,
/// and the daemon still starts, so the home keeps working.
#[test]
fn an_altered_audit_entry_is_named_and_the_home_keeps_working() {
    let daemon = crate::harness::Daemon::start_with("[relay]\nlisten = \"127.0.0.1:0\"\n");
    // The relay is enabled only for an owner with two-factor on.
    daemon.owner_with_two_factor("owner@home.invalid", "an audit test passphrase");
    for op in ["enable", "disable", "enable", "disable"] {
        daemon.cli_json(&["relay", op]);
    }
    let ok = daemon.cli_json(&["audit", "verify"]);
    assert!(ok["problem"].is_null(), "{ok}");
    assert!(ok["entries"].as_u64().unwrap() >= 4, "{ok}");
    let home = daemon.stop_keeping_home();

    let db = home.data_dir().join("hearth.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let changed = conn
            .execute(
                "UPDATE audit SET at = at + 1000 WHERE id = (SELECT id FROM audit ORDER BY id LIMIT 1 OFFSET 2)",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let out = run(
        hearth()
            .args(["audit", "verify", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("entry 3") && said.contains("altered"), "{said}");

    // Deleting an entry is named too.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE audit SET at = at - 1000 WHERE id = (SELECT id FROM audit ORDER BY id LIMIT 1 OFFSET 2)",
            [],
        )
        .unwrap();
        conn.execute(
            "DELETE FROM audit WHERE id = (SELECT id FROM audit ORDER BY id LIMIT 1 OFFSET 1)",
            [],
        )
        .unwrap();
    }
    let out = run(
        hearth()
            .args(["audit", "verify", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out.stderr).contains("entry 2: it is missing"),
        "{}",
        text(&out.stderr)
    );

    // The daemon starts anyway, logs it, and says so when asked.
    let daemon = crate::harness::Daemon::start_in_with(home, "[relay]\nlisten = \"127.0.0.1:0\"\n");
    assert!(
        daemon.log().contains("audit log's hash chain is broken"),
        "{}",
        daemon.log()
    );
    let out = daemon.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains("entry 2"));
}

const PLAIN_LAN: &str = "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"0.0.0.0:0\"]\n\
                         allow_plaintext_lan = true\n[discovery]\nenabled = false\n[web]\nlisten = [\"127.0.0.1:0\"]\n";

/// The settings watcher: a plaintext LAN listener configured between two
/// starts is audited and stands as a warning until acknowledged.
#[test]
fn a_plaintext_listener_turned_on_stands_as_a_warning() {
    let daemon = crate::harness::Daemon::start();
    let home = daemon.stop_keeping_home();
    let standing = |home: &TestHome| {
        let store = open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
        hearth::store::warnings::standing(&store).unwrap()
    };
    assert!(standing(&home).is_empty());
    let daemon = crate::harness::Daemon::start_in_raw(home, PLAIN_LAN);
    assert!(daemon.log().contains("lowered protection"), "{}", daemon.log());
    let home = daemon.stop_keeping_home();
    let w = standing(&home);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].what.contains("allow_plaintext_lan"));
    // The same setting at the next start is not raised again.
    let daemon = crate::harness::Daemon::start_in_raw(home, PLAIN_LAN);
    let home = daemon.stop_keeping_home();
    assert_eq!(standing(&home).len(), 1);
    let mut store = open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    assert!(hearth::store::warnings::acknowledge(&mut store, &w[0].id, hearth::store::Actor::Cli).unwrap());
    assert!(hearth::store::warnings::standing(&store).unwrap().is_empty());
}

/// `hearth erase`: the keys go first, then every file; nothing readable is
/// left, and the next start is a fresh install.
#[test]
fn erase_leaves_no_canary_and_no_key_and_the_next_start_is_fresh() {
    let daemon = crate::harness::Daemon::start();
    let canary = format!("Canary-Erase-{}", std::process::id());
    daemon.cli_json(&[
        "devices",
        "add",
        "--profile",
        "generic",
        "--kind",
        "bulb",
        "--nickname",
        &canary,
    ]);
    // Refused while hearth runs.
    let out = daemon.cli(&["erase", "--yes"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let home = daemon.stop_keeping_home();
    let key = std::fs::read_to_string(home.data_dir().join("master.key")).unwrap();
    let wrapped: Vec<u8> = rusqlite::Connection::open(home.data_dir().join("hearth.db"))
        .unwrap()
        .query_row("SELECT wrapped FROM data_keys", [], |r| r.get(0))
        .unwrap();

    // Without --yes and without a terminal: refused, nothing touched.
    let before = snapshot(home.tmp.path());
    let out = run(
        hearth()
            .args(["erase", "--data-dir"])
            .arg(home.data_dir())
            .stdin(std::process::Stdio::null()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_eq!(snapshot(home.tmp.path()), before);

    let out = home.erase();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("erased: 1 data key destroyed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_dir(home.data_dir()).unwrap().count(),
        0,
        "the data directory is empty"
    );
    let everything = hearth_tests::files_under(home.tmp.path());
    for file in &everything {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            find_in_bytes(&bytes, &[canary.clone(), key.trim().to_owned()]).is_empty(),
            "{} holds a canary or the key",
            file.display()
        );
        assert!(
            !bytes.windows(wrapped.len()).any(|w| w == wrapped.as_slice()),
            "{} holds the wrapped data key",
            file.display()
        );
    }
    // Again: nothing to erase.
    let out = home.erase();
    assert_eq!(out.status.code(), Some(65));
    // The next start is a fresh install.
    let daemon = crate::harness::Daemon::start_in(home);
    assert!(daemon.log().contains("first run"), "{}", daemon.log());
    assert_eq!(daemon.cli_json(&["devices", "list"]).as_array().unwrap().len(), 0);
}

/// The `user_version` in a SQLite file's header (bytes 60 to 63, big-endian):
/// the store's schema version, read from the file itself.
fn schema_version_on_disk(db: &Path) -> u32 {
    let bytes = std::fs::read(db).expect("read the database");
    assert_eq!(&bytes[..16], b"SQLite format 3\0", "not a SQLite file");
    u32::from_be_bytes(bytes[60..64].try_into().unwrap())
}

/// Copies a directory tree, files and subdirectories only.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// An upgrade from 0.1.0: a data directory that the 0.1.0 daemon wrote (a
/// bulb exposed to Home Assistant and voice, a camera, Home Assistant
/// connected; tests/fixtures/store-0.1.0, schema 7) is migrated at the
/// first start of this version. Every device, its sealed nickname and room,
/// its exposure, its MQTT credential and Home Assistant's password survive,
/// and the audit chain verifies across the versions.
#[test]
fn a_store_written_by_0_1_0_is_migrated_at_the_next_start_and_keeps_everything() {
    use crate::harness::{Daemon, tool};

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-0.1.0");
    let credentials: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("credentials.json")).unwrap()).unwrap();
    let home = TestHome::new();
    let data = home.data_dir();
    copy_tree(&fixture.join("data"), &data);
    // The modes 0.1.0 left (git keeps none of them).
    for (path, mode) in [
        ("", 0o700),
        ("hearth.db", 0o600),
        ("master.key", 0o600),
        ("setup-code", 0o600),
        ("ca.pem", 0o644),
        ("tls", 0o755),
        ("tls/server.key", 0o600),
        ("tls/server.pem", 0o644),
    ] {
        set_mode(&data.join(path), mode);
    }
    let db = data.join("hearth.db");
    assert_eq!(schema_version_on_disk(&db), 7, "the fixture is 0.1.0's schema");

    let daemon = Daemon::start_in(home);
    let log = daemon.log();
    for v in 8..=hearth::store::schema::VERSION {
        assert!(
            log.contains(&format!("store migrated schema_version={v}")),
            "no migration to {v}: {log}"
        );
    }

    let devices = daemon.cli_json(&["devices", "list"]);
    let devices = devices.as_array().expect("a list");
    assert_eq!(devices.len(), 2, "{devices:?}");
    for which in ["bulb", "camera"] {
        let want = &credentials[which];
        let got = devices
            .iter()
            .find(|d| d["id"] == want["id"])
            .unwrap_or_else(|| panic!("the {which} is gone: {devices:?}"));
        for field in ["nickname", "room", "kind", "profile", "topics"] {
            assert_eq!(got[field], want[field], "{which} {field}");
        }
        assert_eq!(got["status"], "adopted", "{which}");
    }
    let bulb = devices
        .iter()
        .find(|d| d["id"] == credentials["bulb"]["id"])
        .unwrap();
    assert_eq!(bulb["expose_ha"], true);
    assert_eq!(bulb["expose_voice"], true);
    assert_eq!(bulb["voice_name"], "porch lamp");

    // The bulb's credential from 0.1.0 still connects over TLS; a wrong
    // password does not.
    let port = daemon.tls_port().to_string();
    let ca = daemon.ca_cert().display().to_string();
    let tls_as = |tool_name: &str, username: &str, password: &str| {
        let mut cmd = tool(tool_name);
        cmd.args(["-h", "127.0.0.1", "-p", &port, "--cafile", &ca])
            .args(["-u", username, "-P", password]);
        cmd
    };
    let bulb = &credentials["bulb"];
    let publish = |password: &str| {
        run(
            tls_as("mosquitto_pub", bulb["username"].as_str().unwrap(), password)
                .args(["-i", bulb["client_id"].as_str().unwrap(), "-q", "1"])
                .args(["-t", "tele/tasmota_d1255e/LWT", "-m", "Online"]),
            Duration::from_secs(15),
        )
    };
    let out = publish(bulb["password"].as_str().unwrap());
    assert!(
        out.status.success(),
        "the bulb's 0.1.0 credential: {}",
        text(&out.stderr)
    );
    let out = publish("0123456789abcdef0123456789abcdef");
    assert!(!out.status.success(), "a wrong password was accepted");

    // Home Assistant's 0.1.0 password still connects, and it is still told
    // about the exposed bulb (a retained discovery config).
    let ha = &credentials["homeassistant"];
    let topic = format!("homeassistant/device/{}/config", bulb["id"].as_str().unwrap());
    let out = run(
        tls_as(
            "mosquitto_sub",
            ha["username"].as_str().unwrap(),
            ha["password"].as_str().unwrap(),
        )
        .args(["-t", &topic, "-C", "1", "-W", "10"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "Home Assistant: {}", text(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a discovery config");
    assert_eq!(config["dev"]["name"], "porch light", "{config}");
    assert_eq!(config["dev"]["sa"], "front porch", "{config}");

    let home = daemon.stop_keeping_home();
    assert_eq!(
        schema_version_on_disk(&home.data_dir().join("hearth.db")),
        hearth::store::schema::VERSION
    );
    let out = run(
        hearth()
            .args(["audit", "verify", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Still sealed after the migration, in every file.
    let names = ["porch light", "front porch", "nursery camera", "porch lamp"].map(String::from);
    assert_eq!(find_canaries(&home.data_dir(), &names), vec![]);
}
