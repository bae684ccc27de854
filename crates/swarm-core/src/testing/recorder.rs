use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{EventBus, Subscription};
use crate::event::{CatalogEvent, Event};

/// Captures every event emitted on a bus, in emit order, with helpers to assert on them.
///
/// ```
/// use swarm_core::event::{AgentAvailable, AgentBusy};
/// use swarm_core::testing::EventRecorder;
/// use swarm_core::{AgentId, EventBus, TaskId};
///
/// let bus = EventBus::new();
/// let recorder = EventRecorder::attach(&bus);
/// bus.emit(AgentBusy { agent_id: AgentId::new(0), task_id: TaskId::from_u64(1) });
/// bus.emit(AgentAvailable { agent_id: AgentId::new(0) });
///
/// recorder.assert_names(&["agent:busy", "agent:available"]);
/// assert_eq!(recorder.count::<AgentBusy>(), 1);
/// assert_eq!(recorder.of::<AgentAvailable>()[0].agent_id, AgentId::new(0));
/// ```
pub struct EventRecorder {
    events: Arc<Mutex<Vec<Event>>>,
    _subscription: Subscription,
}

impl fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRecorder")
            .field("events", &self.lock().len())
            .finish()
    }
}

impl EventRecorder {
    /// Starts recording every event of `bus`; recording stops when the recorder is dropped.
    pub fn attach(bus: &EventBus) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let subscription = bus.on_any(move |event| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(event.clone());
        });
        EventRecorder {
            events,
            _subscription: subscription,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every event recorded so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// The names of the events recorded so far, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.lock().iter().map(Event::name).collect()
    }

    /// The recorded events of type `E`, in order.
    pub fn of<E: CatalogEvent>(&self) -> Vec<E> {
        self.lock()
            .iter()
            .filter_map(E::from_event)
            .cloned()
            .collect()
    }

    /// How many events of type `E` were recorded.
    pub fn count<E: CatalogEvent>(&self) -> usize {
        self.lock()
            .iter()
            .filter(|e| E::from_event(e).is_some())
            .count()
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Panics unless at least one event of type `E` was recorded.
    #[track_caller]
    pub fn assert_emitted<E: CatalogEvent>(&self) {
        assert!(
            self.count::<E>() > 0,
            "expected a {} event; recorded: {:?}",
            E::NAME,
            self.names()
        );
    }

    /// Panics if an event of type `E` was recorded.
    #[track_caller]
    pub fn assert_not_emitted<E: CatalogEvent>(&self) {
        assert!(
            self.count::<E>() == 0,
            "expected no {} event; recorded: {:?}",
            E::NAME,
            self.names()
        );
    }

    /// Panics unless the recorded names are exactly `expected`, in order.
    #[track_caller]
    pub fn assert_names(&self, expected: &[&str]) {
        let names = self.names();
        assert_eq!(
            names, expected,
            "recorded events differ from the expected ones"
        );
    }

    /// Panics unless `expected` appears in the recorded names in this order,
    /// possibly with other events between them.
    #[track_caller]
    pub fn assert_in_order(&self, expected: &[&str]) {
        let names = self.names();
        let mut rest = names.iter();
        for want in expected {
            assert!(
                rest.any(|n| n == want),
                "expected {expected:?} in this order; recorded: {names:?}"
            );
        }
    }
}
