//! Snapshots of a bus's counters.

use std::time::Duration;

use crate::event::EventKind;

/// The counters of one event kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindStats {
    /// The kind.
    pub kind: EventKind,
    /// How many events of this kind were emitted.
    pub emitted: u64,
    /// How many handler calls ran for them.
    pub handler_calls: u64,
    /// Total time spent in this kind's handlers.
    pub handler_time: Duration,
    /// How many handler calls panicked.
    pub panics: u64,
}

impl KindStats {
    /// Mean handler time per emit that had handlers, or zero.
    pub fn mean_handler_time(&self) -> Duration {
        if self.handler_calls == 0 {
            Duration::ZERO
        } else {
            let nanos = self.handler_time.as_nanos() / u128::from(self.handler_calls);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }
}

/// A snapshot of every kind's counters, from [`EventBus::stats`](crate::EventBus::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusStats {
    kinds: Vec<KindStats>,
}

impl BusStats {
    pub(crate) fn new(kinds: Vec<KindStats>) -> Self {
        BusStats { kinds }
    }

    /// The counters of `kind`.
    pub fn get(&self, kind: EventKind) -> KindStats {
        self.kinds[kind.index()]
    }

    /// Every kind's counters, in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = &KindStats> {
        self.kinds.iter()
    }

    /// Events emitted, all kinds together.
    pub fn total_emitted(&self) -> u64 {
        self.kinds.iter().map(|k| k.emitted).sum()
    }

    /// Handler panics, all kinds together.
    pub fn total_panics(&self) -> u64 {
        self.kinds.iter().map(|k| k.panics).sum()
    }
}
