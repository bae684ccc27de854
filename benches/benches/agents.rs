//! Cost of running one attempt safely: `run_attempt` (panic catching, with and
//! without a timeout) and a whole `AgentPool::execute` (state, health, events),
//! against calling `SimAgent::execute` directly, all with a zero-duration agent.
//!
//! Everything runs on one current-thread runtime, and the time reported is the
//! bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a
//! shared, loaded machine wall time mostly measures waiting for a core.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarm_agents::{
    Agent, AgentPool, PoolConfig, SimAgent, SimAgentFactory, SimConfig, run_attempt,
};
use swarm_core::{AgentId, EventBus, Task};

/// CPU time consumed by the calling thread so far.
#[allow(unsafe_code)]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call,
    // and CLOCK_THREAD_CPUTIME_ID is a clock every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        panic!("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn agents(c: &mut Criterion) {
    let rt = benches::current_thread();
    let agent = SimAgent::new(SimConfig::instant(), 0);
    let task = match Task::builder("noop").build() {
        Ok(task) => task,
        Err(e) => panic!("cannot build the bench task: {e}"),
    };
    let mut group = c.benchmark_group("agents");
    group.throughput(Throughput::Elements(1));

    group.bench_function("execute_direct (baseline)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    black_box(agent.execute(black_box(&task)).await.is_ok());
                }
                thread_cpu_time().saturating_sub(start)
            })
        })
    });
    for (name, timeout) in [
        ("run_attempt_no_timeout", None),
        ("run_attempt_timeout", Some(Duration::from_secs(60))),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = thread_cpu_time();
                    for _ in 0..iters {
                        black_box(
                            run_attempt(&agent, black_box(&task), timeout)
                                .await
                                .result
                                .is_ok(),
                        );
                    }
                    thread_cpu_time().saturating_sub(start)
                })
            })
        });
    }

    let config = PoolConfig {
        initial_agents: 1,
        ..PoolConfig::default()
    };
    let pool = match AgentPool::new(
        SimAgentFactory::new(SimConfig::instant()),
        EventBus::new(),
        config,
    ) {
        Ok(pool) => pool,
        Err(e) => panic!("cannot build the bench pool: {e}"),
    };
    group.bench_function("pool_execute", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    let done = pool.execute(AgentId::new(0), task.clone()).await;
                    black_box(done.is_ok());
                }
                thread_cpu_time().saturating_sub(start)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, agents);
criterion_main!(benches);
