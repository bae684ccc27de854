//! The latency objective: a rolling p99 of queue wait, and `performance:degraded`
//! when it rises above the objective.

use std::time::Duration;

use parking_lot::Mutex;
use swarm_core::EventBus;
use swarm_core::event::PerformanceDegraded;

/// Samples in the rolling window.
const WINDOW: usize = 512;
/// The p99 is recomputed every this many samples.
const EVERY: usize = 64;

pub(crate) struct LatencyWatch {
    objective: Option<Duration>,
    inner: Mutex<Window>,
}

struct Window {
    samples: Vec<Duration>,
    next: usize,
    since_check: usize,
    degraded: bool,
    scratch: Vec<Duration>,
}

impl LatencyWatch {
    pub(crate) fn new(objective: Option<Duration>) -> Self {
        LatencyWatch {
            objective,
            inner: Mutex::new(Window {
                samples: Vec::with_capacity(if objective.is_some() { WINDOW } else { 0 }),
                next: 0,
                since_check: 0,
                degraded: false,
                scratch: Vec::new(),
            }),
        }
    }

    /// Records one queue wait; emits `performance:degraded` when the rolling p99
    /// crosses the objective upwards (again only after it fell back below).
    pub(crate) fn record(&self, wait: Duration, bus: &EventBus) {
        let Some(objective) = self.objective else {
            return;
        };
        let mut w = self.inner.lock();
        if w.samples.len() < WINDOW {
            w.samples.push(wait);
        } else {
            let i = w.next;
            w.samples[i] = wait;
        }
        w.next = (w.next + 1) % WINDOW;
        w.since_check += 1;
        if w.since_check < EVERY {
            return;
        }
        w.since_check = 0;
        let p99 = {
            let Window {
                samples, scratch, ..
            } = &mut *w;
            scratch.clear();
            scratch.extend_from_slice(samples);
            scratch.sort_unstable();
            let rank = (scratch.len() * 99).div_ceil(100).saturating_sub(1);
            scratch[rank.min(scratch.len() - 1)]
        };
        let over = p99 > objective;
        if over && !w.degraded {
            w.degraded = true;
            drop(w);
            bus.emit(PerformanceDegraded {
                p99_queue_wait: p99,
                objective,
            });
        } else if !over {
            w.degraded = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::testing::EventRecorder;

    #[test]
    fn emits_once_when_p99_crosses_the_objective_and_rearms_below_it() {
        let bus = EventBus::new();
        let recorder = EventRecorder::attach(&bus);
        let watch = LatencyWatch::new(Some(Duration::from_millis(10)));
        for _ in 0..EVERY * 2 {
            watch.record(Duration::from_millis(1), &bus);
        }
        assert!(recorder.is_empty());
        for _ in 0..WINDOW {
            watch.record(Duration::from_millis(50), &bus);
        }
        assert_eq!(recorder.count::<PerformanceDegraded>(), 1);
        let e = &recorder.of::<PerformanceDegraded>()[0];
        assert_eq!(e.objective, Duration::from_millis(10));
        assert!(e.p99_queue_wait > e.objective);
        for _ in 0..WINDOW {
            watch.record(Duration::from_millis(1), &bus);
        }
        for _ in 0..WINDOW {
            watch.record(Duration::from_millis(50), &bus);
        }
        assert_eq!(recorder.count::<PerformanceDegraded>(), 2);
    }

    #[test]
    fn no_objective_records_nothing() {
        let bus = EventBus::new();
        let recorder = EventRecorder::attach(&bus);
        let watch = LatencyWatch::new(None);
        for _ in 0..WINDOW * 2 {
            watch.record(Duration::from_secs(5), &bus);
        }
        assert!(recorder.is_empty());
    }
}
