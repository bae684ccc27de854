//! What a swarm has done so far.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the scheduler bumps as it works (relaxed atomics; exact once quiet).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) stolen_tasks: AtomicU64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) delay_wakeups: AtomicU64,
    pub(crate) events_stored: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) snapshot_failures: AtomicU64,
    pub(crate) snapshot_lag: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of a swarm's counters and current load, from [`Swarm::stats`](crate::Swarm::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwarmStats {
    /// Tasks accepted by `submit` in this process.
    pub submitted: u64,
    /// Tasks re-queued from the store when the swarm started.
    pub recovered: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Attempts that failed (each retry's failure counts).
    pub failed_attempts: u64,
    /// Attempts scheduled again after a failure.
    pub retries: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Tasks waiting in the global and local queues now.
    pub queued: u64,
    /// Tasks waiting for a retry back-off to pass now.
    pub waiting_retry: u64,
    /// Tasks waiting for their due time now (`TaskBuilder::delay`,
    /// `TaskBuilder::not_before`); local work source only.
    pub delayed: u64,
    /// Tasks a rate or concurrency limit holds now, outside the queues
    /// (`SwarmBuilder::rate_limit`, `SwarmBuilder::concurrency_limit`).
    pub throttled: u64,
    /// Attempts running now.
    pub running: u64,
    /// Steal operations.
    pub steals: u64,
    /// Tasks moved by stealing.
    pub stolen_tasks: u64,
    /// Idle agents now.
    pub idle_agents: u64,
    /// Busy (or claimed) agents now.
    pub busy_agents: u64,
    /// Reserve agents now.
    pub reserve_agents: u64,
    /// Times a scheduler task woke up (agent loops, the store writer, the
    /// polling loop). Zero growth while idle is the event mode's promise.
    pub wakeups: u64,
    /// Times the delay timer fired (counted in `wakeups` too). Each fire starts
    /// every task due by then, so it grows by at most one per distinct due
    /// millisecond, and not at all while nothing is due.
    pub delay_wakeups: u64,
    /// Events appended to the store.
    pub events_stored: u64,
    /// Store appends that failed.
    pub store_errors: u64,
    /// Snapshot attempts that failed (each is logged and retried with back-off).
    pub snapshot_failures: u64,
    /// Events the snapshotter took from the log after its newest snapshot:
    /// what a restart would replay (0 without a snapshotter, as with the
    /// in-memory store).
    pub snapshot_lag_events: u64,
}

impl SwarmStats {
    /// Tasks that reached a final state: completed, dead-lettered or cancelled.
    pub fn finished(&self) -> u64 {
        self.completed + self.dead_lettered + self.cancelled
    }
}

/// Current load, from whichever work source the swarm has.
pub(crate) struct Load {
    pub(crate) queued: u64,
    pub(crate) waiting_retry: u64,
    pub(crate) running: u64,
}

impl SwarmStats {
    /// The counters, the pool's agents by state, and the work source's load.
    pub(crate) fn from_counters(
        c: &Counters,
        agents: swarm_agents::PoolCounts,
        load_now: Load,
    ) -> SwarmStats {
        SwarmStats {
            submitted: load(&c.submitted),
            recovered: load(&c.recovered),
            completed: load(&c.completed),
            failed_attempts: load(&c.failed_attempts),
            retries: load(&c.retries),
            dead_lettered: load(&c.dead_lettered),
            cancelled: load(&c.cancelled),
            queued: load_now.queued,
            waiting_retry: load_now.waiting_retry,
            delayed: 0,
            throttled: 0,
            running: load_now.running,
            steals: load(&c.steals),
            stolen_tasks: load(&c.stolen_tasks),
            idle_agents: agents.idle as u64,
            busy_agents: (agents.busy + agents.claimed) as u64,
            reserve_agents: agents.reserve as u64,
            wakeups: load(&c.wakeups),
            delay_wakeups: load(&c.delay_wakeups),
            events_stored: load(&c.events_stored),
            store_errors: load(&c.store_errors),
            snapshot_failures: load(&c.snapshot_failures),
            snapshot_lag_events: load(&c.snapshot_lag),
        }
    }
}

pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
