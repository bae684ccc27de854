//! Histogram upkeep that runs only when there is something to fold.
//!
//! metrics-exporter-prometheus keeps every histogram sample (8 bytes) until
//! upkeep or a scrape folds it into its buckets, so without upkeep an unscraped
//! busy swarm would grow without bound. A periodic upkeep thread bounds that but
//! wakes every interval even when nothing happens. Here the thread sleeps until
//! a histogram handle of the exporter records a sample, then folds after the
//! interval and sleeps again: the timer exists only while samples wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

use super::error::ExporterError;

/// Tells the upkeep thread that samples wait to be folded.
#[derive(Debug)]
struct Signal {
    /// Samples were recorded since the last upkeep started.
    pending: AtomicBool,
    /// The exporter is being dropped.
    stop: AtomicBool,
    /// The upkeep thread, set once it is spawned.
    thread: std::sync::OnceLock<Thread>,
}

impl Signal {
    /// Called on every recorded sample: a load in the common case, a wake-up
    /// only for the first sample after an upkeep.
    fn sample_recorded(&self) {
        if !self.pending.load(Ordering::Relaxed) && !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// The exporter's recorder: metrics-exporter-prometheus's, with histogram
/// handles that wake the upkeep thread. Counters and gauges are its own.
#[derive(Debug)]
pub(crate) struct UpkeepRecorder {
    inner: Arc<PrometheusRecorder>,
    signal: Arc<Signal>,
}

impl Recorder for UpkeepRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(WakingHistogram {
            inner: self.inner.register_histogram(key, metadata),
            signal: Arc::clone(&self.signal),
        }))
    }
}

/// A Prometheus histogram handle that tells upkeep a sample waits.
struct WakingHistogram {
    inner: Histogram,
    signal: Arc<Signal>,
}

impl HistogramFn for WakingHistogram {
    fn record(&self, value: f64) {
        self.inner.record(value);
        self.signal.sample_recorded();
    }

    fn record_many(&self, value: f64, count: usize) {
        self.inner.record_many(value, count);
        self.signal.sample_recorded();
    }
}

/// The upkeep thread; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Upkeep {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Upkeep {
    /// Starts the upkeep thread for `recorder` and returns it with the
    /// recorder whose histograms wake it.
    pub(crate) fn start(
        recorder: Arc<PrometheusRecorder>,
        interval: Duration,
    ) -> Result<(Self, UpkeepRecorder), ExporterError> {
        let signal = Arc::new(Signal {
            pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let handle = recorder.handle();
        let thread = thread::Builder::new()
            .name("swarm-metrics-upkeep".into())
            .spawn({
                let signal = Arc::clone(&signal);
                move || run(&signal, &handle, interval)
            })
            .map_err(|source| ExporterError::Spawn {
                what: "upkeep",
                source,
            })?;
        // Set before the recorder is handed out, so no sample can come first;
        // and `run` checks `pending` before every park in any case.
        let _ = signal.thread.set(thread.thread().clone());
        Ok((
            Upkeep {
                signal: Arc::clone(&signal),
                thread: Some(thread),
            },
            UpkeepRecorder {
                inner: recorder,
                signal,
            },
        ))
    }
}

/// Sleeps until samples are recorded, folds them `interval` later, repeats.
fn run(signal: &Signal, handle: &PrometheusHandle, interval: Duration) {
    loop {
        // No timer here: only a sample or the stop wakes this thread.
        while !signal.pending.load(Ordering::Acquire) {
            if signal.stop.load(Ordering::Acquire) {
                return;
            }
            thread::park();
        }
        // Let samples gather for one interval (parks can end early: loop).
        let due = Instant::now().checked_add(interval);
        loop {
            if signal.stop.load(Ordering::Acquire) {
                return;
            }
            let left = match due {
                Some(due) => due.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            thread::park_timeout(left);
        }
        // Cleared first: a sample recorded while upkeep runs arms the next one.
        signal.pending.store(false, Ordering::Release);
        handle.run_upkeep();
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.signal.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
