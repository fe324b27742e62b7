//! Owns the daemon's tasks: starts each under a name, cancels them together,
//! drains them within a grace period, and talks to systemd.
//!
//! A task that fails stops the whole daemon (systemd restarts it); the
//! supervisor must never let one task die quietly while the rest carry on.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a supervised task returns.
pub type TaskResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("task '{task}' failed: {error}")]
    TaskFailed { task: &'static str, error: String },
    #[error("tasks did not stop within the {grace:?} grace period: {}", pending.join(", "))]
    GraceExceeded {
        grace: Duration,
        pending: Vec<&'static str>,
    },
}

#[derive(Default)]
struct State {
    running: BTreeMap<u64, &'static str>,
    next: u64,
    failure: Option<(&'static str, String)>,
}

#[derive(Clone)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
    state: Arc<Mutex<State>>,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Supervisor {
        Supervisor {
            token,
            tracker: TaskTracker::new(),
            state: Arc::default(),
        }
    }

    /// The token every task watches. Cancelling it starts the shutdown.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns a named task. It gets a child token and must return soon after
    /// that token is cancelled.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let id = {
            let mut s = self.state.lock().expect("supervisor state");
            s.next += 1;
            let id = s.next;
            s.running.insert(id, name);
            id
        };
        let fut = task(self.token.child_token());
        let state = self.state.clone();
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tracing::debug!(task = name, "task started");
            let result = fut.await;
            let mut s = state.lock().expect("supervisor state");
            s.running.remove(&id);
            match result {
                Ok(()) => tracing::debug!(task = name, "task finished"),
                Err(error) => {
                    tracing::error!(task = name, %error, "task failed; stopping hearth");
                    s.failure.get_or_insert((name, error.to_string()));
                    token.cancel();
                }
            }
        });
    }

    /// Names of the tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        self.state
            .lock()
            .expect("supervisor state")
            .running
            .values()
            .copied()
            .collect()
    }

    /// Cancels every task and waits up to `grace` for them to finish.
    pub async fn shutdown(self, grace: Duration) -> Result<(), SupervisorError> {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            return Err(SupervisorError::GraceExceeded {
                grace,
                pending: self.running(),
            });
        }
        let failure = self.state.lock().expect("supervisor state").failure.take();
        match failure {
            Some((task, error)) => Err(SupervisorError::TaskFailed { task, error }),
            None => Ok(()),
        }
    }
}

/// Raises the soft limit on open files to the hard limit (at most 65,536):
/// every MQTT connection holds two descriptors (client and broker side).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = lim.rlim_max.min(65_536).max(lim.rlim_cur);
            // Under the systemd unit, LimitNOFILE= has set it already, and
            // its SystemCallFilter= (~@resources) kills a setrlimit call.
            if want > lim.rlim_cur {
                lim.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// Makes glibc serve every allocation of 1 MiB or more with its own mmap,
/// so that it goes back to the system when freed. By default glibc raises
/// that threshold to the largest block freed so far, so after the first
/// argon2id hash every later one (19 MiB each) comes from the heap of the
/// blocking thread that runs it and stays resident there: setup, one login
/// and 8 concurrent logins took an idle daemon from 14 to 262 MiB.
pub fn return_large_blocks() {
    // SAFETY: mallopt only changes a malloc tuning parameter; it is called
    // before the runtime starts any thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The signal that asked hearth to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: drain within the configured grace period.
    Terminate,
    /// SIGINT: stop fast.
    Interrupt,
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn stop_signal() -> std::io::Result<StopSignal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok(StopSignal::Terminate),
        _ = int.recv() => Ok(StopSignal::Interrupt),
    }
}

/// systemd's notify protocol. Every call is a no-op without `NOTIFY_SOCKET`.
pub mod notify {
    use sd_notify::NotifyState;

    pub fn ready() {
        send(&[NotifyState::Ready, NotifyState::Status("running")]);
    }

    pub fn stopping() {
        send(&[NotifyState::Stopping]);
    }

    fn send(states: &[NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(states) {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }

    /// Spawns the watchdog keep-alive if systemd asked for one, pinging at
    /// half the interval it gave.
    pub fn spawn_watchdog(supervisor: &super::Supervisor) {
        let Some(interval) = sd_notify::watchdog_enabled() else {
            return;
        };
        let period = (interval / 2).max(std::time::Duration::from_millis(100));
        supervisor.spawn("watchdog", move |token| async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tick.tick() => send(&[NotifyState::Watchdog]),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_drain_on_shutdown() {
        let sup = Supervisor::new(CancellationToken::new());
        for name in ["a", "b"] {
            sup.spawn(name, |token| async move {
                token.cancelled().await;
                Ok(())
            });
        }
        assert_eq!(sup.running().len(), 2);
        sup.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_task_stops_everything_and_is_named() {
        let token = CancellationToken::new();
        let sup = Supervisor::new(token.clone());
        sup.spawn("steady", |t| async move {
            t.cancelled().await;
            Ok(())
        });
        sup.spawn("broken", |_| async { Err("listener died".into()) });
        tokio::time::timeout(Duration::from_secs(1), token.cancelled())
            .await
            .unwrap();
        match sup.shutdown(Duration::from_secs(1)).await {
            Err(SupervisorError::TaskFailed { task, error }) => {
                assert_eq!(task, "broken");
                assert_eq!(error, "listener died");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stuck_task_exceeds_the_grace_and_is_named() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn("stuck", |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        match sup.shutdown(Duration::from_millis(50)).await {
            Err(SupervisorError::GraceExceeded { pending, .. }) => assert_eq!(pending, ["stuck"]),
            other => panic!("{other:?}"),
        }
    }
}
