//! Adoption of a pending device, through the CLI against a running daemon.

use std::time::Duration;

use hearth::discovery::classify::{Advert, Verdict, classify};
use hearth::discovery::pending::{Outcome, Shares, record_advert};
use hearth::store::DataDir;
use rumqttc::QoS;

use crate::harness::{Daemon, Device, TestHome, text};
use crate::mqtt;

/// A pending ESPHome bulb, as discovery records it.
fn pending_bulb(home: &TestHome) -> String {
    let mut store = hearth::store::open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    let advert = Advert {
        service_type: "_esphomelib._tcp".into(),
        instance: "porch-light".into(),
        port: 6053,
        addresses: vec!["192.168.1.44".parse().unwrap()],
        txt: vec![
            ("mac".into(), "a8032ab12345".into()),
            ("project_name".into(), "acme.smart_light".into()),
            ("version".into(), "2024.6.1".into()),
        ],
        host: "porch-light".into(),
        source: Some("192.168.1.44".parse().unwrap()),
    };
    let Some(Verdict::Offer(c)) = classify(&advert) else {
        panic!("not offered")
    };
    match record_advert(&mut store, &mut Shares::default(), &advert, &c, 256).unwrap() {
        Outcome::Created(id) => id.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn adopt_a_pending_device_then_rename_it() {
    let home = TestHome::new();
    let id = pending_bulb(&home);
    let daemon = Daemon::start_in(home);
    let list = daemon.cli_json(&["devices", "list"]);
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["kind"], "bulb");
    assert_eq!(
        list[0]["topics"].as_array().unwrap().len(),
        0,
        "a pending device has no topics"
    );

    let dev = Device(daemon.cli_json(&[
        "devices",
        "adopt",
        &id,
        "--nickname",
        "Porch",
        "--room",
        "Outside",
    ]));
    assert_eq!(dev.id(), id);
    assert_eq!(dev.0["profile"], "esphome");
    assert_eq!(dev.0["topics"][0], "porch-light/#");
    // Adopting twice is refused.
    let out = daemon.cli(&["devices", "adopt", &id, "--nickname", "Again"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = mqtt::connect(mqtt::options(&daemon, &dev)).await;
        c.client
            .subscribe("porch-light/light/main/command", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.round_trip(
            "porch-light/light/main/command",
            b"{\"state\":\"ON\"}",
            Duration::from_secs(5),
        )
        .await;
    });

    let canary = "RenameCanary4412";
    let out = daemon.cli(&["devices", "rename", &id, "--nickname", canary]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = daemon.cli_json(&["devices", "list"]);
    assert_eq!(list[0]["nickname"], canary);
    assert_eq!(list[0]["room"], "Outside");
    let found = hearth_tests::find_canaries(&daemon.home.data_dir(), &[canary.to_owned(), "Porch".into()]);
    assert_eq!(found, vec![]);
}

/// Discovery can guess wrong, or not know (a Tasmota advert names no
/// model): the owner says what the device is when adopting it. "other" is
/// not a kind to adopt as, and a refused adoption leaves it pending.
#[test]
fn the_owner_sets_the_kind_when_adopting() {
    let home = TestHome::new();
    let id = pending_bulb(&home);
    let daemon = Daemon::start_in(home);
    let out = daemon.cli(&["devices", "adopt", &id, "--nickname", "Strip", "--kind", "other"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_eq!(daemon.cli_json(&["devices", "list"])[0]["status"], "pending");
    daemon.cli_json(&[
        "devices",
        "adopt",
        &id,
        "--nickname",
        "Strip",
        "--kind",
        "light_strip",
    ]);
    let list = daemon.cli_json(&["devices", "list"]);
    assert_eq!(list[0]["status"], "adopted");
    assert_eq!(list[0]["kind"], "light_strip");
}
