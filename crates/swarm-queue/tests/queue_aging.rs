//! The aging bound, checked without the reference model: per level FIFO of ids
//! is tracked here, and every pop is charged to the waiting fronts it overtakes.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use proptest::prelude::*;
use swarm_queue::{AgingPolicy, Priority, PriorityQueue};

#[derive(Debug, Clone, Copy)]
enum Step {
    Push(Priority),
    Pop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Mostly urgent pushes: the situation aging exists for.
        3 => Just(Step::Push(Priority::Critical)),
        2 => Just(Step::Push(Priority::High)),
        1 => Just(Step::Push(Priority::Normal)),
        1 => Just(Step::Push(Priority::Low)),
        5 => Just(Step::Pop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn front_task_is_overtaken_at_most_k_times(k in 1u32..8, steps in proptest::collection::vec(step(), 0..800)) {
        let policy = AgingPolicy::new(NonZeroU32::new(k).unwrap());
        let mut queue = PriorityQueue::new().with_aging(policy);
        // Per level: (id, overtaken while at front, overtaken in all, ahead at push).
        let mut levels: [VecDeque<(u64, u32, u64, u64)>; 4] = Default::default();
        let mut next = 0u64;
        for step in steps {
            match step {
                Step::Push(p) => {
                    let ahead = levels[p.level()].len() as u64;
                    queue.push(next, p).unwrap();
                    levels[p.level()].push_back((next, 0, 0, ahead));
                    next += 1;
                }
                Step::Pop => {
                    let Some((id, p)) = queue.pop() else {
                        prop_assert!(levels.iter().all(VecDeque::is_empty));
                        continue;
                    };
                    let served = p.level();
                    let (expected, _, _, _) = levels[served].pop_front().unwrap();
                    prop_assert_eq!(id, expected, "FIFO within a level");
                    for level in levels.iter_mut().skip(served + 1) {
                        for (i, entry) in level.iter_mut().enumerate() {
                            entry.2 += 1;
                            if i == 0 {
                                entry.1 += 1;
                                prop_assert!(entry.1 <= k, "front overtaken {} times, bound {}", entry.1, k);
                            }
                            let bound = (entry.3 + 1) * u64::from(k);
                            prop_assert!(entry.2 <= bound, "overtaken {} times, bound {}", entry.2, bound);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn without_aging_low_waits_behind_every_urgent_task() {
    let mut queue = PriorityQueue::new();
    queue.push(0, Priority::Low).unwrap();
    for i in 1..=100 {
        queue.push(i, Priority::High).unwrap();
    }
    let order: Vec<_> = queue.drain().map(|(i, _)| i).collect();
    assert_eq!(order.last(), Some(&0));
}

#[test]
fn aging_serves_a_starved_low_task_after_k_overtakes() {
    let k = 3;
    let mut queue = PriorityQueue::new().with_aging(AgingPolicy::new(NonZeroU32::new(k).unwrap()));
    queue.push(0, Priority::Low).unwrap();
    for i in 1..=10 {
        queue.push(i, Priority::Critical).unwrap();
    }
    let order: Vec<_> = queue.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [1, 2, 3, 0, 4, 5, 6, 7, 8, 9, 10]);
    let popped: Vec<_> = queue.drain().map(|(i, _)| i).collect();
    assert_eq!(popped, order);
}
