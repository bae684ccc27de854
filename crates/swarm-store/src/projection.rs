//! Projections: read models folded from the event log.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hdrhistogram::Histogram;
use swarm_core::{AgentId, Event, TaskId};

use crate::error::Result;
use crate::store::{EventStore, StoredEvent};

/// A read model built by applying each event of the log in order.
pub trait Projection {
    /// Applies one event.
    fn apply(&mut self, event: &StoredEvent);
}

/// Applies every event from `from_seq` to the store's current end to `projection`;
/// returns the last sequence applied (0 if none).
pub async fn project<S, P>(store: &S, projection: &mut P, from_seq: u64) -> Result<u64>
where
    S: EventStore + ?Sized,
    P: Projection + ?Sized,
{
    let mut last = 0;
    let mut events = store.read(from_seq);
    while let Some(stored) = events.next().await {
        let stored = stored?;
        projection.apply(&stored);
        last = stored.seq;
    }
    Ok(last)
}

/// Outcome counts of finished tasks: overall and by task kind.
///
/// Outcomes are `completed`, `failed` (attempts), `dead_lettered` and `cancelled`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskCompletion {
    kinds: HashMap<TaskId, Arc<str>>,
    totals: BTreeMap<&'static str, u64>,
    by_kind: BTreeMap<Arc<str>, BTreeMap<&'static str, u64>>,
}

/// The kind name used for tasks whose `task:created` is not in the log.
pub const UNKNOWN_KIND: &str = "unknown";

impl TaskCompletion {
    /// An empty projection.
    pub fn new() -> Self {
        TaskCompletion::default()
    }

    /// Counts `outcome` for `task`; a final outcome forgets the task, so the
    /// projection holds only the kinds of tasks still live.
    fn count(&mut self, task: TaskId, outcome: &'static str, last: bool) {
        *self.totals.entry(outcome).or_default() += 1;
        let kind = if last {
            self.kinds.remove(&task)
        } else {
            self.kinds.get(&task).cloned()
        };
        let kind = kind.unwrap_or_else(|| Arc::from(UNKNOWN_KIND));
        *self
            .by_kind
            .entry(kind)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }

    /// How many times `outcome` happened, over all kinds.
    pub fn total(&self, outcome: &str) -> u64 {
        self.totals.get(outcome).copied().unwrap_or(0)
    }

    /// How many times `outcome` happened to tasks of `kind`.
    pub fn by_kind(&self, kind: &str, outcome: &str) -> u64 {
        self.by_kind
            .get(kind)
            .and_then(|m| m.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Every kind seen with its outcome counts, by kind name.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &BTreeMap<&'static str, u64>)> {
        self.by_kind.iter().map(|(k, v)| (&**k, v))
    }
}

impl Projection for TaskCompletion {
    fn apply(&mut self, stored: &StoredEvent) {
        match &stored.event {
            Event::TaskCreated(e) => {
                // One shared name per kind, not one allocation per task.
                let kind = match self.by_kind.get_key_value(e.task.kind()) {
                    Some((kind, _)) => Arc::clone(kind),
                    None => Arc::from(e.task.kind()),
                };
                self.kinds.insert(e.task.id(), kind);
            }
            Event::TaskCompleted(e) => self.count(e.task_id, "completed", true),
            Event::TaskFailed(e) => self.count(e.task_id, "failed", false),
            Event::TaskDeadLettered(e) => self.count(e.task_id, "dead_lettered", true),
            Event::TaskCancelled(e) => self.count(e.task_id, "cancelled", true),
            _ => {}
        }
    }
}

/// One agent's performance.
#[derive(Clone)]
pub struct AgentStats {
    /// Tasks completed.
    pub completed: u64,
    /// Attempts failed.
    pub failed: u64,
    durations: Histogram<u64>,
}

impl fmt::Debug for AgentStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentStats")
            .field("completed", &self.completed)
            .field("failed", &self.failed)
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .finish()
    }
}

impl AgentStats {
    fn new() -> Self {
        // Three significant digits, auto-resizing: cannot fail for these arguments.
        let durations = Histogram::new(3).unwrap_or_else(|_| {
            Histogram::new_with_bounds(1, u64::MAX / 2, 2).unwrap_or_else(|_| unreachable!())
        });
        AgentStats {
            completed: 0,
            failed: 0,
            durations,
        }
    }

    /// The duration at quantile `q` (0.0..=1.0) of completed attempts, at
    /// microsecond resolution; zero when none completed.
    pub fn duration_quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.durations.value_at_quantile(q))
    }

    /// The median duration of completed attempts.
    pub fn p50(&self) -> Duration {
        self.duration_quantile(0.5)
    }

    /// The 99th-percentile duration of completed attempts.
    pub fn p99(&self) -> Duration {
        self.duration_quantile(0.99)
    }

    /// The duration histogram in microseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.durations
    }
}

/// Per agent: completed tasks, failed attempts, and completed-attempt duration
/// percentiles from an HDR histogram.
#[derive(Clone, Debug, Default)]
pub struct AgentPerformance {
    agents: BTreeMap<AgentId, AgentStats>,
}

impl AgentPerformance {
    /// An empty projection.
    pub fn new() -> Self {
        AgentPerformance::default()
    }

    /// One agent's stats.
    pub fn agent(&self, id: AgentId) -> Option<&AgentStats> {
        self.agents.get(&id)
    }

    /// Every agent seen, by id.
    pub fn agents(&self) -> impl Iterator<Item = (AgentId, &AgentStats)> {
        self.agents.iter().map(|(id, s)| (*id, s))
    }
}

impl Projection for AgentPerformance {
    fn apply(&mut self, stored: &StoredEvent) {
        match &stored.event {
            Event::TaskCompleted(e) => {
                let stats = self
                    .agents
                    .entry(e.agent_id)
                    .or_insert_with(AgentStats::new);
                stats.completed += 1;
                let micros = u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX);
                // Auto-resizing: `record` grows the range; only a value past what any
                // histogram can hold is clamped.
                if stats.durations.record(micros).is_err() {
                    stats.durations.saturating_record(micros);
                }
            }
            Event::TaskFailed(e) => {
                if let Some(agent) = e.agent_id {
                    self.agents
                        .entry(agent)
                        .or_insert_with(AgentStats::new)
                        .failed += 1;
                }
            }
            _ => {}
        }
    }
}

impl<P: Projection + ?Sized> Projection for &mut P {
    fn apply(&mut self, event: &StoredEvent) {
        (**self).apply(event);
    }
}

impl Projection for crate::SystemState {
    fn apply(&mut self, event: &StoredEvent) {
        crate::SystemState::apply(self, event);
    }
}
