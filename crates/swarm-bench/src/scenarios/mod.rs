//! One module per scenario; each returns an [`Outcome`].

mod delay;
mod dispatch_latency;
mod distributed;
mod fairness;
mod idle_cpu;
mod memory;
mod priority;
mod rate_limit;
mod seed_comparison;
mod soak;
mod store;
mod throughput;
mod work_stealing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use swarm::event::TaskAssigned;
use swarm::{Swarm, Task};

use crate::{Options, Outcome};

pub(crate) type Result<T> = std::result::Result<T, String>;

pub(crate) fn run(name: &str, options: &Options) -> Result<Outcome> {
    let run = runner(name).ok_or_else(|| format!("no scenario named {name:?}"))?;
    run(options)
}

/// A scenario's entry point.
type Runner = fn(&Options) -> Result<Outcome>;

/// The entry point of the scenario `name` (one of
/// [`SCENARIOS`](crate::SCENARIOS)), `None` for an unknown name.
fn runner(name: &str) -> Option<Runner> {
    let run: Runner = match name {
        "seed_comparison" => |o| block_on(seed_comparison::run(o)),
        "throughput" => |o| block_on(throughput::run(o)),
        "dispatch_latency" => |o| block_on(dispatch_latency::run(o)),
        "priority" => |o| block_on(priority::run(o)),
        "fairness" => |o| block_on(fairness::run(o)),
        "delay" => |o| block_on(delay::run(o)),
        "idle_cpu" => |o| block_on(idle_cpu::run(o)),
        "work_stealing" => |o| block_on(work_stealing::run(o)),
        "store" => |o| block_on(store::run(o)),
        "memory" => memory::run,
        "distributed" => |o| block_on(distributed::run(o)),
        "soak" => |o| block_on(soak::run(o)),
        "rate_limit" => |o| block_on(rate_limit::run(o)),
        _ => return None,
    };
    Some(run)
}

/// Worker threads of every runtime: one per core, as `#[tokio::main]` would.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn block_on<F: Future<Output = Result<Outcome>>>(future: F) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(future)
}

pub(crate) fn task(kind: &Arc<str>) -> Result<Task> {
    Task::builder(Arc::clone(kind))
        .build()
        .map_err(|e| e.to_string())
}

pub(crate) async fn shutdown(swarm: &Swarm) -> Result<()> {
    swarm
        .shutdown(Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|e| format!("shutdown failed: {e}"))
}

/// Collects every `task:assigned` queue wait (acceptance → start).
#[derive(Debug, Clone, Default)]
pub(crate) struct Waits(Arc<Mutex<Vec<(swarm::TaskId, swarm::Priority, Duration)>>>);

impl Waits {
    pub(crate) fn attach(&self, swarm: &Swarm) -> swarm_core::Subscription {
        let waits = Arc::clone(&self.0);
        swarm.bus().on::<TaskAssigned>(move |e| {
            waits.lock().push((e.task_id, e.priority, e.queue_wait));
        })
    }

    pub(crate) fn take(&self) -> Vec<(swarm::TaskId, swarm::Priority, Duration)> {
        std::mem::take(&mut *self.0.lock())
    }

    pub(crate) fn find(&self, id: swarm::TaskId) -> Option<Duration> {
        self.0
            .lock()
            .iter()
            .rev()
            .find(|(t, _, _)| *t == id)
            .map(|(_, _, w)| *w)
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile (0..=1) of `values`, nearest rank; 0 for none. Sorts `values`.
pub(crate) fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::runner;
    use crate::SCENARIOS;

    #[test]
    fn every_listed_scenario_has_a_runner_and_is_listed_once() {
        for name in SCENARIOS {
            assert!(runner(name).is_some(), "{name} is listed but has no runner");
        }
        let mut unique = SCENARIOS.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), SCENARIOS.len(), "a scenario is listed twice");
        assert!(runner("nope").is_none());
    }
}
