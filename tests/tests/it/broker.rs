//! The broker, driven by real clients: Debian's mosquitto tools and rumqttc,
//! over TLS with hearth's CA, against a real `hearth run`.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rumqttc::{ConnectReturnCode, LastWill, QoS};

use crate::harness::{Daemon, Device, mosquitto_args, run, text, tool};
use crate::mqtt;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A device publishes and subscribes on its own topics over TLS, using the
/// CA file it was given: with mosquitto_rr (one MQTT 5 connection) and with
/// rumqttc.
#[test]
fn own_topics_work_over_tls() {
    let daemon = Daemon::start();
    let dev = daemon.add("generic", "Lamp");
    let topic = format!("{}/ping", dev.base());
    let out = run(
        tool("mosquitto_rr").args(mosquitto_args(&daemon, &dev)).args([
            "-V",
            "5",
            "-t",
            &topic,
            "-e",
            &topic,
            "-m",
            "hello-own-topic",
            "-W",
            "10",
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "mosquitto_rr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "hello-own-topic");

    rt().block_on(async {
        let mut c = mqtt::connect(mqtt::options(&daemon, &dev)).await;
        c.client
            .subscribe(format!("{}/#", dev.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.round_trip(
            &format!("{}/state", dev.base()),
            b"{\"on\":true}",
            Duration::from_secs(5),
        )
        .await;
    });
    let stats = daemon.stats();
    assert!(stats["messages_in"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["accepted"].as_u64().unwrap() >= 2, "{stats}");
}

/// Another device's topics, `#` and `$SYS` are refused, and a denied publish
/// never reaches the other device.
#[test]
fn foreign_topics_hash_and_sys_are_denied() {
    let daemon = Daemon::start();
    let (a, b) = (daemon.add("generic", "A"), daemon.add("generic", "B"));
    rt().block_on(async {
        let mut victim = mqtt::connect(mqtt::options(&daemon, &b)).await;
        victim
            .client
            .subscribe(format!("{}/#", b.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        for filter in [
            format!("{}/#", b.base()),
            "#".into(),
            "$SYS/#".into(),
            "hearth/+/state".into(),
        ] {
            let out = run(
                tool("mosquitto_sub")
                    .args(mosquitto_args(&daemon, &a))
                    .args(["-t", &filter, "-C", "1", "-W", "3"]),
                Duration::from_secs(10),
            );
            let all = text(&out.stdout) + &text(&out.stderr);
            assert!(all.contains("denied"), "subscribe {filter}: {all}");
        }
        // MQTT 5: the broker answers PUBACK 0x87 (not authorised).
        let out = run(
            tool("mosquitto_pub").args(mosquitto_args(&daemon, &a)).args([
                "-V",
                "5",
                "-q",
                "1",
                "-t",
                &format!("{}/set", b.base()),
                "-m",
                "intrude",
            ]),
            Duration::from_secs(10),
        );
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(all.to_lowercase().contains("not authori"), "{all}");
        // MQTT 3.1.1 gets a PUBACK, but the message is dropped all the same.
        let out = run(
            tool("mosquitto_pub").args(mosquitto_args(&daemon, &a)).args([
                "-q",
                "1",
                "-t",
                &format!("{}/set", b.base()),
                "-m",
                "intrude",
            ]),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        // hearth's own retained messages on the victim's topics (its
        // availability) may arrive; the intruder's command must not.
        let set = format!("{}/set", b.base());
        let until = tokio::time::Instant::now() + Duration::from_millis(700);
        while let Ok(Some(m)) = tokio::time::timeout_at(until, victim.messages.recv()).await {
            assert!(
                m.topic != set && m.payload.as_ref() != b"intrude",
                "a denied publish was delivered: {m:?}"
            );
        }
        // A denied retained publish is not kept for later subscribers either.
        let out = run(
            tool("mosquitto_pub").args(mosquitto_args(&daemon, &a)).args([
                "-r",
                "-q",
                "1",
                "-t",
                &format!("{}/config", b.base()),
                "-m",
                "planted",
            ]),
            Duration::from_secs(10),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    });
    let out = run(
        tool("mosquitto_sub").args(mosquitto_args(&daemon, &b)).args([
            "-t",
            &format!("{}/config", b.base()),
            "-C",
            "1",
            "-W",
            "2",
        ]),
        Duration::from_secs(10),
    );
    assert!(
        !text(&out.stdout).contains("planted"),
        "a denied retained message was kept"
    );
    let stats = daemon.stats();
    assert!(stats["denied_subscribe"].as_u64().unwrap() >= 4, "{stats}");
    assert!(stats["denied_publish"].as_u64().unwrap() >= 2, "{stats}");
    // Counted, never logged with the topic.
    assert!(
        !daemon.log().contains(b.base().as_str()),
        "a topic reached the log"
    );
}

/// Table of refused CONNECTs: each gets the right CONNACK, and none harms
/// the client that is already connected.
#[test]
fn bad_connects_are_refused() {
    let daemon = Daemon::start();
    let dev = daemon.add("generic", "Plug");
    let other = daemon.add("generic", "Other");
    let args = |user: &str, pass: &str, id: &str| -> Vec<String> {
        let mut a = mosquitto_args(&daemon, &dev);
        a[7] = user.into();
        a[9] = pass.into();
        a[11] = id.into();
        a
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "wrong password",
            args(dev.username(), "0000", dev.client_id()),
            "bad user name or password",
        ),
        (
            "unknown user",
            args("nobody", dev.password(), dev.client_id()),
            "bad user name or password",
        ),
        (
            "empty password",
            args(dev.username(), "", dev.client_id()),
            "bad user name or password",
        ),
        (
            "another device's id",
            args(dev.username(), dev.password(), other.client_id()),
            "not authorised",
        ),
        (
            "id with /",
            args(dev.username(), dev.password(), "a/b"),
            "not authorised",
        ),
        (
            "id with +",
            args(dev.username(), dev.password(), "a+b"),
            "not authorised",
        ),
        (
            "id with #",
            args(dev.username(), dev.password(), "a#"),
            "not authorised",
        ),
        (
            "id with $",
            args(dev.username(), dev.password(), "$a"),
            "not authorised",
        ),
        (
            "another device's password",
            args(dev.username(), other.password(), dev.client_id()),
            "bad user name or password",
        ),
    ];
    rt().block_on(async {
        let mut steady = mqtt::connect(mqtt::options(&daemon, &other)).await;
        steady
            .client
            .subscribe(format!("{}/#", other.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (name, a, want) in &cases {
            let out = run(
                tool("mosquitto_pub").args(a).args(["-t", "x", "-m", "y"]),
                Duration::from_secs(10),
            );
            let all = (text(&out.stdout) + &text(&out.stderr)).to_lowercase();
            assert!(!out.status.success() && all.contains(want), "{name}: {all}");
        }
        // A Last Will outside the device's own topics is refused at CONNECT;
        // one inside them is accepted.
        let mut opts = mqtt::options(&daemon, &dev);
        opts.set_last_will(LastWill::new(
            format!("{}/lwt", other.base()),
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        let (_c, mut events) = rumqttc::AsyncClient::new(opts, 8);
        assert_eq!(
            mqtt::connack(&mut events).await.unwrap(),
            ConnectReturnCode::NotAuthorized
        );
        let mut opts = mqtt::options(&daemon, &dev);
        opts.set_last_will(LastWill::new(
            format!("{}/lwt", dev.base()),
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        let _own = mqtt::connect(opts).await;
        // The steady client never noticed.
        steady
            .round_trip(
                &format!("{}/x", other.base()),
                b"still here",
                Duration::from_secs(2),
            )
            .await;
    });
    let stats = daemon.stats();
    assert!(stats["refused_credentials"].as_u64().unwrap() >= 4, "{stats}");
    assert!(stats["refused_client_id"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["refused_will"].as_u64().unwrap() >= 1, "{stats}");
}

/// Forgetting a device cuts its live session within a second and refuses
/// its password from then on.
#[test]
fn forget_cuts_the_session_and_refuses_the_password() {
    let daemon = Daemon::start();
    let dev = daemon.add("tasmota", "Heater");
    rt().block_on(async {
        let c = mqtt::connect(mqtt::options(&daemon, &dev)).await;
        let asked = Instant::now();
        let out = daemon.cli(&["devices", "forget", dev.id()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let cut = tokio::time::timeout(Duration::from_secs(5), c.closed)
            .await
            .expect("session not cut")
            .unwrap();
        let took = cut.duration_since(asked);
        assert!(took < Duration::from_secs(1), "cut after {took:?}");
        let (_c, mut events) = rumqttc::AsyncClient::new(mqtt::options(&daemon, &dev), 8);
        assert_eq!(
            mqtt::connack(&mut events).await.unwrap(),
            ConnectReturnCode::BadUserNamePassword
        );
    });
    let list = daemon.cli_json(&["devices", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0);
    // Forgetting it again is an error that names the id.
    let out = daemon.cli(&["devices", "forget", dev.id()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains(dev.id()));
}

/// Rotation: the old session is cut, the old password refused, the new one
/// works.
#[test]
fn rotation_replaces_the_password() {
    let daemon = Daemon::start();
    let old = daemon.add("generic", "Camera");
    rt().block_on(async {
        let c = mqtt::connect(mqtt::options(&daemon, &old)).await;
        let new = crate::harness::Device(daemon.cli_json(&["devices", "rotate", old.id()]));
        assert_ne!(new.password(), old.password());
        assert_eq!(new.client_id(), old.client_id());
        tokio::time::timeout(Duration::from_secs(1), c.closed)
            .await
            .expect("old session not cut")
            .unwrap();
        let (_c, mut events) = rumqttc::AsyncClient::new(mqtt::options(&daemon, &old), 8);
        assert_eq!(
            mqtt::connack(&mut events).await.unwrap(),
            ConnectReturnCode::BadUserNamePassword
        );
        let mut c = mqtt::connect(mqtt::options(&daemon, &new)).await;
        c.client
            .subscribe(format!("{}/#", new.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.round_trip(&format!("{}/x", new.base()), b"rotated", Duration::from_secs(5))
            .await;
    });
}

/// Bad input on the wire never takes the broker down: a normal client keeps
/// its round trips under 2 s through every kind of abuse.
#[test]
fn abuse_does_not_disturb_a_normal_client() {
    hearth::supervisor::raise_nofile();
    let daemon = Daemon::start_with("handshake_timeout_secs = 2\n");
    let normal = daemon.add("generic", "Normal");
    let big = daemon.add("generic", "Big");
    let raw = daemon.add("generic", "Raw");
    let (tls, plain) = (daemon.tls_port(), daemon.plain_port());
    rt().block_on(async {
        let mut c = mqtt::connect(mqtt::options(&daemon, &normal)).await;
        c.client
            .subscribe(format!("{}/#", normal.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let topic = format!("{}/echo", normal.base());
        let limit = Duration::from_secs(2);
        let mut check = async |what: &str| {
            let took = c.round_trip(&topic, what.as_bytes(), limit).await;
            assert!(took < limit, "{what}: {took:?}");
        };
        check("baseline").await;

        // Idle TCP and idle TLS sockets: they block nobody, and are closed
        // once the handshake deadline passes.
        let mut idle_tcp = TcpStream::connect(("127.0.0.1", tls)).unwrap();
        let mut idle_tls = TcpStream::connect(("127.0.0.1", tls)).unwrap();
        let mut tls_conn = rustls::ClientConnection::new(
            mqtt::client_tls(&daemon),
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
        )
        .unwrap();
        while tls_conn.is_handshaking() {
            tls_conn.complete_io(&mut idle_tls).expect("handshake");
        }
        check("with idle sockets").await;
        assert!(
            mqtt::closed_within(&mut idle_tcp, Duration::from_secs(4)),
            "idle TCP socket left open"
        );
        assert!(
            mqtt::closed_within(&mut idle_tls, Duration::from_secs(4)),
            "idle TLS socket left open"
        );

        // Another device's credential under this client id is refused.
        let mut foreign = mqtt::options(&daemon, &big);
        foreign.set_client_id(normal.client_id().to_owned());
        let (_d, mut events) = rumqttc::AsyncClient::new(foreign, 8);
        assert_eq!(
            mqtt::connack(&mut events).await.unwrap(),
            ConnectReturnCode::NotAuthorized
        );
        check("after a foreign client id").await;

        // 100 blobs of garbage at both ports.
        let mut noise = hearth_tests::Noise::new(0x2545_f491_4f6c_dd1d);
        for i in 0..100 {
            let port = if i % 2 == 0 { tls } else { plain };
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let blob = noise.bytes(64 + i * 37);
            let _ = s.write_all(&blob);
        }
        check("after 100 garbage blobs").await;

        // An oversized packet (300 KiB, over the 256 KiB limit) drops only
        // its own connection.
        let mut opts = mqtt::options(&daemon, &big);
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let b = mqtt::connect(opts).await;
        let _ = b
            .client
            .publish(
                format!("{}/x", big.base()),
                QoS::AtMostOnce,
                false,
                vec![7u8; 300 * 1024],
            )
            .await;
        tokio::time::timeout(Duration::from_secs(3), b.closed)
            .await
            .expect("oversized not dropped")
            .unwrap();
        check("after an oversized packet").await;

        // A CONNACK sent by a client, and a PUBLISH with an empty topic.
        let mut s = TcpStream::connect(("127.0.0.1", plain)).unwrap();
        s.write_all(&[0x20, 0x02, 0x00, 0x00]).unwrap();
        assert!(
            mqtt::closed_within(&mut s, Duration::from_secs(3)),
            "CONNACK from a client accepted"
        );
        let (mut s, code) = mqtt::raw_connect(plain, &raw);
        assert_eq!(code, 0);
        s.write_all(&mqtt::publish_packet(b"", b"no topic")).unwrap();
        assert!(
            mqtt::closed_within(&mut s, Duration::from_secs(3)),
            "empty topic accepted"
        );
        check("after protocol violations").await;
    });
    let stats = daemon.stats();
    assert!(stats["handshake_timeout"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["handshake_failed"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["refused_client_id"].as_u64().unwrap() >= 1, "{stats}");
}

/// A device whose Wi-Fi dropped reconnects before the broker notices: MQTT
/// says the new connection takes the session over, and with one credential
/// per device only that credential may. The old socket (never closed by the
/// device, keepalive 0 so the broker would wait forever) is cut, the new one
/// works at once. Home Assistant's credential, which takes any client id,
/// may not take a device's session over, but may take over its own.
#[test]
fn a_reconnect_with_the_same_credential_takes_the_session_over() {
    let daemon = Daemon::start();
    let lamp = daemon.add("generic", "Lamp");
    let plain = daemon.plain_port();
    let mut stale = TcpStream::connect(("127.0.0.1", plain)).unwrap();
    let mut packet = mqtt::connect_packet(lamp.client_id(), lamp.username(), lamp.password());
    // Keepalive 0, after the fixed header, protocol name, level and flags.
    let header = 1 + packet[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    packet[header + 8..header + 10].copy_from_slice(&0u16.to_be_bytes());
    stale.write_all(&packet).unwrap();
    let mut ack = [0u8; 4];
    std::io::Read::read_exact(&mut stale, &mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let conn = daemon.cli_json(&["integrations", "homeassistant", "enable"]);
    let ha = |client_id: &str| {
        let m = &conn["mqtt"];
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", daemon.tls_port());
        o.set_credentials(m["username"].as_str().unwrap(), m["password"].as_str().unwrap());
        o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
            mqtt::client_tls(&daemon),
        )));
        o
    };
    rt().block_on(async {
        // The silent drop: the stale socket stays open; the device comes back.
        let started = Instant::now();
        let mut back = mqtt::connect(mqtt::options(&daemon, &lamp)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        back.client
            .subscribe(format!("{}/#", lamp.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let took = back
            .round_trip(&format!("{}/state", lamp.base()), b"{}", Duration::from_secs(2))
            .await;
        assert!(took < Duration::from_secs(2));

        // Home Assistant under the lamp's client id: refused, the lamp stays.
        let (_h, mut events) = rumqttc::AsyncClient::new(ha(lamp.client_id()), 8);
        assert_eq!(
            mqtt::connack(&mut events).await.unwrap(),
            ConnectReturnCode::NotAuthorized
        );
        back.round_trip(
            &format!("{}/state", lamp.base()),
            b"{\"x\":1}",
            Duration::from_secs(2),
        )
        .await;

        // Home Assistant restarting under its own client id takes over.
        let first = mqtt::connect(ha("ha-7Qx")).await;
        let second = mqtt::connect(ha("ha-7Qx")).await;
        tokio::time::timeout(Duration::from_secs(3), first.closed)
            .await
            .expect("the first Home Assistant session was not taken over")
            .unwrap();
        drop(second);
    });
    assert!(
        mqtt::closed_within(&mut stale, Duration::from_secs(3)),
        "the stale session was not cut"
    );
    let stats = daemon.stats();
    assert!(stats["takeovers"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["refused_duplicate"].as_u64().unwrap() >= 1, "{stats}");
}

/// What a client sends never reaches hearth's log, and an expected error
/// on a client path captures no backtrace: with `RUST_BACKTRACE=1`, 300
/// subscriptions to invalid filters (one carrying a newline and a forged
/// log line, one a room's name) leave no filter, name, forged line or
/// broker message naming the client in the log, and the daemon's memory does not jump (resolving
/// one backtrace once cost about 35 MB).
#[test]
fn client_input_never_reaches_the_log() {
    let daemon = Daemon::start_with_env("", &[("RUST_BACKTRACE", "1")]);
    let lamp = daemon.add("generic", "Lamp");
    let forged = "2026-12-06T12:00:00.000000Z  INFO hearth: forged-line-7731";
    let filters = [
        format!("a/#/b\n{forged}"),
        "Betty's room/#/x".to_owned(),
        "#/tail-5521".to_owned(),
        "mid+plus-3390/x".to_owned(),
    ];
    let pid = daemon.pid();
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    let send = |filters: &[String]| {
        let (mut s, code) = mqtt::raw_connect(daemon.plain_port(), &lamp);
        assert_eq!(code, 0);
        for (i, f) in filters.iter().enumerate() {
            let _ = s.write_all(&mqtt::subscribe_packet(i as u16 + 1, f.as_bytes()));
        }
        // The broker answers each (a failure code) or closes; give it time.
        mqtt::closed_within(&mut s, Duration::from_millis(100));
    };
    // Warm up on a valid filter, then 75 rounds of the invalid ones.
    send(&[format!("{}/x", lamp.base())]);
    let before = rss();
    for _ in 0..75 {
        send(&filters);
    }
    let grew = rss().saturating_sub(before);
    let log = daemon.log();
    for secret in [
        "forged-line-7731",
        "Betty",
        "tail-5521",
        "plus-3390",
        "Subscribe failed",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(!log.contains("stack backtrace"), "{log}");
    assert!(grew < 16 * 1024 * 1024, "RSS grew by {grew} bytes");
}

/// Every MQTT packet reaches a client in a TLS record of its own. Home
/// Assistant's client reads one packet per socket-readable event and never
/// asks TLS for what it already decrypted, so packets packed into one
/// record wait for unrelated traffic, up to the keepalive. A Python client
/// reading exactly that way (tests/mqtt/one_packet_per_event.py, Python's
/// ssl, i.e. OpenSSL) publishes 50 messages in one write to its own topic
/// and must get all 50 back within 2 s.
#[test]
fn a_client_reading_one_packet_per_event_gets_every_packet() {
    let daemon = Daemon::start();
    let lamp = daemon.add("generic", "Lamp");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mqtt/one_packet_per_event.py");
    let out = run(
        tool("python3")
            .arg(script)
            .arg("127.0.0.1")
            .arg(daemon.tls_port().to_string())
            .arg(daemon.ca_cert())
            .args([lamp.client_id(), lamp.username(), lamp.password()])
            .arg(format!("{}/burst", lamp.base()))
            .args(["50", "2"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["received"], 50, "{result}");
}

/// A CONNECT cut short holds no slot: what outside testing sent (`10 00`,
/// `10 01 00`, `10 02 00 04`: a remaining length of 0 to 2 and nothing
/// more) and a CONNECT whose client id runs past its end, on the TLS and
/// plain listeners alike. With 220 slots, two waves of 200 such sockets
/// each leave room for a device to connect at once, which only holds if
/// the first wave's slots were freed; every socket is closed by the
/// handshake deadline.
#[test]
fn truncated_connects_hold_no_slot() {
    let daemon = Daemon::start_with("handshake_timeout_secs = 2\nmax_connections = 220\n");
    let (tls, plain) = (daemon.tls_port(), daemon.plain_port());
    let shapes: [&[u8]; 5] = [
        &[0x10, 0x00],
        &[0x10, 0x01, 0x00],
        &[0x10, 0x02, 0x00, 0x04],
        &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 50, b'a'],
        // MQTT 5 whose properties run past the packet's end.
        &[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0x20, 0],
    ];
    let tls_config = mqtt::client_tls(&daemon);
    let wave = || -> (Instant, Vec<TcpStream>) {
        let start = Instant::now();
        let sockets = (0..200)
            .map(|i| {
                let shape = shapes[i % shapes.len()];
                if i % 2 == 0 {
                    let mut s = TcpStream::connect(("127.0.0.1", plain)).unwrap();
                    s.write_all(shape).unwrap();
                    s
                } else {
                    let mut s = TcpStream::connect(("127.0.0.1", tls)).unwrap();
                    let mut conn = rustls::ClientConnection::new(
                        tls_config.clone(),
                        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                    )
                    .unwrap();
                    conn.writer().write_all(shape).unwrap();
                    while conn.is_handshaking() || conn.wants_write() {
                        conn.complete_io(&mut s).expect("TLS handshake");
                    }
                    s
                }
            })
            .collect();
        (start, sockets)
    };
    for round in 0..2 {
        let device = daemon.add("generic", &format!("Lamp {round}"));
        let (start, mut sockets) = wave();
        rt().block_on(async {
            let t = Instant::now();
            let _c = mqtt::connect(mqtt::options(&daemon, &device)).await;
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "round {round}: {:?}",
                t.elapsed()
            );
        });
        // The deadline is 2 s from each accept; allow 1.5 s of slack.
        let by = start + Duration::from_millis(3500);
        for (i, s) in sockets.iter_mut().enumerate() {
            let left = by
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            assert!(
                mqtt::closed_within(s, left),
                "round {round}: socket {i} ({:02x?}) still open after {:?}",
                shapes[i % shapes.len()],
                start.elapsed()
            );
        }
    }
    // The three shapes too short to name a protocol are refused by hearth
    // itself, before the broker sees them.
    let stats = daemon.stats();
    assert!(
        stats["handshake_failed"].as_u64().unwrap() >= 400 * 3 / 5,
        "{stats}"
    );
    assert_eq!(stats["refused_capacity"].as_u64().unwrap(), 0, "{stats}");
}

/// A thousand connections at once: the normal client still gets through in
/// under 2 s, and every one of the thousand is really connected.
#[test]
fn a_thousand_connections() {
    hearth::supervisor::raise_nofile();
    let daemon = Daemon::start();
    let normal = daemon.add("generic", "Normal");
    // Provision 1,000 devices straight through the admin socket.
    let devices: Vec<Device> = (0..1000)
        .map(|i| Device(add_generic(&daemon, format!("d{i}"))))
        .collect();
    let plain = daemon.plain_port();
    let held: Vec<TcpStream> = devices
        .iter()
        .map(|d| {
            let (s, code) = mqtt::raw_connect(plain, d);
            assert_eq!(code, 0, "CONNACK");
            s
        })
        .collect();
    let stats = daemon.stats();
    assert!(stats["connections"].as_i64().unwrap() >= 1000, "{stats}");
    rt().block_on(async {
        let start = Instant::now();
        let mut c = mqtt::connect(mqtt::options(&daemon, &normal)).await;
        c.client
            .subscribe(format!("{}/#", normal.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.round_trip(&format!("{}/x", normal.base()), b"1001st", Duration::from_secs(2))
            .await;
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    });
    drop(held);
}

/// Provisions a generic device straight through the admin socket (no CLI
/// process), as the daemon's own client does.
fn add_generic(daemon: &Daemon, nickname: String) -> serde_json::Value {
    let request = hearth::app::admin::Request::DevicesAdd(hearth::home::devices::AddDevice {
        profile: hearth::home::vendor::Profile::Generic,
        kind: hearth::store::DeviceKind::Other,
        nickname,
        room: None,
        topic: None,
        addresses: Vec::new(),
    });
    hearth::app::admin::request(&daemon.home.data_dir(), &request).expect("devices add")
}

/// Plain MQTT on a LAN address: refused without the opt-in, started with a
/// standing warning with it.
#[test]
fn plaintext_lan_listener_needs_the_opt_in() {
    let home = crate::harness::TestHome::new();
    let config = home.path("lan.toml");
    std::fs::write(
        &config,
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"0.0.0.0:0\"]\n",
    )
    .unwrap();
    let out = run(
        crate::harness::hearth()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(home.data_dir()),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("mqtt.allow_plaintext_lan = true"));
    assert!(!home.data_dir().exists());

    let daemon = Daemon::start_raw(
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"0.0.0.0:0\"]\nallow_plaintext_lan = true\n\
         [discovery]\nenabled = false\n[web]\nlisten = [\"127.0.0.1:0\"]\n",
    );
    assert!(
        daemon.status["mqtt_plain"][0]
            .as_str()
            .unwrap()
            .starts_with("0.0.0.0:")
    );
    let dev = daemon.add("generic", "Old bulb");
    let (_s, code) = mqtt::raw_connect(daemon.plain_port(), &dev);
    assert_eq!(code, 0);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("protection lowered by configuration"), "{log}");
    assert!(log.contains("allow_plaintext_lan"), "{log}");
}

/// Retained messages work, and live only in memory: the payload never
/// reaches the data directory.
#[test]
fn retained_messages_stay_in_memory() {
    let daemon = Daemon::start();
    let dev = daemon.add("generic", "Sensor");
    let canary = "RetainedCanary7f3a";
    let topic = format!("{}/config", dev.base());
    let out = run(
        tool("mosquitto_pub")
            .args(mosquitto_args(&daemon, &dev))
            .args(["-r", "-q", "1", "-t", &topic, "-m", canary]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        tool("mosquitto_sub")
            .args(mosquitto_args(&daemon, &dev))
            .args(["-t", &topic, "-C", "1", "-W", "5"]),
        Duration::from_secs(10),
    );
    assert_eq!(text(&out.stdout).trim(), canary, "{}", text(&out.stderr));
    let found = hearth_tests::find_canaries(&daemon.home.data_dir(), &[canary.to_owned()]);
    assert_eq!(found, vec![]);
}

/// The simulator's misbehaviours against a live broker: idle sockets are
/// closed at the handshake deadline, garbage is dropped, and a normal client
/// is not disturbed.
#[test]
fn simulator_misbehaviour_is_contained() {
    let daemon = Daemon::start_with("handshake_timeout_secs = 1\n");
    let normal = daemon.add("generic", "Normal");
    let port = daemon.tls_port().to_string();
    let sim = env!("CARGO_BIN_EXE_hearth-sim");
    let idle = run(
        std::process::Command::new(sim).args(["idle", "--port", &port, "--count", "20", "--seconds", "4"]),
        Duration::from_secs(20),
    );
    assert_eq!(
        text(&idle.stdout).trim(),
        "opened 20\nclosed 20",
        "{}",
        text(&idle.stderr)
    );
    let garbage = run(
        std::process::Command::new(sim).args(["garbage", "--port", &port, "--count", "50"]),
        Duration::from_secs(20),
    );
    assert_eq!(text(&garbage.stdout).trim(), "opened 50");
    rt().block_on(async {
        let mut c = mqtt::connect(mqtt::options(&daemon, &normal)).await;
        c.client
            .subscribe(format!("{}/#", normal.base()), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.round_trip(&format!("{}/x", normal.base()), b"fine", Duration::from_secs(2))
            .await;
    });
}
