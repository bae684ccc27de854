//! What [`EventMonitor::report`](super::EventMonitor::report) returns.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use swarm_core::EventKind;

/// One event kind's count and latency summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindReport {
    /// The kind.
    pub kind: EventKind,
    /// How many events were recorded.
    pub count: u64,
    /// Mean latency.
    pub mean: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl KindReport {
    pub(super) fn from_histogram(kind: EventKind, h: &Histogram<u64>) -> Self {
        KindReport {
            kind,
            count: h.len(),
            // The mean of nanosecond values rounds to the nanosecond.
            mean: Duration::from_nanos(h.mean().round() as u64),
            p50: Duration::from_nanos(h.value_at_quantile(0.5)),
            p99: Duration::from_nanos(h.value_at_quantile(0.99)),
            max: Duration::from_nanos(h.max()),
        }
    }
}

/// Per-kind counts and latencies, for the kinds recorded at least once, in
/// catalog order. `Display` renders a text table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorReport {
    kinds: Vec<KindReport>,
}

impl MonitorReport {
    pub(super) fn new(kinds: Vec<KindReport>) -> Self {
        MonitorReport { kinds }
    }

    /// The summary of `kind`, if it was recorded.
    pub fn get(&self, kind: EventKind) -> Option<&KindReport> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Every recorded kind's summary, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = &KindReport> {
        self.kinds.iter()
    }

    /// Events recorded, all kinds together.
    pub fn total_events(&self) -> u64 {
        self.kinds.iter().map(|k| k.count).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// Formats a duration with 3 significant-ish digits in the unit that suits it.
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let text = if nanos < 1_000 {
            format!("{nanos}ns")
        } else if nanos < 1_000_000 {
            format!("{:.2}µs", nanos as f64 / 1e3)
        } else if nanos < 1_000_000_000 {
            format!("{:.2}ms", nanos as f64 / 1e6)
        } else {
            format!("{:.2}s", nanos as f64 / 1e9)
        };
        f.pad(&text)
    }
}

impl fmt::Display for MonitorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .kinds
            .iter()
            .map(|k| k.kind.name().len())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "{:<width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
            "event", "count", "mean", "p50", "p99", "max"
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "{:<width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
                k.kind.name(),
                k.count,
                Human(k.mean),
                Human(k.p50),
                Human(k.p99),
                Human(k.max),
            )?;
        }
        write!(f, "{:<width$}  {:>10}", "total", self.total_events())
    }
}
