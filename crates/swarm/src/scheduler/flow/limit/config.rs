//! What a limit is: a [`Selector`] of tasks and a [`Rate`] or a concurrency
//! bound, checked once when the swarm is built ([`LimitError`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Task;

/// Which tasks a limit applies to
/// ([`SwarmBuilder::rate_limit`](crate::SwarmBuilder::rate_limit),
/// [`SwarmBuilder::concurrency_limit`](crate::SwarmBuilder::concurrency_limit)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selector(Select);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Select {
    Kind(Arc<str>),
    Key(Arc<str>),
    EachKey,
}

impl Selector {
    /// Tasks of this kind (`Task::kind`), together: one budget for all of them.
    pub fn kind(name: impl Into<Arc<str>>) -> Self {
        Selector(Select::Kind(name.into()))
    }

    /// Tasks with this key (`TaskBuilder::key`, such as a tenant), together.
    pub fn key(name: impl Into<Arc<str>>) -> Self {
        Selector(Select::Key(name.into()))
    }

    /// Every key separately: each key gets a budget of its own (a tenant
    /// cannot use another's). Tasks without a key are not limited by it.
    pub fn each_key() -> Self {
        Selector(Select::EachKey)
    }

    /// Whether the limit applies to `task`.
    pub(crate) fn applies_to(&self, task: &Task) -> bool {
        match &self.0 {
            Select::Kind(kind) => task.kind() == &**kind,
            Select::Key(key) => task.key() == Some(&**key),
            Select::EachKey => task.key().is_some(),
        }
    }

    /// Whether each key has a budget of its own.
    pub(crate) fn per_key(&self) -> bool {
        matches!(self.0, Select::EachKey)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Select::Kind(kind) => write!(f, "kind={kind}"),
            Select::Key(key) => write!(f, "key={key}"),
            Select::EachKey => f.write_str("each_key"),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({self})")
    }
}

/// A token bucket: `count` units per `per`, charged by each task's cost
/// (`TaskBuilder::cost`, default 1) when it starts.
///
/// The bucket holds [`burst`](Rate::burst) units (default 1) and refills
/// continuously at `count / per`: after a quiet spell up to `burst` units may
/// start together, then starts are paced. In every window of length `per` at
/// most `count + burst` units start. A task whose cost is over `burst` could
/// never start: [`submit`](crate::Swarm::submit) refuses it with
/// [`SubmitError::ExceedsLimit`](crate::SubmitError::ExceedsLimit).
///
/// ```
/// use std::time::Duration;
/// use swarm::Rate;
///
/// // 90 000 tokens a minute; one request may use up to 8 000.
/// let tokens = Rate::new(90_000, Duration::from_secs(60)).burst(8_000);
/// assert_eq!(tokens.capacity(), 8_000);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `count` units per `per`, with a bucket of one unit (see [`burst`](Rate::burst)).
    pub const fn new(count: u32, per: Duration) -> Self {
        Rate {
            count,
            per,
            burst: 1,
        }
    }

    /// `count` units per second.
    pub const fn per_second(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` units per minute.
    pub const fn per_minute(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(60))
    }

    /// The bucket's size: how many units may start at once after a quiet
    /// spell, and the largest cost a task may have (default 1).
    #[must_use]
    pub const fn burst(mut self, units: u32) -> Self {
        self.burst = units;
        self
    }

    /// Units per period.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub const fn per(&self) -> Duration {
        self.per
    }

    /// The bucket's size ([`burst`](Rate::burst)).
    pub const fn capacity(&self) -> u32 {
        self.burst
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.per)?;
        if self.burst != 1 {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({self})")
    }
}

/// What a limit bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Rate(Rate),
    Concurrency(usize),
}

/// One limit as configured on the builder.
#[derive(Clone, Debug)]
pub(crate) struct LimitSpec {
    pub(crate) selector: Selector,
    pub(crate) bound: Bound,
}

impl LimitSpec {
    /// The limit's name in events and metrics: `rate(kind=llm, 60/60s)`,
    /// `concurrency(each_key, 4)`.
    pub(crate) fn name(&self) -> String {
        match self.bound {
            Bound::Rate(rate) => format!("rate({}, {rate})", self.selector),
            Bound::Concurrency(max) => format!("concurrency({}, {max})", self.selector),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), LimitError> {
        let limit = self.name();
        match self.bound {
            Bound::Rate(rate) if rate.count == 0 => Err(LimitError::ZeroCount { limit }),
            Bound::Rate(rate) if rate.per.is_zero() => Err(LimitError::ZeroPeriod { limit }),
            Bound::Rate(rate) if rate.burst == 0 => Err(LimitError::ZeroBurst { limit }),
            Bound::Concurrency(0) => Err(LimitError::ZeroConcurrency { limit }),
            _ => Ok(()),
        }
    }
}

/// A limit that cannot work as configured: [`build`](crate::SwarmBuilder::build)
/// refuses it with [`BuildError::Limit`](crate::BuildError::Limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A rate of 0 units per period would never admit a task.
    #[error("{limit} admits nothing: give Rate::new a count of at least 1")]
    ZeroCount {
        /// The limit.
        limit: String,
    },
    /// A rate over a zero period has no meaning.
    #[error("{limit} has a zero period: give Rate::new a period above zero")]
    ZeroPeriod {
        /// The limit.
        limit: String,
    },
    /// A bucket of 0 units would never admit a task.
    #[error("{limit} holds no units: give Rate::burst at least 1 (the largest task cost)")]
    ZeroBurst {
        /// The limit.
        limit: String,
    },
    /// At most 0 running would never start a task.
    #[error("{limit} lets nothing run: give concurrency_limit at least 1")]
    ZeroConcurrency {
        /// The limit.
        limit: String,
    },
    /// Limits are kept by one process: a distributed swarm would apply them
    /// per node, not over the swarm, so it refuses them.
    #[error(
        "{limit} cannot be kept by a distributed swarm yet (each node would apply it alone, not over the swarm): drop the limit or run the swarm locally"
    )]
    Distributed {
        /// The limit.
        limit: String,
    },
}
