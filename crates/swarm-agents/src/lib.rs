//! The agent pool of swarm: safe attempts, health, retries with back-off,
//! dead letters and reactive scaling.
//!
//! Users' agents are AI agents, HTTP workers or shell commands: slow, flaky,
//! sometimes hanging or panicking. This crate makes each attempt safe and
//! decides what happens after a failure:
//!
//! - [`Agent`] / [`AgentFactory`]: what runs tasks, and how new agents are made.
//! - [`run_attempt`]: one attempt with panics caught and a timeout (the future
//!   is dropped when it expires).
//! - [`RetryPolicy`]: attempts (default 3), exponential back-off with full
//!   jitter, permanent errors dead-lettered at once; [`schedule_retry`] /
//!   [`retry_after`] wait with a timer that exists only while the task waits.
//! - [`HealthTracker`]: healthy → degraded → unhealthy on a failure streak, at
//!   once on a panic or timeout.
//! - [`AgentPool`]: owns the agents, runs attempts, emits the agent and failure
//!   events, replaces unhealthy agents. It owns no queue: the `swarm` facade
//!   pairs it with one, and learns of membership changes through a
//!   [`MembershipObserver`] (a direct call; the bus is an output only).
//! - [`ScalingPolicy`]: a pure decision from load to grow / activate reserve /
//!   retire / hold, with a cool-down; [`Autoscaler`] feeds it from events.
//! - [`SimAgent`]: seeded simulated agents for tests, benches and demos.
//!
//! Depend on this crate to run agents without the rest of swarm (it needs only
//! `swarm-core`); depend on `swarm` for a full scheduler. There are no feature
//! flags. Time comes from tokio's clock, so tests on a paused clock are exact.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use swarm_agents::{AgentPool, Next, PoolConfig, SimAgentFactory, SimConfig};
//! use swarm_core::{EventBus, Task};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! // Agents that always fail with a retryable error.
//! let factory = SimAgentFactory::new(SimConfig::fixed(Duration::from_millis(10)).with_error_rate(1.0));
//! let pool = AgentPool::new(factory, EventBus::new(), PoolConfig::default())?;
//!
//! let mut task = Task::builder("flaky").build().unwrap();
//! loop {
//!     let agent = pool.claim_idle().expect("an idle agent");
//!     let done = pool.execute(agent, task).await.expect("accepted");
//!     match done.next {
//!         Next::Retry { after, .. } => {
//!             tokio::time::sleep(after).await;
//!             task = done.task;
//!         }
//!         Next::DeadLettered { errors, .. } => {
//!             assert_eq!(errors.len(), 3);
//!             break;
//!         }
//!         Next::Completed(_) => unreachable!(),
//!     }
//! }
//! # Ok::<(), swarm_agents::CreateAgentError>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod agent;
mod attempt;
mod autoscaler;
mod error;
mod health;
mod pool;
mod retry;
mod scaling;
mod sim;

pub use agent::{Agent, AgentFactory, BoxAgent, BoxAgentFactory, DynAgent, TaskOutput};
pub use attempt::{AttemptFailure, AttemptOutcome, run_attempt};
pub use autoscaler::Autoscaler;
pub use error::{
    CreateAgentError, ExecuteError, ExecuteRefused, ObserverAlreadySet, RefusedReason,
};
pub use health::{HealthPolicy, HealthTracker};
pub use pool::{
    AgentInfo, AgentPool, AgentState, Executed, MembershipObserver, Next, PoolConfig, PoolCounts,
};
pub use retry::{
    DEFAULT_MAX_ATTEMPTS, RetryDecision, RetryHandle, RetryPolicy, retry_after, schedule_retry,
};
pub use scaling::{LoadObservation, ScalingConfig, ScalingDecision, ScalingPolicy};
pub use sim::{DurationDist, SimAgent, SimAgentFactory, SimConfig};
pub use swarm_core::rng::SplitMix64;
