//! `swarm worker --nats URL`: one node of a distributed swarm (feature
//! `nats`): a `Swarm` of simulated agents built with `.nats(url)`, so it has
//! the same retries, health, journal, metrics (`--metrics ADDR`) and
//! shutdown as a local swarm.

use std::net::SocketAddr;
use std::time::Duration;

use swarm::distributed::{DistributedError, TaskQueue, TaskQueueConfig};
use swarm::{BuildError, DurationDist, EventStore, SimConfig, Swarm};
use swarm_store::{NatsStore, NatsStoreOptions};

use crate::error::CliError;
use crate::{QueueArgs, WorkerArgs};

/// How long a stopping worker lets its running tasks finish.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A distributed-queue failure: the server refused or dropped a request.
pub(crate) fn distributed_error(e: DistributedError) -> CliError {
    match e {
        DistributedError::Store(e) => CliError::Store(e),
        other => CliError::Runtime(other.to_string()),
    }
}

/// A swarm that could not start: an unreachable server is a store error (exit 2).
pub(crate) fn build_error(e: BuildError) -> CliError {
    match e {
        BuildError::Store(e) => CliError::Store(e),
        BuildError::Distributed(e) => distributed_error(e),
        other => CliError::Runtime(other.to_string()),
    }
}

/// Connects to the swarm's shared event log (a shared-writer `NatsStore`) and
/// opens its task queue on the same connection, for a process that submits
/// and reads but runs no agents. An unreachable server is a
/// `CliError::Store` (exit 2).
pub(crate) async fn connect(
    url: &str,
    args: &QueueArgs,
    prefetch: usize,
) -> Result<(NatsStore, TaskQueue), CliError> {
    let options = NatsStoreOptions::new(url, &args.swarm)
        .shared_writers(true)
        .replicas(usize::try_from(args.replicas).unwrap_or(1));
    let store = NatsStore::connect(options).await?;
    let queue = match TaskQueue::open(store.client().clone(), queue_config(args, prefetch)).await {
        Ok(q) => q,
        Err(e) => {
            let _ = store.close().await;
            return Err(distributed_error(e));
        }
    };
    Ok((store, queue))
}

/// The task queue's settings from the command line.
pub(crate) fn queue_config(args: &QueueArgs, prefetch: usize) -> TaskQueueConfig {
    let mut config = TaskQueueConfig::new(&args.swarm);
    config.ack_wait = Duration::from_millis(args.ack_wait_ms);
    config.prefetch = prefetch.max(1);
    config.replicas = usize::try_from(args.replicas).unwrap_or(1);
    config
}

/// A node of `agents` simulated agents on the swarm at `url`.
pub(crate) async fn sim_node(
    url: &str,
    queue: TaskQueueConfig,
    agents: u32,
    sim: (DurationDist, f64, u64),
    metrics: Option<SocketAddr>,
) -> Result<Swarm, CliError> {
    let (duration, fail_rate, seed) = sim;
    let config = SimConfig::fixed(Duration::ZERO)
        .with_duration(duration)
        .with_error_rate(fail_rate)
        .with_seed(seed);
    let agents = agents as usize;
    let mut builder = Swarm::builder()
        .sim_agents(agents, config)
        .max_agents(agents)
        .autoscale(false)
        .seed(seed)
        .nats(url)
        .task_queue(queue);
    if let Some(addr) = metrics {
        builder = builder.metrics(addr);
    }
    builder.build().await.map_err(build_error)
}

pub(crate) async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let prefetch = usize::try_from(args.prefetch).unwrap_or(usize::MAX);
    let node = sim_node(
        &args.nats,
        queue_config(&args.queue, prefetch),
        args.agents,
        (args.duration_ms, args.fail_rate, args.seed),
        args.metrics,
    )
    .await?;
    if let Some(addr) = node.metrics_addr() {
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    tracing::info!(
        swarm = %args.queue.swarm,
        url = %args.nats,
        agents = args.agents,
        "worker joined the swarm; SIGTERM or Ctrl-C stops it"
    );
    let board = match crate::dashboard::start_if_asked(&node, &args.dashboard).await {
        Ok(board) => board,
        Err(e) => {
            let _ = node.shutdown(Duration::from_secs(2)).await;
            return Err(e);
        }
    };
    let signal = crate::dashboard::shutdown_signal().await;
    tracing::info!(signal, "stopping: letting running tasks finish and ack");
    crate::dashboard::stop(board).await;
    node.shutdown(STOP_DEADLINE)
        .await
        .map_err(|e| CliError::Runtime(format!("stopping the worker: {e}")))?;
    tracing::info!("worker stopped");
    Ok(())
}
