//! [`SimAgent`]: a simulated agent for tests, benches and the demo, seeded so
//! that a run can be reproduced.

use std::time::Duration;

use swarm_core::{AgentId, Task};

use crate::agent::{Agent, AgentFactory, TaskOutput};
use crate::error::{CreateAgentError, ExecuteError};
use swarm_core::rng::AtomicSplitMix64;

/// How long a simulated attempt takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DurationDist {
    /// Always this long (`Fixed(Duration::ZERO)` finishes on the first poll, without a timer).
    Fixed(Duration),
    /// Uniform between `min` and `max` (inclusive of `min`).
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// Exponential with this mean (memoryless, like many service times).
    Exponential {
        /// Mean duration.
        mean: Duration,
    },
}

impl DurationDist {
    /// Draws a duration from `unit`, a number uniform in `[0, 1)`.
    pub fn sample(&self, unit: f64) -> Duration {
        match *self {
            DurationDist::Fixed(d) => d,
            DurationDist::Uniform { min, max } => min + max.saturating_sub(min).mul_f64(unit),
            // Inverse CDF; 1 - unit is in (0, 1], so the log is finite.
            DurationDist::Exponential { mean } => mean.mul_f64(-(1.0 - unit).ln()),
        }
    }
}

/// What a [`SimAgent`] does: its durations and how often it fails.
///
/// Probabilities are per attempt and checked in the order panic, hang,
/// permanent error, error; their sum should stay at or below 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// How long a successful or failing attempt takes.
    pub duration: DurationDist,
    /// Probability that an attempt returns a retryable error.
    pub error_rate: f64,
    /// Probability that an attempt returns a permanent error.
    pub permanent_rate: f64,
    /// Probability that an attempt panics.
    pub panic_rate: f64,
    /// Probability that an attempt never finishes (until its timeout drops it).
    pub hang_rate: f64,
    /// The seed; agent `n` uses a stream derived from it and `n`.
    pub seed: u64,
}

impl SimConfig {
    /// Finishes at once, never fails: the cheapest agent, for throughput benches.
    pub const fn instant() -> Self {
        SimConfig::fixed(Duration::ZERO)
    }

    /// Takes `duration`, never fails.
    pub const fn fixed(duration: Duration) -> Self {
        SimConfig {
            duration: DurationDist::Fixed(duration),
            error_rate: 0.0,
            permanent_rate: 0.0,
            panic_rate: 0.0,
            hang_rate: 0.0,
            seed: 0,
        }
    }

    /// With this duration distribution.
    pub const fn with_duration(mut self, duration: DurationDist) -> Self {
        self.duration = duration;
        self
    }

    /// With this probability of a retryable error.
    pub const fn with_error_rate(mut self, p: f64) -> Self {
        self.error_rate = p;
        self
    }

    /// With this probability of a permanent error.
    pub const fn with_permanent_rate(mut self, p: f64) -> Self {
        self.permanent_rate = p;
        self
    }

    /// With this probability of a panic.
    pub const fn with_panic_rate(mut self, p: f64) -> Self {
        self.panic_rate = p;
        self
    }

    /// With this probability of a hang.
    pub const fn with_hang_rate(mut self, p: f64) -> Self {
        self.hang_rate = p;
        self
    }

    /// With this seed.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn fails(&self) -> bool {
        self.error_rate > 0.0
            || self.permanent_rate > 0.0
            || self.panic_rate > 0.0
            || self.hang_rate > 0.0
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::instant()
    }
}

enum Fate {
    Succeed,
    Error,
    Permanent,
    Panic,
    Hang,
}

/// A simulated agent: sleeps (on tokio's clock, so paused-clock tests are
/// exact) for a drawn duration, then succeeds, errs, panics or hangs with the
/// configured probabilities.
///
/// Its random stream is an atomic SplitMix64: no lock and no allocation per
/// attempt. Two agents built with the same config and stream number make the
/// same draws in the same order.
///
/// ```
/// use std::time::Duration;
/// use swarm_agents::{Agent, DurationDist, SimAgent, SimConfig};
/// use swarm_core::Task;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let config = SimConfig::fixed(Duration::from_millis(5)).with_seed(42);
/// let agent = SimAgent::new(config, 0);
/// let task = Task::builder("work").build()?;
/// assert!(agent.execute(&task).await.is_ok());
/// # Ok::<(), swarm_core::TaskError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct SimAgent {
    config: SimConfig,
    rng: AtomicSplitMix64,
    output: TaskOutput,
}

impl SimAgent {
    /// An agent following `config`, drawing from random stream `stream`
    /// (use the agent's number so each agent gets its own stream).
    pub fn new(config: SimConfig, stream: u64) -> Self {
        let seed = config.seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03);
        SimAgent {
            config,
            rng: AtomicSplitMix64::new(seed),
            output: TaskOutput::from("ok"),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn fate(&self) -> Fate {
        if !self.config.fails() {
            return Fate::Succeed;
        }
        let c = &self.config;
        let mut u = self.rng.next_f64();
        for (p, fate) in [
            (c.panic_rate, Fate::Panic),
            (c.hang_rate, Fate::Hang),
            (c.permanent_rate, Fate::Permanent),
            (c.error_rate, Fate::Error),
        ] {
            if u < p {
                return fate;
            }
            u -= p;
        }
        Fate::Succeed
    }

    fn duration(&self) -> Duration {
        match self.config.duration {
            DurationDist::Fixed(d) => d,
            dist => dist.sample(self.rng.next_f64()),
        }
    }
}

impl Agent for SimAgent {
    async fn execute(&self, _task: &Task) -> Result<TaskOutput, ExecuteError> {
        let fate = self.fate();
        let duration = self.duration();
        if let Fate::Hang = fate {
            std::future::pending::<()>().await;
        }
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
        match fate {
            Fate::Succeed | Fate::Hang => Ok(self.output.clone()),
            Fate::Error => Err(ExecuteError::retryable("simulated error")),
            Fate::Permanent => Err(ExecuteError::permanent("simulated permanent error")),
            Fate::Panic => panic!("simulated panic"),
        }
    }
}

/// Makes [`SimAgent`]s: agent `n` draws from stream `n` of the config's seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimAgentFactory {
    /// The configuration of every agent it makes.
    pub config: SimConfig,
}

impl SimAgentFactory {
    /// A factory of agents following `config`.
    pub fn new(config: SimConfig) -> Self {
        SimAgentFactory { config }
    }
}

impl AgentFactory for SimAgentFactory {
    type Agent = SimAgent;

    fn create(&self, id: AgentId) -> Result<SimAgent, CreateAgentError> {
        Ok(SimAgent::new(self.config, id.as_u64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::rng::{SplitMix64, unit_f64};

    #[test]
    fn distributions_stay_in_range() {
        let mut rng = SplitMix64::new(3);
        let uniform = DurationDist::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(20),
        };
        let exp = DurationDist::Exponential {
            mean: Duration::from_millis(10),
        };
        let mut total = Duration::ZERO;
        for _ in 0..10_000 {
            let d = uniform.sample(unit_f64(rng.next_u64()));
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
            total += exp.sample(unit_f64(rng.next_u64()));
        }
        // Mean of 10 000 exponential draws with mean 10 ms: well within 8..12 ms.
        let mean = total / 10_000;
        assert!(
            mean > Duration::from_millis(8) && mean < Duration::from_millis(12),
            "{mean:?}"
        );
        assert_eq!(exp.sample(0.0), Duration::ZERO);
    }

    async fn outcomes(config: SimConfig, stream: u64, n: usize) -> Vec<Result<(), bool>> {
        let agent = SimAgent::new(config, stream);
        let task = Task::builder("k").build().unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(
                agent
                    .execute(&task)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.is_permanent()),
            );
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn same_seed_same_run_different_stream_different_run() {
        let config = SimConfig::fixed(Duration::from_millis(1))
            .with_error_rate(0.3)
            .with_permanent_rate(0.2)
            .with_seed(9);
        let a = outcomes(config, 1, 64).await;
        assert_eq!(a, outcomes(config, 1, 64).await);
        assert_ne!(a, outcomes(config, 2, 64).await);
        let errors = a.iter().filter(|r| r == &&Err(false)).count();
        let permanent = a.iter().filter(|r| r == &&Err(true)).count();
        assert!(errors > 0 && permanent > 0 && errors + permanent < 64);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_exactly_its_fixed_duration() {
        let agent = SimAgent::new(SimConfig::fixed(Duration::from_millis(40)), 0);
        let task = Task::builder("k").build().unwrap();
        let start = tokio::time::Instant::now();
        agent.execute(&task).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }
}
