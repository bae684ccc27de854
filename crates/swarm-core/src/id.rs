//! Small copyable identifiers for tasks and agents.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Identifies one task for its whole life, across retries, processes and replays.
///
/// A `TaskId` is a 64-bit number. [`TaskId::generate`] hands out ids that are
/// unique within a process and, with overwhelming probability, across processes
/// and restarts (the counter starts from a value mixed from the clock and the
/// process id). [`TaskId::from_name`] derives a stable id from a user key, such
/// as a job id in a jobs file, so that the same job keeps its id across runs.
///
/// Displays as `task-` followed by 16 hex digits and parses back from that form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(u64);

impl TaskId {
    /// Wraps a raw id.
    pub const fn from_u64(raw: u64) -> Self {
        TaskId(raw)
    }

    /// The raw id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A fresh id, unique within this process.
    pub fn generate() -> Self {
        static NEXT: OnceLock<AtomicU64> = OnceLock::new();
        let next = NEXT.get_or_init(|| AtomicU64::new(seed()));
        TaskId(splitmix64(next.fetch_add(1, Ordering::Relaxed)))
    }

    /// A stable id derived from a name (64-bit FNV-1a, then mixed).
    ///
    /// The same name always gives the same id, in every process and version.
    pub fn from_name(name: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        TaskId(splitmix64(hash))
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 40)
}

// A bijection on u64, so distinct counter values give distinct ids.
fn splitmix64(z: u64) -> u64 {
    SplitMix64::new(z).next_u64()
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{:016x}", self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for TaskId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("task-").unwrap_or(s);
        u64::from_str_radix(hex, 16)
            .map(TaskId)
            .map_err(|_| ParseIdError::new("task", s, "task-0123456789abcdef"))
    }
}

/// Identifies one agent of a pool. Agents are numbered from 0 in creation order;
/// a replacement gets a new id.
///
/// Displays as `agent-N` and parses back from that form (or a bare number).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(u64);

impl AgentId {
    /// Wraps a raw id.
    pub const fn new(raw: u64) -> Self {
        AgentId(raw)
    }

    /// The raw id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent-{}", self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for AgentId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("agent-").unwrap_or(s);
        digits
            .parse::<u64>()
            .map(AgentId)
            .map_err(|_| ParseIdError::new("agent", s, "agent-3"))
    }
}

/// The error returned when a [`TaskId`] or [`AgentId`] cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError {
    what: &'static str,
    input: String,
    example: &'static str,
}

impl ParseIdError {
    fn new(what: &'static str, input: &str, example: &'static str) -> Self {
        ParseIdError {
            what,
            input: input.to_owned(),
            example,
        }
    }
}

impl std::fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid {} id {:?}: expected the form {}",
            self.what, self.input, self.example
        )
    }
}

impl std::error::Error for ParseIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| TaskId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn named_ids_are_stable() {
        assert_eq!(TaskId::from_name("job-1"), TaskId::from_name("job-1"));
        assert_ne!(TaskId::from_name("job-1"), TaskId::from_name("job-2"));
        // Pinned: a jobs file keeps its ids across versions.
        assert_eq!(
            TaskId::from_name("job-1").to_string(),
            "task-35f71382f65a0b4a"
        );
    }

    #[test]
    fn ids_round_trip_through_display() {
        let t = TaskId::from_u64(0xdead_beef);
        assert_eq!(t.to_string(), "task-00000000deadbeef");
        assert_eq!(t.to_string().parse::<TaskId>(), Ok(t));
        let a = AgentId::new(7);
        assert_eq!(a.to_string(), "agent-7");
        assert_eq!("agent-7".parse::<AgentId>(), Ok(a));
        assert_eq!("7".parse::<AgentId>(), Ok(a));
        let err = "agent-x".parse::<AgentId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid agent id \"agent-x\": expected the form agent-3"
        );
    }
}
