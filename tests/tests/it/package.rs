//! The Debian package, installed on this machine with dpkg: its contents,
//! the service user and root-only key its postinst makes, the installed
//! binary started the way the unit starts it, an upgrade that keeps the
//! data, then remove (data kept) and purge (data gone).
//!
//! The package is `target/debian/hearth_<version>-1_amd64.deb`, which the
//! README's test command builds first with `packaging/build-debs amd64`;
//! run alone, this test builds it itself, in a target directory of its own.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Device, listener_port, text};
use crate::http::Target;

const STATE: &str = "/var/lib/hearth";
const KEY: &str = "/etc/hearth/master.key";
const CONFIG: &str = "/etc/hearth/hearth.toml";
const SOCKET_UNIT: &str = "/lib/systemd/system/hearth.socket";
/// Where `systemctl enable hearth.socket` would put its link.
const SOCKET_ENABLED: &str = "/etc/systemd/system/sockets.target.wants/hearth.socket";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The amd64 package of this version, built if it is not there.
fn package() -> PathBuf {
    let name = format!("hearth_{}-1_amd64.deb", env!("CARGO_PKG_VERSION"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let built = target.join("debian").join(&name);
    if built.exists() {
        return built;
    }
    // A separate target directory: the outer cargo may hold the usual one.
    let own = target.join("package-test");
    run(Command::new(root().join("packaging/build-debs"))
        .arg("amd64")
        .env("CARGO_TARGET_DIR", &own));
    let path = own.join("debian").join(&name);
    assert!(path.exists(), "build-debs made no {}", path.display());
    path
}

fn dpkg(args: &[&str]) -> Output {
    let mut cmd = Command::new("dpkg");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut cmd)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "hearth"])
        .output()
        .map(|o| text(&o.stdout).trim() == "installed" || text(&o.stdout).trim() == "config-files")
        .unwrap_or(false)
}

fn id_of(what: &str) -> Option<u32> {
    let out = Command::new("id").args([what, "hearth"]).output().ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().parse().ok())?
}

/// The installed hearth, started as the unit starts it: as the `hearth`
/// user under the unit's system call filter, with `STATE_DIRECTORY` and
/// the key as a credential. Listeners on loopback (the test's only
/// change to the installed config), discovery off.
struct Service {
    child: Child,
    _credentials: tempfile::TempDir,
    _config: tempfile::NamedTempFile,
    _filter: tempfile::NamedTempFile,
}

impl Service {
    fn start() -> Service {
        let (uid, gid) = (
            id_of("-u").expect("the hearth user"),
            id_of("-g").expect("the hearth group"),
        );
        // What StateDirectory=hearth with mode 0700 does.
        std::fs::create_dir_all(STATE).unwrap();
        std::os::unix::fs::chown(STATE, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(STATE, std::fs::Permissions::from_mode(0o700)).unwrap();
        // What LoadCredential=hearth.key:/etc/hearth/master.key does: a
        // copy readable by the service alone.
        let credentials = tempfile::tempdir().unwrap();
        let cred = credentials.path().join("hearth.key");
        std::fs::copy(KEY, &cred).unwrap();
        for p in [credentials.path(), cred.as_path()] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(credentials.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        let installed = std::fs::read_to_string(CONFIG).unwrap();
        let body = loopback(&installed);
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(config.path(), body).unwrap();
        std::os::unix::fs::chown(config.path(), Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        let filter = tempfile::NamedTempFile::new().unwrap();
        let allowed: Vec<String> = crate::systemd::unit_allow_list().into_iter().collect();
        std::fs::write(filter.path(), allowed.join("\n")).unwrap();
        let args: Vec<OsString> = vec![
            filter.path().into(),
            "65536".into(),
            format!("{uid}:{gid}").into(),
            "--".into(),
            "/usr/bin/hearth".into(),
            "run".into(),
            "--config".into(),
            config.path().into(),
        ];
        let child = Command::new(env!("CARGO_BIN_EXE_hearth-seccomp-exec"))
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("STATE_DIRECTORY", STATE)
            .env("CREDENTIALS_DIRECTORY", credentials.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut service = Service {
            child,
            _credentials: credentials,
            _config: config,
            _filter: filter,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cli(&["status", "--json"]).status.success() {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!(
                    "the installed hearth exited with {status}: {}",
                    service.stop_log()
                );
            }
            assert!(Instant::now() < deadline, "the installed hearth did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    fn stop_log(&mut self) -> String {
        let _ = self.child.kill();
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        text(&out.wait_with_output().unwrap().stderr)
    }

    /// SIGTERM, and the exit status with the log.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill on a child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let out = child.wait_with_output().unwrap();
        (out.status, text(&out.stderr))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed config with every listener on loopback port 0 and
/// discovery off: tests send nothing onto the machine's network.
fn loopback(installed: &str) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in installed.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key) {
            ("[mqtt]", "tls_listen") => Some("tls_listen = [\"127.0.0.1:0\"]"),
            ("[mqtt]", "plain_listen") => Some("plain_listen = [\"127.0.0.1:0\"]"),
            ("[web]", "listen") => Some("listen = [\"127.0.0.1:0\"]"),
            ("[discovery]", "enabled") => Some("enabled = false"),
            ("[relay]", "listen") => Some("listen = \"127.0.0.1:0\""),
            _ => None,
        };
        out.push_str(replaced.unwrap_or(line));
        out.push('\n');
    }
    assert_eq!(
        out.matches("127.0.0.1:0").count(),
        4,
        "the installed config changed shape:\n{installed}"
    );
    assert!(out.contains("enabled = false"));
    out
}

fn cli(args: &[&str]) -> Output {
    Command::new("/usr/bin/hearth")
        .args(args)
        .args(["--data-dir", STATE])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn cli_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(&all);
    assert!(out.status.success(), "hearth {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A version of `deb` that says `version`: the same files, an older
/// version number, for the upgrade.
fn relabel(deb: &Path, version: &str, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let relabelled: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&control, relabelled + "\n").unwrap();
    let out = dir.join(format!("hearth_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

fn mqtt_connects(status: &serde_json::Value, device: &Device) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut opts =
        rumqttc::MqttOptions::new(device.client_id(), "127.0.0.1", listener_port(status, "mqtt_tls"));
    opts.set_credentials(device.username(), device.password());
    opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
        crate::mqtt::client_tls_for(Path::new(&format!("{STATE}/ca.pem"))),
    )));
    let (_client, mut events) = rumqttc::AsyncClient::new(opts, 8);
    rt.block_on(crate::mqtt::connack(&mut events)) == Ok(rumqttc::ConnectReturnCode::Success)
}

#[test]
fn the_deb_installs_runs_as_its_user_upgrades_keeps_data_on_remove_and_purges() {
    let deb = package();
    // A package left by an earlier run goes first.
    if installed() {
        dpkg(&["--purge", "hearth"]);
    }

    // Contents: what the package must carry, with the config at 0640.
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout);
    for (path, mode) in [
        ("./usr/bin/hearth", "-rwxr-xr-x"),
        ("./lib/systemd/system/hearth.service", "-rw-r--r--"),
        ("./lib/systemd/system/hearth.socket", "-rw-r--r--"),
        ("./etc/hearth/hearth.toml", "-rw-r-----"),
        ("./usr/share/man/man1/hearth.1.gz", "-rw-r--r--"),
        ("./usr/share/man/man1/hearth-run.1.gz", "-rw-r--r--"),
        ("./usr/share/bash-completion/completions/hearth", "-rw-r--r--"),
        ("./usr/share/zsh/vendor-completions/_hearth", "-rw-r--r--"),
        ("./usr/share/fish/vendor_completions.d/hearth.fish", "-rw-r--r--"),
        ("./usr/share/doc/hearth/copyright", "-rw-r--r--"),
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} ({mode}) is not in the package:\n{listing}"
        );
    }
    assert!(!listing.contains("master.key"), "a key is shipped in the package");
    // The binary is stripped.
    let tmp = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tmp.path().join("x")));
    let file = text(&run(Command::new("file").arg(tmp.path().join("x/usr/bin/hearth"))).stdout);
    assert!(
        file.contains("stripped") && !file.contains("not stripped"),
        "{file}"
    );
    // Depends names what the binary links against, as dpkg-shlibdeps finds
    // it (run in a scratch source tree: it wants a debian/control).
    let scratch = tmp.path().join("shlibs");
    std::fs::create_dir_all(scratch.join("debian")).unwrap();
    std::fs::write(
        scratch.join("debian/control"),
        "Source: hearth\n\nPackage: hearth\nArchitecture: any\n",
    )
    .unwrap();
    let found = text(
        &run(Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(tmp.path().join("x/usr/bin/hearth"))
            .current_dir(&scratch))
        .stdout,
    );
    let needed = found
        .trim()
        .strip_prefix("shlibs:Depends=")
        .unwrap_or_else(|| panic!("dpkg-shlibdeps said {found:?}"));
    let depends = text(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends")).stdout);
    let declared: Vec<&str> = depends.trim().split(", ").collect();
    for entry in needed.split(", ") {
        assert!(
            declared.contains(&entry),
            "the package depends on {declared:?}, not on {entry} (dpkg-shlibdeps: {needed})"
        );
    }

    // Install the previous version first, then upgrade to this one.
    let old = relabel(&deb, "0.1.0-1", tmp.path());
    let out = dpkg(&["-i", old.to_str().unwrap()]);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains("created the master key"), "{said}");
    assert!(id_of("-u").is_some(), "postinst made no hearth user");
    let key = std::fs::metadata(KEY).unwrap();
    assert_eq!(
        (key.uid(), key.mode() & 0o777),
        (0, 0o600),
        "the key is not root's alone"
    );
    let config = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(config.mode() & 0o777, 0o640);
    assert_eq!(
        config.gid(),
        id_of("-g").unwrap(),
        "the config is not in the hearth group"
    );
    let key_before = std::fs::read(KEY).unwrap();
    // The resolver's socket unit is installed but not enabled: port 53
    // stays closed until the owner turns it on.
    assert!(Path::new(SOCKET_UNIT).exists(), "{SOCKET_UNIT} is not installed");
    assert!(
        std::fs::symlink_metadata(SOCKET_ENABLED).is_err(),
        "the install enabled hearth.socket"
    );

    let service = Service::start();
    let status = cli_json(&["status"]);
    let web = Target::tls(
        listener_port(&status, "web"),
        Path::new(&format!("{STATE}/ca.pem")),
    );
    assert_eq!(
        web.send("GET", "/api/state", &[], b"").status,
        200,
        "the dashboard does not answer over TLS"
    );
    let device = Device(cli_json(&[
        "devices",
        "add",
        "--profile",
        "generic",
        "--kind",
        "bulb",
        "--nickname",
        "Porch",
        "--room",
        "Outside",
    ]));
    assert!(
        mqtt_connects(&status, &device),
        "MQTT TLS refused a provisioned device"
    );
    let data = std::fs::metadata(STATE).unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (id_of("-u").unwrap(), 0o700));
    let (exit, log) = service.stop();
    assert!(exit.success(), "the installed hearth stopped with {exit}: {log}");

    // Upgrade: the data, the device and the key stay.
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !said.contains("created the master key"),
        "the upgrade made a new key: {said}"
    );
    assert_eq!(
        std::fs::read(KEY).unwrap(),
        key_before,
        "the upgrade changed the key"
    );
    let version = text(&run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "hearth"])).stdout);
    assert_eq!(version, format!("{}-1", env!("CARGO_PKG_VERSION")));
    let service = Service::start();
    let status = cli_json(&["status"]);
    let devices = cli_json(&["devices", "list"]);
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == device.id() && d["nickname"] == "Porch"),
        "the device did not survive the upgrade: {devices}"
    );
    assert!(
        mqtt_connects(&status, &device),
        "the device's credential did not survive the upgrade"
    );
    let (exit, log) = service.stop();
    assert!(exit.success(), "{log}");

    // Remove keeps the data and the key.
    dpkg(&["-r", "hearth"]);
    assert!(!Path::new("/usr/bin/hearth").exists(), "remove left the binary");
    assert!(!Path::new(SOCKET_UNIT).exists(), "remove left the socket unit");
    assert!(
        Path::new(STATE).join("hearth.db").exists(),
        "remove deleted the store"
    );
    assert!(Path::new(KEY).exists(), "remove deleted the key");

    // Purge says what it deletes, then deletes it.
    let out = dpkg(&["--purge", "hearth"]);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("purging") && said.contains(STATE),
        "purge did not say what it deletes: {said}"
    );
    assert!(!Path::new(STATE).exists(), "purge left {STATE}");
    assert!(!Path::new(KEY).exists(), "purge left the key");
    assert!(id_of("-u").is_none(), "purge left the hearth user");
    assert!(!installed());
}
