//! [`Autoscaler`]: feeds a [`ScalingPolicy`] from events and applies its
//! decisions to an [`AgentPool`].

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use swarm_core::event::{CoordinatorOverload, QueueBacklog};
use swarm_core::{CatalogEvent, Subscription};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::agent::AgentFactory;
use crate::pool::AgentPool;
use crate::scaling::{ScalingDecision, ScalingPolicy};

type QueueDepth = dyn Fn() -> usize + Send + Sync;

struct Inner<F: AgentFactory> {
    pool: AgentPool<F>,
    policy: Mutex<ScalingPolicy>,
    queue_depth: Box<QueueDepth>,
    // The one pending re-check, if any: its deadline and its timer task.
    timer: Mutex<Option<(Instant, AbortHandle)>>,
}

impl<F: AgentFactory> Drop for Inner<F> {
    fn drop(&mut self) {
        if let Some((_, timer)) = self.timer.get_mut().take() {
            timer.abort();
        }
    }
}

/// Scales an [`AgentPool`] by its [`ScalingPolicy`], reacting to
/// `coordinator:overload` and `queue:backlog` and producing `agent:created`
/// and `agent:removed` (through the pool).
///
/// Between events it needs no polling: when the policy has something pending
/// (a cool-down ending while still overloaded, an idle period running out),
/// one timer is armed for that moment, and none when nothing is pending.
/// Cheap to clone.
///
/// ```
/// use swarm_agents::{AgentPool, Autoscaler, PoolConfig, ScalingConfig, ScalingPolicy, SimAgentFactory, SimConfig};
/// use swarm_core::EventBus;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = EventBus::new();
/// let pool = AgentPool::new(SimAgentFactory::new(SimConfig::instant()), bus.clone(), PoolConfig::default())?;
/// let queued = || 0; // the facade passes its queue's length here
/// let scaler = Autoscaler::new(pool, ScalingPolicy::new(ScalingConfig::default()), queued);
/// let _subscription = scaler.attach();
/// # Ok::<(), swarm_agents::CreateAgentError>(())
/// # }).unwrap();
/// ```
pub struct Autoscaler<F: AgentFactory> {
    inner: Arc<Inner<F>>,
}

impl<F: AgentFactory> Clone for Autoscaler<F> {
    fn clone(&self) -> Self {
        Autoscaler {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F: AgentFactory> fmt::Debug for Autoscaler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autoscaler")
            .field("policy", &*self.inner.policy.lock())
            .finish_non_exhaustive()
    }
}

impl<F: AgentFactory> Autoscaler<F> {
    /// Scales `pool` by `policy`; `queue_depth` tells how many tasks wait.
    pub fn new(
        pool: AgentPool<F>,
        policy: ScalingPolicy,
        queue_depth: impl Fn() -> usize + Send + Sync + 'static,
    ) -> Self {
        Autoscaler {
            inner: Arc::new(Inner {
                pool,
                policy: Mutex::new(policy),
                queue_depth: Box::new(queue_depth),
                timer: Mutex::new(None),
            }),
        }
    }

    /// The pool it scales.
    pub fn pool(&self) -> &AgentPool<F> {
        &self.inner.pool
    }

    /// Re-observes on every `coordinator:overload` and `queue:backlog` of the
    /// pool's bus, until the subscription is dropped.
    ///
    /// Inside a tokio runtime the handler only spawns the observation, so the
    /// emitter never runs a scale-up (factory calls, `agent:created` handlers)
    /// on its own stack. Outside a runtime it observes inline and no re-check
    /// timer is armed (only events trigger decisions).
    #[must_use = "dropping the subscription stops the autoscaler"]
    pub fn attach(&self) -> Subscription {
        let weak = Arc::downgrade(&self.inner);
        self.inner.pool.bus().on_kinds(
            &[CoordinatorOverload::KIND, QueueBacklog::KIND],
            move |_| {
                // Decide off the emitter's stack: the emitter may hold locks
                // that the agent:created handlers of a scale-up need.
                let weak = weak.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            if let Some(inner) = weak.upgrade() {
                                observe(&inner);
                            }
                        });
                    }
                    Err(_) => {
                        if let Some(inner) = weak.upgrade() {
                            observe(&inner);
                        }
                    }
                }
            },
        )
    }

    /// Observes the pool now, decides, applies the decision, and arms the
    /// re-check timer if the policy has something pending.
    pub fn observe(&self) -> ScalingDecision {
        observe(&self.inner)
    }
}

fn observe<F: AgentFactory>(inner: &Arc<Inner<F>>) -> ScalingDecision {
    let queued = (inner.queue_depth)();
    let (decision, recheck) = {
        let mut policy = inner.policy.lock();
        let obs = inner.pool.observe(queued, Instant::now());
        let decision = policy.decide(obs);
        (decision, policy.recheck_at())
    };
    if let Err(error) = inner.pool.apply(decision) {
        tracing::warn!(%error, ?decision, "scaling decision only partly applied");
    }
    if let Some(at) = recheck {
        arm(inner, at);
    }
    decision
}

fn arm<F: AgentFactory>(inner: &Arc<Inner<F>>, at: Instant) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut timer = inner.timer.lock();
    if let Some((due, handle)) = &*timer {
        if *due <= at && !handle.is_finished() {
            return;
        }
        handle.abort();
    }
    let weak: Weak<Inner<F>> = Arc::downgrade(inner);
    let handle = runtime.spawn(async move {
        tokio::time::sleep_until(at).await;
        if let Some(inner) = weak.upgrade() {
            inner.timer.lock().take();
            observe(&inner);
        }
    });
    *timer = Some((at, handle.abort_handle()));
}
