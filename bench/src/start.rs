//! Starting what the benchmarks measure: `hearth run` on a fresh data
//! directory (and the devices and Home Assistant credentials it hands out),
//! and mosquitto with hearth's certificate. Each benchmark passes its own
//! settings; this module owns the files, the spawning, the readiness waits
//! and the cleanup, so two benchmarks never start the same daemon two ways.
//! It never measures anything itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a daemon may take to listen or to create its admin socket.
const READY: Duration = Duration::from_secs(30);
/// How long a listener may take to accept connections.
const LISTENING: Duration = Duration::from_secs(10);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 30 s for `path` to appear.
pub fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + READY;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(POLL);
    }
}

/// Waits up to 10 s for a TCP listener on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + LISTENING;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(POLL);
    }
}

/// A process a benchmark started, stopped and reaped when dropped: SIGTERM
/// first (so that nginx's master takes its worker with it, and hearth
/// drains), then SIGKILL after 5 s.
pub struct Process(Child);

impl Process {
    pub fn new(child: Child) -> Process {
        Process(child)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, and waits until the process has exited (hearth closes its
    /// store and removes its admin socket).
    pub fn stop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        }
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A process already reaped keeps its status; its pid may be
        // someone else's now.
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hearth run` with `config` as its `dir/hearth.toml` and `dir/data` as
/// its data directory (made on the first start), returned with that data
/// directory once its admin socket exists.
pub fn hearth(hearth: &Path, dir: &Path, config: &str) -> (Process, PathBuf) {
    hearth_by(Command::new(hearth), dir, config)
}

/// [`hearth`], started through `command` (`ip netns exec <ns> hearth`, for
/// a benchmark in a network namespace of its own).
pub fn hearth_by(mut command: Command, dir: &Path, config: &str) -> (Process, PathBuf) {
    let data = dir.join("data");
    let file = dir.join("hearth.toml");
    std::fs::write(&file, config).unwrap();
    // A socket left by an earlier start would pass for readiness.
    let _ = std::fs::remove_file(data.join("admin.sock"));
    command
        .arg("run")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        // Started by a benchmark, not by systemd, even under a unit.
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let process = Process::new(command.spawn().expect("start hearth (build it with bench/run)"));
    wait_for_file(&data.join("admin.sock"), "hearth did not start");
    (process, data)
}

/// One request on hearth's admin socket.
pub fn admin(data: &Path, request: hearth::app::admin::Request) -> Value {
    hearth::app::admin::request(data, &request).expect("admin request")
}

/// `hearth devices add`: the device's provisioning (id, MQTT credentials).
pub fn add_device(
    data: &Path,
    profile: hearth::home::vendor::Profile,
    kind: hearth::store::DeviceKind,
    nickname: String,
    room: Option<String>,
) -> Value {
    admin(
        data,
        hearth::app::admin::Request::DevicesAdd(hearth::home::devices::AddDevice {
            profile,
            kind,
            nickname,
            room,
            topic: None,
            addresses: Vec::new(),
        }),
    )
}

/// Shows device `id` to Home Assistant, and to voice assistants under
/// `voice_name` if one is given.
pub fn expose(data: &Path, id: &str, voice_name: Option<&str>) {
    admin(
        data,
        hearth::app::admin::Request::DevicesExpose(hearth::app::admin::Expose {
            id: id.to_owned(),
            homeassistant: Some(true),
            voice: voice_name.map(|_| true),
            voice_name: voice_name.map(str::to_owned),
        }),
    );
}

/// Turns the Home Assistant integration on: the connection it hands out
/// (`mqtt.username`, `mqtt.password`, `mqtt.port`).
pub fn homeassistant(data: &Path) -> Value {
    admin(data, hearth::app::admin::Request::HomeassistantEnable)
}

/// An MQTT client's TLS: hearth's CA (`ca.pem`) as the only root. Both
/// brokers serve hearth's certificate, so one client trusts either.
pub fn mqtt_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// mosquitto as a reference broker: TLS on 127.0.0.1 with hearth's CA and
/// server certificate, a hashed password per user, no anonymous clients, no
/// persistence, no log.
pub struct Mosquitto<'a> {
    pub port: u16,
    /// `user:password` lines, hashed into the password file.
    pub users: &'a str,
    /// The ACL file, if any.
    pub acl: Option<&'a str>,
    /// Settings before the listener (limits), one per line.
    pub limits: &'a str,
    /// Settings after the listener's certificates (TLS version, TCP), one
    /// per line.
    pub tuning: &'a str,
}

/// mosquitto's configuration written under a directory; it can be started
/// again after a stop.
pub struct MosquittoConf {
    path: PathBuf,
    port: u16,
}

impl Mosquitto<'_> {
    /// Writes the password file, the ACL and `mosquitto.conf` into `dir`,
    /// with the certificate of hearth's data directory `data`.
    pub fn write(&self, dir: &Path, data: &Path) -> MosquittoConf {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, self.users).unwrap();
        let status = Command::new("mosquitto_passwd")
            .arg("-U")
            .arg(&passwd)
            .status()
            .expect("mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd");
        let acl = match self.acl {
            Some(rules) => {
                let acl = dir.join("acl");
                std::fs::write(&acl, rules).unwrap();
                format!("acl_file {}\n", acl.display())
            }
            None => String::new(),
        };
        let path = dir.join("mosquitto.conf");
        std::fs::write(
            &path,
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\n{acl}\
                 persistence false\nlog_dest none\n{}listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{}",
                passwd.display(),
                self.limits,
                self.port,
                data.join("ca.pem").display(),
                data.join("tls/server.pem").display(),
                data.join("tls/server.key").display(),
                self.tuning,
            ),
        )
        .unwrap();
        MosquittoConf {
            path,
            port: self.port,
        }
    }
}

impl MosquittoConf {
    /// mosquitto, returned once it accepts connections.
    pub fn start(&self) -> Process {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        let process = Process::new(child);
        wait_for_port(self.port, "mosquitto");
        process
    }
}

/// dnsmasq on 127.0.0.1:`port` (UDP and TCP), in the foreground, reading
/// no configuration file, no resolv.conf and no hosts file: only `args`.
/// Returned once it answers a query for `probe`.
pub fn dnsmasq(dir: &Path, port: u16, args: &[String], probe: &str) -> Process {
    // Debian puts it in /usr/sbin, which a user's PATH may not have.
    let binary = if Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    };
    let child = Command::new(binary)
        .arg("--keep-in-foreground")
        .arg("--conf-file=/dev/null")
        .arg("--no-resolv")
        .arg("--no-hosts")
        .arg("--bind-interfaces")
        .arg("--listen-address=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{port}.pid")).display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq (apt-get install dnsmasq-base)");
    let process = Process::new(child);
    wait_for_dns(port, probe, "dnsmasq");
    process
}

/// Waits up to 10 s for an answer to `probe` (type A) on 127.0.0.1:`port`.
pub fn wait_for_dns(port: u16, probe: &str, what: &str) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + LISTENING;
    let mut buf = [0u8; 512];
    for id in 1u16.. {
        assert!(Instant::now() < deadline, "{what} did not answer DNS");
        let _ = socket.send(&crate::dns::query(id, probe));
        if let Ok(n) = socket.recv(&mut buf)
            && crate::dns::answered(&buf[..n], id)
        {
            return;
        }
        std::thread::sleep(POLL);
    }
}
