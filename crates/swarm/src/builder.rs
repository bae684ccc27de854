//! [`SwarmBuilder`]: everything a swarm is made of, with defaults that work.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarm_agents::{
    AgentFactory, BoxAgentFactory, HealthPolicy, RetryPolicy, SimAgentFactory, SimConfig,
};
use swarm_core::{DEFAULT_MAX_PAYLOAD, EventBus};
use swarm_queue::AgingPolicy;
use swarm_store::{DEFAULT_SNAPSHOT_EVERY, Durability, EventStore, FileStoreOptions, Retention};

use crate::error::BuildError;
use crate::scheduler::flow::{Bound, LimitSpec};
use crate::swarm::Swarm;
use crate::{Rate, Selector};

/// How the scheduler finds work for agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerMode {
    /// Event-driven (the default): a task starts the moment an agent is free,
    /// the most urgent first; idle agents steal; nothing runs while idle.
    #[default]
    Event,
    /// The polling baseline (the design swarm replaces): wake every
    /// `interval`, take up to `batch` tasks in FIFO order, run them one after
    /// another.
    Polling {
        /// Time between wake-ups (default 2 s).
        interval: Duration,
        /// Tasks taken per wake-up (default 10).
        batch: usize,
    },
}

impl SchedulerMode {
    /// Polling with the defaults of the design it reproduces: every 2 s, 10 tasks.
    pub const fn polling() -> Self {
        SchedulerMode::Polling {
            interval: Duration::from_secs(2),
            batch: 10,
        }
    }
}

pub(crate) enum StoreSpec {
    Memory,
    File {
        dir: PathBuf,
        options: FileStoreOptions,
    },
    Custom {
        store: Arc<dyn EventStore>,
        durable: bool,
    },
}

/// Where a distributed swarm's work comes from (feature `nats`).
#[cfg(feature = "nats")]
pub(crate) struct NatsSpec {
    pub(crate) url: String,
    pub(crate) queue: crate::distributed::TaskQueueConfig,
}

pub(crate) enum AgentsSpec {
    Sim(SimConfig),
    Factory(BoxAgentFactory),
}

/// How many events the default in-memory store keeps: the newest 100 000
/// (about 20 MB), enough for the management API's task timelines and an
/// event stream's resume over recent history; older ones are dropped.
pub const DEFAULT_MEMORY_EVENTS: usize = 100_000;

/// Builds a [`Swarm`]. Get one from [`Swarm::builder`].
///
/// ```
/// use std::time::Duration;
/// use swarm::{SchedulerMode, Swarm};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let swarm = Swarm::builder()
///     .agents(4)
///     .mode(SchedulerMode::Event)
///     .memory_store()
///     .steal_threshold(3)
///     .build()
///     .await?;
/// # swarm.shutdown(Duration::from_secs(1)).await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct SwarmBuilder {
    pub(crate) agents: usize,
    pub(crate) agents_spec: AgentsSpec,
    pub(crate) reserve_agents: usize,
    pub(crate) min_agents: Option<usize>,
    pub(crate) max_agents: usize,
    pub(crate) autoscale: bool,
    pub(crate) mode: SchedulerMode,
    pub(crate) store: StoreSpec,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) record_metrics: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) health: HealthPolicy,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) steal_threshold: usize,
    pub(crate) prefetch: usize,
    pub(crate) aging: Option<AgingPolicy>,
    pub(crate) fair_share: bool,
    pub(crate) key_weights: Vec<(Arc<str>, u32)>,
    pub(crate) fair_share_quantum: u32,
    pub(crate) max_payload: usize,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) backlog_threshold: usize,
    pub(crate) latency_objective: Option<Duration>,
    pub(crate) snapshot_every: u64,
    pub(crate) retention: Retention,
    pub(crate) seed: u64,
    pub(crate) bus: Option<EventBus>,
    pub(crate) limits: Vec<LimitSpec>,
    #[cfg(feature = "nats")]
    pub(crate) nats: Option<NatsSpec>,
}

impl fmt::Debug for SwarmBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwarmBuilder")
            .field("agents", &self.agents)
            .field("mode", &self.mode)
            .field("max_agents", &self.max_agents)
            .field("steal_threshold", &self.steal_threshold)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl Default for SwarmBuilder {
    fn default() -> Self {
        SwarmBuilder {
            agents: 4,
            agents_spec: AgentsSpec::Sim(SimConfig::instant()),
            reserve_agents: 0,
            min_agents: None,
            max_agents: 50,
            autoscale: true,
            mode: SchedulerMode::Event,
            store: StoreSpec::Memory,
            metrics_addr: None,
            record_metrics: true,
            retry: RetryPolicy::default(),
            health: HealthPolicy::default(),
            default_timeout: Some(Duration::from_secs(60)),
            steal_threshold: 3,
            prefetch: 0,
            aging: None,
            fair_share: false,
            key_weights: Vec::new(),
            fair_share_quantum: 1,
            max_payload: DEFAULT_MAX_PAYLOAD,
            queue_bound: None,
            backlog_threshold: 50,
            latency_objective: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            retention: Retention::DEFAULT,
            seed: 0,
            bus: None,
            limits: Vec::new(),
            #[cfg(feature = "nats")]
            nats: None,
        }
    }
}

impl SwarmBuilder {
    /// Starts with `count` agents (default 4). With no factory set, they are
    /// [`SimAgent`](swarm_agents::SimAgent)s that finish at once.
    pub fn agents(mut self, count: usize) -> Self {
        self.agents = count;
        self
    }

    /// Uses simulated agents with this behaviour (durations, failure rates).
    pub fn sim_agents(mut self, count: usize, config: SimConfig) -> Self {
        self.agents = count;
        self.agents_spec = AgentsSpec::Sim(config);
        self
    }

    /// Makes agents with `factory`: at start, on scale-up and to replace
    /// unhealthy agents.
    pub fn agent_factory<F: AgentFactory>(mut self, factory: F) -> Self {
        self.agents_spec = AgentsSpec::Factory(BoxAgentFactory::new(factory));
        self
    }

    /// Keeps `count` reserve agents, activated when the queue backs up (default 0).
    pub fn reserve_agents(mut self, count: usize) -> Self {
        self.reserve_agents = count;
        self
    }

    /// Never retires below this many agents (default: the starting count).
    pub fn min_agents(mut self, count: usize) -> Self {
        self.min_agents = Some(count);
        self
    }

    /// Never grows above this many agents (default 50).
    pub fn max_agents(mut self, count: usize) -> Self {
        self.max_agents = count;
        self
    }

    /// Turns reactive scaling on or off (default on).
    pub fn autoscale(mut self, on: bool) -> Self {
        self.autoscale = on;
        self
    }

    /// Event mode (default) or the polling baseline.
    pub fn mode(mut self, mode: SchedulerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Keeps the event log in memory (the default): fast, lost on exit, and
    /// bounded: a [`MemoryStore::bounded`](swarm_store::MemoryStore::bounded)
    /// that keeps the newest [`DEFAULT_MEMORY_EVENTS`] events (and its newest
    /// snapshots), so a swarm that runs for weeks does not keep every event
    /// it ever recorded. Reads from before the kept tail get
    /// [`StoreError::Compacted`](swarm_store::StoreError::Compacted). For the
    /// whole history in memory pass `store(Arc::new(MemoryStore::new()), false)`;
    /// for a log that outlives the process, [`file_store`](Self::file_store).
    pub fn memory_store(mut self) -> Self {
        self.store = StoreSpec::Memory;
        self
    }

    /// Keeps the event log in a directory (a [`FileStore`](swarm_store::FileStore),
    /// fsync'd before acknowledging): survives crashes, resumes on the next start.
    pub fn file_store(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = StoreSpec::File {
            dir: dir.into(),
            options: FileStoreOptions::default(),
        };
        self
    }

    /// Like [`file_store`](Self::file_store), with explicit options.
    pub fn file_store_with(mut self, dir: impl Into<PathBuf>, options: FileStoreOptions) -> Self {
        self.store = StoreSpec::File {
            dir: dir.into(),
            options,
        };
        self
    }

    /// Uses any event store. With `durable`, `submit` waits until the store
    /// has the task's `task:created` before returning.
    pub fn store(mut self, store: Arc<dyn EventStore>, durable: bool) -> Self {
        self.store = StoreSpec::Custom { store, durable };
        self
    }

    /// Serves Prometheus metrics on `addr` (for example `127.0.0.1:9464`).
    /// Needs the `prometheus` feature (on by default); without it `build`
    /// refuses the address with [`BuildError::Config`].
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Records metrics into the swarm's own Prometheus exporter (default on;
    /// read them with [`Swarm::render_metrics`](crate::Swarm::render_metrics)).
    /// Off, and without [`metrics`](Self::metrics), no exporter is made. Without
    /// the `prometheus` feature nothing is ever recorded.
    pub fn record_metrics(mut self, on: bool) -> Self {
        self.record_metrics = on;
        self
    }

    /// Retries and back-off (default: 3 attempts, exponential with full jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// When failures make an agent degraded or unhealthy.
    pub fn health(mut self, policy: HealthPolicy) -> Self {
        self.health = policy;
        self
    }

    /// The time limit of an attempt when the task sets none (default 60 s; `None`: none).
    pub fn default_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Steal only from local queues longer than this (default 3).
    pub fn steal_threshold(mut self, threshold: usize) -> Self {
        self.steal_threshold = threshold;
        self
    }

    /// Lets busy agents hold up to `depth` tasks in their local queue when no
    /// agent is idle (default 0: everything waits in the global queue).
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth;
        self
    }

    /// Bounds starvation of low priorities in the global queue.
    pub fn aging(mut self, policy: AgingPolicy) -> Self {
        self.aging = Some(policy);
        self
    }

    /// Shares each priority level of the global queue fairly between task keys
    /// (`TaskBuilder::key`, e.g. a tenant; keyless tasks form one group):
    /// weighted, cost-aware deficit round robin instead of FIFO, so one key's
    /// backlog cannot hold back another key's tasks (default off).
    ///
    /// Priorities still come first and [`aging`](Self::aging) still bounds
    /// starvation across levels. With it on, every queued task goes through
    /// the global queue: [`prefetch`](Self::prefetch) is not used. Tasks with
    /// an affinity still go to their agent's queue, outside the fair order.
    /// Event mode with the local work source only (see docs/architecture.md,
    /// "Fair share").
    pub fn fair_share(mut self, on: bool) -> Self {
        self.fair_share = on;
        self
    }

    /// Gives tasks of `key` `weight` shares under [`fair_share`](Self::fair_share)
    /// (default 1 for every key): a key of weight 3 starts three times as many
    /// cost units as a key of weight 1 while both are backlogged. A weight of
    /// 0 is refused by [`build`](Self::build).
    pub fn key_weight(mut self, key: impl Into<Arc<str>>, weight: u32) -> Self {
        self.key_weights.push((key.into(), weight));
        self
    }

    /// The cost units a key of weight 1 may start per turn under
    /// [`fair_share`](Self::fair_share) (default 1; a key of weight `w` earns
    /// `units × w`). A larger quantum lets a backlogged key start longer runs
    /// of its tasks before the next key's turn: fewer switches between keys,
    /// at the price of a looser bound: within a level, between two starts of a
    /// backlogged key at most (active keys − 1) × quantum × max weight cost
    /// units of other keys start (plus one task's cost when costs exceed the
    /// quantum). Set it near the typical task [`cost`](swarm_core::TaskBuilder::cost)
    /// when costs are large (tokens), so one turn starts about one task. A
    /// quantum of 0 is refused by [`build`](Self::build).
    pub fn fair_share_quantum(mut self, units: u32) -> Self {
        self.fair_share_quantum = units;
        self
    }

    /// Refuses payloads over `bytes` (default 1 MiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Refuses new tasks while this many wait (default unbounded). Retries and
    /// recovered tasks are never refused.
    pub fn queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = Some(bound);
        self
    }

    /// Emits `queue:backlog` when more than this many tasks wait (default 50).
    pub fn backlog_threshold(mut self, threshold: usize) -> Self {
        self.backlog_threshold = threshold;
        self
    }

    /// Emits `performance:degraded` when the rolling p99 queue wait exceeds
    /// `objective`; the swarm answers by adding agents (within the maximum).
    pub fn latency_objective(mut self, objective: Duration) -> Self {
        self.latency_objective = Some(objective);
        self
    }

    /// Snapshots the state (live tasks and the [retention](Self::retention)
    /// window) every `events` events (default
    /// [`DEFAULT_SNAPSHOT_EVERY`](swarm_store::DEFAULT_SNAPSHOT_EVERY)), and
    /// a few seconds after an event no snapshot covers yet
    /// ([`DEFAULT_SNAPSHOT_INTERVAL`](swarm_store::DEFAULT_SNAPSHOT_INTERVAL)),
    /// so a restart replays a bounded tail. Snapshots are encoded off the
    /// runtime's worker threads; `swarm_snapshot_lag_events` and
    /// [`SwarmStats::snapshot_lag_events`](crate::SwarmStats::snapshot_lag_events)
    /// say how far behind the newest one is. Only durable stores are
    /// snapshotted.
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events;
        self
    }

    /// How long finished tasks stay in the swarm's state (and its
    /// snapshots): live tasks always, then a window of the newest finished
    /// ones by count and by age, and dead letters until acted on (bounded).
    /// Beyond the window a task leaves only aggregates (counters, per-kind
    /// counts, histograms), so memory, snapshots and restarts cost what is
    /// live, not the history. Default [`Retention::DEFAULT`]: the last 10 000
    /// finished tasks for at most an hour, at most 10 000 dead letters.
    ///
    /// [`SubmitError::Duplicate`](crate::SubmitError::Duplicate) covers live
    /// tasks only: a finished task's id may be submitted again, retained or
    /// not.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Seeds the back-off jitter and simulated agents, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Makes this swarm a node of a distributed swarm (feature `nats`): its
    /// work comes from the JetStream task queue of the NATS server at `url`
    /// (`nats://host:port`), shared with every node of the same
    /// [swarm name](Self::nats_swarm), and its events go to the swarm's
    /// shared log there (a [`NatsStore`](swarm_store::NatsStore) in
    /// shared-writer mode, unless [`store`](Self::store) gives another).
    /// `submit` publishes to the queue; any node may run the task, and the
    /// handle resolves when its outcome is in the log. Agents, retries,
    /// health, scaling, metrics, events and shutdown are the same as for a
    /// local swarm. See docs/nats.md.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn nats(mut self, url: impl Into<String>) -> Self {
        let queue = self.nats.take().map_or_else(
            || crate::distributed::TaskQueueConfig::new("default"),
            |n| n.queue,
        );
        self.nats = Some(NatsSpec {
            url: url.into(),
            queue,
        });
        self
    }

    /// The name of the distributed swarm this node joins (default
    /// `"default"`); with [`nats`](Self::nats).
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn nats_swarm(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        match &mut self.nats {
            Some(spec) => spec.queue.swarm = name,
            None => {
                self.nats = Some(NatsSpec {
                    url: String::new(),
                    queue: crate::distributed::TaskQueueConfig::new(name),
                })
            }
        }
        self
    }

    /// The task queue's settings (its swarm name, ack wait, deliveries,
    /// prefetch, ...); with [`nats`](Self::nats).
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn task_queue(mut self, config: crate::distributed::TaskQueueConfig) -> Self {
        let url = self.nats.take().map(|n| n.url).unwrap_or_default();
        self.nats = Some(NatsSpec { url, queue: config });
        self
    }

    /// Limits how fast the tasks `selector` picks start: a token bucket of
    /// `rate`, charged each task's cost (`TaskBuilder::cost`, default 1) as
    /// it starts. A task the bucket cannot pay for now waits, outside the
    /// queues (`task:throttled`), while other work starts; it is not failed
    /// and costs no attempt. Several limits may apply to a task: it starts
    /// only when all of them admit it, and takes from all at once. A task
    /// whose cost is over the bucket's size is refused at submit
    /// ([`SubmitError::ExceedsLimit`](crate::SubmitError::ExceedsLimit)).
    /// Kept by this process: a distributed swarm refuses limits at build
    /// ([`LimitError::Distributed`](crate::LimitError::Distributed)). See
    /// docs/architecture.md, "Rate and concurrency limits".
    ///
    /// ```
    /// use std::time::Duration;
    /// use swarm::{Rate, Selector, Swarm};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let swarm = Swarm::builder()
    ///     // 60 requests a minute for the `llm` kind, 10 at once at most ...
    ///     .rate_limit(Selector::kind("llm"), Rate::per_minute(60).burst(10))
    ///     // ... and 90 000 tokens a minute (tasks cost their expected tokens).
    ///     .rate_limit(Selector::kind("llm"), Rate::per_minute(90_000).burst(8_000))
    ///     // Each tenant runs at most 2 tasks at a time.
    ///     .concurrency_limit(Selector::each_key(), 2)
    ///     .build()
    ///     .await?;
    /// # swarm.shutdown(Duration::from_secs(1)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn rate_limit(mut self, selector: Selector, rate: Rate) -> Self {
        self.limits.push(LimitSpec {
            selector,
            bound: Bound::Rate(rate),
        });
        self
    }

    /// Lets at most `max` of the tasks `selector` picks run at once. A task
    /// that would be one too many waits outside the queues
    /// (`task:throttled`) until a running one's attempt ends (whatever the
    /// end: completed, failed, retried, cancelled, timed out, interrupted,
    /// its agent lost); other work starts meanwhile. Combines with other
    /// limits as [`rate_limit`](Self::rate_limit) says.
    pub fn concurrency_limit(mut self, selector: Selector, max: usize) -> Self {
        self.limits.push(LimitSpec {
            selector,
            bound: Bound::Concurrency(max),
        });
        self
    }

    /// Emits on this bus (to share it with code built before the swarm).
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Builds the swarm: opens the store, replays it and re-queues every task
    /// that was pending or running, creates the agents and starts scheduling.
    pub async fn build(self) -> Result<Swarm, BuildError> {
        if self.agents == 0 && self.reserve_agents == 0 {
            return Err(BuildError::Config(
                "a swarm needs at least one agent: set agents(n) with n >= 1".into(),
            ));
        }
        if self.max_agents < self.agents {
            return Err(BuildError::Config(format!(
                "max_agents ({}) is below the starting agents ({})",
                self.max_agents, self.agents
            )));
        }
        if let SchedulerMode::Polling { interval, batch } = self.mode {
            if interval.is_zero() || batch == 0 {
                return Err(BuildError::Config(
                    "polling mode needs a non-zero interval and batch".into(),
                ));
            }
        }
        self.check_fair_share()?;
        for limit in &self.limits {
            limit.validate()?;
        }
        #[cfg(feature = "nats")]
        if let Some(spec) = &self.nats {
            if let Some(limit) = self.limits.first() {
                return Err(crate::LimitError::Distributed {
                    limit: limit.name(),
                }
                .into());
            }
            if spec.url.is_empty() {
                return Err(BuildError::Config(
                    "nats_swarm/task_queue were set without nats(url): name the server".into(),
                ));
            }
            if matches!(self.mode, SchedulerMode::Polling { .. }) {
                return Err(BuildError::Config(
                    "polling mode is the local baseline: it cannot take work from a NATS queue"
                        .into(),
                ));
            }
            if matches!(self.store, StoreSpec::File { .. }) {
                return Err(BuildError::Config(
                    "a distributed swarm logs to its shared NATS stream: drop file_store".into(),
                ));
            }
        }
        Swarm::start(self).await
    }
}

impl SwarmBuilder {
    fn check_fair_share(&self) -> Result<(), BuildError> {
        if let Some((key, _)) = self.key_weights.iter().find(|(_, w)| *w == 0) {
            return Err(BuildError::Config(format!(
                "key_weight({key:?}, 0): a weight must be at least 1"
            )));
        }
        if self.fair_share_quantum == 0 {
            return Err(BuildError::Config(
                "fair_share_quantum(0): a key must earn at least 1 cost unit a turn".into(),
            ));
        }
        if !self.fair_share {
            return Ok(());
        }
        if matches!(self.mode, SchedulerMode::Polling { .. }) {
            return Err(BuildError::Config(
                "fair_share orders the event scheduler's queue; polling mode (the baseline) is FIFO"
                    .into(),
            ));
        }
        #[cfg(feature = "nats")]
        if self.nats.is_some() {
            return Err(BuildError::Config(
                "fair_share orders the local queue; a distributed swarm takes work from its NATS stream"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The fair-share discipline: the quantum and the weights set.
    pub(crate) fn fair_share_discipline(&self) -> swarm_queue::FairShare {
        let quantum =
            std::num::NonZeroU32::new(self.fair_share_quantum).unwrap_or(std::num::NonZeroU32::MIN);
        self.key_weights.iter().fold(
            swarm_queue::FairShare::new(quantum),
            |share, (key, weight)| match std::num::NonZeroU32::new(*weight) {
                Some(weight) => share.weight(&**key, weight),
                None => share,
            },
        )
    }
}

pub(crate) fn durability_of(options: &FileStoreOptions) -> bool {
    options.get_durability() == Durability::Fsync
}

pub(crate) fn sim_factory(config: SimConfig, seed: u64) -> BoxAgentFactory {
    BoxAgentFactory::new(SimAgentFactory::new(config.with_seed(config.seed ^ seed)))
}
