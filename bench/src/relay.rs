//! The voice relay's command path: a Google `EXECUTE` with
//! `BrightnessAbsolute`, over HTTP on loopback (as from the owner's tunnel),
//! until the simulated bulb receives the canonical command. Against, in the
//! same run and the same daemon, Home Assistant's path: a publish on
//! `hearth/<id>/set` by the `homeassistant` principal.
//!
//! The owner (with two-factor authentication, which the relay requires)
//! and the link are written into the store while the daemon is stopped
//! (client, link and token hashes, as the OAuth exchange would leave them):
//! the benchmark measures directives, not the consent page. Per round: 10,000
//! directives (or 60 s), then 10,000 MQTT commands (or 60 s), one at a
//! time, alternating brightness 30 and 70 so that each is a change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth::home::vendor::Profile;
use hearth::store::DeviceKind;
use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::measure::{cpu_secs, median, percentile_us};
use crate::start::{self, Process};

const COMMANDS: usize = 10_000;
const PHASE_LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Daemon {
    process: Process,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn spawn(hearth: &Path, dir: &Path, mqtt: u16, relay: u16) -> (Process, PathBuf) {
    start::hearth(
        hearth,
        dir,
        &format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:{mqtt}\"]\nplain_listen = []\n[log]\nlevel = \"warn\"\n\
             [discovery]\nenabled = false\n[web]\nlisten = [\"127.0.0.1:0\"]\n\
             [relay]\nlisten = \"127.0.0.1:{relay}\"\ntoken_rate_per_sec = 1000\ntoken_burst = 10000\n\
             address_rate_per_sec = 1000\naddress_burst = 10000\n"
        ),
    )
}

/// A daemon with one exposed generic bulb, Home Assistant connected, and
/// one link to the bulb whose access token is returned.
pub(crate) fn prepare(hearth: &Path) -> (Daemon, Value, Value, String, u16, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, relay) = (start::free_port(), start::free_port());
    let (mut process, data) = spawn(hearth, dir.path(), mqtt, relay);
    let bulb = start::add_device(
        &data,
        Profile::Generic,
        DeviceKind::Bulb,
        "bench bulb".into(),
        None,
    );
    let id = bulb["id"].as_str().unwrap().to_owned();
    start::expose(&data, &id, Some("bench light"));
    let ha = start::homeassistant(&data);
    // Stop, write the owner and the link, start again with the relay
    // enabled.
    process.stop();
    owner_with_two_factor(&data);
    let access = hearth::store::secret::random_token(256).unwrap();
    {
        let dir = hearth::store::DataDir::new(&data);
        let mut store = hearth::store::open_or_init(&dir, None).unwrap();
        let client = store
            .insert_relay_client(
                &hearth::store::relay::RelayClientFields {
                    name: "bench".into(),
                    assistant: "google".into(),
                    redirect_uris: vec!["https://bench.invalid/cb".into()],
                    created_at: 0,
                },
                &hearth::store::secret::TokenHash::of(
                    hearth::store::secret::random_token(256).unwrap().expose(),
                ),
            )
            .unwrap();
        let far = hearth::store::UnixTime(hearth::store::UnixTime::now().0 + 3_600_000);
        let refresh = hearth::store::secret::random_token(256).unwrap();
        store
            .insert_relay_link(
                &client,
                &hearth::store::relay::RelayLinkFields {
                    actions: vec!["power".into(), "brightness".into()],
                    created_at: 0,
                },
                &[hearth::store::DeviceId::parse(&id).unwrap()],
                &hearth::store::relay::IssuedTokens {
                    access: hearth::store::secret::TokenHash::of(access.expose()),
                    access_expires: far,
                    refresh: hearth::store::secret::TokenHash::of(refresh.expose()),
                    refresh_expires: far,
                },
            )
            .unwrap();
        store
            .put_secret("relay_settings", br#"{"enabled":true}"#)
            .unwrap();
    }
    let (process, _) = spawn(hearth, dir.path(), mqtt, relay);
    start::wait_for_port(relay, "the relay");
    let mut bulb = bulb;
    bulb["mqtt"]["port"] = mqtt.into();
    (
        Daemon {
            process,
            data,
            _dir: dir,
        },
        bulb,
        ha,
        access.expose().to_owned(),
        mqtt,
        relay,
    )
}

/// The owner, with two-factor authentication on, as the dashboard's setup
/// and Security page leave them: hearth starts the relay only for such a
/// home (`Relay::may_enable`). Done through the daemon's own accounts code
/// on its stopped store; nothing of it is timed.
fn owner_with_two_factor(data: &Path) {
    use hearth::accounts::totp;
    let store = hearth::store::open_or_init(&hearth::store::DataDir::new(data), None).unwrap();
    let auth = hearth::accounts::Auth::new(
        std::sync::Arc::new(std::sync::Mutex::new(store)),
        data.to_owned(),
        Duration::from_secs(3600),
        Duration::from_secs(86_400),
    )
    .unwrap();
    let code = auth.prepare_setup().unwrap().expect("a new home has no owner");
    let owner = auth
        .setup(
            code.expose(),
            "bench",
            "bench owner passphrase 7341",
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
        .unwrap();
    let (text, _) = auth.enroll(&owner.session).unwrap();
    let secret = totp::TotpSecret::from_base32(&text).unwrap();
    let step = hearth::accounts::unix_now() / 30;
    auth.confirm(&owner.session, &format!("{:06}", totp::code_at(&secret, step)))
        .unwrap();
}

#[derive(Default, Clone)]
pub(crate) struct Phase {
    pub p50_us: f64,
    pub p99_us: f64,
    pub answer_p99_us: f64,
    pub sent: usize,
    pub lost: usize,
    pub cpu_us: f64,
    /// Every command's time to the bulb, sorted (for pooling over rounds).
    pub latencies: Vec<Duration>,
}

/// Reads one HTTP/1.1 response with a Content-Length from a keep-alive
/// connection; returns its status.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return status;
            }
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the relay closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Up to `commands` commands (or 60 s), one at a time, by the relay or by
/// Home Assistant's publish.
pub(crate) async fn phase(
    daemon: &Daemon,
    bulb: &Value,
    ha: &Value,
    token: &str,
    relay: u16,
    via_relay: bool,
    commands: usize,
) -> Phase {
    // The bulb, reporting each brightness it is told.
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<(String, Instant)>();
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(hearth::sim::device(
        bulb.clone(),
        "127.0.0.1".into(),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
        move |line| {
            let _ = lines_tx.send((line.to_owned(), Instant::now()));
        },
    ));
    loop {
        let (l, _) = tokio::time::timeout(WAIT, lines.recv())
            .await
            .expect("bulb")
            .unwrap();
        if l == "connected" {
            break;
        }
    }
    let id = bulb["id"].as_str().unwrap().to_owned();
    // Home Assistant's client, for the reference path.
    let m = &ha["mqtt"];
    let port = bulb["mqtt"]["port"].as_u64().unwrap() as u16;
    let name = if via_relay { "ha-idle" } else { "ha-commands" };
    let mut opts = MqttOptions::new(name, "127.0.0.1", port);
    opts.set_credentials(m["username"].as_str().unwrap(), m["password"].as_str().unwrap());
    let ca = daemon.data.join("ca.pem");
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(start::mqtt_tls(&ca))));
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let (stop_ha, mut ha_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut ha_stopped => return,
                e = events.poll() => if e.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                },
            }
        }
    });
    let mut http = tokio::net::TcpStream::connect(("127.0.0.1", relay))
        .await
        .unwrap();
    http.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while lines.try_recv().is_ok() {}

    let pid = daemon.process.id();
    let cpu0 = cpu_secs(pid);
    let started = Instant::now();
    let (mut lat, mut answers) = (Vec::with_capacity(commands), Vec::with_capacity(commands));
    let (mut sent, mut lost) = (0, 0);
    while sent < commands && started.elapsed() < PHASE_LIMIT {
        let level = if sent % 2 == 0 { 30 } else { 70 };
        let want = format!("brightness {level}");
        let t0 = Instant::now();
        if via_relay {
            let body = json!({ "requestId": sent.to_string(), "inputs": [{ "intent": "action.devices.EXECUTE", "payload": { "commands": [{
                "devices": [{ "id": id }],
                "execution": [{ "command": "action.devices.commands.BrightnessAbsolute", "params": { "brightness": level } }]
            }] } }] })
            .to_string();
            let req = format!(
                "POST /google HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            http.write_all(req.as_bytes()).await.unwrap();
        } else {
            let b = hearth::home::vendor::to_255(level);
            client
                .publish(
                    format!("hearth/{id}/set"),
                    QoS::AtLeastOnce,
                    false,
                    json!({ "brightness": b }).to_string(),
                )
                .await
                .unwrap();
        }
        sent += 1;
        let mut arrived = None;
        let deadline = t0 + WAIT;
        while arrived.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, lines.recv()).await {
                Ok(Some((l, at))) if l == want => arrived = Some(at),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        match arrived {
            Some(at) => lat.push(at - t0),
            None => lost += 1,
        }
        if via_relay {
            let status = read_response(&mut http, &mut buf).await;
            if status != 200 {
                lost += 1;
            }
            answers.push(t0.elapsed());
        }
    }
    let cpu = cpu_secs(pid) - cpu0;
    let _ = stop_tx.send(true);
    let _ = client.disconnect().await;
    let _ = stop_ha.send(());
    lat.sort();
    answers.sort();
    Phase {
        p50_us: percentile_us(&lat, 0.5),
        p99_us: percentile_us(&lat, 0.99),
        answer_p99_us: percentile_us(&answers, 0.99),
        sent,
        lost,
        cpu_us: cpu * 1e6 / sent.max(1) as f64,
        latencies: lat,
    }
}

pub fn run(hearth: &Path, rounds: usize) {
    println!(
        "\n## relay: {rounds} rounds; {COMMANDS} Google EXECUTE directives over HTTP on loopback, then {COMMANDS} \
         Home Assistant publishes on hearth/<id>/set, one at a time, each until the bulb has the command"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut relay_runs, mut ha_runs) = (Vec::new(), Vec::new());
    let mut errors = 0;
    for r in 0..rounds {
        let (daemon, bulb, ha, token, _mqtt, relay) = prepare(hearth);
        for via_relay in [true, false] {
            let p = rt.block_on(phase(&daemon, &bulb, &ha, &token, relay, via_relay, COMMANDS));
            let who = if via_relay { "relay" } else { "home assistant" };
            println!(
                "round {} {who:<14}: p50 {:>6.0} us  p99 {:>6.0} us  (relay answer p99 {:>6.0} us)  sent {} lost {}  cpu {:.0} us/cmd",
                r + 1,
                p.p50_us,
                p.p99_us,
                p.answer_p99_us,
                p.sent,
                p.lost,
                p.cpu_us
            );
            errors += p.lost;
            if via_relay {
                relay_runs.push(p);
            } else {
                ha_runs.push(p);
            }
        }
    }
    let m = |v: &[Phase], f: fn(&Phase) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    println!("\nmedians over {rounds} rounds                 relay   home assistant   ratio");
    type Row = (&'static str, fn(&Phase) -> f64);
    let rows: [Row; 3] = [
        ("p50 command to bulb us", |p| p.p50_us),
        ("p99 command to bulb us", |p| p.p99_us),
        ("daemon CPU us per command", |p| p.cpu_us),
    ];
    for (name, f) in rows {
        let (a, b) = (m(&relay_runs, f), m(&ha_runs, f));
        println!("{name:<34} {a:>9.1} {b:>16.1} {:>6.2}x", a / b);
    }
    println!(
        "relay answer p99 us              {:>9.1}",
        m(&relay_runs, |p| p.answer_p99_us)
    );
    println!("commands without an answer over all rounds: {errors}");
}
