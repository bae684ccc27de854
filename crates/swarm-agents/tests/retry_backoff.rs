//! Back-off delays: full jitter within bounds, capped, reproducible from a seed,
//! and spread over the whole range.

use std::time::Duration;

use proptest::prelude::*;
use swarm_agents::{RetryPolicy, SplitMix64};

proptest! {
    #[test]
    fn delays_stay_within_the_jitter_bounds_and_the_cap(
        base_ms in 1u64..10_000,
        cap_ms in 1u64..120_000,
        attempt in 0u32..200,
        seed in any::<u64>(),
    ) {
        let policy = RetryPolicy { max_attempts: 3, base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
        let mut rng = SplitMix64::new(seed);
        let d = policy.delay(attempt, &mut rng);
        // Reference model of the bound: min(cap, base * 2^(attempt-1)).
        let exp = attempt.saturating_sub(1).min(63);
        let model = (base_ms as u128 * (1u128 << exp)).min(cap_ms as u128);
        prop_assert_eq!(policy.ceiling(attempt).as_millis(), model);
        prop_assert!(d.as_millis() <= model);
        prop_assert!(d <= policy.cap);
        prop_assert_eq!(d, Duration::from_millis(d.as_millis() as u64));
        // Same seed, same delay.
        prop_assert_eq!(d, policy.delay(attempt, &mut SplitMix64::new(seed)));
    }
}

#[test]
fn jitter_covers_the_whole_range() {
    let policy = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1000),
        cap: Duration::from_secs(30),
    };
    let mut rng = SplitMix64::new(1);
    let draws: Vec<u128> = (0..2000)
        .map(|_| policy.delay(1, &mut rng).as_millis())
        .collect();
    assert!(draws.iter().any(|&d| d < 100), "some delays near zero");
    assert!(
        draws.iter().any(|&d| d > 900),
        "some delays near the ceiling"
    );
    assert!(draws.iter().all(|&d| d <= 1000));
}
