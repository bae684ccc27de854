//! Flow control: when an accepted task may start.
//!
//! - `delay`: a task whose `not_before` lies ahead waits outside the runnable
//!   queues and enters them when due; one timer, armed for the earliest due
//!   time, exists only while some task is delayed.

mod delay;

pub(super) use delay::Delays;
