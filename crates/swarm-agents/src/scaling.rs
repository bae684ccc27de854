//! [`ScalingPolicy`]: a pure function from observed load to a scaling
//! decision, with a cool-down between decisions so the pool does not flap.
//!
//! No runtime and no clock inside: the caller passes the time in each
//! [`LoadObservation`], so the policy is tested by feeding it numbers.
//! [`Autoscaler`](crate::Autoscaler) feeds it from events and applies its
//! decisions to an [`AgentPool`](crate::AgentPool).

use std::time::Duration;

use tokio::time::Instant;

/// The thresholds and bounds of a [`ScalingPolicy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingConfig {
    /// Never retire below this many active agents (default 1).
    pub min_agents: usize,
    /// Never grow above this many active agents (default 50).
    pub max_agents: usize,
    /// Load (busy / active) above which the pool grows (default 0.8).
    pub overload_threshold: f64,
    /// Growth factor on overload, and shrink divisor on idle (default 1.5).
    pub growth_factor: f64,
    /// Queued tasks above which reserve agents are activated (default 50).
    pub backlog_threshold: usize,
    /// Load at or below which (with nothing queued) the pool counts as idle (default 0.25).
    pub idle_load: f64,
    /// How long the pool must stay idle before agents retire (default 30 s).
    pub idle_after: Duration,
    /// The least time between two decisions (default 10 s).
    pub cooldown: Duration,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            min_agents: 1,
            max_agents: 50,
            overload_threshold: 0.8,
            growth_factor: 1.5,
            backlog_threshold: 50,
            idle_load: 0.25,
            idle_after: Duration::from_secs(30),
            cooldown: Duration::from_secs(10),
        }
    }
}

/// What the policy sees at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadObservation {
    /// Agents running a task.
    pub busy: usize,
    /// Active agents (idle + busy; not reserve, not unhealthy).
    pub total: usize,
    /// Tasks waiting in queues.
    pub queued: usize,
    /// Reserve agents that could be activated.
    pub reserve_available: usize,
    /// When the observation was made.
    pub now: Instant,
}

impl LoadObservation {
    /// `busy / total`, 0 for an empty pool.
    pub fn load(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.busy as f64 / self.total as f64
        }
    }
}

/// What to do with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingDecision {
    /// Create this many agents through the factory.
    Grow(usize),
    /// Turn this many reserve agents into active ones.
    ActivateReserve(usize),
    /// Remove this many idle agents.
    Retire(usize),
    /// Change nothing.
    Hold,
}

impl ScalingDecision {
    /// +1 for growth, -1 for retirement, 0 for hold.
    pub fn direction(&self) -> i8 {
        match self {
            ScalingDecision::Grow(_) | ScalingDecision::ActivateReserve(_) => 1,
            ScalingDecision::Retire(_) => -1,
            ScalingDecision::Hold => 0,
        }
    }
}

/// Decides how the pool should grow or shrink from what it observes.
///
/// Rules, checked in order; after any decision other than `Hold`, the policy
/// holds for [`ScalingConfig::cooldown`]:
/// 1. backlog (`queued > backlog_threshold`) with reserve agents: activate
///    reserve agents, up to `max_agents`;
/// 2. overload (`busy / total > overload_threshold`, or fewer than
///    `min_agents`, or no agent while tasks wait): grow ×`growth_factor`
///    (at least +1), up to `max_agents`;
/// 3. idle (`load <= idle_load` and nothing queued) for `idle_after`: retire
///    to `max(min_agents, busy, ⌊total / growth_factor⌋)`.
///
/// ```
/// use std::time::Duration;
/// use swarm_agents::{LoadObservation, ScalingConfig, ScalingDecision, ScalingPolicy};
/// use tokio::time::Instant;
///
/// let mut policy = ScalingPolicy::new(ScalingConfig::default());
/// let now = Instant::now();
/// let busy = LoadObservation { busy: 10, total: 10, queued: 3, reserve_available: 0, now };
/// assert_eq!(policy.decide(busy), ScalingDecision::Grow(5));
/// // Within the cool-down nothing changes, however loaded the pool is.
/// let later = LoadObservation { busy: 15, total: 15, now: now + Duration::from_secs(1), ..busy };
/// assert_eq!(policy.decide(later), ScalingDecision::Hold);
/// ```
#[derive(Debug, Clone)]
pub struct ScalingPolicy {
    config: ScalingConfig,
    last_decision: Option<Instant>,
    idle_since: Option<Instant>,
    recheck_at: Option<Instant>,
}

impl ScalingPolicy {
    /// A policy with `config` (`min_agents` is lowered to `max_agents` if above it).
    pub fn new(mut config: ScalingConfig) -> Self {
        config.min_agents = config.min_agents.min(config.max_agents);
        ScalingPolicy {
            config,
            last_decision: None,
            idle_since: None,
            recheck_at: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ScalingConfig {
        &self.config
    }

    /// When the policy may decide differently without any new event: the end
    /// of a cool-down or of an idle period. `None` when nothing is pending,
    /// so an idle system needs no timer.
    pub fn recheck_at(&self) -> Option<Instant> {
        self.recheck_at
    }

    /// Decides from one observation. Observations must come in time order.
    pub fn decide(&mut self, obs: LoadObservation) -> ScalingDecision {
        let c = self.config;
        let idle = obs.queued == 0 && obs.total > c.min_agents && obs.load() <= c.idle_load;
        if idle {
            self.idle_since.get_or_insert(obs.now);
        } else {
            self.idle_since = None;
        }

        let wanted = self.wanted(&obs);
        let cooldown_end = self.last_decision.map(|t| t + c.cooldown);
        if let Some(end) = cooldown_end.filter(|end| obs.now < *end) {
            self.recheck_at = match wanted {
                ScalingDecision::Hold if !idle => None,
                ScalingDecision::Hold => self.idle_since.map(|s| (s + c.idle_after).max(end)),
                _ => Some(end),
            };
            return ScalingDecision::Hold;
        }
        if wanted == ScalingDecision::Hold {
            self.recheck_at = self.idle_since.map(|s| s + c.idle_after);
            return ScalingDecision::Hold;
        }
        self.last_decision = Some(obs.now);
        self.idle_since = None;
        self.recheck_at = Some(obs.now + c.cooldown);
        wanted
    }

    fn wanted(&self, obs: &LoadObservation) -> ScalingDecision {
        let c = &self.config;
        let room = c.max_agents.saturating_sub(obs.total);
        if obs.queued > c.backlog_threshold && obs.reserve_available > 0 && room > 0 {
            return ScalingDecision::ActivateReserve(obs.reserve_available.min(room));
        }
        let overloaded = obs.total < c.min_agents
            || (obs.total == 0 && obs.queued > 0)
            || (obs.total > 0 && obs.load() > c.overload_threshold);
        if overloaded && room > 0 {
            let grown = (obs.total as f64 * c.growth_factor).ceil() as usize;
            let target = grown.max(obs.total + 1).max(c.min_agents).min(c.max_agents);
            return ScalingDecision::Grow(target - obs.total);
        }
        if let Some(since) = self.idle_since {
            if obs.now.saturating_duration_since(since) >= c.idle_after {
                let shrunk = (obs.total as f64 / c.growth_factor).floor() as usize;
                let target = shrunk.max(obs.busy).max(c.min_agents);
                if target < obs.total {
                    return ScalingDecision::Retire(obs.total - target);
                }
            }
        }
        ScalingDecision::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(
        busy: usize,
        total: usize,
        queued: usize,
        reserve: usize,
        now: Instant,
    ) -> LoadObservation {
        LoadObservation {
            busy,
            total,
            queued,
            reserve_available: reserve,
            now,
        }
    }

    #[test]
    fn grows_by_half_up_to_max() {
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        let t = Instant::now();
        assert_eq!(p.decide(obs(9, 10, 0, 0, t)), ScalingDecision::Grow(5));
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        assert_eq!(p.decide(obs(45, 45, 0, 0, t)), ScalingDecision::Grow(5));
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        assert_eq!(p.decide(obs(50, 50, 900, 0, t)), ScalingDecision::Hold);
        assert_eq!(p.recheck_at(), None);
    }

    #[test]
    fn load_at_the_threshold_is_not_overload() {
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        assert_eq!(
            p.decide(obs(8, 10, 0, 0, Instant::now())),
            ScalingDecision::Hold
        );
    }

    #[test]
    fn backlog_activates_reserve_before_growing() {
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        let t = Instant::now();
        assert_eq!(
            p.decide(obs(10, 10, 51, 4, t)),
            ScalingDecision::ActivateReserve(4)
        );
        let mut p = ScalingPolicy::new(ScalingConfig::default());
        assert_eq!(p.decide(obs(10, 10, 50, 4, t)), ScalingDecision::Grow(5));
    }

    #[test]
    fn idle_retires_only_after_idle_after_and_schedules_its_recheck() {
        let c = ScalingConfig::default();
        let mut p = ScalingPolicy::new(c);
        let t = Instant::now();
        assert_eq!(p.decide(obs(0, 9, 0, 0, t)), ScalingDecision::Hold);
        assert_eq!(p.recheck_at(), Some(t + c.idle_after));
        let t2 = t + c.idle_after;
        assert_eq!(p.decide(obs(0, 9, 0, 0, t2)), ScalingDecision::Retire(3));
        assert_eq!(p.recheck_at(), Some(t2 + c.cooldown));
    }

    #[test]
    fn an_empty_pool_with_waiting_tasks_grows_to_min() {
        let c = ScalingConfig {
            min_agents: 4,
            ..ScalingConfig::default()
        };
        let mut p = ScalingPolicy::new(c);
        assert_eq!(
            p.decide(obs(0, 0, 1, 0, Instant::now())),
            ScalingDecision::Grow(4)
        );
    }
}
