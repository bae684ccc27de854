//! The bucket arithmetic and the per-key budgets, without a scheduler.
#![allow(clippy::unwrap_used)]

use super::*;

fn rule(bound: Bound, selector: Selector) -> Rule {
    Rule::new(&LimitSpec { selector, bound }, Instant::now())
}

fn task(cost: u32, key: &str) -> Task {
    Task::builder("llm").cost(cost).key(key).build().unwrap()
}

#[test]
fn a_bucket_refills_at_count_per_period_up_to_its_burst() {
    let t0 = Instant::now();
    let r = rule(
        Bound::Rate(Rate::new(10, Duration::from_secs(1)).burst(3)),
        Selector::kind("llm"),
    );
    let unit = r.need(&task(1, "a"));
    assert_eq!(r.free(&r.one, t0), 3 * unit);
    let mut empty = r.fresh_budget(t0);
    empty.level = 0;
    // 100 ms refill one unit at 10/s; never more than the burst.
    assert_eq!(r.free(&empty, t0 + Duration::from_millis(100)), unit);
    assert_eq!(r.free(&empty, t0 + Duration::from_secs(60)), 3 * unit);
}

#[test]
fn an_earlier_instant_never_refills_a_stretch_twice() {
    let t0 = Instant::now();
    let mut r = rule(
        Bound::Rate(Rate::new(10, Duration::from_secs(1)).burst(5)),
        Selector::kind("llm"),
    );
    let unit = r.need(&task(1, "a"));
    // Charged at t0 + 100 ms (a start), then refilled with an instant read
    // before it (a caller that took `now` earlier): nothing changes.
    r.one.level = 0;
    r.one.at = t0 + Duration::from_millis(100);
    r.refill(None, t0);
    assert_eq!(
        (r.one.level, r.one.at),
        (0, t0 + Duration::from_millis(100))
    );
    // 200 ms after the charge: two units, not three.
    assert_eq!(r.free(&r.one, t0 + Duration::from_millis(300)), 2 * unit);
}

#[test]
fn the_head_is_due_when_its_cost_has_refilled_never_earlier() {
    let t0 = Instant::now();
    let r = rule(
        Bound::Rate(Rate::new(3, Duration::from_secs(1)).burst(3)),
        Selector::kind("llm"),
    );
    let mut budget = r.fresh_budget(t0);
    budget.level = 0;
    let queued_task = Queued {
        task: task(2, "a"),
        since: Stamp(0),
        order: 0,
    };
    budget.parked.insert(
        place_of(&queued_task),
        Parked {
            queued: Queued {
                task: queued_task.task.clone(),
                since: Stamp(0),
                order: 0,
            },
            since: t0,
        },
    );
    // 2 units at 3/s: 666.67 ms, rounded up to 667 ms.
    let due = r.head_due(&budget, t0).unwrap();
    assert_eq!(due - t0, Duration::from_millis(667));
    assert!(r.fits(&budget, r.need(&queued_task.task), 0, due));
    assert!(!r.fits(
        &budget,
        r.need(&queued_task.task),
        0,
        due - Duration::from_millis(1)
    ));
    // Promised units to others push the head back; over the bucket, only a
    // start can (no time is due).
    budget.promised = r.need(&task(1, "a"));
    assert_eq!(
        r.head_due(&budget, t0).unwrap() - t0,
        Duration::from_millis(1000)
    );
    budget.promised = r.need(&task(2, "a"));
    assert_eq!(r.head_due(&budget, t0), None);
    // What is promised to the task itself is its own.
    assert!(r.fits(
        &budget,
        r.need(&queued_task.task),
        r.need(&queued_task.task),
        due
    ));
}

#[test]
fn a_concurrency_budget_starts_empty_and_has_no_due_time() {
    let t0 = Instant::now();
    let r = rule(Bound::Concurrency(2), Selector::each_key());
    let fresh = r.fresh_budget(t0);
    assert_eq!(r.free(&fresh, t0), 2);
    let mut full = r.fresh_budget(t0);
    full.level = 2;
    assert!(!r.fits(&full, 1, 0, t0));
    let t = task(1, "a");
    full.parked.insert(
        (Reverse(t.priority()), 0),
        Parked {
            queued: Queued {
                task: t,
                since: Stamp(0),
                order: 0,
            },
            since: t0,
        },
    );
    assert_eq!(r.head_due(&full, t0), None);
}

#[test]
fn idle_per_key_budgets_are_forgotten_and_busy_ones_kept() {
    let t0 = Instant::now();
    let mut r = rule(Bound::Concurrency(1), Selector::each_key());
    for i in 0..1_000 {
        let key = format!("tenant-{i}");
        let budget = r.budget_mut(Some(&key), t0);
        // Every tenth key has a task running.
        if i % 10 == 0 {
            budget.level = 1;
        }
        r.forget_idle_keys(t0);
    }
    assert!(r.keys.len() <= 2 * 100 + PRUNE_FROM, "{}", r.keys.len());
    for i in (0..1_000).step_by(10) {
        assert_eq!(r.budget(Some(&format!("tenant-{i}"))).unwrap().level, 1);
    }
}
