//! Flow control: when an accepted task may start.
//!
//! - `delay`: a task whose `not_before` lies ahead, or whose retry back-off
//!   has not passed, waits outside the runnable queues and enters them when
//!   due; one timer, armed for the earliest due time, exists only while some
//!   task waits.
//! - `limit`: rate and concurrency limits; a task a limit cannot admit waits
//!   outside the runnable queues, parked by that limit, until it can.

mod delay;
mod limit;

pub(super) use delay::Delays;
pub(crate) use limit::{Bound, Held, LimitSpec, Limits};
pub use limit::{LimitError, Rate, Selector};
