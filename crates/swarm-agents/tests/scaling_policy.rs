//! Properties of ScalingPolicy against a simple model of a pool that applies
//! every decision at once.

use std::time::Duration;

use proptest::prelude::*;
use swarm_agents::{LoadObservation, ScalingConfig, ScalingDecision, ScalingPolicy};
use tokio::time::Instant;

/// One step of a scenario: time passes, then load and queue are observed.
#[derive(Debug, Clone)]
struct Step {
    dt_ms: u64,
    busy_pct: u32,
    queued: usize,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u64..20_000,
        0u32..=100,
        prop_oneof![Just(0usize), 0usize..200],
    )
        .prop_map(|(dt_ms, busy_pct, queued)| Step {
            dt_ms,
            busy_pct,
            queued,
        })
}

fn config() -> impl Strategy<Value = ScalingConfig> {
    (0usize..8, 1usize..60, 1u64..30, 1u64..60).prop_map(|(min, max, cool_s, idle_s)| {
        ScalingConfig {
            min_agents: min.min(max),
            max_agents: max,
            cooldown: Duration::from_secs(cool_s),
            idle_after: Duration::from_secs(idle_s),
            ..ScalingConfig::default()
        }
    })
}

/// A pool model: active and reserve agents, changed by decisions.
struct Model {
    total: usize,
    reserve: usize,
}

impl Model {
    fn apply(&mut self, d: ScalingDecision) {
        match d {
            ScalingDecision::Grow(n) => self.total += n,
            ScalingDecision::ActivateReserve(n) => {
                self.reserve -= n;
                self.total += n;
            }
            ScalingDecision::Retire(n) => self.total -= n,
            ScalingDecision::Hold => {}
        }
    }
}

proptest! {
    #[test]
    fn decisions_respect_bounds_and_never_reverse_within_a_cooldown(
        config in config(),
        start_total in 0usize..70,
        reserve in 0usize..10,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut policy = ScalingPolicy::new(config);
        let mut model = Model { total: start_total, reserve };
        let mut now = Instant::now();
        let mut last: Option<(Instant, i8)> = None;
        for s in steps {
            now += Duration::from_millis(s.dt_ms);
            let busy = (model.total * s.busy_pct as usize) / 100;
            let obs = LoadObservation { busy, total: model.total, queued: s.queued, reserve_available: model.reserve, now };
            let before = model.total;
            let d = policy.decide(obs);
            match d {
                ScalingDecision::Grow(n) | ScalingDecision::ActivateReserve(n) => {
                    prop_assert!(n > 0);
                    prop_assert!(before + n <= config.max_agents, "{d:?} from {before} passes max {}", config.max_agents);
                }
                ScalingDecision::Retire(n) => {
                    prop_assert!(n > 0);
                    prop_assert!(before - n >= config.min_agents, "{d:?} from {before} passes min {}", config.min_agents);
                    prop_assert!(n <= before - busy, "retires only idle agents");
                }
                ScalingDecision::Hold => {}
            }
            if let ScalingDecision::ActivateReserve(n) = d {
                prop_assert!(n <= model.reserve);
            }
            if d.direction() != 0 {
                if let Some((at, dir)) = last {
                    if dir != d.direction() {
                        prop_assert!(now - at >= config.cooldown, "{d:?} reverses a decision {:?} ago", now - at);
                    }
                }
                last = Some((now, d.direction()));
            }
            if let Some(at) = policy.recheck_at() {
                prop_assert!(at >= now);
            }
            model.apply(d);
        }
    }

    #[test]
    fn sustained_overload_grows_to_max(config in config(), start in 1usize..10, dt_s in 1u64..60) {
        let mut policy = ScalingPolicy::new(config);
        let mut model = Model { total: start.min(config.max_agents), reserve: 0 };
        let mut now = Instant::now();
        // Enough steps for the slowest case: 1 agent to 59 is 10 growths, each
        // after a cool-down of up to 29 s, observed once a second.
        for _ in 0..1500 {
            let obs = LoadObservation { busy: model.total, total: model.total, queued: 10, reserve_available: 0, now };
            let d = policy.decide(obs);
            prop_assert!(d.direction() >= 0, "never shrinks under overload: {d:?}");
            model.apply(d);
            now += Duration::from_secs(dt_s);
        }
        prop_assert_eq!(model.total, config.max_agents);
    }

    #[test]
    fn sustained_idle_shrinks_to_min(config in config(), start in 0usize..70, dt_s in 1u64..60) {
        let mut policy = ScalingPolicy::new(config);
        let start = start.max(config.min_agents);
        let mut model = Model { total: start, reserve: 0 };
        let mut now = Instant::now();
        // Enough steps for the slowest case: 69 agents to 0 is 10 retirements, each
        // after up to 59 s of idle, observed once a second.
        for _ in 0..1500 {
            let obs = LoadObservation { busy: 0, total: model.total, queued: 0, reserve_available: 0, now };
            let d = policy.decide(obs);
            prop_assert!(d.direction() <= 0, "never grows when idle: {d:?}");
            model.apply(d);
            now += Duration::from_secs(dt_s);
        }
        prop_assert_eq!(model.total, config.min_agents);
        // Once at min nothing is pending: an idle system needs no timer.
        let obs = LoadObservation { busy: 0, total: model.total, queued: 0, reserve_available: 0, now };
        prop_assert_eq!(policy.decide(obs), ScalingDecision::Hold);
        now += config.cooldown;
        let obs = LoadObservation { now, ..obs };
        prop_assert_eq!(policy.decide(obs), ScalingDecision::Hold);
        prop_assert_eq!(policy.recheck_at(), None);
    }

    #[test]
    fn backlog_activates_reserve(reserve in 1usize..10, queued in 51usize..1000) {
        let mut policy = ScalingPolicy::new(ScalingConfig::default());
        let obs = LoadObservation { busy: 2, total: 4, queued, reserve_available: reserve, now: Instant::now() };
        prop_assert_eq!(policy.decide(obs), ScalingDecision::ActivateReserve(reserve));
    }
}
