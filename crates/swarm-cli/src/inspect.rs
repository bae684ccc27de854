//! `swarm replay`, `swarm events` and `swarm stats`: read a log without
//! changing it. A file log through [`FileLogReader`] (no lock, no repair,
//! beside a running swarm; a record being written at the tail is not yet
//! visible); a NATS log (`--store nats://HOST:PORT --swarm NAME`) through a
//! `NatsStore` opened `existing_only` (it creates nothing and changes no
//! stream limit).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use swarm::{EventKind, Retention, SystemState, TaskStatus};
use swarm_store::{
    AgentPerformance, FileLogReader, Projection, StoreError, TaskCompletion, TornTail,
};

use crate::error::CliError;
use crate::jobs::JobPayload;
use crate::output::{ms, print_json, print_stdout};
use crate::{EventsArgs, ReplayArgs, StatsArgs};

const STATUSES: [TaskStatus; 7] = [
    TaskStatus::Pending,
    TaskStatus::Queued,
    TaskStatus::Running,
    TaskStatus::Failed,
    TaskStatus::Completed,
    TaskStatus::DeadLettered,
    TaskStatus::Cancelled,
];

fn status_name(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Pending => "pending",
        TaskStatus::Queued => "queued",
        TaskStatus::Running => "running",
        TaskStatus::Failed => "failed",
        TaskStatus::Completed => "completed",
        TaskStatus::DeadLettered => "dead_lettered",
        TaskStatus::Cancelled => "cancelled",
    }
}

/// A log opened for reading: a file log, or a distributed swarm's NATS log.
enum Log {
    File(FileLogReader),
    #[cfg(feature = "nats")]
    Nats(swarm_store::NatsStore),
}

/// Opens the log of `--store` (a directory, or `nats://HOST:PORT` with
/// `--swarm`) for reading.
async fn open_log(store: &std::path::Path, swarm: &str) -> Result<Log, CliError> {
    if let Some(url) = crate::nats_store_url(store) {
        #[cfg(feature = "nats")]
        {
            let options = swarm_store::NatsStoreOptions::new(url, swarm).existing_only(true);
            return match swarm_store::NatsStore::connect(options).await {
                Ok(store) => Ok(Log::Nats(store)),
                Err(e @ StoreError::NoStream { .. }) => Err(CliError::BadInput(format!(
                    "{e} (pass the --swarm name its workers were started with)"
                ))),
                Err(e) => Err(CliError::Store(e)),
            };
        }
        #[cfg(not(feature = "nats"))]
        return Err(CliError::BadInput(format!(
            "--store {url} (swarm {swarm}): this swarm binary was built without the `nats` feature"
        )));
    }
    FileLogReader::open(store).map(Log::File).map_err(|e| match e {
        StoreError::NoLog { .. } => CliError::BadInput(format!(
            "{e} (pass the --store directory that `swarm run` or `swarm demo` wrote, or nats://HOST:PORT with --swarm)"
        )),
        other => CliError::Store(other),
    })
}

impl Log {
    /// Where a file log ends inside a record; a NATS log has no torn tail.
    fn torn_tail(&self) -> Option<TornTail> {
        match self {
            Log::File(reader) => reader.torn_tail(),
            #[cfg(feature = "nats")]
            Log::Nats(_) => None,
        }
    }

    /// The state rebuilt from the newest snapshot at or before `to` and the
    /// log after it, with no retention window.
    async fn replay(&self, to: Option<u64>) -> Result<SystemState, StoreError> {
        match self {
            Log::File(reader) => replay_on(reader, to).await,
            #[cfg(feature = "nats")]
            Log::Nats(store) => replay_on(store, to).await,
        }
    }

    /// Feeds every event from `from` on to `each` until it returns `false`
    /// (stdout closed); with `follow`, then waits for new ones until Ctrl-C.
    async fn for_each(
        &self,
        from: u64,
        follow: bool,
        mut each: impl FnMut(swarm_store::StoredEvent) -> Result<bool, CliError>,
    ) -> Result<(), CliError> {
        match self {
            Log::File(reader) => {
                let mut records = reader.read(from);
                let mut drain = |records: &mut swarm_store::LogRecords| -> Result<bool, CliError> {
                    for stored in records.by_ref() {
                        if let Some(stored) = known(stored)? {
                            if !each(stored)? {
                                return Ok(false);
                            }
                        }
                    }
                    Ok(true)
                };
                let open = drain(&mut records)?;
                if !follow || !open {
                    warn_torn(records.torn_tail());
                    return Ok(());
                }
                let ctrl_c = tokio::signal::ctrl_c();
                tokio::pin!(ctrl_c);
                loop {
                    tokio::select! {
                        _ = &mut ctrl_c => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    if !drain(&mut records)? {
                        return Ok(());
                    }
                }
            }
            #[cfg(feature = "nats")]
            Log::Nats(store) => {
                use futures::StreamExt;
                use swarm::EventStore;
                // A subscription reads what is there, then each new event as
                // it is stored: no polling.
                let mut events = if follow {
                    store.subscribe(from)
                } else {
                    store.read(from)
                };
                let ctrl_c = tokio::signal::ctrl_c();
                tokio::pin!(ctrl_c);
                loop {
                    let next = tokio::select! {
                        _ = &mut ctrl_c => return Ok(()),
                        next = events.next() => next,
                    };
                    let Some(stored) = next else { return Ok(()) };
                    if let Some(stored) = known(stored)? {
                        if !each(stored)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

async fn replay_on<S: swarm::EventStore>(
    store: &S,
    to: Option<u64>,
) -> Result<SystemState, StoreError> {
    // Everything the log (or its newest snapshot) still knows: an
    // inspection is not bounded by a service's retention window.
    match to {
        Some(to) => SystemState::replay_to_with(store, to, Retention::unbounded()).await,
        None => SystemState::replay_with(store, Retention::unbounded()).await,
    }
}

/// The event, or `None` (with a warning) for a record of an event kind a
/// newer version of swarm wrote: not damage, the read goes on.
fn known(
    stored: Result<swarm_store::StoredEvent, StoreError>,
) -> Result<Option<swarm_store::StoredEvent>, CliError> {
    match stored {
        Ok(stored) => Ok(Some(stored)),
        Err(e) if e.is_unknown_event() => {
            tracing::warn!("{e}");
            Ok(None)
        }
        Err(e) => Err(CliError::Store(e)),
    }
}

fn warn_torn(torn: Option<&TornTail>) {
    if let Some(torn) = torn {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            reason = %torn.reason,
            "the log ends inside a record (a write in progress, or a torn tail the next start will cut)"
        );
    }
}

/// `swarm replay`: the state rebuilt from the log, newest snapshot first.
pub(crate) async fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let log = open_log(&args.store, &args.swarm).await?;
    let state = log.replay(args.to).await?;
    warn_torn(log.torn_tail().as_ref());

    let mut by_status = serde_json::Map::new();
    for s in STATUSES {
        by_status.insert(status_name(s).into(), json!(state.count(s)));
    }
    // The tasks an operator acts on: unfinished and dead-lettered ones.
    let mut attention: Vec<_> = state
        .tasks()
        .filter(|t| t.status != TaskStatus::Completed && t.status != TaskStatus::Cancelled)
        .collect();
    attention.sort_by_key(|t| (t.task.created_at(), t.task.id()));
    let tasks_json: Vec<_> = attention
        .iter()
        .map(|t| {
            let job = t.task.payload().to_json::<JobPayload>().ok();
            json!({
                "id": t.task.id().to_string(),
                "job": job.as_ref().map(|j| j.id.clone()),
                "kind": t.task.kind(),
                "priority": t.task.priority().as_str(),
                "status": status_name(t.status),
                "attempts": t.attempts,
                "last_error": t.last_error,
                "key": t.task.key(),
                "cost": t.task.cost(),
                "not_before_us": t.task.not_before().map(|at| at.as_micros()),
            })
        })
        .collect();
    let agents: Vec<_> = state
        .agents()
        .map(|a| {
            json!({
                "id": a.id.to_string(),
                "health": format!("{:?}", a.health).to_lowercase(),
                "busy_with": a.busy_with.map(|t| t.to_string()),
                "reserve": a.reserve,
                "completed": a.completed,
                "failed": a.failed,
            })
        })
        .collect();
    let counters = serde_json::to_value(state.counters())
        .map_err(|e| CliError::Runtime(format!("could not encode the counters: {e}")))?;
    let tasks_total = state.tasks().count();
    if args.json {
        return print_json(&json!({
            "last_seq": state.last_seq(),
            "tasks": tasks_total,
            "tasks_by_status": by_status,
            "unfinished_or_dead_lettered": tasks_json,
            "agents": agents,
            "counters": counters,
        }));
    }
    let mut text = format!(
        "state as of sequence {} ({} tasks)\n\ntasks by status\n",
        state.last_seq(),
        tasks_total
    );
    for s in STATUSES {
        text.push_str(&format!("  {:<14} {:>8}\n", status_name(s), state.count(s)));
    }
    text.push_str(&format!("\nagents ({})\n", agents.len()));
    for a in state.agents() {
        text.push_str(&format!(
            "  {:<9} {:<10} completed {:>6}  failed {:>4}{}{}\n",
            a.id.to_string(),
            format!("{:?}", a.health).to_lowercase(),
            a.completed,
            a.failed,
            if a.reserve { "  reserve" } else { "" },
            match a.busy_with {
                Some(t) => format!("  running {t}"),
                None => String::new(),
            }
        ));
    }
    text.push_str("\ncounters\n");
    if let serde_json::Value::Object(map) = &counters {
        for (k, v) in map {
            text.push_str(&format!("  {k:<20} {v:>8}\n"));
        }
    }
    if !attention.is_empty() {
        text.push_str("\nunfinished or dead-lettered tasks\n");
        for t in &attention {
            let name = match t.task.payload().to_json::<JobPayload>() {
                Ok(job) => format!("job {:?}", job.id),
                Err(_) => format!("task {}", t.task.id()),
            };
            text.push_str(&format!(
                "  {name} ({}, {}{}): {}, {} attempts{}{}\n",
                t.task.kind(),
                t.task.priority().as_str(),
                flow_fields(&t.task),
                status_name(t.status),
                t.attempts,
                match t.task.not_before() {
                    Some(at) => format!(", not before {at}"),
                    None => String::new(),
                },
                match &t.last_error {
                    Some(e) => format!(", last error: {e}"),
                    None => String::new(),
                }
            ));
        }
    }
    print_stdout(&text).map(|_| ())
}

/// A task's key and cost for the replay listing (", key tenant-a, cost 40"),
/// empty when neither is set.
fn flow_fields(task: &swarm::Task) -> String {
    let mut text = String::new();
    if let Some(key) = task.key() {
        text.push_str(&format!(", key {key:?}"));
    }
    if task.cost() != 1 {
        text.push_str(&format!(", cost {}", task.cost()));
    }
    text
}

/// `swarm events`: the log as JSON lines.
pub(crate) async fn events(args: EventsArgs) -> Result<(), CliError> {
    let mut kinds = Vec::new();
    for name in &args.events {
        match name.parse::<EventKind>() {
            Ok(kind) => kinds.push(kind),
            Err(_) => {
                let valid: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                return Err(CliError::BadInput(format!(
                    "unknown event {name:?}: valid names are {}",
                    valid.join(", ")
                )));
            }
        }
    }
    let log = open_log(&args.store, &args.swarm).await?;
    // Prints one event; `false` once stdout is closed.
    log.for_each(args.from, args.follow, |stored| {
        if !kinds.is_empty() && !kinds.contains(&stored.event.kind()) {
            return Ok(true);
        }
        let mut line = serde_json::to_string(&stored).map_err(|e| {
            CliError::Runtime(format!("could not encode event {}: {e}", stored.seq))
        })?;
        line.push('\n');
        crate::output::print_stdout(&line)
    })
    .await
}

/// `swarm stats`: the projections.
pub(crate) async fn stats(args: StatsArgs) -> Result<(), CliError> {
    let log = open_log(&args.store, &args.swarm).await?;
    let mut completion = TaskCompletion::new();
    let mut performance = AgentPerformance::new();
    let mut last_seq = 0;
    log.for_each(1, false, |stored| {
        completion.apply(&stored);
        performance.apply(&stored);
        last_seq = stored.seq;
        Ok(true)
    })
    .await?;
    const OUTCOMES: [&str; 4] = ["completed", "failed", "dead_lettered", "cancelled"];
    let totals: BTreeMap<&str, u64> = OUTCOMES.iter().map(|o| (*o, completion.total(o))).collect();
    let by_kind: BTreeMap<&str, BTreeMap<&str, u64>> = completion
        .kinds()
        .map(|(kind, counts)| {
            (
                kind,
                OUTCOMES
                    .iter()
                    .map(|o| (*o, counts.get(o).copied().unwrap_or(0)))
                    .collect(),
            )
        })
        .collect();
    if args.json {
        let agents: Vec<_> = performance
            .agents()
            .map(|(id, s)| {
                json!({
                    "id": id.to_string(),
                    "completed": s.completed,
                    "failed": s.failed,
                    "duration_ms": {
                        "p50": ms(s.p50()),
                        "p99": ms(s.p99()),
                        "max": ms(Duration::from_micros(s.histogram().max())),
                    },
                })
            })
            .collect();
        return print_json(&json!({
            "last_seq": last_seq,
            "outcomes": totals,
            "by_kind": by_kind,
            "agents": agents,
        }));
    }
    let mut text = format!("projections as of sequence {last_seq}\n\noutcomes\n");
    for (o, n) in &totals {
        text.push_str(&format!("  {o:<14} {n:>8}\n"));
    }
    text.push_str("\nby kind          completed   failed  dead_lettered  cancelled\n");
    for (kind, counts) in &by_kind {
        let get = |o: &str| counts.get(o).copied().unwrap_or(0);
        text.push_str(&format!(
            "  {kind:<14} {:>9} {:>8} {:>14} {:>10}\n",
            get("completed"),
            get("failed"),
            get("dead_lettered"),
            get("cancelled")
        ));
    }
    text.push_str("\nagents   completed   failed   p50 ms   p99 ms   max ms\n");
    for (id, s) in performance.agents() {
        text.push_str(&format!(
            "  {:<6} {:>9} {:>8} {:>8.3} {:>8.3} {:>8.3}\n",
            id.to_string(),
            s.completed,
            s.failed,
            ms(s.p50()),
            ms(s.p99()),
            ms(Duration::from_micros(s.histogram().max()))
        ));
    }
    print_stdout(&text).map(|_| ())
}
