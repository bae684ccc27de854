//! Model-based property tests: PriorityQueue against the naive ReferenceQueue.

use proptest::prelude::*;
use swarm_queue::PriorityQueue;
use swarm_queue::model::{self, Op, QueueConfig};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Random push/pop/peek/retain/drain/remove/take/inspect sequences with random
    /// priorities, capacities and aging: same results as the model at every step.
    #[test]
    fn queue_matches_the_reference_model(config in model::config(), ops in model::ops(200)) {
        let mut queue: PriorityQueue<u64> = config.queue();
        let mut reference = config.model();
        model::check_ops(&mut queue, &mut reference, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Long runs with aging and many pushes, so levels stay non-empty and the
    /// bound is reached often.
    #[test]
    fn aging_bound_holds_on_long_runs(
        aging in model::aging_policy(),
        ops in proptest::collection::vec(
            prop_oneof![3 => model::priority().prop_map(Op::Push), 2 => Just(Op::Pop)],
            0..600,
        ),
    ) {
        let config = QueueConfig { capacity: None, aging: Some(aging) };
        let mut queue: PriorityQueue<u64> = config.queue();
        let mut reference = config.model();
        model::check_ops(&mut queue, &mut reference, &ops)?;
        prop_assert!(reference.worst_overtaken_at_front() <= aging.max_overtakes());
    }
}

/// The checker must catch a broken queue; otherwise the tests above prove nothing.
#[test]
fn checker_catches_a_lifo_queue() {
    use swarm_queue::model::QueueUnderTest;
    use swarm_queue::{Priority, QueueFull};

    struct Lifo(Vec<(u64, Priority)>);
    impl QueueUnderTest for Lifo {
        fn push(&mut self, item: u64, priority: Priority) -> Result<(), QueueFull<u64>> {
            self.0.push((item, priority));
            Ok(())
        }
        fn pop(&mut self) -> Option<(u64, Priority)> {
            self.0.pop()
        }
        fn peek(&self) -> Option<(u64, Priority)> {
            self.0.last().copied()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn retain(&mut self, keep: &mut dyn FnMut(&u64) -> bool) {
            self.0.retain(|(i, _)| keep(i))
        }
        fn drain(&mut self) -> Vec<(u64, Priority)> {
            self.0.drain(..).rev().collect()
        }
    }
    let ops = [Op::Push(Priority::Low), Op::Push(Priority::Low), Op::Pop];
    let config = QueueConfig {
        capacity: None,
        aging: None,
    };
    let result = model::check_ops(&mut Lifo(Vec::new()), &mut config.model(), &ops);
    assert!(result.is_err());
}
