//! Bytes per queued item for `PriorityQueue<u64>` at 10 M items.
//!
//! Each level is a `VecDeque<u64>`, whose allocation is exactly
//! `capacity * size_of::<u64>()`, so `heap_bytes` is the real footprint.

use swarm_queue::{Priority, PriorityQueue};

#[test]
fn ten_million_u64_cost_at_most_32_bytes_each_beyond_the_item() {
    const N: usize = 10_000_000;
    let mut queue = PriorityQueue::new();
    for i in 0..N as u64 {
        // A skewed mix: 10% critical, 20% high, 40% normal, 30% low.
        let p = match i % 10 {
            0 => Priority::Critical,
            1 | 2 => Priority::High,
            3..=6 => Priority::Normal,
            _ => Priority::Low,
        };
        queue.push(i, p).unwrap();
    }
    assert_eq!(queue.len(), N);
    let total = queue.heap_bytes() + size_of::<PriorityQueue<u64>>();
    let per_item = total as f64 / N as f64;
    let overhead = per_item - size_of::<u64>() as f64;
    println!(
        "PriorityQueue<u64> at {N} items: {total} bytes, {per_item:.2} B/item, {overhead:.2} B/item beyond T"
    );
    assert!(overhead <= 32.0, "overhead {overhead:.2} B/item");

    // Worst case for capacity slack: everything in one level just past a doubling.
    let mut one_level = PriorityQueue::new();
    for i in 0..N as u64 {
        one_level.push(i, Priority::Normal).unwrap();
    }
    let per_item = one_level.heap_bytes() as f64 / N as f64;
    println!("one level: {per_item:.2} B/item");
    assert!(per_item - 8.0 <= 32.0);
}
