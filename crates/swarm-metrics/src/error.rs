//! Errors of attaching to a bus.

/// Why [`SwarmMetrics::attach`](crate::SwarmMetrics::attach) or
/// [`EventMonitor::attach`](crate::EventMonitor::attach) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The bus's one observer slot is taken.
    #[error(
        "the event bus already has an observer: attach once with `SwarmMetrics::attach_with_monitor`, \
         or combine observers in a `FanOutObserver` and set it before subscribing"
    )]
    ObserverTaken,
}
