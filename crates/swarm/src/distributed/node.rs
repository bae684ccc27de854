//! [`Node`]: one process's share of a distributed swarm: it pulls tasks from
//! the [`TaskQueue`], runs them on its [`AgentPool`] and journals its events
//! to the shared [`NatsStore`](swarm_store::NatsStore) log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::Publish;
use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use swarm_agents::{AgentFactory, AgentPool, Executed, Next};
use swarm_core::event::{TaskAssigned, TaskDeadLettered};
use swarm_core::{AgentId, Event, Subscription, Task, TaskId, Timestamp};
use swarm_store::{EventStore, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::DistributedError;
use super::queue::{TaskQueue, TaskQueueConfig};

/// How long a task that found no agent to run it waits before it is handed
/// back the first time; each further hand-back doubles it.
const NO_AGENT_DELAY: Duration = Duration::from_millis(50);

/// The longest wait before a hand-back.
const MAX_HAND_BACK_DELAY: Duration = Duration::from_secs(2);

/// The header that counts a task's hand-backs.
const HANDED_BACK_HEADER: &str = "Swarm-Handed-Back";

/// How long a task whose events could not be journaled waits before it is
/// offered again (the log is likely down for a moment).
const JOURNAL_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How long a dead task whose copy to the dead-letter stream failed waits
/// before the node tries again.
const DEAD_LETTER_RETRY_DELAY: Duration = Duration::from_secs(1);

enum JournalMessage {
    Event(Event),
    Barrier(oneshot::Sender<()>),
}

/// The task an event is about, for the events that decide a task's ack.
fn task_of(event: &Event) -> Option<TaskId> {
    match event {
        Event::TaskAssigned(e) => Some(e.task_id),
        Event::TaskCompleted(e) => Some(e.task_id),
        Event::TaskFailed(e) => Some(e.task_id),
        Event::TaskDeadLettered(e) => Some(e.task_id),
        _ => None,
    }
}

/// What an event is about: its task and its agent. Two events about the same
/// task or agent are appended one after the other, so the log keeps their
/// order (concurrent appends may land in any order).
fn keys_of(event: &Event) -> (Option<TaskId>, Option<AgentId>) {
    match event {
        Event::TaskAssigned(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::TaskCompleted(e) => (Some(e.task_id), Some(e.agent_id)),
        Event::TaskFailed(e) => (Some(e.task_id), e.agent_id),
        Event::TaskDeadLettered(e) => (Some(e.task_id), None),
        Event::TaskCancelled(e) => (Some(e.task_id), None),
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

/// Tasks one of whose events could not be appended, with the first error.
type LostAppends = Arc<parking_lot::Mutex<HashMap<TaskId, Arc<StoreError>>>>;

/// Forwards every event of a bus to the store, one event per append (an
/// append of one event is atomic even when other nodes write to the same
/// log), pipelined by the store's writer; the events of one task or one
/// agent are appended in emit order (see [`rounds`]).
struct NodeJournal {
    sender: mpsc::UnboundedSender<JournalMessage>,
    lost: LostAppends,
    /// Tasks whose `task:dead_lettered` this node recorded but whose copy to
    /// the dead-letter stream failed: their redelivery does not record it
    /// twice.
    dead_recorded: parking_lot::Mutex<HashSet<TaskId>>,
    _subscription: Subscription,
}

impl NodeJournal {
    fn start<S: EventStore + 'static>(
        bus: &swarm_core::EventBus,
        store: S,
    ) -> (NodeJournal, JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<JournalMessage>();
        let forward = sender.clone();
        let subscription = bus.on_any(move |event| {
            let _ = forward.send(JournalMessage::Event(event.clone()));
        });
        let lost = LostAppends::default();
        let lost_by_writer = Arc::clone(&lost);
        let writer = tokio::spawn(async move {
            let mut inbox = Vec::with_capacity(1024);
            while receiver.recv_many(&mut inbox, 1024).await > 0 {
                let mut events = Vec::new();
                let mut barriers = Vec::new();
                for m in inbox.drain(..) {
                    match m {
                        JournalMessage::Event(e) => events.push(e),
                        JournalMessage::Barrier(b) => barriers.push(b),
                    }
                }
                for round in rounds(events) {
                    let appends = round.into_iter().map(|e| {
                        let task = task_of(&e);
                        let append = store.append(vec![e], None);
                        async move { (task, append.await) }
                    });
                    for (task, result) in futures::future::join_all(appends).await {
                        if let Err(error) = result {
                            tracing::error!(%error, "a node event could not be journaled");
                            if let Some(task) = task {
                                lost_by_writer
                                    .lock()
                                    .entry(task)
                                    .or_insert_with(|| Arc::new(error));
                            }
                        }
                    }
                }
                for b in barriers {
                    let _ = b.send(());
                }
            }
        });
        (
            NodeJournal {
                sender,
                lost,
                dead_recorded: parking_lot::Mutex::default(),
                _subscription: subscription,
            },
            writer,
        )
    }

    /// Resolves once every event emitted before the call was appended (or
    /// its append failed): `Err` with the first append error if an event of
    /// `task` could not be appended since the last barrier for it, or
    /// [`StoreError::Closed`] if the journal stopped.
    async fn barrier(&self, task: TaskId) -> Result<(), Arc<StoreError>> {
        let (tx, rx) = oneshot::channel();
        if self.sender.send(JournalMessage::Barrier(tx)).is_err() || rx.await.is_err() {
            return Err(Arc::new(StoreError::Closed));
        }
        match self.lost.lock().remove(&task) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A running node; dropping the handle leaves it running, [`stop`](Self::stop)
/// or [`abort`](Self::abort) end it.
#[derive(Debug)]
pub struct NodeHandle {
    puller: JoinHandle<()>,
    journal: JoinHandle<()>,
    running: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
}

impl NodeHandle {
    /// Stops pulling, lets the running tasks finish (and ack), then returns.
    pub async fn stop(self) {
        self.puller.abort();
        let _ = self.puller.await;
        let running: Vec<JoinHandle<()>> = self.running.lock().drain(..).collect();
        for h in running {
            let _ = h.await;
        }
        self.journal.abort();
    }

    /// Ends the node at once, as if its process died: running tasks are
    /// dropped without an ack, and the server redelivers them to other nodes
    /// once `ack_wait` passes.
    pub fn abort(self) {
        self.puller.abort();
        for h in self.running.lock().drain(..) {
            h.abort();
        }
        self.journal.abort();
    }
}

/// One node of a distributed swarm.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node: pulls tasks from `queue` (most urgent subject first)
    /// whenever one of `pool`'s agents is free, runs them, acks when the
    /// attempt ends, and journals the pool's events to `store` (the swarm's
    /// shared [`NatsStore`](swarm_store::NatsStore) log; any [`EventStore`]
    /// is accepted, so a test can wrap it).
    ///
    /// An idle node waits on held pull requests (one per priority, renewed
    /// every `pull_expires`); it never polls.
    pub async fn start<F: AgentFactory, S: EventStore + 'static>(
        queue: TaskQueue,
        pool: Arc<AgentPool<F>>,
        store: S,
    ) -> Result<NodeHandle, DistributedError> {
        let agents = pool.counts().active().max(1);
        let config = queue.config.clone();
        let mut streams = Vec::new();
        for (_, consumer) in &queue.consumers {
            let messages = consumer
                .stream()
                .max_messages_per_batch(config.prefetch.max(1))
                .expires(config.pull_expires)
                .heartbeat(config.pull_expires / 4)
                .messages()
                .await
                .map_err(|e| DistributedError::nats("pulling tasks", e))?;
            streams.push(messages);
        }
        let (journal, journal_task) = NodeJournal::start(pool.bus(), store);
        let journal = Arc::new(journal);
        let permits = Arc::new(Semaphore::new(agents));
        let running: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let running_for_puller = Arc::clone(&running);
        let js = queue.js.clone();
        let puller = tokio::spawn(async move {
            let mut streams = streams.into_iter();
            let (Some(mut critical), Some(mut high), Some(mut normal), Some(mut low)) = (
                streams.next(),
                streams.next(),
                streams.next(),
                streams.next(),
            ) else {
                return;
            };
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                // Most urgent first: `biased` polls the branches in order.
                let message = tokio::select! {
                    biased;
                    Some(m) = critical.next() => m,
                    Some(m) = high.next() => m,
                    Some(m) = normal.next() => m,
                    Some(m) = low.next() => m,
                    else => return,
                };
                let message = match message {
                    Ok(m) => m,
                    Err(error) => {
                        tracing::warn!(%error, "pulling tasks");
                        continue;
                    }
                };
                let pool = Arc::clone(&pool);
                let journal = Arc::clone(&journal);
                let config = config.clone();
                let js = js.clone();
                let handle = tokio::spawn(async move {
                    run_one(message, permit, pool, journal, config, js).await;
                });
                let mut running = running_for_puller.lock();
                running.retain(|h| !h.is_finished());
                running.push(handle);
            }
        });
        Ok(NodeHandle {
            puller,
            journal: journal_task,
            running,
        })
    }
}

/// Runs one delivered task; `permit` (a free agent's) is given back as soon
/// as the agent is free again.
async fn run_one<F: AgentFactory>(
    message: async_nats::jetstream::Message,
    permit: OwnedSemaphorePermit,
    pool: Arc<AgentPool<F>>,
    journal: Arc<NodeJournal>,
    config: TaskQueueConfig,
    js: async_nats::jetstream::Context,
) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1).max(1);
    let mut task: Task = match serde_json::from_slice(&message.payload) {
        Ok(t) => t,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "not a task: terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    // Attempts made before this delivery, counted across nodes: those the
    // payload carries (a task handed back is published again with its
    // count) plus one per earlier delivery of this message, each of which
    // was a failed attempt nak'd for its retry or an attempt lost with its
    // node. A hand-back is a new message, so it costs neither.
    let earlier = u32::try_from(delivered - 1).unwrap_or(u32::MAX);
    task.set_attempt(task.attempt().saturating_add(earlier));
    let attempts = task.attempt();
    let used_up = attempts >= pool.config().retry.max_attempts_for(&task);
    // This node recorded it dead (a permanent failure, say) but the
    // dead-letter stream did not take it.
    let recorded_dead = journal.dead_recorded.lock().contains(&task.id());
    if used_up || delivered > config.max_deliver || recorded_dead {
        // A node died running the task's last attempt, or an earlier
        // delivery's dead-lettering could not finish: finish it now,
        // without running the task again.
        let reason = if recorded_dead {
            "dead-lettered by an earlier delivery".to_string()
        } else if used_up {
            format!("{attempts} attempts used up")
        } else {
            format!(
                "delivered {delivered} times, max_deliver {}",
                config.max_deliver
            )
        };
        if !recorded_dead {
            pool.bus().emit(TaskDeadLettered {
                task_id: task.id(),
                attempts,
                errors: pool.forget_history(task.id()),
            });
        }
        dead_letter(&message, &task, &reason, &journal, &config, &js).await;
        return;
    }
    let Some(agent) = pool.claim_idle_for(task.kind()) else {
        // No agent here can run it now (none of its kind, or one was just
        // removed): another node, or this one later, will.
        drop(permit);
        hand_back(&message, &task, &config, &js).await;
        return;
    };
    let priority = task.priority();
    // The pool reports the attempt's end; the start is the node's to report.
    pool.bus().emit(TaskAssigned {
        task_id: task.id(),
        agent_id: agent,
        attempt: task.attempt().saturating_add(1),
        priority,
        queue_wait: Timestamp::now().saturating_duration_since(task.created_at()),
    });
    let executed = in_progress(&message, &config, pool.execute(agent, task.clone())).await;
    drop(permit);
    match executed {
        Ok(executed) => finish(&message, delivered, executed, &pool, &journal, &config, &js).await,
        Err(refused) => {
            tracing::warn!(error = %refused, "agent refused the task: handing it back");
            pool.release(agent);
            hand_back(&message, refused.task(), &config, &js).await;
        }
    }
}

/// Hands a task this node cannot run back to the queue without charging it
/// an attempt or a delivery: after a back-off that doubles with each
/// hand-back of the task (50 ms up to 2 s, and under half of `ack_wait`),
/// publishes it again as a new message (its attempt count in the payload,
/// its hand-backs in a header) and acks the old one. If the publish fails
/// the old message is nak'd instead, and that delivery counts as an attempt.
async fn hand_back(
    message: &Message,
    task: &Task,
    config: &TaskQueueConfig,
    js: &jetstream::Context,
) {
    let handed_back: u32 = message
        .headers
        .as_ref()
        .and_then(|h| h.get(HANDED_BACK_HEADER))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0);
    let delay = NO_AGENT_DELAY
        .saturating_mul(1 << handed_back.min(6))
        .min(MAX_HAND_BACK_DELAY)
        .min(config.ack_wait / 2);
    tokio::time::sleep(delay).await;
    let handed_back = handed_back.saturating_add(1);
    let republished = match serde_json::to_vec(task) {
        Ok(body) => {
            // Unique per hand-back, yet the same if this node dies between
            // the publish and the ack and the old message is handed back
            // again: the duplicate window drops the second copy.
            let id = format!("{}.a{}.h{handed_back}", task.id(), task.attempt());
            let publish = Publish::build()
                .payload(body.into())
                .message_id(id)
                .header(HANDED_BACK_HEADER, handed_back.to_string().as_str());
            match js
                .send_publish(config.subject(task.priority()), publish)
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    if republished {
        let _ = message.ack().await;
    } else {
        tracing::warn!(task = %task.id(), "a task could not be handed back: nak'd instead");
        let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
    }
}

/// Runs `work` (an attempt, or waiting for the journal) while sending
/// progress acks, so the server does not redeliver the task meanwhile: a
/// task whose events are slow to reach the log must not run again elsewhere
/// while this node is about to ack it.
async fn in_progress<T>(
    message: &Message,
    config: &TaskQueueConfig,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut progress = tokio::time::interval(config.progress_interval());
    progress.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Acks, naks or dead-letters a task's message once its attempt ended.
async fn finish<F: AgentFactory>(
    message: &Message,
    delivered: i64,
    executed: Executed,
    pool: &AgentPool<F>,
    journal: &NodeJournal,
    config: &TaskQueueConfig,
    js: &jetstream::Context,
) {
    let task = &executed.task;
    match &executed.next {
        Next::DeadLettered { failure, .. } => {
            dead_letter(message, task, &failure.to_string(), journal, config, js).await;
        }
        Next::Retry { failure, .. } if delivered >= config.max_deliver => {
            // The pool would retry, but the server delivers the message no
            // more: this was the task's last attempt, and the log says so.
            pool.bus().emit(TaskDeadLettered {
                task_id: task.id(),
                attempts: executed.attempt,
                errors: pool.forget_history(task.id()),
            });
            let reason = format!(
                "{failure} (delivered {delivered} times, max_deliver {})",
                config.max_deliver
            );
            dead_letter(message, task, &reason, journal, config, js).await;
        }
        next => {
            // The task's events are in the log before the ack removes the
            // task; a task whose events could not be appended is offered
            // again (it runs again: at-least-once) rather than acked with a
            // gap in the log.
            let recorded = in_progress(message, config, journal.barrier(task.id())).await;
            let ack = match (next, recorded) {
                (Next::Retry { after, .. }, _) => AckKind::Nak(Some(*after)),
                (_, Ok(())) => AckKind::Ack,
                (_, Err(error)) => {
                    tracing::warn!(task = %task.id(), %error, "the task's events are not in the log: offering it again");
                    AckKind::Nak(Some(JOURNAL_RETRY_DELAY))
                }
            };
            let _ = message.ack_with(ack).await;
        }
    }
}

/// Once the task's `task:dead_lettered` is in the log, copies the task to
/// the dead-letter stream and terminates its message.
async fn dead_letter(
    message: &Message,
    task: &Task,
    reason: &str,
    journal: &NodeJournal,
    config: &TaskQueueConfig,
    js: &jetstream::Context,
) {
    if let Err(error) = in_progress(message, config, journal.barrier(task.id())).await {
        tracing::warn!(task = %task.id(), %error, "task:dead_lettered is not in the log: offering the task again");
        let _ = message
            .ack_with(AckKind::Nak(Some(JOURNAL_RETRY_DELAY)))
            .await;
        return;
    }
    let body = match serde_json::to_vec(task) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(task = %task.id(), %error, "a dead task could not be encoded: it is in the log only");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let publish = Publish::build()
        .payload(body.into())
        .message_id(task.id().to_string())
        .header("Swarm-Dead-Reason", reason);
    let published = match js
        .send_publish(config.dead_subject(task.priority()), publish)
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if published {
        journal.dead_recorded.lock().remove(&task.id());
        let _ = message.ack_with(AckKind::Term).await;
    } else {
        // The log says dead-lettered; the copy is retried on the next
        // delivery (which does not run the task again), so the message is
        // never left hanging.
        tracing::warn!(task = %task.id(), "the dead-letter stream did not take the task: offering it again");
        journal.dead_recorded.lock().insert(task.id());
        let _ = message
            .ack_with(AckKind::Nak(Some(DEAD_LETTER_RETRY_DELAY)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::event::{AgentAvailable, AgentBusy, TaskCompleted};
    use swarm_core::{Payload, Priority};

    fn assigned(task: u64, agent: u64) -> Event {
        TaskAssigned {
            task_id: TaskId::from_u64(task),
            agent_id: AgentId::new(agent),
            attempt: 1,
            priority: Priority::Normal,
            queue_wait: Duration::ZERO,
        }
        .into()
    }

    fn completed(task: u64, agent: u64) -> Event {
        TaskCompleted {
            task_id: TaskId::from_u64(task),
            agent_id: AgentId::new(agent),
            attempt: 1,
            duration: Duration::ZERO,
            output: Payload::empty(),
        }
        .into()
    }

    /// The events of one task or agent land in successive rounds, in emit
    /// order; unrelated events share a round.
    #[test]
    fn rounds_keep_each_task_and_agent_in_order() {
        let events = vec![
            assigned(1, 1),
            assigned(2, 2),
            AgentBusy {
                agent_id: AgentId::new(1),
                task_id: TaskId::from_u64(1),
            }
            .into(),
            completed(2, 2),
            completed(1, 1),
            AgentAvailable {
                agent_id: AgentId::new(1),
            }
            .into(),
        ];
        let names: Vec<Vec<String>> = rounds(events)
            .iter()
            .map(|r| r.iter().map(|e| e.name().to_string()).collect())
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["task:assigned", "task:assigned"],
                vec!["agent:busy", "task:completed"],
                vec!["task:completed"],
                vec!["agent:available"],
            ]
        );
    }
}
