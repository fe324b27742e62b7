//! `hearth demo`: the real daemon and a simulated home, in a network
//! namespace of the test's own so its loopback is the test's alone.

use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::discovery::Netns;
use crate::harness::{TestHome, hearth, run, set_up_owner, signal, text, timed_lines_of, wait_status};
use crate::http::Target;

#[test]
fn demo_discovers_adopts_and_obeys() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (mut child, rx) = start_demo(&ns, &home, &[]);
    let expect = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok((line, _)) = rx.recv_timeout(Duration::from_millis(200)) {
                if line.contains(want) {
                    return;
                }
                seen.push(line);
            }
        }
        panic!("no {want:?} in {seen:#?}");
    };
    expect("hearth demo is running.");
    expect("Home Assistant  MQTT integration");
    expect("Porch light: connected");

    let out = run(
        hearth()
            .args(["devices", "list", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 8);
    assert!(list.iter().all(|d| d["status"] == "adopted"));
    let count = |k: &str| list.iter().filter(|d| d["kind"] == k).count();
    assert_eq!(
        (count("bulb"), count("camera"), count("plug"), count("doorbell")),
        (4, 2, 1, 1)
    );
    // The demo shows its home to Home Assistant.
    assert!(list.iter().all(|d| d["expose_ha"] == true));
    let out = run(
        hearth()
            .args(["integrations", "homeassistant", "status", "--json", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ha: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (ha["enabled"].as_bool(), ha["exposed"].as_u64()),
        (Some(true), Some(8))
    );

    let porch = list.iter().find(|d| d["nickname"] == "Porch light").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(
        hearth()
            .args(["devices", "set", &porch, "on", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    expect("Porch light: state ON");
    // The shell can confirm it too: the list carries what the light reported.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(
            hearth()
                .args(["devices", "list", "--json", "--data-dir"])
                .arg(home.data_dir()),
            Duration::from_secs(20),
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let porch_now = list
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == porch.as_str())
            .unwrap()
            .clone();
        if porch_now["power"] == true && porch_now["online"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "devices list --json never showed the porch light on: {porch_now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    signal(&child.0, libc::SIGINT);
    let status = wait_status(&mut child.0, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

/// The demo process, killed if a test panics before it stops it, so that a
/// failed run leaves nothing running.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `hearth demo ARGS` on `home`'s data directory inside `ns`: the process,
/// and each line it prints with when it arrived.
fn start_demo(ns: &Netns, home: &TestHome, args: &[&str]) -> (Demo, Receiver<(String, Instant)>) {
    let mut child = ns
        .exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-under-test")))
        .arg("demo")
        .args(args)
        .arg("--data-dir")
        .arg(home.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = timed_lines_of(&mut child);
    (Demo(child), lines)
}

/// With `--leave-pending` the simulated home waits on the Discovered page;
/// a device the owner adopts there (through the dashboard's HTTP API, after
/// setting up the owner account as the dashboard does) or with `hearth
/// devices adopt` connects with the credential that adoption issued, and is
/// online within 10 s. A device left pending stays offline.
#[test]
fn demo_devices_adopted_by_the_owner_connect() {
    use serde_json::json;
    let ns = Netns::new();
    let home = TestHome::new();
    let (mut child, rx) = start_demo(&ns, &home, &["--leave-pending"]);
    // Every line the demo printed, for the leak check at the end.
    let seen = std::cell::RefCell::new(Vec::new());
    let expect = |want: &str, limit: Duration| -> (String, Instant) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok((line, at)) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.borrow_mut().push(line.clone());
                if line.contains(want) {
                    return (line, at);
                }
            }
        }
        panic!("no {want:?} within {limit:?} in {:#?}", seen.borrow());
    };
    expect("hearth demo is running.", Duration::from_secs(30));
    let (dashboard, _) = expect("  dashboard       https://", Duration::from_secs(5));
    let web_port: u16 = dashboard
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no dashboard port in {dashboard:?}"));

    let list = || -> Vec<serde_json::Value> {
        let out = run(
            hearth()
                .args(["devices", "list", "--json", "--data-dir"])
                .arg(home.data_dir()),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let pending = list();
    assert_eq!(pending.len(), 8);
    assert!(
        pending
            .iter()
            .all(|d| d["status"] == "pending" && d["online"] == false)
    );
    let id_of = |profile: &str, kind: &str| {
        pending
            .iter()
            .find(|d| d["profile"] == profile && d["kind"] == kind)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (by_api, by_cli) = (id_of("esphome", "bulb"), id_of("tasmota", "bulb"));

    // The dashboard's way: the owner account from the setup code, then the
    // Discovered page's adopt, over HTTPS with the session cookie and the
    // CSRF token.
    let data_dir = home.data_dir();
    let ca = data_dir.join("ca.pem");
    let id = by_api.clone();
    let (adopted_at, password) = ns.enter(move || {
        let web = Target::tls(web_port, &ca);
        let owner = set_up_owner(
            web,
            &data_dir,
            "owner@home.invalid",
            "a long demo test passphrase",
        );
        let at = Instant::now();
        let r = owner.api(
            "POST",
            &format!("/api/devices/{id}/adopt"),
            Some(json!({ "nickname": "Porch", "room": "Outside" })),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let password = r.json()["mqtt"]["password"].as_str().unwrap().to_owned();
        (at, password)
    });
    let (_, connected) = expect(&format!("bulb {by_api}: connected"), Duration::from_secs(10));
    println!(
        "adopted over the API to connected: {:?}",
        connected.duration_since(adopted_at)
    );

    // The CLI's way.
    let asked = Instant::now();
    let out = run(
        hearth()
            .args([
                "devices",
                "adopt",
                &by_cli,
                "--nickname",
                "Kitchen",
                "--json",
                "--data-dir",
            ])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cli_password = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["mqtt"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, connected) = expect(&format!("bulb {by_cli}: connected"), Duration::from_secs(10));
    println!(
        "adopted with the CLI to connected: {:?}",
        connected.duration_since(asked)
    );

    // Home's view: both online (their retained online status reached the
    // broker); the rest still pending and offline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = list();
        let online: Vec<&str> = now
            .iter()
            .filter(|d| d["online"] == true)
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        if online.len() == 2 && online.contains(&by_api.as_str()) && online.contains(&by_cli.as_str()) {
            assert_eq!(now.iter().filter(|d| d["status"] == "pending").count(), 6);
            break;
        }
        assert!(Instant::now() < deadline, "not both online within 10 s: {now:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The device obeys through the broker, in its own scheme.
    let out = run(
        hearth()
            .args(["devices", "set", &by_api, "on", "--data-dir"])
            .arg(home.data_dir()),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    expect(&format!("bulb {by_api}: state ON"), Duration::from_secs(10));

    signal(&child.0, libc::SIGINT);
    let status = wait_status(&mut child.0, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));

    // The password adoption issued went to the owner and, in process, to
    // the firmware, and nowhere else: not to the demo's output and not to
    // any file in the data directory. Nor did the owner's names.
    let canaries = vec![password, cli_password, "Porch".to_owned(), "Kitchen".to_owned()];
    let output = seen.borrow().join("\n");
    assert_eq!(
        hearth_tests::find_in_bytes(output.as_bytes(), &canaries),
        Vec::<String>::new(),
        "in the demo's output"
    );
    assert_eq!(
        hearth_tests::find_canaries(&home.data_dir(), &canaries),
        Vec::new(),
        "in the data directory"
    );
}

/// With `--no-firmware` the demo runs no device of its own: the device the
/// owner adopts connects only when someone runs it with the provisioning
/// shown (as the browser tests do), and then holds its session, with no
/// second client of the same id taking it over.
#[test]
fn demo_without_firmware_leaves_the_device_to_the_owner() {
    let ns = Netns::new();
    let home = TestHome::new();
    let (mut child, rx) = start_demo(&ns, &home, &["--leave-pending", "--no-firmware"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rx
        .recv_timeout(Duration::from_millis(200))
        .is_ok_and(|(l, _)| l.contains("hearth demo is running."))
    {
        assert!(Instant::now() < deadline, "the demo did not start");
    }
    let cli = |args: &[&str]| {
        let out = run(
            hearth().args(args).arg("--data-dir").arg(home.data_dir()),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out.stdout
    };
    let list: serde_json::Value = serde_json::from_slice(&cli(&["devices", "list", "--json"])).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["profile"] == "esphome")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = home.path("provisioning.json");
    std::fs::write(
        &file,
        cli(&["devices", "adopt", &id, "--nickname", "Porch", "--json"]),
    )
    .unwrap();

    let (device, drx) = ns.sim_device(&file, 30);
    let first = drx.recv_timeout(Duration::from_secs(10)).map(|(l, _)| l);
    assert_eq!(first.as_deref(), Ok("connected"));
    // Three quiet seconds: nobody else connects as this device.
    std::thread::sleep(Duration::from_secs(3));
    let device_lines: Vec<String> = drx.try_iter().map(|(l, _)| l).collect();
    assert!(
        !device_lines.iter().any(|l| l == "disconnected"),
        "{device_lines:?}"
    );
    let demo_lines: Vec<String> = rx.try_iter().map(|(l, _)| l).collect();
    assert!(
        !demo_lines.iter().any(|l| l.contains(": connected")),
        "{demo_lines:?}"
    );
    drop(device);

    signal(&child.0, libc::SIGINT);
    let status = wait_status(&mut child.0, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}
