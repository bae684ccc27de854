//! The autoscaler on tokio's paused clock: grows on overload events, re-checks
//! with a timer only while something is pending, retires idle agents to the
//! minimum, activates reserve agents on backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use swarm_agents::{
    AgentPool, Autoscaler, PoolConfig, ScalingConfig, ScalingDecision, ScalingPolicy,
    SimAgentFactory, SimConfig,
};
use swarm_core::EventBus;
use swarm_core::event::{AgentCreated, AgentRemoved, CoordinatorOverload, QueueBacklog};
use swarm_core::testing::EventRecorder;

fn scaling() -> ScalingConfig {
    ScalingConfig {
        min_agents: 1,
        max_agents: 10,
        cooldown: Duration::from_secs(10),
        idle_after: Duration::from_secs(30),
        ..ScalingConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn grows_on_overload_rechecks_after_cooldown_and_retires_to_min_when_idle() {
    let bus = EventBus::new();
    let recorder = EventRecorder::attach(&bus);
    let config = PoolConfig {
        initial_agents: 2,
        ..PoolConfig::default()
    };
    let pool = AgentPool::new(SimAgentFactory::new(SimConfig::instant()), bus, config).unwrap();
    let queued = Arc::new(AtomicUsize::new(5));
    let depth = Arc::clone(&queued);
    let scaler = Autoscaler::new(pool.clone(), ScalingPolicy::new(scaling()), move || {
        depth.load(Ordering::Relaxed)
    });
    let _subscription = scaler.attach();

    // Both agents busy: the pool reports the overload, the autoscaler grows 2 -> 3.
    let a = pool.claim_idle().unwrap();
    let b = pool.claim_idle().unwrap();
    // The autoscaler decides in a task of its own.
    tokio::task::yield_now().await;
    assert_eq!(recorder.count::<CoordinatorOverload>(), 1);
    assert_eq!(pool.counts().active(), 3);

    // Still overloaded within the cool-down: held, then grown when it ends (3 -> 5).
    let c = pool.claim_idle().unwrap();
    tokio::task::yield_now().await;
    assert_eq!(recorder.count::<CoordinatorOverload>(), 2);
    assert_eq!(pool.counts().active(), 3);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(pool.counts().active(), 3);
    // (1 ms past the re-check, so the timer task has surely run.)
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert_eq!(pool.counts().active(), 5);
    assert_eq!(recorder.count::<AgentCreated>(), 5);

    // Work done, queue empty: idle agents retire step by step down to the minimum.
    for id in [a, b, c] {
        pool.release(id);
    }
    queued.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(pool.counts().active(), 1);
    let removed = recorder.of::<AgentRemoved>();
    assert_eq!(removed.len(), 4);
    assert!(removed.iter().all(|e| e.reason == "idle"));

    // At the minimum nothing is pending: a long idle stretch changes nothing.
    recorder.clear();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(recorder.is_empty(), "{:?}", recorder.names());
}

#[tokio::test(start_paused = true)]
async fn backlog_activates_reserve_agents() {
    let bus = EventBus::new();
    let config = PoolConfig {
        initial_agents: 2,
        reserve_agents: 3,
        ..PoolConfig::default()
    };
    let pool = AgentPool::new(
        SimAgentFactory::new(SimConfig::instant()),
        bus.clone(),
        config,
    )
    .unwrap();
    let scaler = Autoscaler::new(pool.clone(), ScalingPolicy::new(scaling()), || 80);
    let _subscription = scaler.attach();

    bus.emit(QueueBacklog {
        queued: 80,
        threshold: 50,
    });
    tokio::task::yield_now().await;
    let counts = pool.counts();
    assert_eq!((counts.idle, counts.reserve), (5, 0));
    // Called directly, inside the cool-down: nothing more.
    assert_eq!(scaler.observe(), ScalingDecision::Hold);
}
