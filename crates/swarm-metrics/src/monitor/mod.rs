//! [`EventMonitor`]: per event kind count and latency percentiles from HDR histograms.

mod report;

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use swarm_core::bus::BusObserver;
use swarm_core::{EventBus, EventKind, Subscription};

use crate::error::AttachError;

pub use report::{KindReport, MonitorReport};

/// Significant figures kept by each histogram: values read back within 0.1%
/// (rounded up to the top of their bucket).
const SIGFIG: u8 = 3;

type Histograms = [Option<Histogram<u64>>; EventKind::COUNT];

/// Counts events and keeps their latency distribution per event kind, in HDR
/// histograms (nanosecond values, 3 significant figures).
///
/// Attached to a bus it times each emit's handlers (what the bus's
/// [`BusObserver`] reports); [`EventMonitor::record`] takes any other latency.
///
/// Recording is safe from many threads with no global lock: the histograms are
/// split into shards, each thread records into its own shard (picked once per
/// thread), and [`EventMonitor::report`] merges the shards. A histogram is
/// allocated the first time its kind is recorded in a shard.
///
/// ```
/// use std::time::Duration;
/// use swarm_core::EventKind;
/// use swarm_metrics::EventMonitor;
///
/// let monitor = EventMonitor::new();
/// monitor.record(EventKind::TaskCompleted, Duration::from_micros(3));
/// monitor.record(EventKind::TaskCompleted, Duration::from_micros(5));
///
/// let report = monitor.report();
/// let completed = report.get(EventKind::TaskCompleted).unwrap();
/// assert_eq!(completed.count, 2);
/// // HDR histograms keep 3 significant figures: 5 µs reads back as 5.00x µs.
/// assert!(completed.max >= Duration::from_micros(5) && completed.max < Duration::from_nanos(5_010));
/// println!("{report}"); // a text table, one row per kind
/// ```
#[derive(Clone)]
pub struct EventMonitor {
    shards: Arc<[Shard]>,
}

// Each shard on its own cache lines, so threads on different shards share nothing.
#[repr(align(128))]
struct Shard {
    histograms: Mutex<Histograms>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Histograms> {
        // Nothing panics while the lock is held; recover the data anyway.
        self.histograms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for EventMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMonitor")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for EventMonitor {
    fn default() -> Self {
        EventMonitor::new()
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| match slot.get() {
        Some(n) => n,
        None => {
            let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(n));
            n
        }
    })
}

impl EventMonitor {
    /// A monitor with one shard per available CPU (at least 2, at most 64).
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        EventMonitor::with_shards(cpus.clamp(2, 64))
    }

    /// A monitor with `shards` shards (at least 1). More shards mean less
    /// contention between recording threads and more memory.
    pub fn with_shards(shards: usize) -> Self {
        EventMonitor {
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    histograms: Mutex::new(std::array::from_fn(|_| None)),
                })
                .collect(),
        }
    }

    /// Records one event of `kind` that took `latency`.
    pub fn record(&self, kind: EventKind, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[thread_slot() % self.shards.len()];
        let mut histograms = shard.lock();
        let slot = &mut histograms[kind.index()];
        if slot.is_none() {
            // Auto-resizing: starts small and grows to the largest value seen.
            *slot = Histogram::new(SIGFIG).ok();
        }
        if let Some(histogram) = slot {
            if histogram.record(nanos).is_err() {
                histogram.saturating_record(nanos);
            }
        }
    }

    /// Count, mean, p50, p99 and max per kind recorded so far, in catalog order.
    pub fn report(&self) -> MonitorReport {
        let mut merged: Histograms = std::array::from_fn(|_| None);
        for shard in self.shards.iter() {
            let histograms = shard.lock();
            for (total, part) in merged.iter_mut().zip(histograms.iter()) {
                let Some(part) = part else { continue };
                match total {
                    Some(total) => {
                        // Both auto-resize, so adding cannot run out of range.
                        let _ = total.add(part);
                    }
                    None => *total = Some(part.clone()),
                }
            }
        }
        MonitorReport::new(
            EventKind::ALL
                .into_iter()
                .zip(merged)
                .filter_map(|(kind, h)| {
                    h.filter(|h| !h.is_empty())
                        .map(|h| KindReport::from_histogram(kind, &h))
                })
                .collect(),
        )
    }

    /// Forgets everything recorded so far.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            for h in shard.lock().iter_mut().flatten() {
                h.reset();
            }
        }
    }

    /// Sets the monitor as `bus`'s observer and subscribes a no-op handler to
    /// every kind, so every emit is timed (the bus reports handler time only
    /// for emits that run handlers). Dropping the returned subscription removes
    /// the no-op handler; emits with other handlers are still timed.
    ///
    /// To use it together with [`SwarmMetrics`](crate::SwarmMetrics), call
    /// [`SwarmMetrics::attach_with_monitor`](crate::SwarmMetrics::attach_with_monitor) instead.
    ///
    /// # Errors
    ///
    /// [`AttachError::ObserverTaken`] if the bus already has an observer.
    pub fn attach(&self, bus: &EventBus) -> Result<Subscription, AttachError> {
        bus.set_observer(self.observer())
            .map_err(|_| AttachError::ObserverTaken)?;
        Ok(bus.on_any(|_| {}))
    }

    /// This monitor as a bus observer, to combine with others in a
    /// [`FanOutObserver`](crate::FanOutObserver).
    pub fn observer(&self) -> Arc<dyn BusObserver> {
        Arc::new(self.clone())
    }
}

impl BusObserver for EventMonitor {
    fn handlers_ran(&self, kind: EventKind, elapsed: Duration) {
        self.record(kind, elapsed);
    }
}

#[cfg(test)]
mod tests;
