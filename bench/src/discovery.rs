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

/// Memory under a sustained flood: `hearth-sim flood` sends 10,000
/// announcements a second, each a new HomeKit bulb, for `seconds`, while the
/// daemon and a reference mDNS browser (mdns-sd, through `hearth-sim browse
/// --all`) listen in the same namespace. Prints both RSS figures over time.
pub fn flood(hearth: &Path, seconds: u64) {
    let sim = hearth.with_file_name("hearth-sim");
    assert!(sim.exists(), "build hearth-sim (bench/run does)");
    println!("\n## discovery: RSS under a {seconds} s flood at 10,000 adverts/s, hearth against mdns-sd");
    let ns = format!("hearth-bench-flood-{}", std::process::id());
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
    let spawn = |program: &Path, args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (config_s, data_s) = (config.to_str().unwrap(), data.to_str().unwrap());
    let daemon = spawn(hearth, &["run", "--config", config_s, "--data-dir", data_s]);
    crate::mqtt::wait_for_file(&data.join("admin.sock"), "hearth did not start");
    let total = (seconds + 15).to_string();
    let reference = spawn(&sim, &["browse", "_hap._tcp", "--all", "--seconds", &total]);
    std::thread::sleep(Duration::from_secs(2));
    // `ip netns exec` execs the program, so the child's pid is the program's.
    let pids = [daemon.id(), reference.id()];
    let rss = || pids.map(crate::mqtt::rss_mib);
    let before = rss();
    println!(
        "before: hearth {:.1} MiB, mdns-sd {:.1} MiB",
        before[0], before[1]
    );
    let mut flood = spawn(
        &sim,
        &["flood", "--rate", "10000", "--seconds", &seconds.to_string()],
    );
    let start = Instant::now();
    let mut peak = before;
    let mut step = 0;
    while start.elapsed() < Duration::from_secs(seconds + 10) {
        std::thread::sleep(Duration::from_secs(1));
        let now = rss();
        peak = [peak[0].max(now[0]), peak[1].max(now[1])];
        step += 1;
        if step % 10 == 0 {
            println!(
                "{:>3} s: hearth {:.1} MiB, mdns-sd {:.1} MiB{}",
                step,
                now[0],
                now[1],
                if start.elapsed() > Duration::from_secs(seconds) {
                    " (flood over)"
                } else {
                    ""
                }
            );
        }
    }
    let _ = flood.wait();
    let status = Command::new(hearth)
        .args(["status", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .expect("hearth status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    println!("hearth discovery counters: {}", status["discovery"]);
    println!(
        "growth: hearth {:+.1} MiB (peak {:.1}), mdns-sd {:+.1} MiB (peak {:.1})",
        peak[0] - before[0],
        peak[0],
        peak[1] - before[1],
        peak[1]
    );
    for mut child in [reference, daemon] {
        let _ = child.kill();
        let _ = child.wait();
    }
    ip(&["netns", "del", &ns]);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
