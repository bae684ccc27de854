//! A job runner's backlog built on `swarm-queue` alone, with default features
//! off: the priority queue, aging and the full-queue error, and nothing else
//! (no async runtime, no event core, no serde).
//!
//! Run it with `cargo run -p queue-alone`.

use std::num::NonZeroU32;
use std::process::ExitCode;

use swarm_queue::{AgingPolicy, Priority, PriorityQueue, QueueFull};

/// Fills a bounded backlog, handing back what does not fit, and returns the
/// order the jobs come out in and the jobs refused.
fn run_backlog(jobs: &[(&'static str, Priority)]) -> (Vec<&'static str>, Vec<&'static str>) {
    // At most 2 more urgent pops may overtake a waiting level's front job.
    let aging = AgingPolicy::new(NonZeroU32::MIN.saturating_add(1));
    let mut backlog = PriorityQueue::bounded(5).with_aging(aging);
    let mut refused = Vec::new();
    for &(job, priority) in jobs {
        if let Err(full) = backlog.push(job, priority) {
            // The queue hands the job back, never drops it.
            refused.push(QueueFull::into_inner(full));
        }
    }
    let order = backlog.drain().map(|(job, _)| job).collect();
    (order, refused)
}

fn main() -> ExitCode {
    let priority = match "critical".parse::<Priority>() {
        Ok(priority) => priority,
        Err(err) => {
            eprintln!("queue-alone: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (order, refused) = run_backlog(&[
        ("rotate logs", Priority::Low),
        ("send digest", Priority::High),
        ("resize images", Priority::High),
        ("page on-call", priority),
        ("reindex", Priority::High),
        ("warm cache", Priority::Normal),
    ]);
    println!("ran, in order: {}", order.join(", "));
    println!("refused (backlog full): {}", refused.join(", "));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_first_aging_lets_low_through_and_overflow_is_handed_back() {
        let (order, refused) = run_backlog(&[
            ("low", Priority::Low),
            ("h0", Priority::High),
            ("h1", Priority::High),
            ("c", Priority::Critical),
            ("h2", Priority::High),
            ("n", Priority::Normal),
        ]);
        assert_eq!(refused, ["n"]);
        assert_eq!(order, ["c", "h0", "low", "h1", "h2"]);
    }

    #[test]
    fn a_bad_priority_name_lists_the_valid_ones() {
        let err = "urgent".parse::<Priority>().unwrap_err();
        assert!(err.to_string().contains("critical, high, normal, low"));
    }
}
