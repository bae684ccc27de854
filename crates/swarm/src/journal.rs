//! The journal: every event of the bus, appended to the event store in emit
//! order. One journal serves both work sources.
//!
//! A synchronous `on_any` handler (lossless, in emit order) forwards each event
//! into an unbounded channel; one writer task drains it in batches. A barrier
//! resolves once every event sent before it is in the store, or with the
//! error of the write that failed to put them there: `submit` waits on one so
//! that `task:created` is durable before it returns, and a distributed node
//! acks a task only once its events are in the log.
//!
//! How a batch reaches the store depends on the store ([`AppendMode`]):
//! - `Batch`: one `append` call per batch, so a durable store group-commits
//!   everything that arrived while the previous write was in flight;
//! - `Inline`: a store whose appends complete without waiting (the in-memory
//!   store) is appended to from the handler itself: no channel hop and no
//!   writer wake-up on the hot path;
//! - `Shared`: a log that several processes write (the NATS log of a
//!   distributed swarm): one event per append (an append of one event is
//!   atomic beside other writers), appended concurrently in rounds so that
//!   the events of one task or one agent keep their emit order.
//!
//! The writer task sleeps on the channel: with no events it never wakes.
//!
//! A failed append of a `Batch` or `Inline` store latches: [`Journal::failure`]
//! returns it from then on and `submit` refuses new tasks with it (the log
//! has a hole; nothing after it is safe to accept). A `Shared` log's failure
//! is charged to the tasks whose events it lost ([`Journal::barrier_for`]):
//! their messages are offered again, and the node goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use parking_lot::Mutex;
use swarm_core::{AgentId, Event, EventBus, Subscription, TaskId};
use swarm_store::{EventStore, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::stats::Counters;

/// A store error, shared by everything that waited on the failed write.
pub(crate) type SharedStoreError = Arc<StoreError>;

/// How the journal hands batches to its store (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppendMode {
    Batch,
    Inline,
    Shared,
}

enum Message {
    Event(Event),
    Barrier(oneshot::Sender<Result<(), SharedStoreError>>),
}

/// The first append failure, once there is one.
#[derive(Default)]
struct Latch(Mutex<Option<SharedStoreError>>);

impl Latch {
    fn set(&self, error: &SharedStoreError) {
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(Arc::clone(error));
        }
    }

    fn get(&self) -> Option<SharedStoreError> {
        self.0.lock().clone()
    }
}

/// Tasks one of whose events a `Shared` log lost, with the first error.
type Lost = Arc<Mutex<HashMap<TaskId, SharedStoreError>>>;

/// Records the duration of each store append (swarm_store_append_duration_seconds).
pub(crate) type AppendObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

pub(crate) struct Journal {
    sender: mpsc::UnboundedSender<Message>,
    failed: Arc<Latch>,
    // Read by the distributed work source only.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    lost: Lost,
    _subscription: Subscription,
}

const BATCH: usize = 8192;

impl Journal {
    pub(crate) fn start(
        bus: &EventBus,
        store: Arc<dyn EventStore>,
        counters: Arc<Counters>,
        on_append: Option<AppendObserver>,
        mode: AppendMode,
    ) -> Journal {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Message>();
        let failed = Arc::new(Latch::default());
        let lost = Lost::default();
        let subscription = if mode == AppendMode::Inline {
            let store = Arc::clone(&store);
            let counters = Arc::clone(&counters);
            let failed = Arc::clone(&failed);
            bus.on_any(move |event| {
                match store.append(vec![event.clone()], None).now_or_never() {
                    Some(Ok(_)) => {
                        counters.events_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(error)) => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, event = event.name(), "event store append failed; this event is not in the log");
                        failed.set(&Arc::new(error));
                    }
                    None => {
                        counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(event = event.name(), "an inline event store did not append at once; this event is not in the log");
                        failed.set(&Arc::new(StoreError::Poisoned {
                            source: Arc::new(StoreError::Io {
                                path: std::path::PathBuf::new(),
                                source: std::io::Error::other(
                                    "an inline store did not complete an append at once",
                                ),
                            }),
                        }));
                    }
                }
            })
        } else {
            let forward = sender.clone();
            bus.on_any(move |event| {
                // Fails only after the writer stopped (shutdown finished); the
                // event then has nowhere durable to go and the swarm is closed.
                let _ = forward.send(Message::Event(event.clone()));
            })
        };
        // The writer task ends when the journal (its last sender) is dropped.
        let writer = Writer {
            store,
            counters,
            on_append,
            latch: Arc::clone(&failed),
            lost: Arc::clone(&lost),
        };
        tokio::spawn(async move {
            let mut inbox = Vec::with_capacity(BATCH);
            let mut events = Vec::with_capacity(BATCH);
            let mut barriers = Vec::new();
            while receiver.recv_many(&mut inbox, BATCH).await > 0 {
                writer.counters.wakeups.fetch_add(1, Ordering::Relaxed);
                for message in inbox.drain(..) {
                    match message {
                        Message::Event(event) => events.push(event),
                        Message::Barrier(ack) => barriers.push(ack),
                    }
                }
                let result = if events.is_empty() {
                    Ok(())
                } else {
                    let batch = std::mem::replace(&mut events, Vec::with_capacity(BATCH));
                    match mode {
                        AppendMode::Shared => {
                            writer.append_shared(batch).await;
                            Ok(())
                        }
                        AppendMode::Batch | AppendMode::Inline => writer.append_batch(batch).await,
                    }
                };
                for ack in barriers.drain(..) {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Journal {
            sender,
            failed,
            lost,
            _subscription: subscription,
        }
    }

    /// Resolves once every event emitted before this call is in the store, or
    /// with the error of the write that failed to put them there.
    pub(crate) async fn barrier(&self) -> Result<(), SharedStoreError> {
        if let Some(error) = self.failed.get() {
            return Err(error);
        }
        let (ack, done) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Closed);
        self.sender
            .send(Message::Barrier(ack))
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Like [`barrier`](Self::barrier), and `Err` if an event of `task` was
    /// lost since the last barrier for it (a `Shared` log charges its
    /// failures to the tasks they concern).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) async fn barrier_for(&self, task: TaskId) -> Result<(), SharedStoreError> {
        let all = self.barrier().await;
        let lost = self.lost.lock().remove(&task);
        match (all, lost) {
            (Err(error), _) | (Ok(()), Some(error)) => Err(error),
            (Ok(()), None) => Ok(()),
        }
    }

    /// The first failed append, if one failed (`Batch` and `Inline` logs):
    /// nothing after it is recorded for sure, so the swarm accepts no new task.
    pub(crate) fn failure(&self) -> Option<SharedStoreError> {
        self.failed.get()
    }
}

struct Writer {
    store: Arc<dyn EventStore>,
    counters: Arc<Counters>,
    on_append: Option<AppendObserver>,
    latch: Arc<Latch>,
    lost: Lost,
}

impl Writer {
    async fn append_batch(&self, batch: Vec<Event>) -> Result<(), SharedStoreError> {
        let count = batch.len() as u64;
        let started = Instant::now();
        let result = self.store.append(batch, None).await;
        if let Some(observe) = &self.on_append {
            observe(started.elapsed());
        }
        match result {
            Ok(_) => {
                self.counters
                    .events_stored
                    .fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, events = count, "event store append failed; these events are not in the log");
                let error = Arc::new(error);
                self.latch.set(&error);
                Err(error)
            }
        }
    }

    /// One event per append, concurrently within a round; a failure is
    /// charged to the event's task, and the task's later events (until the
    /// node's next `barrier_for` it, when its attempt has ended) are not
    /// appended: the log never holds a `task:completed` whose `task:assigned`
    /// it lost, which would read as a completion without an assignment and,
    /// when the task then runs again, as a duplicate beyond at-least-once.
    /// The attempt then leaves no trace or a prefix of its events (a start
    /// without an end, which replay reads as a lost attempt), and its
    /// message is offered again.
    async fn append_shared(&self, batch: Vec<Event>) {
        for round in rounds(batch) {
            let round: Vec<Event> = {
                let lost = self.lost.lock();
                if lost.is_empty() {
                    round
                } else {
                    round
                        .into_iter()
                        .filter(|event| match keys_of(event).0 {
                            Some(task) if lost.contains_key(&task) => {
                                tracing::warn!(%task, event = event.name(), "not journaled: an earlier event of this task's attempt was lost");
                                false
                            }
                            _ => true,
                        })
                        .collect()
                }
            };
            let appends = round.into_iter().map(|event| {
                let task = keys_of(&event).0;
                let started = Instant::now();
                let append = self.store.append(vec![event], None);
                async move { (task, append.await, started.elapsed()) }
            });
            for (task, result, elapsed) in futures_util::future::join_all(appends).await {
                if let Some(observe) = &self.on_append {
                    observe(elapsed);
                }
                match result {
                    Ok(_) => {
                        self.counters.events_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "an event could not be journaled to the shared log");
                        if let Some(task) = task {
                            self.lost
                                .lock()
                                .entry(task)
                                .or_insert_with(|| Arc::new(error));
                        }
                    }
                }
            }
        }
    }
}

/// What an event is about: its task and its agent. Two events about the same
/// task or agent are appended one after the other, so the log keeps their
/// order (concurrent appends may land in any order).
fn keys_of(event: &Event) -> (Option<TaskId>, Option<AgentId>) {
    match event {
        Event::TaskCreated(e) => (Some(e.task.id()), None),
        Event::TaskEnqueued(e) => (Some(e.task_id), None),
        Event::TaskDequeued(e) => (Some(e.task_id), None),
        Event::TaskCritical(e) => (Some(e.task_id), None),
        Event::TaskAssigned(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::TaskCompleted(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::TaskFailed(e) => (Some(e.task_id), e.agent_id),
        Event::TaskDeadLettered(e) => (Some(e.task_id), None),
        Event::TaskCancelled(e) => (Some(e.task_id), None),
        Event::TaskInterrupted(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::TaskDeadLetterRetried(e) => (Some(e.task_id), None),
        Event::TaskDiscarded(e) => (Some(e.task_id), None),
        Event::TaskThrottled(e) => (Some(e.task_id), None),
        Event::TaskUnthrottled(e) => (Some(e.task_id), None),
        Event::AgentBusy(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::AgentAvailable(e) => (None, Some(e.agent_id)),
        Event::AgentCreated(e) => (None, Some(e.agent_id)),
        Event::AgentRemoved(e) => (None, Some(e.agent_id)),
        Event::AgentError(e) => (None, Some(e.agent_id)),
        _ => (None, None),
    }
}

/// Splits `events` (in emit order) into rounds whose events can be appended
/// concurrently: an event goes into a later round than every earlier event
/// about the same task or agent.
fn rounds(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut rounds: Vec<Vec<Event>> = Vec::new();
    // The last round that holds an event about each task / agent.
    let mut task_round: HashMap<TaskId, usize> = HashMap::new();
    let mut agent_round: HashMap<AgentId, usize> = HashMap::new();
    for event in events {
        let (task, agent) = keys_of(&event);
        let after = task
            .and_then(|t| task_round.get(&t).map(|r| r + 1))
            .max(agent.and_then(|a| agent_round.get(&a).map(|r| r + 1)))
            .unwrap_or(0);
        if let Some(t) = task {
            task_round.insert(t, after);
        }
        if let Some(a) = agent {
            agent_round.insert(a, after);
        }
        if rounds.len() <= after {
            rounds.resize_with(after + 1, Vec::new);
        }
        rounds[after].push(event);
    }
    rounds
}

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;
    use swarm_core::event::{AgentAvailable, AgentBusy, TaskAssigned, TaskCompleted};
    use swarm_core::{Payload, Priority};
    use swarm_store::{EventStream, MemoryStore, SeqRange, Snapshot};

    use super::*;

    /// A shared log whose appends of `task:assigned` fail (the outage that
    /// lost one in the cluster fault tests), everything else stored.
    #[derive(Debug)]
    struct LosesAssignments(MemoryStore);

    impl EventStore for LosesAssignments {
        fn append(
            &self,
            events: Vec<Event>,
            expected: Option<u64>,
        ) -> BoxFuture<'_, swarm_store::Result<SeqRange>> {
            if events.iter().any(|e| matches!(e, Event::TaskAssigned(_))) {
                return Box::pin(async { Err(StoreError::Closed) });
            }
            self.0.append(events, expected)
        }
        fn read(&self, from_seq: u64) -> EventStream {
            self.0.read(from_seq)
        }
        fn subscribe(&self, from_seq: u64) -> EventStream {
            self.0.subscribe(from_seq)
        }
        fn last_seq(&self) -> BoxFuture<'_, swarm_store::Result<u64>> {
            self.0.last_seq()
        }
        fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, swarm_store::Result<()>> {
            self.0.save_snapshot(snapshot)
        }
        fn latest_snapshot(
            &self,
            at_or_before: u64,
        ) -> BoxFuture<'_, swarm_store::Result<Option<Snapshot>>> {
            self.0.latest_snapshot(at_or_before)
        }
        fn flush(&self) -> BoxFuture<'_, swarm_store::Result<()>> {
            self.0.flush()
        }
        fn close(&self) -> BoxFuture<'_, swarm_store::Result<()>> {
            self.0.close()
        }
    }

    /// The defect the cluster fault tests found: a task's `task:assigned`
    /// lost while its `task:completed` was stored, so the log showed a
    /// completion without its assignment and, once the task ran again, a
    /// second completion with no redelivery before it.
    #[tokio::test]
    async fn a_shared_log_never_stores_a_completion_whose_assignment_it_lost() {
        let bus = EventBus::new();
        let store = Arc::new(LosesAssignments(MemoryStore::new()));
        let counters = Arc::new(Counters::default());
        let journal = Journal::start(&bus, store.clone(), counters, None, AppendMode::Shared);
        let (task_id, agent_id) = (TaskId::from_u64(7), AgentId::new(1));
        bus.emit(TaskAssigned {
            task_id,
            agent_id,
            attempt: 1,
            priority: Priority::Normal,
            queue_wait: std::time::Duration::ZERO,
        });
        bus.emit(AgentBusy { agent_id, task_id });
        bus.emit(TaskCompleted {
            task_id,
            agent_id,
            attempt: 1,
            duration: std::time::Duration::ZERO,
            output: Payload::empty(),
        });
        bus.emit(AgentAvailable { agent_id });
        assert!(
            journal.barrier_for(task_id).await.is_err(),
            "the loss is charged to the task"
        );
        let mut stored = Vec::new();
        let mut read = store.read(1);
        while let Some(e) = futures_util::StreamExt::next(&mut read).await {
            stored.push(e.unwrap().event.name());
        }
        assert_eq!(
            stored,
            ["agent:available"],
            "only events of no task survive the lost assignment"
        );
        // The next attempt (after the message is offered again) is journaled.
        bus.emit(TaskCompleted {
            task_id,
            agent_id,
            attempt: 2,
            duration: std::time::Duration::ZERO,
            output: Payload::empty(),
        });
        assert!(journal.barrier_for(task_id).await.is_ok());
    }

    #[test]
    fn rounds_keep_each_task_and_agent_in_emit_order() {
        let (t1, t2) = (TaskId::from_u64(1), TaskId::from_u64(2));
        let (a1, a2) = (AgentId::new(1), AgentId::new(2));
        let assigned = |task_id, agent_id| {
            Event::from(TaskAssigned {
                task_id,
                agent_id,
                attempt: 1,
                priority: Priority::Normal,
                queue_wait: std::time::Duration::ZERO,
            })
        };
        let events = vec![
            assigned(t1, a1),
            assigned(t2, a2),
            AgentBusy {
                agent_id: a1,
                task_id: t1,
            }
            .into(),
            TaskCompleted {
                task_id: t1,
                agent_id: a1,
                attempt: 1,
                duration: std::time::Duration::ZERO,
                output: Payload::empty(),
            }
            .into(),
            AgentAvailable { agent_id: a2 }.into(),
        ];
        let rounds = rounds(events);
        let names: Vec<Vec<&str>> = rounds
            .iter()
            .map(|r| r.iter().map(Event::name).collect())
            .collect();
        // t1/a1's three events in three rounds; t2/a2's two in two.
        assert_eq!(
            names,
            [
                vec!["task:assigned", "task:assigned"],
                vec!["agent:busy", "agent:available"],
                vec!["task:completed"]
            ]
        );
    }
}
