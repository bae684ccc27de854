//! Test support for users of swarm-core.
//!
//! - [`EventRecorder`] (feature `test-util`): captures every event a bus emits,
//!   in order, so handlers can be tested without a running swarm.
//! - [`strategy`] (feature `proptest`): proptest strategies for tasks and events.

#[cfg(feature = "test-util")]
mod recorder;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use recorder::EventRecorder;

#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod strategy;
