//! Errors of attaching to a bus.

/// Why [`SwarmMetrics::attach`](crate::SwarmMetrics::attach) or
/// [`EventMonitor::attach`](crate::EventMonitor::attach) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The bus's one observer slot is taken.
    ObserverTaken,
}

// By hand, so recording without the exporter needs no `thiserror`.
impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachError::ObserverTaken => f.write_str(
                "the event bus already has an observer: attach once with `SwarmMetrics::attach_with_monitor`, \
                 or combine observers in a `FanOutObserver` and set it before subscribing",
            ),
        }
    }
}

impl std::error::Error for AttachError {}
