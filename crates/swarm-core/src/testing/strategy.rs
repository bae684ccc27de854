//! proptest strategies for the core types, for property tests of code built on swarm.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::event::*;
use crate::{AgentId, Payload, Priority, Task, TaskId};

/// Any priority.
pub fn priority() -> impl Strategy<Value = Priority> {
    (0usize..Priority::LEVELS).prop_map(|l| Priority::from_level(l).unwrap_or_default())
}

/// A task id.
pub fn task_id() -> impl Strategy<Value = TaskId> {
    any::<u64>().prop_map(TaskId::from_u64)
}

/// An agent id (small, so events of one sequence share agents).
pub fn agent_id() -> impl Strategy<Value = AgentId> {
    (0u64..16).prop_map(AgentId::new)
}

/// A payload: text or arbitrary bytes, up to 64 bytes.
pub fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        "[ -~]{0,32}".prop_map(Payload::from),
        vec(any::<u8>(), 0..64).prop_map(Payload::from),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..10_000_000_000).prop_map(Duration::from_micros)
}

fn reason() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        Just(FailureReason::Error),
        Just(FailureReason::Permanent),
        Just(FailureReason::Panic),
        Just(FailureReason::Timeout),
        Just(FailureReason::Lost),
    ]
}

fn health() -> impl Strategy<Value = AgentHealth> {
    prop_oneof![
        Just(AgentHealth::Healthy),
        Just(AgentHealth::Degraded),
        Just(AgentHealth::Unhealthy),
    ]
}

fn queue() -> impl Strategy<Value = QueueLocation> {
    prop_oneof![
        Just(QueueLocation::Global),
        agent_id().prop_map(QueueLocation::Local),
        Just(QueueLocation::Distributed),
    ]
}

/// A task with generated fields (ids drawn from `id`).
pub fn task_with_id(id: impl Strategy<Value = TaskId>) -> impl Strategy<Value = Task> {
    (
        id,
        priority(),
        "[a-z]{1,8}",
        payload(),
        proptest::option::of(agent_id()),
        any::<bool>(),
        proptest::option::of(duration()),
        proptest::option::of(1u32..10),
        0u32..5,
        (
            proptest::option::of("[a-z]{1,4}"),
            0u32..1000,
            proptest::option::of(0u64..u64::from(u32::MAX)),
        ),
    )
        .prop_map(
            |(id, priority, kind, payload, affinity, pinned, timeout, max, attempt, flow)| {
                let (key, cost, not_before) = flow;
                let mut b = Task::builder(kind)
                    .id(id)
                    .priority(priority)
                    .payload(payload)
                    .pinned(pinned);
                if let Some(a) = affinity {
                    b = b.affinity(a);
                }
                if let Some(t) = timeout {
                    b = b.timeout(t);
                }
                if let Some(m) = max {
                    b = b.max_attempts(m);
                }
                if let Some(k) = key {
                    b = b.key(k);
                }
                b = b.cost(cost);
                if let Some(secs) = not_before {
                    b = b.not_before(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
                }
                // Payloads here are far below the default bound and `max` is >= 1.
                let mut task = match b.build() {
                    Ok(task) => task,
                    Err(e) => unreachable!("generated task is valid: {e}"),
                };
                task.set_attempt(attempt);
                task
            },
        )
}

/// A task with a random id.
pub fn task() -> impl Strategy<Value = Task> {
    task_with_id(task_id())
}

/// An event of the given kind, with generated payload fields.
pub fn event_of(kind: EventKind) -> BoxedStrategy<Event> {
    event_of_with_ids(kind, task_id().boxed())
}

/// An event of the given kind whose task ids come from `ids`.
pub fn event_of_with_ids(kind: EventKind, ids: BoxedStrategy<TaskId>) -> BoxedStrategy<Event> {
    match kind {
        EventKind::TaskCreated => task_with_id(ids)
            .prop_map(|task| TaskCreated { task }.into())
            .boxed(),
        EventKind::TaskEnqueued => (ids, priority(), queue())
            .prop_map(|(task_id, priority, queue)| {
                TaskEnqueued {
                    task_id,
                    priority,
                    queue,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskDequeued => (ids, priority(), queue())
            .prop_map(|(task_id, priority, queue)| {
                TaskDequeued {
                    task_id,
                    priority,
                    queue,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskCritical => ids
            .prop_map(|task_id| TaskCritical { task_id }.into())
            .boxed(),
        EventKind::TaskAssigned => (ids, agent_id(), 1u32..5, priority(), duration())
            .prop_map(|(task_id, agent_id, attempt, priority, queue_wait)| {
                TaskAssigned {
                    task_id,
                    agent_id,
                    attempt,
                    priority,
                    queue_wait,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskCompleted => (ids, agent_id(), 1u32..5, duration(), payload())
            .prop_map(|(task_id, agent_id, attempt, duration, output)| {
                TaskCompleted {
                    task_id,
                    agent_id,
                    attempt,
                    duration,
                    output,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskFailed => (
            ids,
            proptest::option::of(agent_id()),
            1u32..5,
            reason(),
            "[ -~]{0,24}",
            any::<bool>(),
            proptest::option::of(duration()),
        )
            .prop_map(
                |(task_id, agent_id, attempt, reason, error, will_retry, retry_in)| {
                    TaskFailed {
                        task_id,
                        agent_id,
                        attempt,
                        reason,
                        error,
                        will_retry,
                        retry_in,
                    }
                    .into()
                },
            )
            .boxed(),
        EventKind::TaskDeadLettered => (ids, 1u32..5, vec("[ -~]{0,16}", 0..4))
            .prop_map(|(task_id, attempts, errors)| {
                TaskDeadLettered {
                    task_id,
                    attempts,
                    errors,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskCancelled => (ids, any::<bool>())
            .prop_map(|(task_id, was_running)| {
                TaskCancelled {
                    task_id,
                    was_running,
                }
                .into()
            })
            .boxed(),
        EventKind::AgentCreated => (agent_id(), any::<bool>())
            .prop_map(|(agent_id, reserve)| AgentCreated { agent_id, reserve }.into())
            .boxed(),
        EventKind::AgentRemoved => (agent_id(), "[a-z]{0,12}")
            .prop_map(|(agent_id, reason)| AgentRemoved { agent_id, reason }.into())
            .boxed(),
        EventKind::AgentAvailable => agent_id()
            .prop_map(|agent_id| AgentAvailable { agent_id }.into())
            .boxed(),
        EventKind::AgentBusy => (agent_id(), ids)
            .prop_map(|(agent_id, task_id)| AgentBusy { agent_id, task_id }.into())
            .boxed(),
        EventKind::AgentError => (agent_id(), reason(), "[ -~]{0,24}", health())
            .prop_map(|(agent_id, reason, error, health)| {
                AgentError {
                    agent_id,
                    reason,
                    error,
                    health,
                }
                .into()
            })
            .boxed(),
        EventKind::WorkStolen => (agent_id(), agent_id(), vec(ids, 0..6))
            .prop_map(|(from, to, task_ids)| {
                WorkStolen {
                    from,
                    to,
                    count: task_ids.len() as u32,
                    task_ids,
                }
                .into()
            })
            .boxed(),
        EventKind::QueueBacklog => (any::<u64>(), any::<u64>())
            .prop_map(|(queued, threshold)| QueueBacklog { queued, threshold }.into())
            .boxed(),
        EventKind::CoordinatorOverload => (0u32..100, 1u32..100)
            .prop_map(|(busy, total)| {
                CoordinatorOverload {
                    busy,
                    total,
                    load: f64::from(busy) / f64::from(total),
                }
                .into()
            })
            .boxed(),
        EventKind::PerformanceDegraded => (duration(), duration())
            .prop_map(|(p99_queue_wait, objective)| {
                PerformanceDegraded {
                    p99_queue_wait,
                    objective,
                }
                .into()
            })
            .boxed(),
        EventKind::SystemShutdown => (duration(), any::<u64>())
            .prop_map(|(deadline, pending)| SystemShutdown { deadline, pending }.into())
            .boxed(),
        EventKind::TaskInterrupted => (ids, agent_id(), 1u32..5, any::<bool>())
            .prop_map(|(task_id, agent_id, attempt, was_running)| {
                TaskInterrupted {
                    task_id,
                    agent_id,
                    attempt,
                    was_running,
                }
                .into()
            })
            .boxed(),
        EventKind::TaskDeadLetterRetried => (ids, 0u32..10)
            .prop_map(|(task_id, attempts)| TaskDeadLetterRetried { task_id, attempts }.into())
            .boxed(),
        EventKind::TaskDiscarded => ids
            .prop_map(|task_id| TaskDiscarded { task_id }.into())
            .boxed(),
        EventKind::SwarmPaused => any::<u64>()
            .prop_map(|running| SwarmPaused { running }.into())
            .boxed(),
        EventKind::SwarmResumed => any::<u64>()
            .prop_map(|queued| SwarmResumed { queued }.into())
            .boxed(),
        EventKind::TaskThrottled => (ids, "[a-z=(), /0-9]{0,24}")
            .prop_map(|(task_id, limit)| TaskThrottled { task_id, limit }.into())
            .boxed(),
        EventKind::TaskUnthrottled => (ids, "[a-z=(), /0-9]{0,24}", duration())
            .prop_map(|(task_id, limit, waited)| {
                TaskUnthrottled {
                    task_id,
                    limit,
                    waited,
                }
                .into()
            })
            .boxed(),
    }
}

/// Any event of the catalog.
pub fn event() -> impl Strategy<Value = Event> {
    (0..EventKind::COUNT).prop_flat_map(|i| event_of(EventKind::ALL[i]))
}
