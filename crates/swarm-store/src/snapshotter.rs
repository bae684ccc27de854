//! [`Snapshotter`]: snapshots the replayed state every N events, off the append path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::state::SystemState;
use crate::store::EventStore;

/// The default snapshot interval: every 1000 events.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

/// A background task that follows the log (as a subscriber, so appends never
/// wait for it), keeps its own [`SystemState`], and saves a snapshot every
/// `every` events.
///
/// Stops when the store closes or on [`stop`](Snapshotter::stop), which saves a
/// last snapshot if events arrived since the previous one.
pub struct Snapshotter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SystemState>>,
    last_snapshot: Arc<AtomicU64>,
}

impl fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshotter")
            .field("last_snapshot", &self.last_snapshot())
            .finish()
    }
}

impl Snapshotter {
    /// Starts following `store` (from its newest snapshot) on the current tokio runtime.
    pub fn spawn<S: EventStore + 'static>(store: Arc<S>, every: u64) -> Snapshotter {
        let every = every.max(1);
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let last_snapshot = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&last_snapshot);
        let task = tokio::spawn(async move {
            let mut state = match store.latest_snapshot(u64::MAX).await? {
                Some(s) => SystemState::from_snapshot(&s).unwrap_or_default(),
                None => SystemState::new(),
            };
            seen.store(state.last_seq(), Ordering::Release);
            let mut saved = state.last_seq();
            let mut events = store.subscribe(state.last_seq() + 1);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    next = events.next() => match next {
                        Some(Ok(stored)) => {
                            state.apply(&stored);
                            if state.last_seq() - saved >= every {
                                store.save_snapshot(state.to_snapshot()?).await?;
                                saved = state.last_seq();
                                seen.store(saved, Ordering::Release);
                            }
                        }
                        Some(Err(e)) => return Err(e),
                        None => break,
                    }
                }
            }
            if state.last_seq() > saved {
                // Best effort: the store may already be closed.
                if store.save_snapshot(state.to_snapshot()?).await.is_ok() {
                    seen.store(state.last_seq(), Ordering::Release);
                }
            }
            Ok(state)
        });
        Snapshotter {
            stop: Some(stop_tx),
            task,
            last_snapshot,
        }
    }

    /// The sequence of the newest snapshot this snapshotter saved or started from.
    pub fn last_snapshot(&self) -> u64 {
        self.last_snapshot.load(Ordering::Acquire)
    }

    /// Stops following, saves a final snapshot if needed, and returns the state.
    pub async fn stop(mut self) -> Result<SystemState> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(crate::StoreError::io(
                std::path::PathBuf::new(),
                std::io::Error::other(format!("the snapshotter task failed: {e}")),
            )),
        }
    }
}
