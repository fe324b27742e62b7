//! Rotating the data key while hearth runs: the store's three steps
//! (`store::keys`) driven in the background, one batch per lock, so the
//! home keeps working while every value is re-sealed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::keys::Progress;
use crate::store::{Actor, Store, StoreError};

/// Rows re-sealed per transaction: small enough that a device's write
/// waits at most a few milliseconds for the store.
pub const BATCH: usize = 128;

/// Why a rotation step failed. Every batch is one transaction, so a failure
/// leaves nothing half done.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the key rotation's store task stopped: {0}")]
    Stopped(String),
}

pub struct Rotator {
    store: Arc<Mutex<Store>>,
    running: AtomicBool,
}

impl Rotator {
    pub fn new(store: Arc<Mutex<Store>>) -> Arc<Rotator> {
        Arc::new(Rotator {
            store,
            running: AtomicBool::new(false),
        })
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, RotateError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || Ok(f(&mut store.lock().expect("store lock"))?))
            .await
            .map_err(|e| RotateError::Stopped(e.to_string()))?
    }

    /// Starts a rotation (or joins the one under way) and returns at once;
    /// the re-sealing runs in the background.
    pub async fn rotate(self: &Arc<Self>, by: Actor) -> Result<Progress, RotateError> {
        self.with_store(|s| s.begin_rotation().map(|_| ())).await?;
        self.spawn(by);
        self.progress().await
    }

    /// Resumes a rotation a crash or stop cut short; nothing if none was.
    pub async fn resume(self: &Arc<Self>) -> Result<(), RotateError> {
        if self.with_store(|s| Ok(s.rotating())).await? {
            tracing::warn!("resuming a data key rotation that was cut short");
            self.spawn(Actor::Hearth);
        }
        Ok(())
    }

    pub async fn progress(&self) -> Result<Progress, RotateError> {
        let mut p = self.with_store(|s| s.rotation_progress()).await?;
        // Until the task has destroyed the old key, it is not finished,
        // even if every row is re-sealed.
        p.finished &= !self.running.load(Ordering::SeqCst);
        Ok(p)
    }

    fn spawn(self: &Arc<Self>, by: Actor) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let by = by.clone();
                match me.with_store(move |s| s.rotate_batch(BATCH, &by)).await {
                    Ok(p) if p.finished => {
                        tracing::info!(values = p.total, "data key rotated; the old key is destroyed");
                        break;
                    }
                    Ok(_) => {
                        failures = 0;
                        tokio::task::yield_now().await;
                    }
                    Err(error) => {
                        // Every batch is one transaction: nothing is half
                        // done. Try again a few times, then leave it for the
                        // next start to resume.
                        failures += 1;
                        tracing::error!(%error, failures, "a key rotation batch failed");
                        if failures >= 5 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            me.running.store(false, Ordering::SeqCst);
        });
    }
}
