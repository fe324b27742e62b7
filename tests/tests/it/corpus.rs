//! Discovery against real devices' adverts: every device of the corpus in
//! tests/fixtures/adverts, announced by python-zeroconf (an mDNS
//! implementation hearth did not write) from a source address of its own,
//! inside a network namespace of the test's own. hearth must list each
//! device it claims once, with the right kind and profile, and nothing else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::discovery::{Killed, Netns, daemon_config, devices, discovery_stats, zeroconf_script};
use crate::harness::TestHome;

const CORPUS: [&str; 2] = [
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/adverts/lights-plugs-sensors.json"
    ),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/adverts/cameras-doorbells-others.json"
    ),
];

/// The MQTT schemes hearth reads, by the corpus's name for them, and the
/// profile a device that speaks one must get.
const SCHEMES: [(&str, &str); 5] = [
    ("shelly-gen2", "shelly"),
    ("esphome", "esphome"),
    ("tasmota", "tasmota"),
    ("wled", "wled"),
    ("shelly-gen1", "shelly_gen1"),
];

/// Profiles that claim an MQTT scheme hearth speaks: a device whose
/// firmware speaks none must not get one.
const MQTT_PROFILES: [&str; 4] = ["generic", "tasmota", "shelly", "esphome"];

/// What hearth must offer a corpus device as: its kind, and the profile its
/// firmware's scheme calls for (`None`: no MQTT scheme, so any profile that
/// claims none). `None` when it must not be offered at all.
fn expected(dev: &Value) -> Option<(String, Option<&'static str>)> {
    let mqtt = dev["mqtt"].as_str().unwrap();
    let speaks = |schemes: &[&str]| schemes.contains(&mqtt);
    let is = dev["offered_as"].as_str().unwrap_or(dev["is"].as_str().unwrap());
    let kind = match is {
        "bulb" | "dimmer" => "bulb",
        "light_strip" | "plug" | "camera" | "doorbell" => is,
        // A sensor reports over MQTT or not at all.
        "motion_sensor" | "contact_sensor" | "climate_sensor" | "water_sensor"
            if speaks(&["shelly-gen2", "esphome", "tasmota"]) =>
        {
            is
        }
        _ => return None,
    };
    let profile = SCHEMES.iter().find(|(m, _)| *m == mqtt).map(|(_, p)| *p);
    Some((kind.to_owned(), profile))
}

/// tests/mdns/corpus.py announcing the devices of `files` in `ns`, each from
/// a source address of its own; withdrawn on drop.
pub(crate) struct Announcer {
    _child: Killed,
    _stdin: std::process::ChildStdin,
    /// id -> (the address it is listed under, when its first probe went
    /// out, Unix s).
    pub(crate) announced: HashMap<String, (String, f64)>,
}

impl Announcer {
    pub(crate) fn start<P: AsRef<std::ffi::OsStr>>(ns: &Netns, files: &[P]) -> Announcer {
        let (child, stdin, lines) = zeroconf_script(ns, "corpus.py", files);
        let mut announced = HashMap::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("corpus.py did not announce every device within 60 s");
            if line == "ready" {
                break;
            }
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "announced", "{line}");
            announced.insert(
                parts[1].to_owned(),
                (parts[2].to_owned(), parts[3].parse().unwrap()),
            );
        }
        Announcer {
            _child: child,
            _stdin: stdin,
            announced,
        }
    }
}

/// The corpus device `id`.
pub(crate) fn corpus_device(id: &str) -> Value {
    corpus()
        .into_iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in the corpus"))
}

fn corpus() -> Vec<Value> {
    let mut out = Vec::new();
    for path in CORPUS {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        out.extend(v["devices"].as_array().unwrap().iter().cloned());
    }
    out
}

/// The corpus is what the test claims it is: at least 60 devices and 15
/// non-targets, each with a source; ids and host names unique (on a LAN
/// mDNS probing keeps host names unique).
#[test]
fn the_corpus_is_sourced_and_unique() {
    let all = corpus();
    let targets = all.iter().filter(|d| expected(d).is_some()).count();
    assert!(all.len() >= 60, "{} devices", all.len());
    assert!(all.len() - targets >= 15, "{} non-targets", all.len() - targets);
    let (mut ids, mut hosts) = (HashMap::new(), HashMap::new());
    for d in &all {
        let id = d["id"].as_str().unwrap();
        assert!(ids.insert(id, ()).is_none(), "{id} twice");
        assert!(
            d["sources"].as_array().is_some_and(|s| !s.is_empty()),
            "{id} has no source"
        );
        for s in d["services"].as_array().unwrap() {
            let host = s["host"].as_str().unwrap().to_ascii_lowercase();
            if let Some(other) = hosts.insert(host.clone(), id)
                && other != id
            {
                panic!("{host} is both {other} and {id}");
            }
        }
    }
}

/// Every corpus device announced at once; hearth's pending list must hold
/// one entry per device it claims, of the right kind and profile, and none
/// for the rest. Prints the hit rate, duplicates, false positives and the
/// time from each device's first probe to its pending entry.
#[test]
fn real_adverts_are_offered_once_with_the_right_kind() {
    let ns = Netns::new();
    let home = TestHome::new();
    let _daemon = daemon_config(&ns, &home, "interfaces = \"loopback\"\n");
    let announcer = Announcer::start(&ns, &CORPUS);
    let announced = &announcer.announced;
    let all = corpus();
    assert_eq!(announced.len(), all.len());
    let by_address = |list: &Value, address: &str| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["addresses"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == address))
            })
            .cloned()
            .collect()
    };
    let targets: Vec<&Value> = all.iter().filter(|d| expected(d).is_some()).collect();
    // Every target listed, then a quiet spell for late services to merge
    // or to wrongly add entries.
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = devices(&home);
        let missing: Vec<&str> = targets
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .filter(|id| by_address(&list, &announced[*id].0).is_empty())
            .collect();
        if missing.is_empty() {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "not listed within 30 s: {missing:?}; stats {}",
            discovery_stats(&home)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(list);
    std::thread::sleep(Duration::from_secs(5));
    let list = devices(&home);

    let mut wrong = Vec::new();
    let (mut hits, mut duplicates, mut false_positives) = (0, 0, 0);
    let mut latencies = Vec::new();
    for d in &all {
        let id = d["id"].as_str().unwrap();
        let (address, started) = &announced[id];
        let entries = by_address(&list, address);
        match expected(d) {
            None => {
                if !entries.is_empty() {
                    false_positives += 1;
                    wrong.push(format!("{id}: offered as {}", entries[0]["kind"]));
                }
            }
            Some((kind, profile)) => {
                if entries.len() > 1 {
                    duplicates += entries.len() - 1;
                    wrong.push(format!("{id}: {} entries", entries.len()));
                }
                let Some(e) = entries.first() else {
                    wrong.push(format!("{id}: not offered"));
                    continue;
                };
                let got_profile = e["profile"].as_str().unwrap();
                let profile_right = match profile {
                    Some(p) => got_profile == p,
                    None => !MQTT_PROFILES.contains(&got_profile),
                };
                assert_eq!(e["status"], "pending", "{id}");
                if e["kind"] == kind.as_str() && profile_right {
                    hits += 1;
                    latencies.push((e["created_at"].as_i64().unwrap() as f64 / 1000.0 - started, id));
                } else {
                    wrong.push(format!(
                        "{id}: offered as {} / {got_profile}, is {kind} / {profile:?}",
                        e["kind"]
                    ));
                }
            }
        }
    }
    let extra = list.as_array().unwrap().len() as i64 - targets.len() as i64;
    latencies.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = latencies.get(latencies.len() / 2).map_or(f64::NAN, |l| l.0);
    let worst = latencies.last().map_or(f64::NAN, |l| l.0);
    let slowest: Vec<_> = latencies.iter().rev().take(3).collect();
    println!(
        "corpus: {} devices, {} offered right of {} targets; {duplicates} duplicates; \
         {false_positives} non-targets offered; {extra} entries beyond the targets; \
         first probe to pending: median {median:.2} s, worst {worst:.2} s (slowest {slowest:?}); stats {}",
        all.len(),
        hits,
        targets.len(),
        discovery_stats(&home)
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(extra, 0, "{list}");
    // What tells two Athom plugs apart reaches `devices list --json` as the
    // real advert said it; the board (esp8285) is not the model.
    let plug = &by_address(&list, &announced["esphome-athom-plug-v2"].0)[0];
    let facts = ["vendor", "model", "board", "mac", "advertised_name"].map(|f| plug[f].clone());
    assert_eq!(
        facts,
        [
            "ESPHome",
            "Athom Plug V2",
            "esp8285",
            "e8:db:84:a1:b2:c3",
            "Athom Plug V2 a1b2c3"
        ]
        .map(Value::from),
        "{plug}"
    );
    // Each device from its own address: none near its share.
    let stats = discovery_stats(&home);
    assert_eq!(stats["source_full"], 0, "{stats}");
}
