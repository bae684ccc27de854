//! Per-agent state behind the `swarm_agents{state}` gauge.
//!
//! The agent events say what an agent became, not what it was, so the gauge
//! needs each agent's last state to move one unit from the old state to the new.
//! The map is sharded by agent id: an agent's events usually come from one
//! thread, so a shard lock is almost never contended.

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::Gauge;
use swarm_core::AgentId;

/// The state an agent is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// In the pool and able to take a task.
    Idle,
    /// Running a task.
    Busy,
    /// Marked unhealthy by the pool: gets no new tasks, waits to be replaced.
    Unhealthy,
    /// A reserve agent, not yet activated.
    Reserve,
}

impl AgentState {
    /// Every state, in the order of [`AgentState::index`].
    pub const ALL: [AgentState; 4] = [
        AgentState::Idle,
        AgentState::Busy,
        AgentState::Unhealthy,
        AgentState::Reserve,
    ];

    /// The `state` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentState::Idle => "idle",
            AgentState::Busy => "busy",
            AgentState::Unhealthy => "unhealthy",
            AgentState::Reserve => "reserve",
        }
    }

    /// The position in [`AgentState::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

const SHARDS: usize = 16;

pub(crate) struct AgentStates {
    shards: Box<[Mutex<HashMap<AgentId, AgentState>>]>,
}

impl AgentStates {
    pub(crate) fn new() -> Self {
        AgentStates {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, agent: AgentId) -> &Mutex<HashMap<AgentId, AgentState>> {
        // Agent ids are small sequential numbers: the low bits spread them well.
        &self.shards[(agent.as_u64() as usize) % SHARDS]
    }

    /// Moves `agent` to `next(current)` (`None`: not counted, it left the
    /// pool), updating the gauges. An agent not seen before is counted from now
    /// on, so a recorder attached to a running pool converges as its agents
    /// change state.
    pub(crate) fn transition(
        &self,
        agent: AgentId,
        gauges: &[Gauge; 4],
        next: impl FnOnce(Option<AgentState>) -> Option<AgentState>,
    ) {
        let mut map = self.shard(agent).lock().unwrap_or_else(|e| e.into_inner());
        let from = map.get(&agent).copied();
        let to = next(from);
        if from == to {
            return;
        }
        match to {
            Some(state) => map.insert(agent, state),
            None => map.remove(&agent),
        };
        if let Some(old) = from {
            gauges[old.index()].decrement(1.0);
        }
        if let Some(new) = to {
            gauges[new.index()].increment(1.0);
        }
    }

    /// The state `agent` is counted in.
    pub(crate) fn get(&self, agent: AgentId) -> Option<AgentState> {
        self.shard(agent)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&agent)
            .copied()
    }
}
