//! `hearth demo`: the real daemon and a simulated home, in a network
//! namespace of the test's own so its loopback is the test's alone.

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::discovery::Netns;
use crate::harness::{TestHome, hearth, run, signal, text, wait_status};

#[test]
fn demo_discovers_adopts_and_obeys() {
    let ns = Netns::new();
    let home = TestHome::new();
    let mut child = ns
        .exec(std::path::Path::new(env!("CARGO_BIN_EXE_hearth-under-test")))
        .arg("demo")
        .arg("--data-dir")
        .arg(home.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let expect = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
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

    signal(&child, libc::SIGINT);
    let status = wait_status(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}
