//! The Matter bridge's fabrics as secrets: lockdown removes them (through
//! the running bridge, or from the store while it is off), erase destroys
//! them, backup and restore carry them, and the privacy report lists them.
//!
//! A real fabric comes only from a real commissioning (the matter.js
//! harness, tests/matter/); here the records are written straight into the
//! sealed store under the names rs-matter's key-value store uses, which is
//! what lockdown, erase and backup act on.

use std::time::Duration;

use hearth::store::{DataDir, Store, open_or_init};
use hearth_tests::find_in_bytes;

use crate::harness::{Daemon, TestHome, hearth, run, set_up_owner, text};

/// rs-matter's records: fabrics 1 and 2 (key = fabric index), the basic
/// information settings (0x100), and hearth's own Matter records.
const FABRIC_1: &str = "matter_kv_0001";
const FABRIC_2: &str = "matter_kv_0002";
const SETTINGS: &str = "matter_kv_0100";

fn store(home: &TestHome) -> Store {
    open_or_init(&DataDir::new(home.data_dir()), None).unwrap()
}

/// Writes two fabrics (holding `canary`), rs-matter's settings and hearth's
/// Matter records into `home`'s store; the setup code it now has.
fn seed(home: &TestHome, canary: &str) -> hearth::matter::Setup {
    let mut s = store(home);
    s.put_secret(FABRIC_1, format!("fabric one {canary}").as_bytes())
        .unwrap();
    s.put_secret(FABRIC_2, format!("fabric two {canary}").as_bytes())
        .unwrap();
    s.put_secret(SETTINGS, b"basic information settings").unwrap();
    s.put_secret("matter_endpoints", b"{\"endpoints\":{}}").unwrap();
    s.put_secret("matter_fabrics", b"{\"added\":{}}").unwrap();
    hearth::matter::Setup::load_or_create(&mut s).unwrap()
}

/// Every `matter_` record with its opened value.
fn matter_records(s: &Store) -> Vec<(String, Vec<u8>)> {
    s.secret_names("matter_")
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = s.secret(&n).unwrap().unwrap().to_vec();
            (n, v)
        })
        .collect()
}

/// A UDP port free on every address, for Matter (which refuses port 0).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lockdown_detail(s: &Store) -> String {
    s.audit(50)
        .unwrap()
        .into_iter()
        .find(|e| e.event == "lockdown")
        .expect("a lockdown entry")
        .detail
}

#[test]
fn lockdown_removes_the_controllers_kept_while_the_bridge_is_off() {
    let home = TestHome::new();
    home.init();
    let setup = seed(&home, "lockdown-canary");
    let daemon = Daemon::start_in(home);

    // The report counts them and says they would come back.
    let report = daemon.cli_json(&["privacy", "report"]);
    assert_eq!(report["matter"]["enabled"], false);
    assert_eq!(report["matter"]["kept"], 2);
    let what = report["matter"]["what"].as_str().unwrap();
    assert!(what.contains("2 controllers paired earlier are kept"), "{what}");
    let held = report["held"].as_array().unwrap();
    let row = held
        .iter()
        .find(|h| h["what"].as_str().unwrap().starts_with("Matter controllers"))
        .expect("a Matter row in what is held");
    assert_eq!(row["count"], 2);

    let done = daemon.cli_json(&["lockdown"]);
    assert_eq!(done["matter_controllers_removed"], 2);
    let out = daemon.cli(&["lockdown"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("no Matter controller was paired"), "{said}");
    assert!(!said.contains("(s)"), "{said}");
    let report = daemon.cli_json(&["privacy", "report"]);
    assert_eq!(report["matter"]["kept"], 0);

    let home = daemon.stop_keeping_home();
    let s = store(&home);
    assert_eq!(s.secret(FABRIC_1).unwrap(), None);
    assert_eq!(s.secret(FABRIC_2).unwrap(), None);
    // Not a fabric: the settings, the setup code and the endpoints stay,
    // so a controller paired again finds the same bridge.
    assert!(s.secret(SETTINGS).unwrap().is_some());
    assert!(s.secret("matter_endpoints").unwrap().is_some());
    assert_eq!(
        hearth::matter::Setup::load_or_create(&mut store(&home)).unwrap(),
        setup
    );
    // The audit says how many, in words (the first lockdown is the older
    // entry; the newest removed none).
    let lockdowns: Vec<String> = s
        .audit(50)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "lockdown")
        .map(|e| e.detail)
        .collect();
    assert_eq!(lockdowns.len(), 2, "{lockdowns:?}");
    assert!(
        lockdowns[1].contains("2 Matter controllers removed"),
        "{lockdowns:?}"
    );
    assert!(
        lockdowns[0].starts_with("0 sessions ended, 0 relay links revoked,"),
        "{lockdowns:?}"
    );
    assert!(lockdowns.iter().all(|d| !d.contains("(s)")), "{lockdowns:?}");
}

#[test]
fn lockdown_with_the_bridge_running_closes_pairing_and_says_none_was_paired() {
    let port = free_udp_port();
    let daemon = Daemon::start_with(&format!("[matter]\nenabled = true\nport = {port}\n"));
    // A light exposed to voice: what a controller would see.
    let lamp = daemon.add_device("generic", "bulb", "Lamp by the bed", "Bedroom");
    daemon.cli_json(&[
        "devices",
        "expose",
        lamp.id(),
        "--voice",
        "on",
        "--voice-name",
        "reading light",
    ]);

    // The privacy report, on with no controller, from the CLI and the
    // dashboard alike.
    let report = daemon.cli_json(&["privacy", "report"]);
    let m = &report["matter"];
    assert_eq!(m["enabled"], true);
    assert_eq!(m["controllers"], serde_json::json!([]));
    assert_eq!(m["devices"], serde_json::json!(["reading light"]));
    let what = m["what"].as_str().unwrap();
    assert!(what.starts_with("On, with no controller paired"), "{what}");
    assert!(what.contains("reading light"), "{what}");
    assert!(
        !what.contains("Lamp by the bed") && !what.contains("Bedroom"),
        "{what}"
    );
    let stays = m["leaves_home"].as_str().unwrap();
    assert!(stays.contains("no cloud and no account link"), "{stays}");
    let matter_listener = report["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["what"].as_str().unwrap().starts_with("Matter"))
        .expect("Matter among the listeners");
    assert_eq!(
        matter_listener["addresses"],
        serde_json::json!([format!("[::]:{port} (IPv4 and IPv6)")])
    );
    let out = daemon.cli(&["privacy", "report"]);
    let said = text(&out.stdout);
    assert!(
        said.contains("Matter bridge:\n  On, with no controller paired"),
        "{said}"
    );
    assert!(said.contains("Matter stays on your LAN"), "{said}");

    let web = crate::http::Target::tls(daemon.web_port(), &daemon.ca_cert());
    let owner = set_up_owner(
        web,
        &daemon.home.data_dir(),
        "owner",
        "a matter privacy passphrase",
    );
    let page = owner.api("GET", "/api/privacy", None);
    assert_eq!(page.status, 200);
    let page: serde_json::Value = serde_json::from_str(&page.text()).unwrap();
    let shared = page["shared"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["with"] == "Matter controllers")
        .expect("Matter among what integrations are told")
        .clone();
    assert_eq!(shared["enabled"], true);
    assert_eq!(shared["devices"], serde_json::json!(["reading light"]));
    assert_eq!(shared["what"], m["what"]);
    assert!(
        page["leaves_home"].as_array().unwrap().iter().any(|l| l == stays),
        "{page}"
    );

    // Pairing open, then a lockdown, from the dashboard and from the CLI:
    // each time pairing closed, and no controller to remove.
    let pair = || {
        let codes = daemon.cli_json(&["matter", "pair"]);
        assert!(codes.to_string().contains("open_secs"), "{codes}");
        assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], true);
    };
    pair();
    let r = owner.api("POST", "/api/lockdown", Some(serde_json::json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["matter_controllers_removed"], 0);
    assert_eq!(r.json()["sessions_ended"], 0, "the caller's own session stays");
    assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], false);
    pair();
    let done = daemon.cli_json(&["lockdown"]);
    assert_eq!(done["matter_controllers_removed"], 0);
    assert_eq!(done["sessions_ended"], 1, "the owner's session");
    assert_eq!(daemon.cli_json(&["matter", "status"])["pairing_open"], false);

    let home = daemon.stop_keeping_home();
    let detail = lockdown_detail(&store(&home));
    assert!(detail.contains("0 Matter controllers removed"), "{detail}");
    assert!(!detail.contains("(s)"), "{detail}");
}

#[test]
fn a_backup_carries_the_matter_records_and_a_restore_brings_them_back_equal() {
    let home = TestHome::new();
    home.init();
    let canary = format!("Fabric-Canary-{}", std::process::id());
    let setup = seed(&home, &canary);
    let before = matter_records(&store(&home));
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "matter_endpoints",
            "matter_fabrics",
            FABRIC_1,
            FABRIC_2,
            SETTINGS,
            "matter_setup"
        ]
    );

    let pass = home.path("pass");
    std::fs::write(&pass, "a long backup passphrase\n").unwrap();
    let file = home.path("home.hearthbackup");
    let out = run(
        hearth()
            .args(["backup", "create", "--out"])
            .arg(&file)
            .arg("--passphrase-file")
            .arg(&pass)
            .arg("--data-dir")
            .arg(home.data_dir()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&file).unwrap();
    assert!(find_in_bytes(&bytes, &[canary.clone(), "matter_kv".into()]).is_empty());

    // On a new hub: every record back, byte for byte, and the same setup
    // code, so the controllers paired before keep working.
    let fresh = TestHome::new();
    let out = run(
        hearth()
            .args(["backup", "restore"])
            .arg(&file)
            .arg("--passphrase-file")
            .arg(&pass)
            .arg("--data-dir")
            .arg(fresh.data_dir()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(matter_records(&store(&fresh)), before);
    assert_eq!(
        hearth::matter::Setup::load_or_create(&mut store(&fresh)).unwrap(),
        setup
    );
}

#[test]
fn erase_leaves_no_matter_record_and_no_fabric_in_any_file() {
    let home = TestHome::new();
    home.init();
    let canary = format!("Erase-Fabric-Canary-{}", std::process::id());
    seed(&home, &canary);
    assert_eq!(matter_records(&store(&home)).len(), 6);
    let out = home.erase();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.starts_with("erased: 1 data key destroyed,"), "{said}");
    assert!(!said.contains("(s)"), "{said}");
    for file in hearth_tests::files_under(home.tmp.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            find_in_bytes(&bytes, std::slice::from_ref(&canary)).is_empty(),
            "{} holds a fabric",
            file.display()
        );
    }
    // What opens there now is a new store, with no Matter record at all:
    // no fabric, and a new setup code.
    let s = store(&home);
    assert_eq!(s.secret_names("matter_").unwrap(), Vec::<String>::new());
}
