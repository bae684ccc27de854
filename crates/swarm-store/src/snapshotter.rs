//! [`Snapshotter`]: snapshots the replayed state every N events, off the append path.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Result, StoreError};
use crate::state::SystemState;
use crate::store::{EventStore, EventStream};

/// The default snapshot interval: every 1000 events.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

/// How long a [`Snapshotter`] waits before its first retry after a failure;
/// each further failure in a row doubles the wait, up to
/// [`SNAPSHOT_RETRY_MAX`].
pub const SNAPSHOT_RETRY_MIN: Duration = Duration::from_millis(100);

/// The longest a [`Snapshotter`] waits between two retries.
pub const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Called by a [`Snapshotter`] with each error it meets (see
/// [`Snapshotter::spawn_with`]), for example to count it in a metric. It runs
/// on the snapshotter's task: keep it short and do not block.
pub type SnapshotFailureHook = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// The wait before retry number `failures` (1 for the first) of a failure streak.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    SNAPSHOT_RETRY_MIN
        .saturating_mul(1 << doublings)
        .min(SNAPSHOT_RETRY_MAX)
}

/// A background task that follows the log (as a subscriber, so appends never
/// wait for it), keeps its own [`SystemState`], and saves a snapshot every
/// `every` events.
///
/// A failure (to load the starting snapshot, to follow the log, to encode or
/// save a snapshot) does not stop it: it is logged (`tracing` warning),
/// counted ([`failures`](Snapshotter::failures)), given to the hook of
/// [`spawn_with`](Snapshotter::spawn_with), and retried after a back-off that
/// starts at [`SNAPSHOT_RETRY_MIN`] and doubles up to [`SNAPSHOT_RETRY_MAX`];
/// a success resets it. No timer exists while nothing failed.
///
/// Stops when the store closes or on [`stop`](Snapshotter::stop), which saves a
/// last snapshot if events arrived since the previous one.
pub struct Snapshotter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SystemState>>,
    shared: Arc<Progress>,
}

/// What the task reports to the handle.
#[derive(Default)]
struct Progress {
    last_snapshot: AtomicU64,
    failures: AtomicU64,
}

impl fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshotter")
            .field("last_snapshot", &self.last_snapshot())
            .field("failures", &self.failures())
            .finish()
    }
}

/// The snapshotter's task: its state, and how to report.
struct Follower<S> {
    store: Arc<S>,
    every: u64,
    progress: Arc<Progress>,
    on_failure: Option<SnapshotFailureHook>,
    /// Failures in a row, for the back-off.
    streak: u32,
}

impl<S: EventStore + 'static> Follower<S> {
    fn failed(&mut self, what: &'static str, error: &StoreError) -> Instant {
        self.streak = self.streak.saturating_add(1);
        let delay = retry_delay(self.streak);
        self.progress.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, what, retry_in = ?delay, "snapshotter failed; it will retry");
        if let Some(hook) = &self.on_failure {
            hook(error);
        }
        Instant::now() + delay
    }

    async fn save(&self, state: &SystemState) -> Result<()> {
        self.store.save_snapshot(state.to_snapshot()?).await?;
        self.progress
            .last_snapshot
            .store(state.last_seq(), Ordering::Release);
        Ok(())
    }

    async fn run(mut self, mut stop_rx: oneshot::Receiver<()>) -> Result<SystemState> {
        // The starting point: the newest snapshot, retried until it loads.
        let mut state = loop {
            match self.store.latest_snapshot(u64::MAX).await {
                Ok(found) => {
                    break found
                        .map(|s| SystemState::from_snapshot(&s).unwrap_or_default())
                        .unwrap_or_default();
                }
                Err(e) => {
                    let retry = self.failed("load the latest snapshot", &e);
                    if let Wake::Stop = wait(&mut stop_rx, Some(retry), &mut None).await {
                        return Ok(SystemState::new());
                    }
                }
            }
        };
        self.streak = 0;
        self.progress
            .last_snapshot
            .store(state.last_seq(), Ordering::Release);
        let mut saved = state.last_seq();
        let mut events: Option<EventStream> = Some(self.store.subscribe(state.last_seq() + 1));
        // Set while a failure waits for its retry.
        let mut retry: Option<Instant> = None;
        loop {
            match wait(&mut stop_rx, retry, &mut events).await {
                Wake::Stop => break,
                Wake::Retry => {
                    retry = None;
                    if events.is_none() {
                        events = Some(self.store.subscribe(state.last_seq() + 1));
                    }
                    if state.last_seq() > saved {
                        match self.save(&state).await {
                            Ok(()) => {
                                saved = state.last_seq();
                                self.streak = 0;
                            }
                            Err(e) => retry = Some(self.failed("save a snapshot", &e)),
                        }
                    } else {
                        self.streak = 0;
                    }
                }
                Wake::Event(next) => match next {
                    Some(Ok(stored)) => {
                        state.apply(&stored);
                        // While a retry is pending, the retry saves.
                        if retry.is_none() && state.last_seq() - saved >= self.every {
                            match self.save(&state).await {
                                Ok(()) => {
                                    saved = state.last_seq();
                                    self.streak = 0;
                                }
                                Err(e) => retry = Some(self.failed("save a snapshot", &e)),
                            }
                        }
                    }
                    Some(Err(e)) => {
                        // Follow again from where the state is, after the back-off.
                        events = None;
                        retry = Some(self.failed("follow the log", &e));
                    }
                    None => break,
                },
            }
        }
        if state.last_seq() > saved
            && let Err(e) = self.save(&state).await
        {
            self.failed("save the final snapshot", &e);
        }
        Ok(state)
    }
}

/// What ended a [`wait`].
enum Wake {
    /// The snapshotter was told to stop.
    Stop,
    /// The retry time came.
    Retry,
    /// The subscription yielded (or ended).
    Event(Option<Result<crate::StoredEvent>>),
}

/// Waits for the first of: a stop, the retry time (if any), the next event (if
/// subscribed); checked in that order. A hand-written `select!`, which would
/// pull in the `tokio-macros` proc-macro crate for these two sites.
async fn wait(
    stop_rx: &mut oneshot::Receiver<()>,
    retry: Option<Instant>,
    events: &mut Option<EventStream>,
) -> Wake {
    let mut sleep = pin!(sleep_until(retry));
    let mut next = pin!(next_event(events));
    poll_fn(|cx| {
        if Pin::new(&mut *stop_rx).poll(cx).is_ready() {
            return Poll::Ready(Wake::Stop);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Retry);
        }
        next.as_mut().poll(cx).map(Wake::Event)
    })
    .await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next event, or never while there is no subscription.
async fn next_event(events: &mut Option<EventStream>) -> Option<Result<crate::StoredEvent>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

impl Snapshotter {
    /// Starts following `store` (from its newest snapshot) on the current tokio runtime.
    pub fn spawn<S: EventStore + 'static>(store: Arc<S>, every: u64) -> Snapshotter {
        Snapshotter::start(store, every, None)
    }

    /// Like [`spawn`](Snapshotter::spawn), and calls `on_failure` with each
    /// error met (each is also counted in [`failures`](Snapshotter::failures)
    /// and retried after the back-off).
    pub fn spawn_with<S: EventStore + 'static>(
        store: Arc<S>,
        every: u64,
        on_failure: SnapshotFailureHook,
    ) -> Snapshotter {
        Snapshotter::start(store, every, Some(on_failure))
    }

    fn start<S: EventStore + 'static>(
        store: Arc<S>,
        every: u64,
        on_failure: Option<SnapshotFailureHook>,
    ) -> Snapshotter {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shared = Arc::new(Progress::default());
        let follower = Follower {
            store,
            every: every.max(1),
            progress: Arc::clone(&shared),
            on_failure,
            streak: 0,
        };
        let task = tokio::spawn(follower.run(stop_rx));
        Snapshotter {
            stop: Some(stop_tx),
            task,
            shared,
        }
    }

    /// The sequence of the newest snapshot this snapshotter saved or started from.
    pub fn last_snapshot(&self) -> u64 {
        self.shared.last_snapshot.load(Ordering::Acquire)
    }

    /// How many failures this snapshotter has met so far (each was retried).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Stops following, saves a final snapshot if needed, and returns the state.
    ///
    /// A failure of the final save is counted and reported like any other;
    /// the state is returned all the same.
    pub async fn stop(mut self) -> Result<SystemState> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::io(
                std::path::PathBuf::new(),
                std::io::Error::other(format!("the snapshotter task failed: {e}")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_from_the_minimum_up_to_the_cap() {
        assert_eq!(retry_delay(1), SNAPSHOT_RETRY_MIN);
        assert_eq!(retry_delay(2), SNAPSHOT_RETRY_MIN * 2);
        assert_eq!(retry_delay(3), SNAPSHOT_RETRY_MIN * 4);
        assert_eq!(retry_delay(9), SNAPSHOT_RETRY_MIN * 256);
        assert_eq!(retry_delay(10), SNAPSHOT_RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), SNAPSHOT_RETRY_MAX);
    }
}
