use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::*;
use crate::event::{AgentAvailable, AgentBusy, TaskCritical};
use crate::{AgentId, TaskId};

fn available(n: u64) -> AgentAvailable {
    AgentAvailable {
        agent_id: AgentId::new(n),
    }
}

#[test]
fn a_panicking_handler_is_counted_and_isolated() {
    let bus = EventBus::new();
    let seen = Arc::new(AtomicU64::new(0));
    let s1 = Arc::clone(&seen);
    let _before = bus.on::<AgentAvailable>(move |_| {
        s1.fetch_add(1, Ordering::Relaxed);
    });
    let _bad = bus.on::<AgentAvailable>(|e| {
        if e.agent_id == AgentId::new(1) {
            panic!("handler bug");
        }
    });
    let s2 = Arc::clone(&seen);
    let _after = bus.on::<AgentAvailable>(move |_| {
        s2.fetch_add(100, Ordering::Relaxed);
    });

    bus.emit(available(1)); // the middle handler panics
    bus.emit(available(2)); // later emits still reach everyone
    bus.emit(available(1));

    assert_eq!(seen.load(Ordering::Relaxed), 3 * 101);
    let stats = bus.stats().get(EventKind::AgentAvailable);
    assert_eq!(stats.panics, 2);
    assert_eq!(stats.emitted, 3);
    assert_eq!(stats.handler_calls, 9);
    assert_eq!(bus.stats().total_panics(), 2);
}

#[test]
fn dropping_the_guard_unsubscribes() {
    let bus = EventBus::new();
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    let guard = bus.on::<AgentAvailable>(move |_| {
        s.fetch_add(1, Ordering::Relaxed);
    });
    let s = Arc::clone(&seen);
    let any = bus.on_any(move |_| {
        s.fetch_add(10, Ordering::Relaxed);
    });
    bus.emit(available(0));
    assert_eq!(seen.load(Ordering::Relaxed), 11);
    assert_eq!(bus.handler_count(EventKind::AgentAvailable), 2);

    drop(guard);
    bus.emit(available(0));
    assert_eq!(seen.load(Ordering::Relaxed), 21);

    drop(any);
    bus.emit(available(0));
    assert_eq!(seen.load(Ordering::Relaxed), 21);
    for kind in EventKind::ALL {
        assert_eq!(bus.handler_count(kind), 0, "{kind}");
    }
}

#[test]
fn typed_handlers_see_only_their_type() {
    let bus = EventBus::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let _h = bus.on::<AgentBusy>(move |e| g.lock().unwrap().push(e.task_id));
    bus.emit(available(0));
    bus.emit(AgentBusy {
        agent_id: AgentId::new(0),
        task_id: TaskId::from_u64(5),
    });
    bus.emit(TaskCritical {
        task_id: TaskId::from_u64(6),
    });
    assert_eq!(*got.lock().unwrap(), vec![TaskId::from_u64(5)]);
}

#[test]
fn a_handler_may_emit_and_subscribe_without_deadlock() {
    let bus = EventBus::new();
    let inner = bus.clone();
    let subs = Arc::new(Mutex::new(Vec::new()));
    let subs2 = Arc::clone(&subs);
    let _h = bus.on::<AgentAvailable>(move |e| {
        if e.agent_id == AgentId::new(0) {
            inner.emit(TaskCritical {
                task_id: TaskId::from_u64(1),
            });
            subs2.lock().unwrap().push(inner.on::<TaskCritical>(|_| {}));
        }
    });
    bus.emit(available(0));
    assert_eq!(bus.stats().get(EventKind::TaskCritical).emitted, 1);
    assert_eq!(bus.handler_count(EventKind::TaskCritical), 1);
}

#[test]
fn per_kind_counts_equal_the_number_of_emits() {
    let bus = EventBus::new();
    for i in 0..37 {
        bus.emit(available(i));
    }
    for i in 0..5 {
        bus.emit(TaskCritical {
            task_id: TaskId::from_u64(i),
        });
    }
    let stats = bus.stats();
    assert_eq!(stats.get(EventKind::AgentAvailable).emitted, 37);
    assert_eq!(stats.get(EventKind::TaskCritical).emitted, 5);
    assert_eq!(stats.total_emitted(), 42);
}

#[test]
fn counts_are_exact_under_concurrent_emitters() {
    let bus = EventBus::new();
    let calls = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&calls);
    let _h = bus.on::<AgentAvailable>(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    std::thread::scope(|s| {
        for t in 0..4 {
            let bus = bus.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    bus.emit(available(t));
                }
            });
        }
    });
    assert_eq!(calls.load(Ordering::Relaxed), 40_000);
    assert_eq!(bus.stats().get(EventKind::AgentAvailable).emitted, 40_000);
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_exactly_how_many_it_missed() {
    let bus = EventBus::with_stream_capacity(8);
    let mut stream = bus.subscribe();
    for i in 0..20 {
        bus.emit(available(i));
    }
    // 20 emitted into a buffer of 8: the first 12 are gone.
    assert_eq!(stream.next().await, Some(Err(Lagged { missed: 12 })));
    for i in 12..20 {
        match stream.next().await {
            Some(Ok(Event::AgentAvailable(e))) => assert_eq!(e.agent_id, AgentId::new(i)),
            other => panic!("expected agent {i}, got {other:?}"),
        }
    }
    drop(bus);
    assert_eq!(stream.next().await, None, "the stream ends with the bus");
}

#[tokio::test]
async fn a_subscriber_that_keeps_up_sees_every_event_in_order() {
    let bus = EventBus::with_stream_capacity(4);
    let mut stream = bus.subscribe();
    let producer = bus.clone();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 1_000 {
            match stream.next().await {
                Some(Ok(Event::AgentAvailable(e))) => got.push(e.agent_id.as_u64()),
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    for i in 0..1_000 {
        producer.emit(available(i));
        // Keep within the buffer: wait for the consumer after every few events.
        if i % 2 == 1 {
            tokio::task::yield_now().await;
        }
    }
    let got = consumer.await.unwrap();
    assert_eq!(got, (0..1_000).collect::<Vec<_>>());
}

#[test]
fn the_observer_sees_handler_runs_and_panics() {
    #[derive(Default)]
    struct Seen {
        runs: AtomicU64,
        panics: AtomicU64,
    }
    impl BusObserver for Seen {
        fn handlers_ran(&self, kind: EventKind, _elapsed: Duration) {
            assert_eq!(kind, EventKind::AgentAvailable);
            self.runs.fetch_add(1, Ordering::Relaxed);
        }
        fn handler_panicked(&self, _kind: EventKind) {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
    }
    let bus = EventBus::new();
    let seen = Arc::new(Seen::default());
    assert!(bus.set_observer(seen.clone()).is_ok());
    assert!(bus.set_observer(Arc::new(Seen::default())).is_err());
    let _h = bus.on::<AgentAvailable>(|e| assert_ne!(e.agent_id, AgentId::new(9)));
    bus.emit(available(1));
    bus.emit(available(9));
    bus.emit(TaskCritical {
        task_id: TaskId::from_u64(1),
    }); // no handlers: no run reported
    assert_eq!(seen.runs.load(Ordering::Relaxed), 2);
    assert_eq!(seen.panics.load(Ordering::Relaxed), 1);
}

#[test]
fn a_subscription_does_not_keep_the_bus_alive() {
    let bus = EventBus::new();
    let sub = bus.on_any(|_| {});
    let weak = Arc::downgrade(&bus.shared);
    drop(bus);
    assert!(weak.upgrade().is_none());
    drop(sub); // unsubscribing from a dropped bus is a no-op
}
