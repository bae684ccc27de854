//! The pool tells its `MembershipObserver` of every membership change, by a
//! direct call placed among the bus events it emits, and never because of an
//! event someone else put on the bus.

mod support;

use std::sync::Arc;

use parking_lot::Mutex;

use support::{Act, scripted};
use swarm_agents::{AgentPool, AgentState, MembershipObserver, Next, PoolConfig};
use swarm_core::event::{AgentAvailable, AgentCreated, AgentRemoved};
use swarm_core::{AgentId, EventBus, Subscription, Task};

/// What happened, bus events and observer calls in one order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Created(u64, bool),
    Available(u64),
    Removed(u64),
    Added(u64, bool),
    Activated(Vec<u64>),
    Gone(u64),
}

use Seen::*;

#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<Seen>>,
}

impl Recorder {
    fn push(&self, seen: Seen) {
        self.log.lock().push(seen);
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock())
    }

    /// Only the observer's calls.
    fn calls(&self) -> Vec<Seen> {
        self.take()
            .into_iter()
            .filter(|s| matches!(s, Added(..) | Activated(_) | Gone(_)))
            .collect()
    }
}

impl MembershipObserver for Recorder {
    fn agent_added(&self, id: AgentId, reserve: bool) {
        self.push(Added(id.as_u64(), reserve));
    }

    fn agent_removed(&self, id: AgentId) {
        self.push(Gone(id.as_u64()));
    }

    fn agents_activated(&self, ids: &[AgentId]) {
        self.push(Activated(ids.iter().map(|id| id.as_u64()).collect()));
    }
}

/// Records the agent events of `bus` into the same log as the observer.
fn record_bus(bus: &EventBus, recorder: &Arc<Recorder>) -> Vec<Subscription> {
    let (a, b, c) = (
        Arc::clone(recorder),
        Arc::clone(recorder),
        Arc::clone(recorder),
    );
    vec![
        bus.on::<AgentCreated>(move |e| a.push(Created(e.agent_id.as_u64(), e.reserve))),
        bus.on::<AgentAvailable>(move |e| b.push(Available(e.agent_id.as_u64()))),
        bus.on::<AgentRemoved>(move |e| c.push(Removed(e.agent_id.as_u64()))),
    ]
}

fn config(initial: usize, reserve: usize) -> PoolConfig {
    PoolConfig {
        initial_agents: initial,
        reserve_agents: reserve,
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn the_observer_sees_exactly_each_membership_change_in_event_order() {
    let bus = EventBus::new();
    // Agent 1 panics (unhealthy at once); every other agent succeeds.
    let factory = scripted(|id, _| {
        if id == AgentId::new(1) {
            Act::Panic
        } else {
            Act::Succeed
        }
    });
    let pool = AgentPool::new(factory, bus.clone(), config(2, 1)).unwrap();
    let recorder = Arc::new(Recorder::default());
    let _subs = record_bus(&bus, &recorder);
    pool.set_membership_observer(recorder.clone()).unwrap();
    // The agents made by `new` came before the observer: the caller reads them.
    let before: Vec<_> = pool
        .agents()
        .iter()
        .map(|a| (a.id.as_u64(), a.state))
        .collect();
    assert_eq!(
        before,
        vec![
            (0, AgentState::Idle),
            (1, AgentState::Idle),
            (2, AgentState::Reserve)
        ]
    );
    assert_eq!(recorder.take(), vec![]);

    // Spawn: agent:created, then the call, then agent:available.
    assert_eq!(pool.spawn_agents(1).unwrap(), vec![AgentId::new(3)]);
    assert_eq!(
        recorder.take(),
        vec![Created(3, false), Added(3, false), Available(3)]
    );

    // Reserve: agent:created, then the call; no agent:available.
    assert_eq!(pool.spawn_reserve(1).unwrap(), vec![AgentId::new(4)]);
    assert_eq!(recorder.take(), vec![Created(4, true), Added(4, true)]);

    // Activate: one call with every agent, before their agent:available.
    assert_eq!(
        pool.activate_reserve(5),
        vec![AgentId::new(2), AgentId::new(4)]
    );
    assert_eq!(
        recorder.take(),
        vec![Activated(vec![2, 4]), Available(2), Available(4)]
    );
    // Nothing to activate: no call.
    assert_eq!(pool.activate_reserve(1), vec![]);
    assert_eq!(recorder.take(), vec![]);

    // Retire: agent:removed, then the call, newest first.
    assert_eq!(
        pool.retire_idle(2, "idle"),
        vec![AgentId::new(4), AgentId::new(3)]
    );
    assert_eq!(
        recorder.take(),
        vec![Removed(4), Gone(4), Removed(3), Gone(3)]
    );

    // Unhealthy: removed (event, call), then its replacement added (event,
    // call, available).
    let task = Task::builder("k").build().unwrap();
    let done = pool.execute(AgentId::new(1), task).await.unwrap();
    assert!(matches!(done.next, Next::Retry { .. }));
    assert_eq!(done.replaced_by, Some(AgentId::new(5)));
    assert_eq!(
        recorder.take(),
        vec![
            Removed(1),
            Gone(1),
            Created(5, false),
            Added(5, false),
            Available(5)
        ]
    );

    // remove_agent: event, then call; an agent not in the pool: neither.
    assert!(pool.remove_agent(AgentId::new(0), "lost"));
    assert!(!pool.remove_agent(AgentId::new(0), "lost"));
    assert!(!pool.remove_agent(AgentId::new(99), "lost"));
    assert_eq!(recorder.take(), vec![Removed(0), Gone(0)]);

    let after: Vec<_> = pool.agents().iter().map(|a| a.id.as_u64()).collect();
    assert_eq!(after, vec![2, 5]);
}

#[tokio::test]
async fn a_fake_agent_removed_on_the_bus_reaches_no_observer_and_the_agent_keeps_working() {
    let bus = EventBus::new();
    let pool = AgentPool::new(scripted(|_, _| Act::Succeed), bus.clone(), config(1, 0)).unwrap();
    let recorder = Arc::new(Recorder::default());
    pool.set_membership_observer(recorder.clone()).unwrap();

    bus.emit(AgentRemoved {
        agent_id: AgentId::new(0),
        reason: "forged".into(),
    });
    bus.emit(AgentCreated {
        agent_id: AgentId::new(7),
        reserve: false,
    });

    assert_eq!(recorder.calls(), vec![]);
    assert_eq!(pool.agents().len(), 1);
    let agent = pool.claim_idle().unwrap();
    assert_eq!(agent, AgentId::new(0));
    let done = pool
        .execute(agent, Task::builder("k").build().unwrap())
        .await
        .unwrap();
    assert!(matches!(done.next, Next::Completed(_)));
}

#[test]
fn a_second_observer_is_handed_back_and_the_first_stays() {
    let pool =
        AgentPool::new(scripted(|_, _| Act::Succeed), EventBus::new(), config(0, 0)).unwrap();
    let first = Arc::new(Recorder::default());
    let second = Arc::new(Recorder::default());
    pool.set_membership_observer(first.clone()).unwrap();
    let refused = pool.set_membership_observer(second.clone());
    assert!(refused.is_err());

    pool.spawn_agents(1).unwrap();
    assert_eq!(first.calls(), vec![Added(0, false)]);
    assert_eq!(second.calls(), vec![]);
}
