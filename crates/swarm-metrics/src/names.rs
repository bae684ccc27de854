//! The names of the exported metrics, as constants.
//!
//! These are the contract with dashboards and alerts (DESIGN.md, "Metrics"):
//! snake_case, counters end in `_total`, durations are histograms in seconds.
//! `docs/operations.md` and `docs/grafana/swarm.json` use exactly these names,
//! and a test checks that every `swarm_*` name they mention is exported.

/// Counter `{event}`: events emitted on the bus, per catalog name (`task:created`, ...).
pub const EVENTS_TOTAL: &str = "swarm_events_total";
/// Histogram `{event}`, seconds: time spent in one emit's handlers, all handlers together.
pub const EVENT_HANDLER_DURATION_SECONDS: &str = "swarm_event_handler_duration_seconds";
/// Counter `{event}`: handler calls that panicked (caught by the bus).
pub const EVENT_HANDLER_PANICS_TOTAL: &str = "swarm_event_handler_panics_total";
/// Counter `{priority}`: tasks accepted (`task:created`).
pub const TASKS_SUBMITTED_TOTAL: &str = "swarm_tasks_submitted_total";
/// Counter `{outcome}`: `completed` and `failed` attempts, `dead_lettered` tasks.
pub const TASKS_FINISHED_TOTAL: &str = "swarm_tasks_finished_total";
/// Counter: failed attempts that will be retried.
pub const TASK_RETRIES_TOTAL: &str = "swarm_task_retries_total";
/// Histogram `{priority}`, seconds: from acceptance (or a retry becoming due) to start.
pub const TASK_QUEUE_WAIT_SECONDS: &str = "swarm_task_queue_wait_seconds";
/// Histogram, seconds: how long successful attempts ran.
pub const TASK_RUN_DURATION_SECONDS: &str = "swarm_task_run_duration_seconds";
/// Gauge `{priority}`: tasks waiting in any queue (global, local or distributed).
pub const QUEUE_DEPTH: &str = "swarm_queue_depth";
/// Gauge `{state}`: agents per state, `idle|busy|unhealthy|reserve`.
pub const AGENTS: &str = "swarm_agents";
/// Counter: tasks moved by work stealing.
pub const WORK_STOLEN_TASKS_TOTAL: &str = "swarm_work_stolen_tasks_total";
/// Histogram, seconds: one event store append, as the caller saw it.
pub const STORE_APPEND_DURATION_SECONDS: &str = "swarm_store_append_duration_seconds";
/// Counter: snapshot attempts that failed (each is retried with back-off).
pub const SNAPSHOT_FAILURES_TOTAL: &str = "swarm_snapshot_failures_total";
/// Gauge: events in the log after the newest snapshot (what a restart replays).
pub const SNAPSHOT_LAG_EVENTS: &str = "swarm_snapshot_lag_events";
/// Counter `{limit}`: tasks a rate or concurrency limit held (`task:throttled`).
pub const LIMIT_WAITS_TOTAL: &str = "swarm_limit_waits_total";
/// Histogram `{limit}`, seconds: how long a limit held a task (`task:unthrottled`).
pub const LIMIT_WAIT_SECONDS: &str = "swarm_limit_wait_seconds";

/// Every metric name this crate exports. The per-limit ones
/// ([`LIMIT_WAITS_TOTAL`], [`LIMIT_WAIT_SECONDS`]) have a series per limit
/// name, made when a limit first holds a task.
pub const ALL: [&str; 16] = [
    EVENTS_TOTAL,
    EVENT_HANDLER_DURATION_SECONDS,
    EVENT_HANDLER_PANICS_TOTAL,
    TASKS_SUBMITTED_TOTAL,
    TASKS_FINISHED_TOTAL,
    TASK_RETRIES_TOTAL,
    TASK_QUEUE_WAIT_SECONDS,
    TASK_RUN_DURATION_SECONDS,
    QUEUE_DEPTH,
    AGENTS,
    WORK_STOLEN_TASKS_TOTAL,
    STORE_APPEND_DURATION_SECONDS,
    SNAPSHOT_FAILURES_TOTAL,
    SNAPSHOT_LAG_EVENTS,
    LIMIT_WAITS_TOTAL,
    LIMIT_WAIT_SECONDS,
];
