//! `hearth demo`: the real daemon with a simulated home, so a newcomer sees
//! hearth work on any machine.
//!
//! The simulated devices are announced on loopback only, never on a LAN;
//! they are discovered over mDNS and adopted through the admin socket, as the
//! owner would (or, with `--leave-pending`, by the owner on the dashboard,
//! the CLI or the API), and then connect over TLS with their own
//! credentials, which reach the simulated firmware in process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::app::admin::{self, Request};
use crate::config::Config;
use crate::home::devices::{Adopt, Issued};
use crate::sim;
use crate::store::DataDir;

/// How the demo runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Adopt nothing: the owner adopts.
    pub leave_pending: bool,
    /// Run the simulated firmware of each adopted device.
    pub firmware: bool,
}

/// Loopback listeners on free ports, discovery on loopback.
pub fn config() -> anyhow::Result<Config> {
    Ok(Config::from_toml(
        "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n\
         [discovery]\ninterfaces = \"loopback\"\n[web]\nlisten = [\"127.0.0.1:0\"]\n\
         [relay]\nlisten = \"127.0.0.1:0\"\n",
        Path::new("hearth demo"),
    )?)
}

/// The given directory, or a new one under the system's temporary directory.
pub fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<DataDir> {
    let path = match flag {
        Some(p) => std::path::absolute(&p).with_context(|| format!("cannot resolve {}", p.display()))?,
        None => {
            let mut tag = [0u8; 4];
            crate::store::crypto::fill_random(&mut tag)?;
            std::env::temp_dir().join(format!("hearth-demo-{}", hex::encode(tag)))
        }
    };
    Ok(DataDir::new(path))
}

/// The owner's names for the simulated home, by (profile, kind).
fn name_for(profile: &str, kind: &str) -> (&'static str, &'static str) {
    match (profile, kind) {
        ("homekit", "bulb") => ("Living room lamp", "Living room"),
        ("esphome", "bulb") => ("Porch light", "Outside"),
        ("shelly", "bulb") => ("Bedroom bulb", "Bedroom"),
        ("tasmota", "bulb") => ("Kitchen bulb", "Kitchen"),
        ("homekit", "camera") => ("Hall camera", "Hall"),
        ("rtsp", "camera") => ("Garden camera", "Garden"),
        ("shelly", "plug") => ("Coffee machine", "Kitchen"),
        ("homekit", "doorbell") => ("Front door", "Hall"),
        _ => ("Device", "Home"),
    }
}

/// A voice name of each demo device's own, holding neither its nickname
/// nor its room: what a voice assistant's cloud hears must not describe
/// the home.
fn voice_name_for(profile: &str, kind: &str) -> &'static str {
    match (profile, kind) {
        ("homekit", "bulb") => "sofa lamp",
        ("esphome", "bulb") => "welcome light",
        ("shelly", "bulb") => "night light",
        ("tasmota", "bulb") => "counter light",
        ("shelly", "plug") => "espresso",
        _ => "spare switch",
    }
}

fn adopt_id(provisioning: &serde_json::Value) -> String {
    provisioning["id"].as_str().unwrap_or("").to_owned()
}

async fn request(dir: &Path, req: Request) -> anyhow::Result<serde_json::Value> {
    let dir = dir.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || admin::request(&dir, &req)).await??)
}

/// The simulated home's firmware: a device starts once it is adopted, by
/// whichever path, with the credential that adoption issued, handed over
/// in process by the daemon (`Devices::with_issued_tap`). A rotated
/// credential restarts it with the new one. Only adoptions start firmware:
/// discovery here is on loopback, where only the simulated home announces,
/// so every adoptable device is one of it, while a device added by hand
/// has no simulated firmware. Nothing starts before `ready`, so the
/// devices' lines follow the demo's summary.
async fn firmware(
    mut issued: UnboundedReceiver<Issued>,
    labels: HashMap<String, String>,
    ready: tokio::sync::oneshot::Receiver<()>,
    token: CancellationToken,
) {
    tokio::select! {
        _ = token.cancelled() => return,
        _ = ready => {}
    }
    let mut running: HashMap<String, CancellationToken> = HashMap::new();
    loop {
        let Issued {
            provisioning,
            adopted,
        } = tokio::select! {
            _ = token.cancelled() => return,
            next = issued.recv() => match next {
                Some(i) => i,
                None => return,
            },
        };
        let id = provisioning.id.to_string();
        if !adopted && !running.contains_key(&id) {
            continue;
        }
        let stop = token.child_token();
        if let Some(old) = running.insert(id.clone(), stop.clone()) {
            old.cancel();
        }
        // The owner's names are theirs: a device the owner adopted is
        // shown by kind and id.
        let label = labels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("{} {id}", provisioning.kind.as_str()));
        let Ok(p) = serde_json::to_value(&provisioning) else {
            continue;
        };
        tokio::spawn(sim::device(
            p,
            "127.0.0.1".into(),
            stop.cancelled_owned(),
            move |line| {
                sim::say(&format!("  {label}: {line}"));
            },
        ));
    }
}

pub async fn run(
    dir: PathBuf,
    token: CancellationToken,
    leave_pending: bool,
    issued: Option<UnboundedReceiver<Issued>>,
) -> anyhow::Result<()> {
    // The daemon is up once its admin socket answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match request(&dir, Request::Status).await {
            Ok(status) => break status,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e.context("hearth did not come up")),
        }
    };
    let home = sim::HOME.to_vec();
    let loopback: std::net::IpAddr = "127.0.0.1".parse()?;
    let announcer = sim::announce(&home, loopback);
    println!(
        "hearth demo: announcing a simulated home of {} devices on loopback",
        home.len()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let list = request(&dir, Request::DevicesList).await?;
        let pending: Vec<serde_json::Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["status"] == "pending")
            .cloned()
            .collect();
        if pending.len() >= home.len() {
            break pending;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} devices discovered",
            pending.len(),
            home.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The demo names what it adopts itself; what the owner adopts goes by
    // kind and id.
    let labels = pending
        .iter()
        .filter(|_| !leave_pending)
        .map(|d| {
            let (nickname, _) = name_for(
                d["profile"].as_str().unwrap_or(""),
                d["kind"].as_str().unwrap_or(""),
            );
            (d["id"].as_str().unwrap_or("").to_owned(), nickname.to_owned())
        })
        .collect();
    let (ready, firmware_ready) = tokio::sync::oneshot::channel();
    if let Some(issued) = issued {
        tokio::spawn(firmware(issued, labels, firmware_ready, token.clone()));
    }
    let mut adopted = Vec::new();
    if leave_pending {
        println!(
            "hearth demo: discovered {} devices over mDNS; they wait for you to adopt them in the dashboard",
            pending.len()
        );
    } else {
        println!(
            "hearth demo: discovered {} devices over mDNS; adopting them as the owner would",
            pending.len()
        );
    }
    for d in pending.into_iter().filter(|_| !leave_pending) {
        let (profile, kind) = (
            d["profile"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or(""),
        );
        let (nickname, room) = name_for(profile, kind);
        let adopt = Adopt {
            id: d["id"].as_str().unwrap_or("").to_owned(),
            nickname: nickname.into(),
            room: Some(room.into()),
            kind: None,
        };
        let provisioning = request(&dir, Request::DevicesAdopt(adopt)).await?;
        println!(
            "  {:<18} {:<9} {:<8} {}",
            nickname,
            kind,
            profile,
            d["id"].as_str().unwrap_or("")
        );
        // The demo shows every device to Home Assistant, and its lights
        // and plugs to voice assistants under a voice name; a real owner
        // chooses device by device.
        let voice = !matches!(kind, "camera" | "doorbell");
        let expose = admin::Expose {
            id: adopt_id(&provisioning),
            homeassistant: Some(true),
            voice: Some(voice),
            voice_name: voice.then(|| voice_name_for(profile, kind).to_owned()),
        };
        request(&dir, Request::DevicesExpose(expose)).await?;
        adopted.push((nickname, provisioning));
    }
    // The Home Assistant connection, when devices were adopted: its
    // password is shown here once, as the dashboard would show it.
    let homeassistant = if adopted.is_empty() {
        None
    } else {
        match request(&dir, Request::HomeassistantEnable).await {
            Ok(c) => Some(Ok(c)),
            // A demo run again on the same directory is connected already.
            Err(e) => Some(Err(e)),
        }
    };
    let tls = status["mqtt_tls"][0].as_str().unwrap_or("?");
    println!("hearth demo is running.");
    println!("  data directory  {}", dir.display());
    println!("  MQTT over TLS   {tls}  (CA: {})", dir.join("ca.pem").display());
    if let Some(web) = status["web"][0].as_str() {
        println!("  dashboard       https://{web}/");
        let code = std::fs::read_to_string(dir.join(crate::accounts::SETUP_CODE_FILE)).unwrap_or_default();
        if !code.trim().is_empty() {
            println!("  setup code      {}", code.trim());
        }
    }
    match homeassistant {
        Some(Ok(c)) => {
            let m = &c["mqtt"];
            println!(
                "  Home Assistant  MQTT integration: broker {} port {}, TLS with the CA above,",
                m["host"].as_str().unwrap_or("?"),
                m["port"]
            );
            println!(
                "                  username {}, password {} (shown once), discovery prefix {}",
                m["username"].as_str().unwrap_or("?"),
                m["password"].as_str().unwrap_or("?"),
                c["discovery_prefix"].as_str().unwrap_or("?")
            );
        }
        Some(Err(e)) => println!("  Home Assistant  {e:#}"),
        None => {}
    }
    // The voice relay stays off: it is the one part of hearth meant to be
    // reached from outside, so only the owner turns it on, with two-factor
    // authentication set up first. Its address is loopback here.
    let relay = request(&dir, Request::RelayStatus).await;
    let listening = relay
        .as_ref()
        .ok()
        .and_then(|r| r["listening"].as_str().map(str::to_owned));
    match listening {
        Some(addr) => println!("  voice relay     http://{addr}/ (loopback only)"),
        None => println!(
            "  voice relay     off until you turn it on: the dashboard's Integrations page, after setting up two-factor"
        ),
    }
    println!(
        "  try             hearth devices list --data-dir {}",
        dir.display()
    );
    println!(
        "                  hearth devices set <id> on --data-dir {}",
        dir.display()
    );
    println!("  stop            Ctrl-C");
    // Each simulated device the demo adopted connects now, with the
    // credential it was given; any the owner adopts, once adopted.
    let _ = ready.send(());
    token.cancelled().await;
    let _ = announcer.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_voice_names_hold_neither_the_nickname_nor_the_room() {
        for (profile, kind) in [
            ("homekit", "bulb"),
            ("esphome", "bulb"),
            ("shelly", "bulb"),
            ("tasmota", "bulb"),
            ("shelly", "plug"),
            ("other", "other"),
        ] {
            let (nickname, room) = name_for(profile, kind);
            let voice = voice_name_for(profile, kind).to_lowercase();
            assert!(
                !voice.contains(&nickname.to_lowercase()),
                "{voice} holds {nickname}"
            );
            assert!(!voice.contains(&room.to_lowercase()), "{voice} holds {room}");
        }
    }
}
