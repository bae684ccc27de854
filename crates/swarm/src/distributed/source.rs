//! The JetStream work source: a [`Swarm`](crate::Swarm) built with
//! [`SwarmBuilder::nats`](crate::SwarmBuilder::nats) takes its work from the
//! swarm's [`TaskQueue`] instead of local queues. Everything else is the
//! swarm's own: its agent pool (retries, health, replacement, scaling), its
//! journal (to the shared NATS log), its metrics and events, its shutdown.
//!
//! A puller waits until an agent of the pool is idle, then takes the most
//! urgent message the server offers (a `biased` select over one held pull
//! request per priority: an idle node waits on the server, it never polls),
//! claims a capable agent and runs the attempt, sending progress acks while
//! it runs. When the attempt ends its events are journaled first; then the
//! message is acked (completed), nak'd with the retry back-off (failed, will
//! retry), or copied to the dead-letter stream and terminated. A task no
//! agent here can run is handed back as a new message (no attempt, no
//! delivery used). See the module docs of [`distributed`](super) for how
//! attempts and deliveries are counted.
//!
//! Handles: a task submitted here may run on any node. Its handle resolves
//! when its outcome (`task:completed`, `task:dead_lettered`, `task:cancelled`)
//! appears in the shared log, which a follower task reads.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::Publish;
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::StreamExt;
use parking_lot::Mutex;
use swarm_agents::{AgentPool, BoxAgentFactory, Executed, Next};
use swarm_core::event::{TaskAssigned, TaskCancelled, TaskDeadLettered, TaskInterrupted};
use swarm_core::{AgentId, Event, EventBus, Task, TaskId, Timestamp};
use swarm_store::EventStore;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::error::DistributedError;
use super::queue::{TaskQueue, TaskQueueConfig};
use super::settle::{Delivery, Held, Settled, Stop};
use crate::handle::TaskOutcome;
use crate::idmap::IdMap;
use crate::journal::Journal;
use crate::stats::Counters;

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

#[derive(Default)]
struct State {
    /// Handles of tasks submitted here, resolved by the log follower.
    waiters: IdMap<TaskId, oneshot::Sender<TaskOutcome>>,
    /// The messages of tasks running here (until settled), and how to stop
    /// each attempt.
    running: IdMap<TaskId, Held>,
    /// How this node settled its latest messages (see [`super::settle`]).
    settled: Settled,
    /// Tasks whose `task:dead_lettered` this node recorded but whose copy to
    /// the dead-letter stream failed: their redelivery does not record it twice.
    dead_recorded: HashSet<TaskId>,
}

pub(crate) struct JetStreamSource {
    queue: TaskQueue,
    pool: AgentPool<BoxAgentFactory>,
    bus: EventBus,
    journal: Arc<Journal>,
    counters: Arc<Counters>,
    state: Mutex<State>,
    /// Notified when an agent may have become idle (an attempt ended, an
    /// agent joined).
    freed: Notify,
    /// Notified each time an attempt ends (shutdown waits on it).
    attempt_ended: Notify,
    stopping: AtomicBool,
    /// Paused by the operator: the puller takes no message (the tasks wait on
    /// the server, for other nodes or the resume); running attempts finish.
    paused: AtomicBool,
    /// Notified (all waiters) each time `paused` changes.
    pause_changed: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl JetStreamSource {
    /// Starts pulling from `queue` (unless `paused`: then once resumed) and
    /// following `store` (the shared log) for the outcomes of tasks submitted here.
    pub(crate) async fn start(
        queue: TaskQueue,
        pool: AgentPool<BoxAgentFactory>,
        bus: EventBus,
        journal: Arc<Journal>,
        counters: Arc<Counters>,
        store: Arc<dyn EventStore>,
        paused: bool,
    ) -> Result<Arc<JetStreamSource>, DistributedError> {
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
        let from = store.last_seq().await? + 1;
        let source = Arc::new(JetStreamSource {
            queue,
            pool,
            bus,
            journal,
            counters,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            attempt_ended: Notify::new(),
            stopping: AtomicBool::new(false),
            paused: AtomicBool::new(paused),
            pause_changed: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let puller = tokio::spawn(pull(Arc::clone(&source), streams));
        let follower = tokio::spawn(follow(Arc::clone(&source), store, from));
        source.tasks.lock().extend([puller, follower]);
        Ok(source)
    }

    /// An agent joined the pool: the puller may take more work.
    pub(crate) fn agent_added(&self) {
        self.freed.notify_one();
    }

    /// Pauses or resumes pulling; resuming wakes the puller at once.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        self.pause_changed.notify_waiters();
        if !paused {
            self.freed.notify_one();
        }
    }

    /// Whether the puller is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Publishes a dead-lettered task again for a retry (fresh attempts), as
    /// a new message whose id names the dead letter (`dead_at`: when it was
    /// dead-lettered), so it differs from the submission's and every earlier
    /// retry's (the duplicate window would drop it), and two nodes retrying
    /// the same dead letter at once queue it once.
    pub(crate) async fn publish_retry(
        &self,
        task: &Task,
        dead_at: u64,
    ) -> Result<(), DistributedError> {
        self.state.lock().dead_recorded.remove(&task.id());
        let body = serde_json::to_vec(task).map_err(|e| DistributedError::Encode {
            task: task.id().to_string(),
            message: e.to_string(),
        })?;
        let publish = Publish::build()
            .payload(body.into())
            .message_id(format!("{}.r{dead_at}", task.id()));
        let what = || format!("publishing the retry of task {}", task.id());
        self.queue
            .js
            .send_publish(self.queue.config.subject(task.priority()), publish)
            .await
            .map_err(|e| DistributedError::nats(what(), e))?
            .await
            .map_err(|e| DistributedError::nats(what(), e))?;
        Ok(())
    }

    /// Waits until the source is resumed or stops.
    async fn wait_resumed(&self) {
        loop {
            let changed = self.pause_changed.notified();
            if !self.is_paused() || self.stopping.load(Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }

    /// Whether a task submitted here is still waiting for its outcome.
    pub(crate) fn is_waiting(&self, task: TaskId) -> bool {
        self.state.lock().waiters.contains_key(&task)
    }

    /// Registers the handles of tasks about to be published.
    pub(crate) fn wait_for(&self, tasks: &[Task]) -> Vec<oneshot::Receiver<TaskOutcome>> {
        let mut state = self.state.lock();
        tasks
            .iter()
            .map(|task| {
                let (sender, receiver) = oneshot::channel();
                state.waiters.insert(task.id(), sender);
                receiver
            })
            .collect()
    }

    /// Forgets the handles of tasks that were not published.
    pub(crate) fn unwait(&self, tasks: &[Task]) {
        let mut state = self.state.lock();
        for task in tasks {
            state.waiters.remove(&task.id());
        }
    }

    /// Publishes tasks to the queue, pipelined; the first failure is returned
    /// with the tasks not acknowledged by the server.
    pub(crate) async fn publish(
        &self,
        tasks: &[Task],
    ) -> Result<(), (Vec<Task>, DistributedError)> {
        let mut acks = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            match self.queue.submit_pipelined(task).await {
                Ok(ack) => acks.push((task, ack)),
                Err(error) => {
                    let mut failed: Vec<Task> = tasks[i..].to_vec();
                    for (task, ack) in acks {
                        if ack.await.is_err() {
                            failed.push(task.clone());
                        }
                    }
                    return Err((failed, error));
                }
            }
        }
        let mut failed = Vec::new();
        let mut first = None;
        for (task, ack) in acks {
            if let Err(error) = ack.await {
                first.get_or_insert_with(|| {
                    DistributedError::nats(format!("submitting task {}", task.id()), error)
                });
                failed.push(task.clone());
            }
        }
        match first {
            None => Ok(()),
            Some(error) => Err((failed, error)),
        }
    }

    /// Cancels a task running here: its attempt is dropped, `task:cancelled`
    /// recorded, its message terminated. A task waiting in the server's queue
    /// or running on another node is not found.
    pub(crate) fn cancel(&self, task: TaskId) -> bool {
        let stop = self
            .state
            .lock()
            .running
            .get_mut(&task)
            .and_then(|held| held.stop.take());
        stop.is_some_and(|stop| stop.send(Stop::Cancel).is_ok())
    }

    /// Messages held here: attempts running, or ended and not yet settled
    /// (shutdown waits for both).
    pub(crate) fn running_count(&self) -> usize {
        self.state.lock().running.len()
    }

    /// Attempts running here (not those whose message is being settled).
    pub(crate) fn attempts_running(&self) -> usize {
        self.state
            .lock()
            .running
            .values()
            .filter(|held| held.attempt_running())
            .count()
    }

    /// Stops taking work; running attempts go on.
    pub(crate) fn stop_pulling(&self) {
        self.stopping.store(true, Ordering::Release);
        self.pause_changed.notify_waiters();
        if let Some(puller) = self.tasks.lock().first() {
            puller.abort();
        }
    }

    /// Waits until no attempt runs here, or `deadline` passes.
    pub(crate) async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let ended = self.attempt_ended.notified();
            if self.running_count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.running_count() == 0;
            }
        }
    }

    /// Interrupts the attempts still running (each records `task:interrupted`
    /// and its message is nak'd at once, for another node), and resolves
    /// every waiting handle as interrupted.
    pub(crate) fn interrupt_all(&self) {
        let mut state = self.state.lock();
        for held in state.running.values_mut() {
            if let Some(stop) = held.stop.take() {
                let _ = stop.send(Stop::Shutdown);
            }
        }
        for (_, waiter) in state.waiters.drain() {
            let _ = waiter.send(TaskOutcome::Interrupted);
        }
    }

    /// Stops the puller and the follower (shutdown done, or the swarm dropped).
    pub(crate) fn abandon(&self) {
        self.stopping.store(true, Ordering::Release);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        self.interrupt_all();
    }

    fn resolve(&self, task: TaskId, outcome: TaskOutcome) {
        if let Some(waiter) = self.state.lock().waiters.remove(&task) {
            let _ = waiter.send(outcome);
        }
    }
}

/// Takes work while an agent is idle, most urgent first.
async fn pull(
    source: Arc<JetStreamSource>,
    streams: Vec<async_nats::jetstream::consumer::pull::Stream>,
) {
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
        // Pull only for an idle agent: work waits on the server, where every
        // node can take it, rather than in this node's buffers.
        loop {
            let freed = source.freed.notified();
            if source.stopping.load(Ordering::Acquire) {
                return;
            }
            // Paused: wait for the resume (it notifies `freed`), pulling nothing.
            if !source.is_paused() && source.pool.counts().idle > 0 {
                break;
            }
            freed.await;
        }
        // Most urgent first: `biased` polls the branches in order. A pause
        // while the pull waits stops the wait.
        let paused = source.pause_changed.notified();
        if source.is_paused() {
            continue;
        }
        let message = tokio::select! {
            biased;
            () = paused => continue,
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
        Counters::bump(&source.counters.wakeups);
        // Paused as the message arrived: hold it (progress acks keep it
        // from other nodes, which are paused too) until the resume.
        if source.is_paused() {
            let config = source.queue.config.clone();
            in_progress(&message, &config, source.wait_resumed()).await;
            if source.stopping.load(Ordering::Acquire) {
                // Shutdown: the server offers it again to the next puller.
                let _ = message.ack_with(AckKind::Nak(None)).await;
                return;
            }
        }
        let task: Task = match serde_json::from_slice(&message.payload) {
            Ok(t) => t,
            Err(error) => {
                tracing::error!(%error, subject = %message.subject, "not a task: terminating it");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            }
        };
        let delivery = Delivery::new(message, task.id());
        // A redelivery of a message this node holds or settled lately (see
        // `settle`): it does not run the task again.
        let (held, done) = {
            let state = source.state.lock();
            (
                state.running.contains_key(&task.id()),
                delivery
                    .seq
                    .and_then(|seq| state.settled.done(task.id(), seq)),
            )
        };
        if let Some(kind) = done.filter(|_| !held) {
            tracing::debug!(task = %task.id(), "a settled message redelivered: settled again");
            let _ = delivery.message.ack_with(kind).await;
            continue;
        }
        let run = if held {
            tokio::spawn(redelivered(Arc::clone(&source), delivery))
        } else {
            // Claimed here, before the next pull, so one idle agent takes one message.
            let agent = source.pool.claim_idle_for(task.kind());
            let (stop_tx, stop_rx) = oneshot::channel();
            if agent.is_some() {
                source.state.lock().running.insert(
                    task.id(),
                    Held {
                        seq: delivery.seq,
                        stop: Some(stop_tx),
                    },
                );
            }
            tokio::spawn(run_one(Arc::clone(&source), delivery, task, agent, stop_rx))
        };
        let mut tasks = source.tasks.lock();
        // Keep the puller and follower (the first two), drop finished runs.
        let mut i = 2;
        while i < tasks.len() {
            if tasks[i].is_finished() {
                tasks.swap_remove(i);
            } else {
                i += 1;
            }
        }
        tasks.push(run);
    }
}

/// Reads the shared log from `from` on, resolving the handles of tasks
/// submitted here when their outcome appears (whichever node ran them).
async fn follow(source: Arc<JetStreamSource>, store: Arc<dyn EventStore>, from: u64) {
    let mut events = store.subscribe(from);
    while let Some(stored) = events.next().await {
        let Ok(stored) = stored else {
            tracing::warn!(
                "following the shared log failed; handles of remote tasks may not resolve"
            );
            return;
        };
        let (task, outcome) = match stored.event {
            Event::TaskCompleted(e) => (
                e.task_id,
                TaskOutcome::Completed {
                    output: e.output,
                    agent_id: e.agent_id,
                    attempt: e.attempt,
                    duration: e.duration,
                },
            ),
            Event::TaskDeadLettered(e) => {
                (e.task_id, TaskOutcome::DeadLettered { errors: e.errors })
            }
            Event::TaskCancelled(e) => (
                e.task_id,
                TaskOutcome::Cancelled {
                    was_running: e.was_running,
                },
            ),
            _ => continue,
        };
        source.resolve(task, outcome);
    }
}

/// Runs one delivered task on `agent` (claimed by the puller).
async fn run_one(
    source: Arc<JetStreamSource>,
    delivery: Delivery,
    mut task: Task,
    agent: Option<AgentId>,
    mut stop: oneshot::Receiver<Stop>,
) {
    let config = source.queue.config.clone();
    let delivered = delivery.delivered;
    // Attempts made before this delivery, counted across nodes: those the
    // payload carries (a task handed back is published again with its
    // count) plus one per earlier delivery of this message, each of which
    // was a failed attempt nak'd for its retry or an attempt lost with its
    // node. A hand-back is a new message, so it costs neither.
    let earlier = u32::try_from(delivered - 1).unwrap_or(u32::MAX);
    task.set_attempt(task.attempt().saturating_add(earlier));
    let attempts = task.attempt();
    let used_up = attempts >= source.pool.config().retry.max_attempts_for(&task);
    // This node recorded it dead (a permanent failure, say) but the
    // dead-letter stream did not take it.
    let recorded_dead = source.state.lock().dead_recorded.contains(&task.id());
    if used_up || delivered > config.max_deliver || recorded_dead {
        if let Some(agent) = agent {
            source.pool.release(agent);
        }
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
            Counters::bump(&source.counters.dead_lettered);
            source.bus.emit(TaskDeadLettered {
                task_id: task.id(),
                attempts,
                errors: source.pool.forget_history(task.id()),
            });
        }
        dead_letter(&source, &delivery, &task, &reason).await;
        source.freed.notify_one();
        return;
    }
    let Some(agent) = agent else {
        // No agent here can run it now (none of its kind, or one was just
        // removed): another node, or this one later, will.
        hand_back(&source, &delivery, &task, true).await;
        return;
    };
    let task_id = task.id();
    let priority = task.priority();
    let attempt = task.attempt().saturating_add(1);
    // The pool reports the attempt's end; the start is the node's to report.
    source.bus.emit(TaskAssigned {
        task_id,
        agent_id: agent,
        attempt,
        priority,
        queue_wait: queue_wait(delivery.published, &task),
    });
    let outcome = in_progress(&delivery.message, &config, async {
        tokio::select! {
            r = source.pool.execute(agent, task.clone()) => Ok(r),
            // Dropping the attempt (cancel, shutdown) frees the agent.
            why = &mut stop => Err(why.unwrap_or(Stop::Shutdown)),
        }
    })
    .await;
    // The attempt ended: a cancel finds nothing to stop. The message stays
    // held until it is settled.
    drop(stop);
    source.freed.notify_one();
    source.attempt_ended.notify_waiters();
    match outcome {
        Ok(Ok(executed)) => finish(&source, &delivery, executed).await,
        Ok(Err(refused)) => {
            tracing::warn!(error = %refused, "agent refused the task: handing it back");
            source.pool.release(agent);
            hand_back(&source, &delivery, refused.task(), true).await;
        }
        Err(Stop::Cancel) => {
            source.pool.release(agent);
            Counters::bump(&source.counters.cancelled);
            source.pool.forget_history(task_id);
            source.bus.emit(TaskCancelled {
                task_id,
                was_running: true,
            });
            // Cancelled for good, once the log says so.
            let ack = match source.journal.barrier_for(task_id).await {
                Ok(()) => AckKind::Term,
                Err(_) => AckKind::Nak(Some(JOURNAL_RETRY_DELAY)),
            };
            settle(&source, &delivery, ack).await;
        }
        Err(Stop::Shutdown) => {
            source.pool.release(agent);
            source.pool.forget_history(task_id);
            source.bus.emit(TaskInterrupted {
                task_id,
                agent_id: agent,
                attempt,
                was_running: true,
            });
            // A graceful stop does not charge the attempt: the task goes back
            // at once as a new message with its attempt count unchanged (a
            // nak would count this delivery as an attempt).
            task.set_attempt(attempt - 1);
            let _ = source.journal.barrier_for(task_id).await;
            hand_back(&source, &delivery, &task, false).await;
        }
    }
}

/// Settles a delivery's message with `kind`: the node stops holding it
/// (shutdown and redeliveries waiting on it go on) and remembers how it was
/// settled, then sends the ack.
async fn settle(source: &JetStreamSource, delivery: &Delivery, kind: AckKind) {
    {
        let mut state = source.state.lock();
        if state
            .running
            .get(&delivery.task)
            .is_some_and(|held| held.seq == delivery.seq)
        {
            state.running.remove(&delivery.task);
        }
        if let Some(seq) = delivery.seq {
            state.settled.record(delivery.task, seq, kind);
        }
    }
    source.attempt_ended.notify_waiters();
    let _ = delivery.message.ack_with(kind).await;
}

/// A delivery of a task that runs here: held with progress acks until the
/// running attempt settles its message, then settled the same way when it
/// is the same message (the server now expects the ack on this delivery's
/// reply subject). Another message of the same task (a copy) is offered
/// again at once, to run as any delivery does.
async fn redelivered(source: Arc<JetStreamSource>, delivery: Delivery) {
    tracing::debug!(task = %delivery.task, "redelivered while it runs here: held until it settles");
    let config = source.queue.config.clone();
    let kind = in_progress(&delivery.message, &config, async {
        loop {
            let changed = source.attempt_ended.notified();
            {
                let state = source.state.lock();
                let settled = delivery
                    .seq
                    .and_then(|seq| state.settled.kind(delivery.task, seq));
                if settled.is_some() || !state.running.contains_key(&delivery.task) {
                    return settled;
                }
            }
            changed.await;
        }
    })
    .await;
    let _ = delivery
        .message
        .ack_with(kind.unwrap_or(AckKind::Nak(None)))
        .await;
}

/// How long the task waited between its acceptance and this start: since
/// the server stored its message (the publish a submit waits for), as a local
/// swarm counts from its durable submit; from `created_at` only if the
/// message carries no timestamp. A redelivery counts from the first store of
/// the message, a hand-back from its new message. Across machines it adds
/// the skew between the server's clock and this node's.
fn queue_wait(published: Option<std::time::SystemTime>, task: &Task) -> Duration {
    match published {
        Some(at) => std::time::SystemTime::now()
            .duration_since(at)
            .unwrap_or_default(),
        None => Timestamp::now().saturating_duration_since(task.created_at()),
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

/// Hands a task this node cannot run back to the queue without charging it
/// an attempt or a delivery: after a back-off that doubles with each
/// hand-back of the task (50 ms up to 2 s, and under half of `ack_wait`),
/// publishes it again as a new message (its attempt count in the payload,
/// its hand-backs in a header) and acks the old one. If the publish fails
/// the old message is nak'd instead, and that delivery counts as an attempt.
/// Without `back_off` it goes back at once (a graceful shutdown).
async fn hand_back(source: &JetStreamSource, delivery: &Delivery, task: &Task, back_off: bool) {
    let config = &source.queue.config;
    let handed_back: u32 = delivery
        .message
        .headers
        .as_ref()
        .and_then(|h| h.get(HANDED_BACK_HEADER))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0);
    let delay = NO_AGENT_DELAY
        .saturating_mul(1 << handed_back.min(6))
        .min(MAX_HAND_BACK_DELAY)
        .min(config.ack_wait / 2);
    if back_off {
        tokio::time::sleep(delay).await;
    }
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
            match source
                .queue
                .js
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
        settle(source, delivery, AckKind::Ack).await;
    } else {
        tracing::warn!(task = %task.id(), "a task could not be handed back: nak'd instead");
        settle(source, delivery, AckKind::Nak(Some(delay))).await;
    }
}

/// Acks, naks or dead-letters a task's message once its attempt ended, and
/// counts the outcome in the swarm's stats.
async fn finish(source: &JetStreamSource, delivery: &Delivery, executed: Executed) {
    let config = &source.queue.config;
    let delivered = delivery.delivered;
    let counters = &source.counters;
    let task = &executed.task;
    match &executed.next {
        Next::Completed(_) => Counters::bump(&counters.completed),
        Next::Retry { .. } => {
            Counters::bump(&counters.failed_attempts);
        }
        Next::DeadLettered { .. } => {
            Counters::bump(&counters.failed_attempts);
            Counters::bump(&counters.dead_lettered);
        }
    }
    match &executed.next {
        Next::DeadLettered { failure, .. } => {
            dead_letter(source, delivery, task, &failure.to_string()).await;
        }
        Next::Retry { failure, .. } if delivered >= config.max_deliver => {
            // The pool would retry, but the server delivers the message no
            // more: this was the task's last attempt, and the log says so.
            Counters::bump(&counters.dead_lettered);
            source.bus.emit(TaskDeadLettered {
                task_id: task.id(),
                attempts: executed.attempt,
                errors: source.pool.forget_history(task.id()),
            });
            let reason = format!(
                "{failure} (delivered {delivered} times, max_deliver {})",
                config.max_deliver
            );
            dead_letter(source, delivery, task, &reason).await;
        }
        next => {
            if matches!(next, Next::Retry { .. }) {
                Counters::bump(&counters.retries);
            }
            // The task's events are in the log before the ack removes the
            // task; a task whose events could not be appended is offered
            // again (it runs again: at-least-once) rather than acked with a
            // gap in the log.
            let recorded = in_progress(
                &delivery.message,
                config,
                source.journal.barrier_for(task.id()),
            )
            .await;
            let ack = match (next, recorded) {
                (Next::Retry { after, .. }, _) => AckKind::Nak(Some(*after)),
                (_, Ok(())) => AckKind::Ack,
                (_, Err(error)) => {
                    tracing::warn!(task = %task.id(), %error, "the task's events are not in the log: offering it again");
                    AckKind::Nak(Some(JOURNAL_RETRY_DELAY))
                }
            };
            settle(source, delivery, ack).await;
        }
    }
}

/// Once the task's `task:dead_lettered` is in the log, copies the task to
/// the dead-letter stream and terminates its message.
async fn dead_letter(source: &JetStreamSource, delivery: &Delivery, task: &Task, reason: &str) {
    let config = &source.queue.config;
    let recorded = in_progress(
        &delivery.message,
        config,
        source.journal.barrier_for(task.id()),
    )
    .await;
    if let Err(error) = recorded {
        tracing::warn!(task = %task.id(), %error, "task:dead_lettered is not in the log: offering the task again");
        settle(source, delivery, AckKind::Nak(Some(JOURNAL_RETRY_DELAY))).await;
        return;
    }
    let body = match serde_json::to_vec(task) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(task = %task.id(), %error, "a dead task could not be encoded: it is in the log only");
            settle(source, delivery, AckKind::Term).await;
            return;
        }
    };
    let publish = Publish::build()
        .payload(body.into())
        .message_id(task.id().to_string())
        .header("Swarm-Dead-Reason", reason);
    let js: &jetstream::Context = &source.queue.js;
    let published = match js
        .send_publish(config.dead_subject(task.priority()), publish)
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if published {
        source.state.lock().dead_recorded.remove(&task.id());
        settle(source, delivery, AckKind::Term).await;
    } else {
        // The log says dead-lettered; the copy is retried on the next
        // delivery (which does not run the task again), so the message is
        // never left hanging.
        tracing::warn!(task = %task.id(), "the dead-letter stream did not take the task: offering it again");
        source.state.lock().dead_recorded.insert(task.id());
        settle(
            source,
            delivery,
            AckKind::Nak(Some(DEAD_LETTER_RETRY_DELAY)),
        )
        .await;
    }
}

impl JetStreamSource {
    /// Counters and current load (the queue is on the server: `queued` and
    /// `waiting_retry` are 0 here).
    pub(crate) fn stats(&self) -> crate::SwarmStats {
        crate::SwarmStats::from_counters(
            &self.counters,
            self.pool.counts(),
            crate::stats::Load {
                queued: 0,
                waiting_retry: 0,
                running: self.attempts_running() as u64,
            },
        )
    }
}

/// Tells the source of the pool's membership changes, by a direct call:
/// a new agent may take work at once.
pub(crate) struct SourceMembership(std::sync::Weak<JetStreamSource>);

impl SourceMembership {
    pub(crate) fn new(source: &Arc<JetStreamSource>) -> Self {
        SourceMembership(Arc::downgrade(source))
    }
}

impl swarm_agents::MembershipObserver for SourceMembership {
    fn agent_added(&self, _id: AgentId, _reserve: bool) {
        if let Some(source) = self.0.upgrade() {
            source.agent_added();
        }
    }

    fn agent_removed(&self, _id: AgentId) {}

    fn agents_activated(&self, _ids: &[AgentId]) {
        if let Some(source) = self.0.upgrade() {
            source.agent_added();
        }
    }
}

/// Opens what a distributed node needs: the task queue, and the shared log
/// (a [`NatsStore`](swarm_store::NatsStore) in shared-writer mode) unless
/// the builder was given a store of its own (then `None`).
pub(crate) async fn connect(
    spec: &crate::builder::NatsSpec,
    store: &crate::builder::StoreSpec,
) -> Result<(Option<Arc<dyn EventStore>>, TaskQueue), crate::BuildError> {
    use swarm_store::{NatsStore, NatsStoreOptions};
    if matches!(store, crate::builder::StoreSpec::Custom { .. }) {
        let client = async_nats::connect(swarm_store::nats::server_list(&spec.url))
            .await
            .map_err(|e| DistributedError::nats(format!("connecting to {}", spec.url), e))?;
        let queue = TaskQueue::open(client, spec.queue.clone()).await?;
        return Ok((None, queue));
    }
    // The log is replicated as the queue is: one setting for the swarm.
    let options = NatsStoreOptions::new(spec.url.as_str(), &spec.queue.swarm)
        .shared_writers(true)
        .replicas(spec.queue.replicas);
    let log = NatsStore::connect(options).await?;
    match TaskQueue::open(log.client().clone(), spec.queue.clone()).await {
        Ok(queue) => Ok((Some(Arc::new(log)), queue)),
        Err(error) => {
            let _ = log.close().await;
            Err(error.into())
        }
    }
}
