//! [`FanOutObserver`]: one bus observer slot, several observers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::EventKind;
use swarm_core::bus::BusObserver;

/// Forwards every observation to several [`BusObserver`]s, in order.
///
/// A bus has one observer slot ([`EventBus::set_observer`](swarm_core::EventBus::set_observer));
/// this fills it with as many as needed.
///
/// ```
/// use std::sync::Arc;
/// use swarm_core::EventBus;
/// use swarm_metrics::{EventMonitor, FanOutObserver, SwarmMetrics};
///
/// let bus = EventBus::new();
/// let metrics = SwarmMetrics::new();
/// let monitor = EventMonitor::new();
/// let observers = FanOutObserver::new(vec![metrics.observer(), monitor.observer()]);
/// assert!(bus.set_observer(Arc::new(observers)).is_ok());
/// let _subscription = metrics.subscribe(&bus);
/// ```
pub struct FanOutObserver {
    observers: Vec<Arc<dyn BusObserver>>,
}

impl FanOutObserver {
    /// Forwards to `observers`, in this order.
    pub fn new(observers: Vec<Arc<dyn BusObserver>>) -> Self {
        FanOutObserver { observers }
    }
}

impl fmt::Debug for FanOutObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutObserver")
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl BusObserver for FanOutObserver {
    fn handlers_ran(&self, kind: EventKind, elapsed: Duration) {
        for observer in &self.observers {
            observer.handlers_ran(kind, elapsed);
        }
    }

    fn handler_panicked(&self, kind: EventKind) {
        for observer in &self.observers {
            observer.handler_panicked(kind);
        }
    }
}
