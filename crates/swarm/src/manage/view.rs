//! The live view: one [`SystemState`] kept up to date from the event store,
//! which the management reads come from.
//!
//! The swarm builds it from the state it replays at start (a distributed
//! node replays the shared log for it), then a follower task subscribes to
//! the store from `last_seq + 1` and applies every stored event, so the view
//! also sees other nodes' events where the store is a shared log. Readers
//! take a short read lock and copy what they need; nothing holds the lock
//! across an `await`. The follower also drives the pause gate of the work
//! source from the log (`swarm:paused` / `swarm:resumed`), so a pause holds
//! for every node that follows the log, and a restarted swarm comes back
//! paused when its log says so.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use swarm_core::{Event, Priority, Timestamp};
use swarm_store::{EventStore, StoreError, StoredEvent, SystemState};
use tokio::sync::watch;

/// Queue-wait samples kept per priority for the percentiles.
const WAIT_SAMPLES: usize = 1024;

/// The window `throughput_per_sec` is measured over, in seconds.
pub(crate) const THROUGHPUT_WINDOW_SECS: u64 = 10;

/// One-second buckets kept for throughput (a few beyond the window, so a
/// late event still lands in its own second).
const BUCKETS: usize = 16;

/// The first wait before the follower re-subscribes after a store error; it
/// doubles up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What the management API reads.
pub(crate) struct LiveView {
    pub(crate) state: SystemState,
    /// Recent queue waits per priority level, in microseconds.
    waits: [Ring; Priority::LEVELS],
    /// Completions per second of wall time (stored timestamps).
    completions: [(u64, u64); BUCKETS],
}

/// A ring of the latest samples.
#[derive(Default)]
struct Ring {
    samples: Vec<u64>,
    next: usize,
}

impl Ring {
    fn push(&mut self, sample: u64) {
        if self.samples.len() < WAIT_SAMPLES {
            self.samples.push(sample);
        } else {
            self.samples[self.next] = sample;
        }
        self.next = (self.next + 1) % WAIT_SAMPLES;
    }

    /// The p50 and p99 in milliseconds (0 without samples).
    fn percentiles_ms(&self) -> (f64, f64) {
        if self.samples.is_empty() {
            return (0.0, 0.0);
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let at = |q: usize| {
            let rank = (sorted.len() * q).div_ceil(100).saturating_sub(1);
            sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
        };
        (at(50), at(99))
    }
}

impl LiveView {
    pub(crate) fn new(state: SystemState) -> Self {
        LiveView {
            state,
            waits: Default::default(),
            completions: [(0, 0); BUCKETS],
        }
    }

    /// Whether the log says the swarm is paused.
    pub(crate) fn paused(&self) -> bool {
        self.state.is_paused()
    }

    /// The p50 / p99 queue wait of `priority`, in milliseconds.
    pub(crate) fn queue_wait_ms(&self, priority: Priority) -> (f64, f64) {
        self.waits[priority.level()].percentiles_ms()
    }

    /// Completions per second over the last [`THROUGHPUT_WINDOW_SECS`]
    /// seconds up to `now`, the current one included (wall time, as the log
    /// stamps events).
    pub(crate) fn throughput_per_sec(&self, now: Timestamp) -> f64 {
        let now_sec = seconds(now);
        let from = now_sec.saturating_sub(THROUGHPUT_WINDOW_SECS - 1);
        let count: u64 = self
            .completions
            .iter()
            .filter(|(sec, n)| *n > 0 && *sec >= from && *sec <= now_sec)
            .map(|(_, n)| n)
            .sum();
        count as f64 / THROUGHPUT_WINDOW_SECS as f64
    }

    pub(crate) fn apply(&mut self, stored: &StoredEvent) {
        match &stored.event {
            Event::TaskAssigned(e) => {
                let micros = u64::try_from(e.queue_wait.as_micros()).unwrap_or(u64::MAX);
                self.waits[e.priority.level()].push(micros);
            }
            Event::TaskCompleted(_) => {
                let sec = seconds(stored.timestamp);
                let slot = &mut self.completions[(sec % BUCKETS as u64) as usize];
                if slot.0 != sec {
                    *slot = (sec, 0);
                }
                slot.1 += 1;
            }
            _ => {}
        }
        self.state.apply(stored);
    }
}

fn seconds(t: Timestamp) -> u64 {
    t.saturating_duration_since(Timestamp::from_micros(0))
        .as_secs()
}

/// What the pause events of the log switch: the work source's gate.
pub(crate) trait PauseGate: Send + Sync {
    fn set_paused(&self, paused: bool);
}

/// The view, its progress and its follower's failure, shared by the swarm
/// and the follower task.
pub(crate) struct Shared {
    pub(crate) view: RwLock<LiveView>,
    /// The sequence of the last event applied.
    pub(crate) applied: watch::Sender<u64>,
    /// The store error the follower is recovering from, if any.
    pub(crate) failure: Mutex<Option<Arc<StoreError>>>,
}

impl Shared {
    pub(crate) fn new(state: SystemState) -> Arc<Shared> {
        let last = state.last_seq();
        Arc::new(Shared {
            view: RwLock::new(LiveView::new(state)),
            applied: watch::channel(last).0,
            failure: Mutex::new(None),
        })
    }

    /// Waits until every event up to `seq` is applied, or `timeout` passes
    /// (then returns the sequence applied so far as the error).
    pub(crate) async fn wait_applied(&self, seq: u64, timeout: Duration) -> Result<(), u64> {
        let mut progress = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, progress.wait_for(|applied| *applied >= seq));
        match reached.await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(*self.applied.borrow()),
        }
    }
}

/// Follows `store` from the view's last sequence on, applying each event,
/// and switching `gate` when a pause event changes the view's `paused`.
/// Recovers from store errors by subscribing again (after a back-off), or,
/// when the events it needs were deleted by retention, by replaying the
/// store into a fresh state.
pub(crate) async fn follow(
    shared: Weak<Shared>,
    store: Arc<dyn EventStore>,
    gate: Option<Arc<dyn PauseGate>>,
) {
    let mut delay = RETRY_DELAY;
    // Where to go on when the events after the view's last one are gone and
    // no snapshot covers them (a bounded memory store the view fell behind).
    let mut skip_to: Option<u64> = None;
    loop {
        let Some(from) = shared.upgrade().map(|s| s.view.read().state.last_seq() + 1) else {
            return;
        };
        let from = skip_to.take().map_or(from, |to| to.max(from));
        let mut events = store.subscribe(from).ready_chunks(512);
        let error = loop {
            let Some(chunk) = events.next().await else {
                // The store closed: nothing more will come.
                return;
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut failed = None;
            let mut pause_now = None;
            let mut last = None;
            {
                let mut view = shared.view.write();
                for item in chunk {
                    match item {
                        Ok(stored) => {
                            // A re-subscription may repeat what was applied.
                            if stored.seq <= view.state.last_seq() {
                                continue;
                            }
                            let before = view.paused();
                            view.apply(&stored);
                            if view.paused() != before {
                                pause_now = Some(view.paused());
                            }
                            last = Some(stored.seq);
                        }
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
            }
            if let (Some(paused), Some(gate)) = (pause_now, &gate) {
                gate.set_paused(paused);
            }
            if let Some(last) = last {
                delay = RETRY_DELAY;
                *shared.failure.lock() = None;
                shared.applied.send_replace(last);
            }
            if let Some(error) = failed {
                break error;
            }
        };
        tracing::warn!(%error, "the management view lost its store subscription; following again");
        let compacted = matches!(error, StoreError::Compacted { .. });
        if let Some(shared) = shared.upgrade() {
            *shared.failure.lock() = Some(Arc::new(error));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        if compacted {
            // The events after our last one are gone: start over from the
            // store's snapshot and what follows it.
            let Some(retention) = shared.upgrade().map(|s| s.view.read().state.retention()) else {
                return;
            };
            match SystemState::replay_with(&*store, retention).await {
                Ok(state) => {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let (paused, last) = {
                        let mut view = shared.view.write();
                        let before = view.paused();
                        let fresh = LiveView::new(state);
                        let keep_waits = std::mem::take(&mut view.waits);
                        *view = fresh;
                        view.waits = keep_waits;
                        (
                            (view.paused() != before).then_some(view.paused()),
                            view.state.last_seq(),
                        )
                    };
                    if let (Some(paused), Some(gate)) = (paused, &gate) {
                        gate.set_paused(paused);
                    }
                    shared.applied.send_replace(last);
                }
                Err(StoreError::Compacted {
                    requested,
                    earliest,
                }) => {
                    // Nothing covers the gap: go on from what the store
                    // still holds rather than stall. Tasks whose events fell
                    // in the gap may show a stale status until their next event.
                    tracing::error!(
                        skipped_from = requested,
                        resumed_at = earliest,
                        "the management view fell behind the store's retained tail; it skips the events it can no longer read"
                    );
                    skip_to = Some(earliest);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not replay the store for the management view");
                }
            }
        }
    }
}
