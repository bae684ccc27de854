//! `swarm worker --nats URL`: one node of a distributed swarm (feature `nats`).

use std::sync::Arc;
use std::time::Duration;

use swarm::distributed::{DistributedError, Node, TaskQueue, TaskQueueConfig};
use swarm::{DurationDist, EventBus, EventStore, SimConfig};
use swarm_agents::{AgentPool, PoolConfig, SimAgentFactory};
use swarm_store::{NatsStore, NatsStoreOptions};

use crate::error::CliError;
use crate::{QueueArgs, WorkerArgs};

/// A distributed-queue failure: the server refused or dropped a request.
pub(crate) fn distributed_error(e: DistributedError) -> CliError {
    match e {
        DistributedError::Store(e) => CliError::Store(e),
        other => CliError::Runtime(other.to_string()),
    }
}

/// Connects to the swarm's shared event log (a shared-writer `NatsStore`) and
/// opens its task queue on the same connection. An unreachable server is a
/// `CliError::Store` (exit 2).
pub(crate) async fn connect(
    url: &str,
    args: &QueueArgs,
    prefetch: usize,
) -> Result<(NatsStore, TaskQueue), CliError> {
    let options = NatsStoreOptions::new(url, &args.swarm).shared_writers(true);
    let store = NatsStore::connect(options).await?;
    let mut config = TaskQueueConfig::new(&args.swarm);
    config.ack_wait = Duration::from_millis(args.ack_wait_ms);
    config.prefetch = prefetch.max(1);
    let queue = match TaskQueue::open(store.client().clone(), config).await {
        Ok(q) => q,
        Err(e) => {
            let _ = store.close().await;
            return Err(distributed_error(e));
        }
    };
    Ok((store, queue))
}

/// A pool of `agents` simulated agents.
pub(crate) fn sim_pool(
    agents: u32,
    duration: DurationDist,
    fail_rate: f64,
    seed: u64,
) -> Result<AgentPool<SimAgentFactory>, CliError> {
    let sim = SimConfig::fixed(Duration::ZERO)
        .with_duration(duration)
        .with_error_rate(fail_rate)
        .with_seed(seed);
    AgentPool::new(
        SimAgentFactory::new(sim),
        EventBus::new(),
        PoolConfig {
            initial_agents: agents as usize,
            seed,
            ..PoolConfig::default()
        },
    )
    .map_err(|e| CliError::Runtime(format!("could not create the agents: {e}")))
}

pub(crate) async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let prefetch = usize::try_from(args.prefetch).unwrap_or(usize::MAX);
    let (store, queue) = connect(&args.nats, &args.queue, prefetch).await?;
    let result = serve(&args, &store, queue).await;
    if let Err(error) = store.close().await {
        tracing::warn!(%error, "closing the event log");
    }
    result
}

async fn serve(args: &WorkerArgs, store: &NatsStore, queue: TaskQueue) -> Result<(), CliError> {
    let pool = sim_pool(args.agents, args.duration_ms, args.fail_rate, args.seed)?;
    let node = Node::start(queue, Arc::new(pool), store.clone())
        .await
        .map_err(distributed_error)?;
    tracing::info!(
        swarm = %args.queue.swarm,
        url = %args.nats,
        agents = args.agents,
        "worker joined the swarm; SIGTERM or Ctrl-C stops it"
    );
    let signal = shutdown_signal().await;
    tracing::info!(signal, "stopping: letting running tasks finish and ack");
    node.stop().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), naming it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops the worker");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
