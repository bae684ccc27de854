//! The [`Agent`] and [`AgentFactory`] traits, and type erasure for pools of
//! mixed agents ([`BoxAgent`], [`BoxAgentFactory`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use swarm_core::{AgentId, Payload, Task};

use crate::error::{CreateAgentError, ExecuteError};

/// What an agent hands back for a finished task.
pub type TaskOutput = Payload;

/// Something that runs tasks: an AI agent, an HTTP worker, a shell command.
///
/// Implement it with an `async fn`; the future must be `Send` so the pool can
/// run attempts on any worker thread.
///
/// ```
/// use swarm_agents::{Agent, ExecuteError, TaskOutput};
/// use swarm_core::Task;
///
/// struct Echo;
///
/// impl Agent for Echo {
///     async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
///         if task.payload().is_empty() {
///             return Err(ExecuteError::permanent("nothing to echo"));
///         }
///         Ok(task.payload().clone())
///     }
/// }
/// ```
///
/// An attempt may be dropped at any `.await` (timeout, cancellation): write
/// `execute` so that dropping it mid-way is safe.
pub trait Agent: Send + Sync + 'static {
    /// Runs one attempt of `task`.
    ///
    /// Return [`ExecuteError::retryable`] for failures that may pass on
    /// another attempt and [`ExecuteError::permanent`] for those that never
    /// will (the task is dead-lettered at once). A panic is caught by the pool.
    fn execute(&self, task: &Task)
    -> impl Future<Output = Result<TaskOutput, ExecuteError>> + Send;

    /// The kinds of work this agent can do; empty (the default) means any.
    fn capabilities(&self) -> &[&str] {
        &[]
    }
}

/// The object-safe form of [`Agent`], implemented for every agent.
///
/// Used through [`BoxAgent`] to put agents of different types in one pool; it
/// costs one allocation per attempt (the boxed future).
pub trait DynAgent: Send + Sync + 'static {
    /// [`Agent::execute`], with the future boxed.
    fn execute_boxed<'a>(
        &'a self,
        task: &'a Task,
    ) -> BoxFuture<'a, Result<TaskOutput, ExecuteError>>;

    /// [`Agent::capabilities`].
    fn capabilities_dyn(&self) -> &[&str];
}

impl<A: Agent> DynAgent for A {
    fn execute_boxed<'a>(
        &'a self,
        task: &'a Task,
    ) -> BoxFuture<'a, Result<TaskOutput, ExecuteError>> {
        Box::pin(self.execute(task))
    }

    fn capabilities_dyn(&self) -> &[&str] {
        self.capabilities()
    }
}

/// Any agent, type-erased: lets one pool hold agents of different types.
pub struct BoxAgent(Box<dyn DynAgent>);

impl BoxAgent {
    /// Erases `agent`'s type.
    pub fn new(agent: impl Agent) -> Self {
        BoxAgent(Box::new(agent))
    }
}

impl fmt::Debug for BoxAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAgent").finish_non_exhaustive()
    }
}

impl Agent for BoxAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.0.execute_boxed(task).await
    }

    fn capabilities(&self) -> &[&str] {
        self.0.capabilities_dyn()
    }
}

/// Creates agents on demand: at start, on scale-up, and to replace an
/// unhealthy agent. Each agent gets a new [`AgentId`] (ids are never reused).
///
/// Any `Fn(AgentId) -> A` closure is a factory; implement the trait for a
/// factory that can fail.
///
/// ```
/// use swarm_agents::{AgentFactory, SimAgent, SimConfig};
/// use swarm_core::AgentId;
///
/// let factory = |id: AgentId| SimAgent::new(SimConfig::instant(), id.as_u64());
/// let agent = factory.create(AgentId::new(0))?;
/// # let _ = agent;
/// # Ok::<(), swarm_agents::CreateAgentError>(())
/// ```
pub trait AgentFactory: Send + Sync + 'static {
    /// The agents it makes.
    type Agent: Agent;

    /// Makes the agent that will be known as `id`.
    fn create(&self, id: AgentId) -> Result<Self::Agent, CreateAgentError>;
}

impl<F, A> AgentFactory for F
where
    F: Fn(AgentId) -> A + Send + Sync + 'static,
    A: Agent,
{
    type Agent = A;

    fn create(&self, id: AgentId) -> Result<A, CreateAgentError> {
        Ok(self(id))
    }
}

/// Any factory, type-erased, making [`BoxAgent`]s.
pub struct BoxAgentFactory(
    Arc<dyn Fn(AgentId) -> Result<BoxAgent, CreateAgentError> + Send + Sync>,
);

impl BoxAgentFactory {
    /// Erases `factory`'s type (and its agents').
    pub fn new<F: AgentFactory>(factory: F) -> Self {
        BoxAgentFactory(Arc::new(move |id| factory.create(id).map(BoxAgent::new)))
    }
}

impl fmt::Debug for BoxAgentFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAgentFactory").finish_non_exhaustive()
    }
}

impl AgentFactory for BoxAgentFactory {
    type Agent = BoxAgent;

    fn create(&self, id: AgentId) -> Result<BoxAgent, CreateAgentError> {
        (self.0)(id)
    }
}
