//! Task priorities.

use std::error::Error;
use std::fmt;
use std::str::FromStr;

/// How urgent a task is: `Critical > High > Normal > Low`.
///
/// `Ord` follows urgency, so `Priority::Critical > Priority::Low`. Parsing is
/// case-insensitive; `Display` and serde (feature `serde`) use the lowercase
/// names. `swarm-core` re-exports it as `swarm_core::Priority`.
///
/// ```
/// use swarm_queue::Priority;
///
/// let p: Priority = "HIGH".parse()?;
/// assert_eq!(p, Priority::High);
/// assert_eq!(p.to_string(), "high");
/// assert!(Priority::Critical > Priority::High);
///
/// let err = "urgent".parse::<Priority>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown priority \"urgent\": expected one of critical, high, normal, low"
/// );
/// # Ok::<(), swarm_queue::ParsePriorityError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Priority {
    /// Background work; runs when nothing more urgent waits.
    Low = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Ahead of normal work.
    High = 2,
    /// Ahead of everything; emits `task:critical` when queued.
    Critical = 3,
}

impl Priority {
    /// Every priority, most urgent first (the order queues pop in).
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The number of priority levels.
    pub const LEVELS: usize = 4;

    /// The level's position in [`Priority::ALL`]: 0 for `Critical` to 3 for `Low`.
    ///
    /// Useful to index per-level arrays in pop order.
    pub const fn level(self) -> usize {
        3 - self as usize
    }

    /// The priority at a position of [`Priority::ALL`], if `level < 4`.
    pub const fn from_level(level: usize) -> Option<Priority> {
        match level {
            0 => Some(Priority::Critical),
            1 => Some(Priority::High),
            2 => Some(Priority::Normal),
            3 => Some(Priority::Low),
            _ => None,
        }
    }

    /// The lowercase name: `"critical"`, `"high"`, `"normal"` or `"low"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParsePriorityError {
                input: s.to_owned(),
            })
    }
}

/// The error returned when a string names no priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePriorityError {
    input: String,
}

impl ParsePriorityError {
    /// The text that could not be parsed.
    pub fn input(&self) -> &str {
        &self.input
    }
}

// Written by hand rather than derived: this crate stays free of proc-macro
// dependencies when its `serde` feature is off.
impl fmt::Display for ParsePriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown priority {:?}: expected one of critical, high, normal, low",
            self.input
        )
    }
}

impl Error for ParsePriorityError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn levels_follow_pop_order() {
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            assert_eq!(p.level(), i);
            assert_eq!(Priority::from_level(i), Some(p));
        }
        assert_eq!(Priority::from_level(4), None);
        assert!(Priority::Critical > Priority::High);
        assert!(Priority::High > Priority::Normal);
        assert!(Priority::Normal > Priority::Low);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_uses_lowercase_names() {
        assert_eq!(
            serde_json::to_string(&Priority::Critical).unwrap(),
            "\"critical\""
        );
        assert_eq!(
            serde_json::from_str::<Priority>("\"low\"").unwrap(),
            Priority::Low
        );
    }

    proptest! {
        #[test]
        fn parse_display_round_trip_for_every_casing(
            level in 0usize..4,
            upper in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let p = Priority::from_level(level).unwrap();
            let cased: String = p
                .as_str()
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert_eq!(cased.parse::<Priority>(), Ok(p));
            prop_assert_eq!(p.to_string().parse::<Priority>(), Ok(p));
        }

        #[test]
        fn unknown_names_list_the_valid_values(s in "[a-zA-Z]{0,12}") {
            prop_assume!(!Priority::ALL.iter().any(|p| p.as_str().eq_ignore_ascii_case(&s)));
            let err = s.parse::<Priority>().unwrap_err();
            let message = err.to_string();
            prop_assert!(message.contains("critical, high, normal, low"));
            prop_assert_eq!(err.input(), s.as_str());
        }
    }
}
