//! Agent health: healthy → degraded → unhealthy on a streak of failures, or
//! unhealthy at once on a panic or a timeout; a success resets it.

use swarm_core::event::{AgentHealth, FailureReason};

/// When an agent's failures change its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failures in a row after which the agent is degraded (default 1).
    pub degraded_after: u32,
    /// Failures in a row after which the agent is unhealthy (default 3).
    pub unhealthy_after: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            degraded_after: 1,
            unhealthy_after: 3,
        }
    }
}

/// One agent's recent record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthTracker {
    streak: u32,
    health: AgentHealth,
}

impl HealthTracker {
    /// A healthy agent with no failures.
    pub fn new() -> Self {
        HealthTracker::default()
    }

    /// The current health.
    pub fn health(&self) -> AgentHealth {
        self.health
    }

    /// Failures in a row (counting only those that count against the agent).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// A successful attempt: back to healthy, unless already unhealthy
    /// (unhealthy is final: the agent is replaced, not healed).
    pub fn record_success(&mut self) -> AgentHealth {
        if self.health != AgentHealth::Unhealthy {
            self.streak = 0;
            self.health = AgentHealth::Healthy;
        }
        self.health
    }

    /// Whether a failure of this kind says something about the agent.
    ///
    /// A permanent error is the agent's verdict on the task (bad input), so it
    /// does not count: otherwise one bad batch of tasks could take down the pool.
    pub fn counts_against_agent(reason: FailureReason) -> bool {
        !matches!(reason, FailureReason::Permanent)
    }

    /// A failed attempt. Returns the health afterwards. Unhealthy is final:
    /// the agent is replaced, not healed.
    pub fn record_failure(&mut self, reason: FailureReason, policy: &HealthPolicy) -> AgentHealth {
        if self.health == AgentHealth::Unhealthy || !Self::counts_against_agent(reason) {
            return self.health;
        }
        self.streak = self.streak.saturating_add(1);
        self.health = match reason {
            FailureReason::Panic | FailureReason::Timeout | FailureReason::Lost => {
                AgentHealth::Unhealthy
            }
            _ if self.streak >= policy.unhealthy_after.max(1) => AgentHealth::Unhealthy,
            _ if self.streak >= policy.degraded_after => AgentHealth::Degraded,
            _ => AgentHealth::Healthy,
        };
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_streak_degrades_then_makes_unhealthy() {
        let policy = HealthPolicy {
            degraded_after: 2,
            unhealthy_after: 4,
        };
        let mut h = HealthTracker::new();
        let seen: Vec<_> = (0..4)
            .map(|_| h.record_failure(FailureReason::Error, &policy))
            .collect();
        use AgentHealth::*;
        assert_eq!(seen, vec![Healthy, Degraded, Degraded, Unhealthy]);
        // Unhealthy is final.
        assert_eq!(h.record_success(), Unhealthy);
    }

    #[test]
    fn success_resets_the_streak() {
        let policy = HealthPolicy::default();
        let mut h = HealthTracker::new();
        h.record_failure(FailureReason::Error, &policy);
        h.record_failure(FailureReason::Error, &policy);
        assert_eq!(h.health(), AgentHealth::Degraded);
        h.record_success();
        assert_eq!((h.health(), h.streak()), (AgentHealth::Healthy, 0));
        assert_eq!(
            h.record_failure(FailureReason::Error, &policy),
            AgentHealth::Degraded
        );
    }

    #[test]
    fn panic_and_timeout_are_unhealthy_at_once_permanent_does_not_count() {
        let policy = HealthPolicy::default();
        for reason in [FailureReason::Panic, FailureReason::Timeout] {
            let mut h = HealthTracker::new();
            assert_eq!(h.record_failure(reason, &policy), AgentHealth::Unhealthy);
        }
        let mut h = HealthTracker::new();
        assert_eq!(
            h.record_failure(FailureReason::Permanent, &policy),
            AgentHealth::Healthy
        );
        assert_eq!(h.streak(), 0);
    }
}
