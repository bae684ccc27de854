//! [`TaskQueue`]: the JetStream work-queue stream that carries tasks between nodes.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self, stream};
use swarm_core::{Priority, Task};
use swarm_store::nats::open_stream;

use super::error::DistributedError;

/// How the queue is laid out and how deliveries behave.
#[derive(Clone, Debug)]
pub struct TaskQueueConfig {
    /// The swarm name (ASCII letters, digits, `-`, `_`), shared with its `NatsStore`.
    pub swarm: String,
    /// How long the server waits for an ack (or a progress ack) before it
    /// redelivers a task to another node (30 s).
    pub ack_wait: Duration,
    /// How often a task is delivered at most (5). The nodes enforce it, not
    /// the server (the consumers deliver without limit, so a node can offer
    /// a task again, for instance when the dead-letter stream did not take
    /// it): when a task's `max_deliver`-th delivery fails it is
    /// dead-lettered, and a task delivered more often (its nodes died while
    /// running it) is dead-lettered without running again.
    pub max_deliver: i64,
    /// How many tasks a node holds locally per priority beyond those running
    /// (its pull batch). A critical task never waits behind buffered lower
    /// ones: the node always takes the most urgent buffered task first.
    pub prefetch: usize,
    /// How often a running task's message gets a progress ack (`ack_wait / 3`).
    pub progress_every: Option<Duration>,
    /// How long a held pull request waits on the server before it is renewed (30 s).
    pub pull_expires: Duration,
    /// Replicas of the task and dead-letter streams, and of the log and the
    /// snapshot bucket the builder opens for a node (1; 3 in production).
    pub replicas: usize,
}

impl TaskQueueConfig {
    /// Defaults for the swarm `swarm`.
    pub fn new(swarm: impl Into<String>) -> Self {
        TaskQueueConfig {
            swarm: swarm.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            prefetch: 16,
            progress_every: None,
            pull_expires: Duration::from_secs(30),
            replicas: 1,
        }
    }

    /// The work-queue stream: `SWARM_<swarm>_TASKS`.
    pub fn stream_name(&self) -> String {
        format!("SWARM_{}_TASKS", self.swarm)
    }

    /// The dead-letter stream: `SWARM_<swarm>_DEAD`.
    pub fn dead_stream_name(&self) -> String {
        format!("SWARM_{}_DEAD", self.swarm)
    }

    /// The subject of tasks of `priority`: `swarm.<swarm>.tasks.<priority>`.
    pub fn subject(&self, priority: Priority) -> String {
        format!("swarm.{}.tasks.{}", self.swarm, priority.as_str())
    }

    /// The subject dead tasks of `priority` go to: `swarm.<swarm>.dead.<priority>`.
    pub fn dead_subject(&self, priority: Priority) -> String {
        format!("swarm.{}.dead.{}", self.swarm, priority.as_str())
    }

    /// The durable consumer of `priority`, shared by every node.
    pub fn consumer_name(&self, priority: Priority) -> String {
        format!("tasks-{}", priority.as_str())
    }

    pub(crate) fn progress_interval(&self) -> Duration {
        self.progress_every
            .unwrap_or(self.ack_wait / 3)
            .max(Duration::from_millis(10))
    }
}

/// The task queue of a distributed swarm: a JetStream work-queue stream with
/// one subject per priority and one durable pull consumer per priority that
/// every node pulls from. A task is removed when a node acks it.
#[derive(Clone, Debug)]
pub struct TaskQueue {
    pub(crate) js: jetstream::Context,
    pub(crate) config: TaskQueueConfig,
    pub(crate) consumers: Vec<(
        Priority,
        async_nats::jetstream::consumer::Consumer<pull::Config>,
    )>,
}

impl TaskQueue {
    /// Opens (creating if needed) the task stream, the dead-letter stream and
    /// the four consumers.
    pub async fn open(
        client: async_nats::Client,
        config: TaskQueueConfig,
    ) -> Result<TaskQueue, DistributedError> {
        let js = jetstream::new(client);
        // Nodes starting at the same moment on a new swarm all create the
        // streams and consumers: `open_stream` and `open_consumer` take the
        // loser's refusal as the race it is and bind to the winner's.
        let stream = open_stream(
            &js,
            stream::Config {
                name: config.stream_name(),
                subjects: vec![format!("swarm.{}.tasks.*", config.swarm)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| DistributedError::nats("opening the task stream", e))?;
        open_stream(
            &js,
            stream::Config {
                name: config.dead_stream_name(),
                subjects: vec![format!("swarm.{}.dead.*", config.swarm)],
                storage: stream::StorageType::File,
                num_replicas: config.replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| DistributedError::nats("opening the dead-letter stream", e))?;
        let mut consumers = Vec::new();
        for priority in Priority::ALL {
            let name = config.consumer_name(priority);
            let consumer = open_consumer(
                &stream,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: config.subject(priority),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    // Unlimited: the nodes enforce `config.max_deliver`.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DistributedError::nats(format!("opening consumer {name}"), e))?;
            consumers.push((priority, consumer));
        }
        Ok(TaskQueue {
            js,
            config,
            consumers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TaskQueueConfig {
        &self.config
    }

    /// Puts `task` on the queue, on the subject of its priority; resolves once
    /// the server stored it. The message id is the task id, so submitting the
    /// same task twice inside the duplicate window queues it once.
    pub async fn submit(&self, task: &Task) -> Result<(), DistributedError> {
        let ack = self.submit_pipelined(task).await?;
        ack.await
            .map_err(|e| DistributedError::nats(format!("submitting task {}", task.id()), e))?;
        Ok(())
    }

    /// Like [`submit`](Self::submit) but returns once the publish is sent;
    /// await the returned future for the server's acknowledgement.
    pub async fn submit_pipelined(
        &self,
        task: &Task,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, DistributedError> {
        let body = serde_json::to_vec(task).map_err(|e| DistributedError::Encode {
            task: task.id().to_string(),
            message: e.to_string(),
        })?;
        self.js
            .send_publish(
                self.config.subject(task.priority()),
                Publish::build()
                    .payload(body.into())
                    .message_id(task.id().to_string()),
            )
            .await
            .map_err(|e| DistributedError::nats(format!("submitting task {}", task.id()), e))
    }

    /// Deletes the task and dead-letter streams (and so the consumers):
    /// for tests and tearing a swarm down.
    pub async fn destroy(&self) -> Result<(), DistributedError> {
        for name in [self.config.stream_name(), self.config.dead_stream_name()] {
            self.js
                .delete_stream(&name)
                .await
                .map_err(|e| DistributedError::nats(format!("deleting stream {name}"), e))?;
        }
        Ok(())
    }

    /// How many tasks wait on the queue (not yet acked), all priorities.
    pub async fn pending(&self) -> Result<u64, DistributedError> {
        let mut stream = self
            .js
            .get_stream(self.config.stream_name())
            .await
            .map_err(|e| DistributedError::nats("reading the task stream", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| DistributedError::nats("reading the task stream", e))?;
        Ok(info.state.messages)
    }

    /// How many tasks were dead-lettered.
    pub async fn dead_lettered(&self) -> Result<u64, DistributedError> {
        let mut stream = self
            .js
            .get_stream(self.config.dead_stream_name())
            .await
            .map_err(|e| DistributedError::nats("reading the dead-letter stream", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| DistributedError::nats("reading the dead-letter stream", e))?;
        Ok(info.state.messages)
    }
}

/// Opens the durable consumer `config.durable_name`, creating it if needed;
/// like [`open_stream`], a create refused because another node created the
/// consumer first is followed by another look.
async fn open_consumer(
    stream: &stream::Stream,
    config: pull::Config,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, ConsumerError> {
    let name = config.durable_name.clone().unwrap_or_default();
    let mut attempt = 0u64;
    loop {
        match stream.get_or_create_consumer(&name, config.clone()).await {
            Ok(consumer) => return Ok(consumer),
            Err(error)
                if attempt < 5
                    && matches!(error.kind(), ConsumerErrorKind::JetStream(e)
                        if matches!(e.error_code(), ErrorCode::CONSUMER_NAME_EXIST | ErrorCode::CONSUMER_ALREADY_EXISTS)) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
