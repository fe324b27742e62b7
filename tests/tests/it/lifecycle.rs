//! The running daemon: readiness, watchdog, and stopping on signals.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{TestHome, signal, text, wait_output, wait_status};

/// Receives sd_notify datagrams until one contains `want`, or panics.
fn expect_notify(sock: &UnixDatagram, want: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
            seen.push_str(&msg);
        }
    }
    panic!("no {want:?} within {limit:?}; saw {seen:?}");
}

#[test]
fn notifies_systemd_and_drains_on_sigterm() {
    let home = TestHome::new();
    let sock_path = home.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let child = home
        .run_cmd()
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    expect_notify(&sock, "READY=1", Duration::from_secs(20));
    // Pings at half the interval; two in a row prove it is periodic.
    expect_notify(&sock, "WATCHDOG=1", Duration::from_secs(2));
    expect_notify(&sock, "WATCHDOG=1", Duration::from_secs(2));
    // The first run initialised the missing data directory.
    assert!(home.data_dir().join("hearth.db").exists());

    signal(&child, libc::SIGTERM);
    expect_notify(&sock, "STOPPING=1", Duration::from_secs(5));
    let out = wait_output(child, Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("stopped"), "{log}");
    // The WAL was checkpointed and removed on a clean stop.
    assert!(!home.data_dir().join("hearth.db-wal").exists());
}

#[test]
fn sigint_stops_fast() {
    let home = TestHome::new();
    home.init();
    let mut child = home
        .run_cmd()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is up: the log says so.
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut all = String::new();
        let mut up = None;
        while let Some(Ok(line)) = lines.next() {
            if line.contains("hearth running") {
                up.get_or_insert(Instant::now());
            }
            all.push_str(&line);
            all.push('\n');
        }
        (up, all)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.data_dir().join("hearth.db-wal").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    signal(&child, libc::SIGINT);
    let status = wait_status(&mut child, Duration::from_secs(5));
    let took = sent.elapsed();
    let (up, log) = reader.join().unwrap();
    assert!(up.is_some(), "never came up: {log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(took < Duration::from_millis(1500), "SIGINT took {took:?}");
}

/// With a store full of canaries and logging at trace level, nothing the
/// daemon logs from start to stop contains one.
#[test]
fn logs_carry_no_home_data_even_at_trace() {
    use hearth::store::secret::Secret;
    use hearth::store::{DataDir, DeviceFields, DeviceKind};

    let home = TestHome::new();
    let canaries: Vec<String> = (0..6).map(|i| format!("LogCanary{i}Zq")).collect();
    {
        let mut store = hearth::store::open_or_init(&DataDir::new(home.data_dir()), None).unwrap();
        let mut f = DeviceFields::new(DeviceKind::Camera, "generic");
        f.nickname = Some(canaries[0].clone());
        f.room = Some(canaries[1].clone());
        f.ssid = Some(canaries[2].clone());
        f.mac = Some(canaries[3].clone());
        f.device_secret = Some(Secret::new(canaries[4].clone()));
        f.stream_url = Some(canaries[5].clone());
        store.insert_device(&f).unwrap();
    }
    let child = home
        .run_cmd()
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.data_dir().join("hearth.db-wal").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(0));
    let log = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    assert!(text(&log).contains("hearth running devices=1"), "{}", text(&log));
    assert_eq!(hearth_tests::find_in_bytes(&log, &canaries), Vec::<String>::new());
}
