//! SharedQueue with many producers and consumers: every item exactly once,
//! per-producer order within a priority, close() wakes everyone, cancellation.

use std::pin::pin;
use std::task::Poll;

use futures::poll;
use swarm_queue::{Priority, QueueClosed, SharedQueue, TryPushError};

const PRIORITIES: [Priority; 4] = Priority::ALL;

/// (producer, sequence number within its priority, priority level)
type Item = (usize, u64, usize);

// A test helper: a failed unwrap fails the calling test.
#[allow(clippy::unwrap_used)]
async fn run(producers: usize, consumers: usize, per_producer: u64, queue: SharedQueue<Item>) {
    let mut consumer_handles = Vec::new();
    for _ in 0..consumers {
        let queue = queue.clone();
        consumer_handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some((item, p)) = queue.pop().await {
                assert_eq!(item.2, p.level());
                got.push(item);
            }
            got
        }));
    }
    let mut producer_handles = Vec::new();
    for producer in 0..producers {
        let queue = queue.clone();
        producer_handles.push(tokio::spawn(async move {
            let mut seq = [0u64; 4];
            for i in 0..per_producer {
                let p = PRIORITIES[(i as usize * 7 + producer) % 4];
                let item = (producer, seq[p.level()], p.level());
                seq[p.level()] += 1;
                queue.push(item, p).await.unwrap();
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in producer_handles {
        h.await.unwrap();
    }
    queue.close();
    let mut all = Vec::new();
    for h in consumer_handles {
        let got = h.await.unwrap();
        // One consumer's pops are in time order, so per producer and level the
        // sequence numbers it saw must increase.
        let mut last = vec![[None::<u64>; 4]; producers];
        for &(producer, seq, level) in &got {
            if let Some(prev) = last[producer][level] {
                assert!(
                    seq > prev,
                    "producer {producer} level {level}: {seq} after {prev}"
                );
            }
            last[producer][level] = Some(seq);
        }
        all.extend(got);
    }
    assert_eq!(all.len() as u64, producers as u64 * per_producer);
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len() as u64,
        producers as u64 * per_producer,
        "duplicates"
    );
    assert!(queue.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_producers_m_consumers_unbounded_each_item_once() {
    for (n, m) in [(1, 1), (1, 4), (4, 1), (4, 4), (8, 3)] {
        run(n, m, 5_000, SharedQueue::new()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_producers_m_consumers_bounded_each_item_once() {
    for (n, m, cap) in [(1, 1, 1), (4, 4, 2), (4, 1, 8), (1, 4, 3), (8, 3, 16)] {
        run(n, m, 5_000, SharedQueue::bounded(cap)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn close_returns_none_to_every_waiting_consumer() {
    let queue: SharedQueue<u32> = SharedQueue::new();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop().await })
        })
        .collect();
    // Let every consumer run until it waits.
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    queue.close();
    for h in handles {
        assert_eq!(h.await.unwrap(), None);
    }
    assert!(queue.is_closed());
    assert!(matches!(
        queue.try_push(1, Priority::Low),
        Err(TryPushError::Closed(1))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn close_hands_items_back_to_waiting_producers_and_keeps_queued_ones() {
    let queue = SharedQueue::bounded(1);
    queue.push(0u32, Priority::Normal).await.unwrap();
    assert!(matches!(
        queue.try_push(9, Priority::Normal),
        Err(TryPushError::Full(9))
    ));
    let handles: Vec<_> = (1..=4u32)
        .map(|i| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.push(i, Priority::High).await })
        })
        .collect();
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    queue.close();
    let mut back: Vec<u32> = Vec::new();
    for h in handles {
        let err: QueueClosed<u32> = h.await.unwrap().unwrap_err();
        back.push(err.into_inner());
    }
    back.sort_unstable();
    assert_eq!(back, [1, 2, 3, 4]);
    // Closing does not drop queued items: consumers drain them, then get None.
    assert_eq!(queue.pop().await, Some((0, Priority::Normal)));
    assert_eq!(queue.pop().await, None);
}

#[tokio::test(flavor = "current_thread")]
async fn bounded_push_waits_for_room() {
    let queue = SharedQueue::bounded(1);
    queue.push(1u32, Priority::Low).await.unwrap();
    let mut waiting = pin!(queue.push(2, Priority::Low));
    assert!(poll!(waiting.as_mut()).is_pending());
    assert_eq!(queue.try_pop(), Some((1, Priority::Low)));
    assert!(matches!(poll!(waiting.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(queue.len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_pop_loses_nothing_and_passes_its_wakeup_on() {
    let queue: SharedQueue<u32> = SharedQueue::new();
    let mut first = Box::pin(queue.pop());
    let mut second = Box::pin(queue.pop());
    assert!(poll!(first.as_mut()).is_pending());
    assert!(poll!(second.as_mut()).is_pending());
    // The push wakes `first`, which is dropped before it runs again.
    queue.try_push(7, Priority::High).unwrap();
    drop(first);
    assert_eq!(queue.len(), 1);
    // `second` got the forwarded wake-up and takes the item.
    assert!(matches!(
        poll!(second.as_mut()),
        Poll::Ready(Some((7, Priority::High)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_pops_under_load_lose_nothing() {
    let queue: SharedQueue<u64> = SharedQueue::bounded(4);
    let total = 2_000u64;
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for i in 0..total {
                queue.push(i, Priority::Normal).await.unwrap();
            }
        })
    };
    let mut got = Vec::new();
    while (got.len() as u64) < total {
        // Race pop against an immediately ready branch half of the time.
        let cancel_now = got.len() % 2 == 0;
        tokio::select! {
            biased;
            _ = async {}, if cancel_now => {}
            item = queue.pop() => got.push(item.unwrap().0),
        }
        if cancel_now {
            got.extend(queue.pop().await.map(|(i, _)| i));
        }
    }
    producer.await.unwrap();
    assert_eq!(got, (0..total).collect::<Vec<_>>());
}
