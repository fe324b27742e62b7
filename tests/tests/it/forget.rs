//! Forgetting a device from the dashboard and from the CLI: both doors call
//! the one operation (`Devices::forget`), so each leaves the same state
//! behind.

use std::time::{Duration, Instant};

use rumqttc::{ConnectReturnCode, QoS};
use serde_json::json;

use crate::harness::{Daemon, set_up_owner, text};
use crate::mqtt;

/// Two lamps connect and report power on, so the dashboard shows their live
/// state. One is forgotten from the CLI, the other from the dashboard.
/// Afterwards each is gone from both lists, its session is cut, its password
/// is refused, and the audit log has both forgets.
#[test]
fn the_cli_and_the_dashboard_forget_alike() {
    let daemon = Daemon::start();
    let web = crate::http::Target::tls(daemon.web_port(), &daemon.ca_cert());
    let owner = set_up_owner(
        web,
        &daemon.home.data_dir(),
        "owner",
        "copper kettle under the stairs",
    );
    let by_cli = daemon.add("generic", "Desk");
    let by_web = daemon.add("generic", "Hall");
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
                    format!("{}/state", d.base()),
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
    // Forgetting either again is refused alike.
    let out = daemon.cli(&["devices", "forget", by_web.id()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    let r = owner.api("DELETE", &format!("/api/devices/{}", by_cli.id()), None);
    assert_eq!(r.status, 404, "{}", r.text());
}
