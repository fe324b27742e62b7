//! Test harness: temporary homes, the real binary, bounded waits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `hearth` CLI, exactly as shipped.
pub fn hearth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-under-test"));
    // Keep the tests independent of the machine's systemd and locale.
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "CREDENTIALS_DIRECTORY",
        "STATE_DIRECTORY",
        "JOURNAL_STREAM",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

pub fn store_writer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-store-writer"));
    cmd.stdin(Stdio::null());
    cmd
}

/// A temporary directory holding one home's data directory.
pub struct TestHome {
    pub tmp: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> TestHome {
        TestHome {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The data directory (not created until something initialises it).
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A config file with every listener on loopback port 0, so tests never
    /// collide on ports; `extra` is appended.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.path("hearth.toml");
        // Discovery stays off: tests send no multicast outside network
        // namespaces they create themselves.
        // The dashboard listens on a free loopback port, unless `extra`
        // configures it.
        let web = if extra.contains("[web]") {
            ""
        } else {
            "[web]\nlisten = [\"127.0.0.1:0\"]\n"
        };
        let body = format!(
            "[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n{extra}\n[discovery]\nenabled = false\n{web}"
        );
        std::fs::write(&path, body).expect("write config");
        path
    }

    /// `hearth run` on this home, with the loopback config.
    pub fn run_cmd(&self) -> Command {
        let mut cmd = hearth();
        cmd.arg("run")
            .arg("--config")
            .arg(self.config(""))
            .arg("--data-dir")
            .arg(self.data_dir());
        cmd
    }

    /// `hearth erase --yes` on the data directory, for up to 30 s.
    pub fn erase(&self) -> Output {
        run(
            hearth()
                .args(["erase", "--yes", "--data-dir"])
                .arg(self.data_dir()),
            Duration::from_secs(30),
        )
    }

    /// Runs `hearth init` on the data directory and checks it succeeded.
    pub fn init(&self) -> &TestHome {
        let out = run(
            hearth().arg("init").arg("--data-dir").arg(self.data_dir()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        self
    }
}

/// Runs a command to completion, killing it if it takes longer than `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_output(child, limit)
}

/// Waits for a child's exit and output, killing it after `limit`.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command did not finish within {limit:?}; stderr: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit within `limit`.
pub fn wait_status(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each line `child` prints on its piped stdout, read by a thread of its
/// own (which keeps reading when nobody listens, so the child never blocks
/// or breaks on a full pipe).
pub fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    forward_lines(child, |line| line)
}

/// Each line `child` prints on its piped stdout, with when it arrived.
pub fn timed_lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<(String, Instant)> {
    forward_lines(child, |line| (line, Instant::now()))
}

fn forward_lines<T: Send + 'static>(child: &mut Child, tag: fn(String) -> T) -> std::sync::mpsc::Receiver<T> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("a piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(tag(line));
        }
    });
    rx
}

pub fn signal(child: &Child, sig: libc::c_int) {
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A running `hearth run` on a fresh home, every listener on loopback port
/// 0. Killed on drop.
pub struct Daemon {
    pub home: TestHome,
    child: Option<Child>,
    pub status: serde_json::Value,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Starts with `extra` appended to the loopback config, and waits until
    /// the admin socket answers.
    pub fn start_with(extra: &str) -> Daemon {
        let home = TestHome::new();
        let config = home.config(extra);
        Daemon::spawn(home, config)
    }

    /// Starts on an existing home (say, one a test prepared the store of).
    pub fn start_in(home: TestHome) -> Daemon {
        let config = home.config("");
        Daemon::spawn(home, config)
    }

    /// Starts on an existing home with `extra` appended to the config.
    pub fn start_in_with(home: TestHome, extra: &str) -> Daemon {
        let config = home.config(extra);
        Daemon::spawn(home, config)
    }

    /// Starts on an existing home with exactly this config.
    pub fn start_in_raw(home: TestHome, config_body: &str) -> Daemon {
        let config = home.path("hearth.toml");
        std::fs::write(&config, config_body).expect("write config");
        Daemon::spawn(home, config)
    }

    /// Starts with exactly this config file.
    pub fn start_raw(config_body: &str) -> Daemon {
        let home = TestHome::new();
        let config = home.path("hearth.toml");
        std::fs::write(&config, config_body).expect("write config");
        Daemon::spawn(home, config)
    }

    fn spawn(home: TestHome, config: PathBuf) -> Daemon {
        Daemon::spawn_via(home, config, &[])
    }

    /// Starts with `extra` appended to the loopback config and these
    /// variables in hearth's environment.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        let home = TestHome::new();
        let config = home.config(extra);
        let mut cmd = hearth();
        cmd.envs(env.iter().copied());
        Daemon::spawn_cmd(home, config, cmd)
    }

    /// Starts with exactly this config file, through `wrapper` (a program
    /// and its arguments, which runs hearth's command line after them),
    /// with the home and config owned by `uid` for a wrapper that becomes it.
    pub fn start_raw_via(config_body: &str, wrapper: &[std::ffi::OsString], uid: u32) -> Daemon {
        let home = TestHome::new();
        let config = home.path("hearth.toml");
        std::fs::write(&config, config_body).expect("write config");
        for path in [home.path(""), config.clone()] {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown the test home");
        }
        Daemon::spawn_via(home, config, wrapper)
    }

    fn spawn_via(home: TestHome, config: PathBuf, wrapper: &[std::ffi::OsString]) -> Daemon {
        let mut cmd = hearth();
        if let [program, args @ ..] = wrapper {
            let hearth_bin = std::path::PathBuf::from(cmd.get_program());
            let mut wrapped = Command::new(program);
            wrapped.args(args).arg(hearth_bin);
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => wrapped.env(k, v),
                    None => wrapped.env_remove(k),
                };
            }
            wrapped.stdin(Stdio::null());
            cmd = wrapped;
        }
        Daemon::spawn_cmd(home, config, cmd)
    }

    fn spawn_cmd(home: TestHome, config: PathBuf, mut cmd: Command) -> Daemon {
        let log = std::fs::File::create(home.path("daemon.log")).expect("log file");
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(home.data_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hearth");
        let mut daemon = Daemon {
            home,
            child: Some(child),
            status: serde_json::Value::Null,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = daemon.cli(&["status", "--json"]);
            if out.status.success() {
                daemon.status = serde_json::from_slice(&out.stdout).expect("status json");
                return daemon;
            }
            if let Some(status) = daemon.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("hearth exited with {status}: {}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "hearth did not come up: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path("daemon.log")).unwrap_or_default()
    }

    fn port(&self, key: &str) -> u16 {
        listener_port(&self.status, key)
    }

    pub fn tls_port(&self) -> u16 {
        self.port("mqtt_tls")
    }

    pub fn plain_port(&self) -> u16 {
        self.port("mqtt_plain")
    }

    /// The dashboard's HTTPS port.
    pub fn web_port(&self) -> u16 {
        self.port("web")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.home.data_dir().join("ca.pem")
    }

    /// Runs `hearth ARGS --data-dir DIR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(
            hearth().args(args).arg("--data-dir").arg(self.home.data_dir()),
            Duration::from_secs(30),
        )
    }

    /// Runs `hearth ARGS --json --data-dir DIR` and parses its output.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(out.status.success(), "hearth {args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }

    /// Provisions a device and returns what `devices add --json` printed.
    pub fn add(&self, profile: &str, nickname: &str) -> Device {
        Device(self.cli_json(&["devices", "add", "--profile", profile, "--nickname", nickname]))
    }

    /// Provisions a device of `kind` (`bulb`, `camera`, ...) in `room`, and
    /// returns what `devices add --json` printed.
    pub fn add_device(&self, profile: &str, kind: &str, nickname: &str, room: &str) -> Device {
        Device(self.cli_json(&[
            "devices",
            "add",
            "--profile",
            profile,
            "--kind",
            kind,
            "--nickname",
            nickname,
            "--room",
            room,
        ]))
    }

    /// Shows `d` to Home Assistant (`on`) or hides it, and checks that the
    /// CLI says it updated that device.
    pub fn expose_to_homeassistant(&self, d: &Device, on: bool) {
        let v = self.cli_json(&[
            "devices",
            "expose",
            d.id(),
            "--homeassistant",
            if on { "on" } else { "off" },
        ]);
        assert_eq!(v["updated"], d.id());
    }

    /// The broker's counters.
    pub fn stats(&self) -> serde_json::Value {
        self.cli_json(&["status"])["broker"].clone()
    }

    /// SIGTERM, then the exit status and log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGTERM);
        let status = wait_status(&mut child, Duration::from_secs(20));
        (status, self.log())
    }
}

impl Daemon {
    /// Stops the daemon and keeps its home, to be changed and started again.
    pub fn stop_keeping_home(mut self) -> TestHome {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGTERM);
        let status = wait_status(&mut child, Duration::from_secs(20));
        assert!(status.success(), "hearth stopped with {status}: {}", self.log());
        std::mem::replace(&mut self.home, TestHome::new())
    }
}

impl Daemon {
    /// Kills the daemon with SIGKILL, as a crash or power cut would, and
    /// keeps its home.
    pub fn kill_keeping_home(mut self) -> TestHome {
        let mut child = self.child.take().expect("running");
        signal(&child, libc::SIGKILL);
        let _ = wait_status(&mut child, Duration::from_secs(20));
        std::mem::replace(&mut self.home, TestHome::new())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The port of the first `key` listener in what `hearth status --json`
/// printed.
/// The owner as the dashboard sets one up: the setup code, a password,
/// then two-factor enrolled and confirmed. The voice relay can be enabled
/// only once this is done.
pub struct Owner {
    pub web: crate::http::Target,
    pub cookie: String,
    pub csrf: String,
    pub totp: hearth::accounts::totp::TotpSecret,
    pub recovery: Vec<String>,
}

impl Owner {
    /// A dashboard API call as this owner.
    pub fn api(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> crate::http::Reply {
        let origin = format!("https://{}", self.web.host());
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.web.send(
            method,
            path,
            &[
                ("Origin", &origin),
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// The TOTP code `steps_ahead` steps of 30 s from now.
    pub fn totp_code(&self, steps_ahead: u64) -> String {
        let step = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 30;
        format!(
            "{:06}",
            hearth::accounts::totp::code_at(&self.totp, step + steps_ahead)
        )
    }
}

impl Daemon {
    /// Sets up the owner `username` with `password` and two-factor on.
    pub fn owner_with_two_factor(&self, username: &str, password: &str) -> Owner {
        let web = crate::http::Target::tls(self.web_port(), &self.ca_cert());
        let mut owner = set_up_owner(web, &self.home.data_dir(), username, password);
        owner.enable_two_factor();
        owner
    }
}

/// The owner as the dashboard's setup page makes one, with the one-time
/// code hearth wrote into `data_dir`: logged in, two-factor not yet on.
pub fn set_up_owner(web: crate::http::Target, data_dir: &Path, username: &str, password: &str) -> Owner {
    let code = std::fs::read_to_string(data_dir.join("setup-code")).unwrap();
    let origin = format!("https://{}", web.host());
    let r = web.send(
        "POST",
        "/api/setup",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        serde_json::json!({ "code": code.trim(), "username": username, "password": password })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let csrf = r.json()["csrf"].as_str().unwrap().to_owned();
    Owner {
        web,
        cookie,
        csrf,
        totp: hearth::accounts::totp::TotpSecret::from_bytes(&[0; 20]),
        recovery: Vec::new(),
    }
}

impl Owner {
    /// Enrols and confirms two-factor, keeping the secret and the recovery
    /// codes.
    pub fn enable_two_factor(&mut self) {
        let r = self.api("POST", "/api/totp/enroll", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let secret = r.json()["secret"].as_str().unwrap().to_owned();
        self.totp = hearth::accounts::totp::TotpSecret::from_base32(&secret).unwrap();
        let code = self.totp_code(0);
        let r = self.api(
            "POST",
            "/api/totp/confirm",
            Some(serde_json::json!({ "code": code })),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        self.recovery = r.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    }
}

pub fn listener_port(status: &serde_json::Value, key: &str) -> u16 {
    let addr = status[key][0].as_str().expect("listener address");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A provisioned device, as `devices add --json` printed it.
#[derive(Clone, Debug)]
pub struct Device(pub serde_json::Value);

impl Device {
    pub fn id(&self) -> &str {
        self.0["id"].as_str().unwrap()
    }
    pub fn username(&self) -> &str {
        self.0["mqtt"]["username"].as_str().unwrap()
    }
    pub fn password(&self) -> &str {
        self.0["mqtt"]["password"].as_str().unwrap()
    }
    pub fn client_id(&self) -> &str {
        self.0["mqtt"]["client_id"].as_str().unwrap()
    }
    /// The first topic filter without its `/#`: the device's own subtree.
    pub fn base(&self) -> String {
        let first = self.0["topics"][0].as_str().unwrap();
        first.trim_end_matches("/#").to_owned()
    }
}

/// A Debian command-line tool the tests drive; scripts/test-all installs
/// them.
pub fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/test-all, which installs the Debian packages the tests use"
    );
    let mut cmd = Command::new(name);
    cmd.stdin(Stdio::null());
    cmd
}

/// mosquitto client arguments to connect over TLS as `device`.
pub fn mosquitto_args(daemon: &Daemon, device: &Device) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        daemon.tls_port().to_string(),
        "--cafile".into(),
        daemon.ca_cert().display().to_string(),
        "-u".into(),
        device.username().into(),
        "-P".into(),
        device.password().into(),
        "-i".into(),
        device.client_id().into(),
    ]
}

/// A simulated device (`hearth::sim::device`) run from its provisioning on
/// `rt`, against 127.0.0.1: the lines it says ("connected", "state ON",
/// ...), and a sender that stops it.
pub fn start_device(
    rt: &tokio::runtime::Runtime,
    d: &Device,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let p = d.0.clone();
    rt.spawn(async move {
        let stop = async {
            let _ = stop.await;
        };
        hearth::sim::device(p, "127.0.0.1".into(), stop, move |line| {
            let _ = tx.send(line.to_owned());
        })
        .await;
    });
    (rx, stop_tx)
}
