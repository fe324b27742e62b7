//! Advert-to-pending time: how long from a device announcing itself over
//! mDNS until `hearth devices list` shows it pending. Runs inside a network
//! namespace the benchmark creates (multicast on its loopback), with the
//! real daemon and `hearth-sim announce` (the simulated home of 8 devices).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2)");
    assert!(status.success(), "ip {args:?} failed (run as root)");
}

fn listed(hearth: &Path, data: &Path) -> usize {
    let out = Command::new(hearth)
        .args(["devices", "list", "--json", "--data-dir"])
        .arg(data)
        .output()
        .expect("hearth devices list");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

pub fn run(hearth: &Path, rounds: usize) {
    let sim = hearth.with_file_name("hearth-sim");
    assert!(sim.exists(), "build hearth-sim (bench/run does)");
    println!("\n## discovery: advert to pending, 8 simulated devices, {rounds} rounds; medians");
    let (mut firsts, mut alls) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ns = format!("hearth-bench-{}-{round}", std::process::id());
        ip(&["netns", "add", &ns]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "multicast", "on"]);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = tmp.path().join("hearth.toml");
        std::fs::write(
            &config,
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = []\n[discovery]\ninterfaces = \"loopback\"\n",
        )
        .unwrap();
        let mut daemon = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(hearth)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::mqtt::wait_for_file(&data.join("admin.sock"), "hearth did not start");
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let mut announcer = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&sim)
            .args(["announce", "--seconds", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (mut first, mut all) = (None, None);
        while start.elapsed() < Duration::from_secs(20) {
            let n = listed(hearth, &data);
            if n > 0 && first.is_none() {
                first = Some(start.elapsed());
            }
            if n >= 8 {
                all = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = announcer.kill();
        let _ = announcer.wait();
        let _ = daemon.kill();
        let _ = daemon.wait();
        ip(&["netns", "del", &ns]);
        let (first, all) = (
            first.expect("nothing discovered"),
            all.expect("not all 8 discovered"),
        );
        println!(
            "round {}: first {:.0} ms, all 8 {:.0} ms",
            round + 1,
            ms(first),
            ms(all)
        );
        firsts.push(first);
        alls.push(all);
    }
    firsts.sort();
    alls.sort();
    println!(
        "advert to pending, median: first device {:.0} ms, all 8 devices {:.0} ms (floor 1,500 ms)",
        ms(firsts[firsts.len() / 2]),
        ms(alls[alls.len() / 2])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
