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
        let body =
            format!("[mqtt]\ntls_listen = [\"127.0.0.1:0\"]\nplain_listen = [\"127.0.0.1:0\"]\n{extra}");
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
