//! The dashboard and the CLI reach the same device operations: a device
//! adopted and forgotten through one door ends as one adopted and forgotten
//! through the other.

use std::time::{Duration, Instant};

use hearth::discovery::classify::{Advert, Verdict, classify};
use hearth::discovery::pending::{Outcome, Shares, record_advert};
use hearth::store::DataDir;
use rumqttc::{ConnectReturnCode, QoS};
use serde_json::json;

use crate::harness::{Daemon, Device, TestHome, set_up_owner, text};
use crate::mqtt;

/// Two pending ESPHome bulbs, as discovery records them.
fn two_pending_bulbs(home: &TestHome) -> [String; 2] {
    let mut store = hearth::store::open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
    let mut shares = Shares::default();
    ["a8032ab12345", "a8032ab16789"].map(|mac| {
        let advert = Advert {
            service_type: "_esphomelib._tcp".into(),
            instance: format!("bulb-{mac}"),
            port: 6053,
            addresses: vec!["192.168.1.44".parse().unwrap()],
            txt: vec![
                ("mac".into(), mac.into()),
                ("project_name".into(), "acme.smart_light".into()),
            ],
            host: format!("bulb-{mac}"),
            source: Some("192.168.1.44".parse().unwrap()),
        };
        let Some(Verdict::Offer(c)) = classify(&advert) else {
            panic!("not offered")
        };
        match record_advert(&mut store, &mut shares, &advert, &c, 256).unwrap() {
            Outcome::Created(id) => id.to_string(),
            other => panic!("{other:?}"),
        }
    })
}

/// One bulb is adopted from the CLI, the other from the dashboard; both
/// connect and report power on, so the dashboard shows their live state.
/// Then the first is forgotten from the CLI and the second from the
/// dashboard. Afterwards each is gone from both lists, its session is cut
/// and its password refused, both forgets are audited, and forgetting
/// either again is refused by either door.
#[test]
fn the_cli_and_the_dashboard_adopt_and_forget_alike() {
    let home = TestHome::new();
    let [cli_id, web_id] = two_pending_bulbs(&home);
    let daemon = Daemon::start_in(home);
    let web = crate::http::Target::tls(daemon.web_port(), &daemon.ca_cert());
    let owner = set_up_owner(
        web,
        &daemon.home.data_dir(),
        "owner",
        "copper kettle under the stairs",
    );
    let by_cli = Device(daemon.cli_json(&["devices", "adopt", &cli_id, "--nickname", "Desk"]));
    let r = owner.api(
        "POST",
        &format!("/api/devices/{web_id}/adopt"),
        Some(json!({ "nickname": "Hall" })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let by_web = Device(r.json());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        for d in [&by_cli, &by_web] {
            let c = mqtt::connect(mqtt::options(&daemon, d)).await;
            c.client
                .publish(
                    format!("{}/light/main/state", d.base()),
                    QoS::AtLeastOnce,
                    false,
                    r#"{"state":"ON"}"#,
                )
                .await
                .unwrap();
            clients.push(c);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = owner.api("GET", "/api/devices", None).json();
            let on = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["power"] == true && d["online"] == true)
                .count();
            if on == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no live state: {list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let out = daemon.cli(&["devices", "forget", by_cli.id()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let r = owner.api("DELETE", &format!("/api/devices/{}", by_web.id()), None);
        assert_eq!(r.status, 204, "{}", r.text());

        for c in clients {
            tokio::time::timeout(Duration::from_secs(5), c.closed)
                .await
                .expect("session not cut")
                .unwrap();
        }
        for d in [&by_cli, &by_web] {
            let (_c, mut events) = rumqttc::AsyncClient::new(mqtt::options(&daemon, d), 8);
            assert_eq!(
                mqtt::connack(&mut events).await.unwrap(),
                ConnectReturnCode::BadUserNamePassword
            );
        }
    });
    assert_eq!(daemon.cli_json(&["devices", "list"]), json!([]));
    assert_eq!(owner.api("GET", "/api/devices", None).json(), json!([]));
    let audit = owner.api("GET", "/api/audit?event=device_forgotten", None).json();
    let actors: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors.len(), 2, "{audit}");
    assert!(actors.contains(&"cli"), "{audit}");
    let out = daemon.cli(&["devices", "forget", by_web.id()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    let r = owner.api("DELETE", &format!("/api/devices/{}", by_cli.id()), None);
    assert_eq!(r.status, 404, "{}", r.text());
}
