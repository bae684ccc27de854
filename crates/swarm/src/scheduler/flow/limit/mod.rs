//! Rate and concurrency limits (`SwarmBuilder::rate_limit`,
//! `SwarmBuilder::concurrency_limit`), kept by one process.
//!
//! A limit has a budget (one, or one per key for [`Selector::each_key`]): a
//! token bucket for a rate, a count of running tasks for a concurrency bound.
//! A task is checked twice:
//!
//! - as it enters the runnable queues (`Core::hold_if_limited`, from
//!   `enqueue_new`/`requeue`): if some limit that applies cannot admit it now,
//!   or already holds tasks that come before it, the task is *parked* in that
//!   budget's list (most urgent, then oldest, first), outside every queue, and
//!   `task:throttled` says so. Agents never see it, so a throttled kind never
//!   stops an agent from starting other work;
//! - as it starts (`Core::pick`, the polling loop): tasks in the queues were
//!   admitted earlier, and another may have taken the capacity since; one
//!   that no longer fits is taken off its queue and parked.
//!
//! Starting takes the tokens and slots of every limit that applies, all at
//! once, under the scheduler lock (`Core::take_limits` in `assign`): all or
//! none. The slots go back when the attempt ends, whatever the end
//! (`Core::release_limits`, wherever `running` loses the task).
//!
//! A parked task leaves its list when its budget can admit it
//! (`Core::drain_limit`): a concurrency budget when a slot frees, a rate
//! budget when one timer, armed for the earliest moment a parked head fits,
//! fires. It is then *promised* the units it needs until it starts (or is
//! parked or cancelled), so the next head waits for the capacity that is left
//! rather than being released too and parked again. With nothing parked no
//! timer exists; a parked head that only a release can admit arms none.

mod config;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use swarm_core::event::{TaskThrottled, TaskUnthrottled};

pub(crate) use config::{Bound, LimitSpec};
pub use config::{LimitError, Rate, Selector};

use super::super::*;

/// A parked task's place in its list: the most urgent first, then the oldest.
type Place = (Reverse<Priority>, u64);

fn place_of(queued: &Queued) -> Place {
    (Reverse(queued.task.priority()), queued.order)
}

struct Parked {
    queued: Queued,
    since: Instant,
}

/// One budget: a limit's, or one key's of a limit over each key.
struct Budget {
    /// Rate: tokens, in units of `1 / per_nanos` of a unit (exact integer
    /// refill); concurrency: tasks running.
    level: u128,
    /// When `level` was last refilled (rate).
    at: Instant,
    /// Units released from `parked` to the queues, not yet started.
    promised: u128,
    parked: BTreeMap<Place, Parked>,
}

struct Rule {
    name: String,
    selector: Selector,
    bound: Bound,
    one: Budget,
    keys: HashMap<Arc<str>, Budget>,
    /// Per-key budgets are pruned when there are this many (doubling with
    /// what is left, so pruning costs O(1) per start, amortized).
    prune_at: usize,
}

/// The fewest per-key budgets worth pruning.
const PRUNE_FROM: usize = 64;

impl Rule {
    fn new(spec: &LimitSpec, now: Instant) -> Rule {
        let mut rule = Rule {
            name: spec.name(),
            selector: spec.selector.clone(),
            bound: spec.bound,
            one: Budget {
                level: 0,
                at: now,
                promised: 0,
                parked: BTreeMap::new(),
            },
            keys: HashMap::new(),
            prune_at: PRUNE_FROM,
        };
        rule.one = rule.fresh_budget(now);
        rule
    }

    /// A budget no task has used: a full bucket, nothing running.
    fn fresh_budget(&self, now: Instant) -> Budget {
        Budget {
            level: match self.bound {
                Bound::Rate(_) => self.capacity(),
                Bound::Concurrency(_) => 0,
            },
            at: now,
            promised: 0,
            parked: BTreeMap::new(),
        }
    }

    fn capacity(&self) -> u128 {
        match self.bound {
            Bound::Rate(rate) => u128::from(rate.capacity()) * rate.per().as_nanos(),
            Bound::Concurrency(max) => max as u128,
        }
    }

    /// What starting `task` takes from this budget.
    fn need(&self, task: &Task) -> u128 {
        match self.bound {
            Bound::Rate(rate) => u128::from(task.cost()) * rate.per().as_nanos(),
            Bound::Concurrency(_) => 1,
        }
    }

    /// The budget's key for `task` (`None`: the limit's one budget).
    fn key_of<'t>(&self, task: &'t Task) -> Option<&'t str> {
        if self.selector.per_key() {
            task.key()
        } else {
            None
        }
    }

    fn budget(&self, key: Option<&str>) -> Option<&Budget> {
        match key {
            None => Some(&self.one),
            Some(key) => self.keys.get(key),
        }
    }

    fn budget_mut(&mut self, key: Option<&str>, now: Instant) -> &mut Budget {
        match key {
            None => &mut self.one,
            Some(key) => {
                if !self.keys.contains_key(key) {
                    let fresh = self.fresh_budget(now);
                    self.keys.insert(Arc::from(key), fresh);
                }
                self.keys
                    .get_mut(key)
                    .unwrap_or_else(|| unreachable!("inserted above"))
            }
        }
    }

    /// Units free now (rate: refilled up to now), before promises.
    fn free(&self, budget: &Budget, now: Instant) -> u128 {
        match self.bound {
            Bound::Rate(rate) => {
                let elapsed = now.saturating_duration_since(budget.at).as_nanos();
                (budget.level + elapsed * u128::from(rate.count())).min(self.capacity())
            }
            Bound::Concurrency(max) => (max as u128).saturating_sub(budget.level),
        }
    }

    /// Whether `need` fits now, leaving what is promised to others
    /// (`own`: what is promised to this very task).
    fn fits(&self, budget: &Budget, need: u128, own: u128, now: Instant) -> bool {
        let promised_to_others = budget.promised.saturating_sub(own);
        self.free(budget, now) >= need.saturating_add(promised_to_others)
    }

    /// When the head of `budget`'s parked list fits, if time alone makes it
    /// fit (a rate); `None` if only a release can (a concurrency bound, or
    /// promises over the bucket's size: the promised tasks' starts re-arm).
    fn head_due(&self, budget: &Budget, now: Instant) -> Option<Instant> {
        let head = budget.parked.values().next()?;
        let need = self.need(&head.queued.task).saturating_add(budget.promised);
        if self.free(budget, now) >= need {
            return Some(now);
        }
        let Bound::Rate(rate) = self.bound else {
            return None;
        };
        if need > self.capacity() {
            return None;
        }
        let missing = need - self.free(budget, now);
        let nanos = missing.div_ceil(u128::from(rate.count()));
        // Whole milliseconds, rounded up (tokio's timer resolution): never early.
        let millis = u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX);
        now.checked_add(Duration::from_millis(millis))
    }

    /// Brings a rate budget's bucket up to `now`. A `now` read before the
    /// bucket's last refill (a caller's earlier instant) changes nothing:
    /// moving `at` back would count that stretch of refill twice.
    fn refill(&mut self, key: Option<&str>, now: Instant) {
        if let Bound::Rate(_) = self.bound {
            let free = self
                .budget(key)
                .map_or(self.capacity(), |b| self.free(b, now));
            let budget = self.budget_mut(key, now);
            if now > budget.at {
                budget.level = free;
                budget.at = now;
            }
        }
    }

    /// Drops per-key budgets that are back to fresh (a full bucket, nothing
    /// running, parked or promised): a key that comes back gets a fresh one,
    /// the same thing. Keeps memory to the keys in use.
    fn forget_idle_keys(&mut self, now: Instant) {
        if self.keys.len() < self.prune_at {
            return;
        }
        let capacity = self.capacity();
        let bound = self.bound;
        let free = |b: &Budget| match bound {
            Bound::Rate(rate) => {
                let elapsed = now.saturating_duration_since(b.at).as_nanos();
                (b.level + elapsed * u128::from(rate.count())).min(capacity)
            }
            Bound::Concurrency(max) => (max as u128).saturating_sub(b.level),
        };
        self.keys
            .retain(|_, b| !(b.parked.is_empty() && b.promised == 0 && free(b) == capacity));
        self.prune_at = (2 * self.keys.len()).max(PRUNE_FROM);
    }
}

/// Concurrency slots an attempt holds, given back when it ends.
#[derive(Default)]
pub(crate) struct Held {
    rules: Vec<usize>,
    key: Option<Arc<str>>,
}

/// Where a parked task is.
struct ParkedAt {
    rule: usize,
    key: Option<Arc<str>>,
    place: Place,
}

struct Timer {
    at: Instant,
    generation: u64,
    handle: JoinHandle<()>,
}

/// Every limit's budgets and parked tasks, and the one timer.
#[derive(Default)]
pub(crate) struct Limits {
    rules: Vec<Rule>,
    parked_at: IdMap<TaskId, ParkedAt>,
    /// The rule that released each of these tasks from its parked list and
    /// holds capacity for it until it starts. Kept here rather than in every
    /// `Queued` (8 bytes each) because at most the released few are in it.
    promised_to: IdMap<TaskId, usize>,
    timer: Option<Timer>,
    generation: u64,
}

impl Limits {
    pub(crate) fn new(specs: &[LimitSpec]) -> Limits {
        let now = Instant::now();
        Limits {
            rules: specs.iter().map(|spec| Rule::new(spec, now)).collect(),
            ..Limits::default()
        }
    }

    /// Tasks parked by a limit.
    pub(crate) fn len(&self) -> usize {
        self.parked_at.len()
    }

    fn applying<'a>(&'a self, task: &'a Task) -> impl Iterator<Item = (usize, &'a Rule)> + 'a {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, rule)| rule.selector.applies_to(task))
    }

    /// The first limit that cannot admit `queued` now; with `queue_order`,
    /// also one that holds parked tasks that come before it.
    /// The clock is read only if some limit applies (most tasks of a swarm
    /// may be under none).
    fn refusing(&self, queued: &Queued, queue_order: bool) -> Option<usize> {
        let place = place_of(queued);
        let mut now = None;
        let mut promise = None;
        self.applying(&queued.task).find_map(|(i, rule)| {
            let now = *now.get_or_insert_with(Instant::now);
            let key = rule.key_of(&queued.task);
            let Some(budget) = rule.budget(key) else {
                return None; // a key not seen yet: a fresh budget admits it
            };
            if queue_order && budget.parked.keys().next().is_some_and(|p| *p < place) {
                return Some(i);
            }
            let need = rule.need(&queued.task);
            let promise =
                *promise.get_or_insert_with(|| self.promised_to.get(&queued.task.id()).copied());
            let own = if promise == Some(i) { need } else { 0 };
            (!rule.fits(budget, need, own, now)).then_some(i)
        })
    }

    /// Stops the timer and forgets parked tasks (shutdown: they stay pending
    /// in the log and are held again on the next start if they must be).
    pub(crate) fn clear(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.handle.abort();
        }
        for rule in &mut self.rules {
            rule.one.parked.clear();
            rule.one.promised = 0;
            rule.keys.clear();
        }
        self.parked_at.clear();
        self.promised_to.clear();
    }
}

impl Core {
    /// The limit a task's cost can never fit (over its bucket's size), with
    /// that size: such a task is refused at submit, dead-lettered at recovery.
    pub(in crate::scheduler) fn cost_over_limit(
        &self,
        s: &Sched,
        task: &Task,
    ) -> Option<(String, u32)> {
        s.limits
            .applying(task)
            .find_map(|(_, rule)| match rule.bound {
                Bound::Rate(rate) if task.cost() > rate.capacity() => {
                    Some((rule.name.clone(), rate.capacity()))
                }
                _ => None,
            })
    }

    /// Parks `queued` if a limit cannot admit it now (or holds tasks that
    /// come first); otherwise hands it back to be queued.
    pub(in crate::scheduler) fn hold_if_limited(
        &self,
        s: &mut Sched,
        queued: Queued,
    ) -> Option<Queued> {
        if s.limits.rules.is_empty() {
            return Some(queued);
        }
        match s.limits.refusing(&queued, true) {
            None => Some(queued),
            Some(rule) => {
                self.park(s, rule, queued);
                None
            }
        }
    }

    /// The limit that refuses to start `queued` now, if any (it was admitted
    /// to the queues earlier; another task may have taken the capacity).
    pub(in crate::scheduler) fn limit_refusing_start(
        &self,
        s: &Sched,
        queued: &Queued,
    ) -> Option<usize> {
        if s.limits.rules.is_empty() {
            return None;
        }
        s.limits.refusing(queued, false)
    }

    /// Holds `queued` in `rule`'s list, outside every queue, until the rule
    /// can admit it.
    pub(in crate::scheduler) fn park(&self, s: &mut Sched, rule: usize, queued: Queued) {
        let now = Instant::now();
        self.drop_promise(s, &queued);
        let limits = &mut s.limits;
        let task_id = queued.task.id();
        let place = place_of(&queued);
        let key: Option<Arc<str>> = limits.rules[rule].key_of(&queued.task).map(Arc::from);
        let name = limits.rules[rule].name.clone();
        let budget = limits.rules[rule].budget_mut(key.as_deref(), now);
        budget.parked.insert(place, Parked { queued, since: now });
        limits
            .parked_at
            .insert(task_id, ParkedAt { rule, key, place });
        self.bus.emit(TaskThrottled {
            task_id,
            limit: name,
        });
        self.arm_limit_timer(s);
    }

    /// Forgets what a task leaving the queues without starting was promised
    /// (parked again, cancelled): the next parked task may have it.
    pub(in crate::scheduler) fn drop_promise(&self, s: &mut Sched, queued: &Queued) {
        if s.limits.promised_to.is_empty() {
            return;
        }
        let Some(i) = s.limits.promised_to.remove(&queued.task.id()) else {
            return;
        };
        let now = Instant::now();
        let rule = &mut s.limits.rules[i];
        let need = rule.need(&queued.task);
        let key = rule.key_of(&queued.task);
        let budget = rule.budget_mut(key, now);
        budget.promised = budget.promised.saturating_sub(need);
        self.arm_limit_timer(s);
    }

    /// Removes a parked task (cancelled); true if it was parked.
    pub(in crate::scheduler) fn remove_parked(&self, s: &mut Sched, task_id: TaskId) -> bool {
        let Some(at) = s.limits.parked_at.remove(&task_id) else {
            return false;
        };
        let now = Instant::now();
        let rule = &mut s.limits.rules[at.rule];
        rule.budget_mut(at.key.as_deref(), now)
            .parked
            .remove(&at.place);
        // The next one may fit now.
        self.arm_limit_timer(s);
        true
    }

    /// Takes the tokens and slots of every limit that applies to `task` (the
    /// callers checked that they all admit it, under the same lock).
    pub(in crate::scheduler) fn take_limits(&self, s: &mut Sched, queued: &Queued) -> Held {
        let mut held = Held::default();
        if s.limits.rules.is_empty() {
            return held;
        }
        let task = &queued.task;
        // Starting spends the promise, if it had one.
        let promise = match s.limits.promised_to.is_empty() {
            true => None,
            false => s.limits.promised_to.remove(&task.id()),
        };
        if s.limits.applying(task).next().is_none() {
            return held;
        }
        let now = Instant::now();
        let mut kept_promise = false;
        for (i, rule) in s.limits.rules.iter_mut().enumerate() {
            if !rule.selector.applies_to(task) {
                continue;
            }
            let need = rule.need(task);
            let key = rule.key_of(task);
            rule.refill(key, now);
            let concurrency = matches!(rule.bound, Bound::Concurrency(_));
            let budget = rule.budget_mut(key, now);
            if promise == Some(i) {
                budget.promised = budget.promised.saturating_sub(need);
                kept_promise = true;
            }
            if concurrency {
                budget.level += 1;
                held.rules.push(i);
                if held.key.is_none() {
                    held.key = key.map(Arc::from);
                }
            } else {
                // Refilled above: charge the start.
                budget.level = budget.level.saturating_sub(need);
            }
            rule.forget_idle_keys(now);
        }
        if kept_promise {
            // What it was promised is spent: the next parked task's time
            // may be computable now (it was not while promises filled the bucket).
            self.arm_limit_timer(s);
        }
        held
    }

    /// Gives back an ended attempt's concurrency slots and admits parked
    /// tasks that fit now.
    pub(in crate::scheduler) fn release_limits(&self, s: &mut Sched, held: Held) {
        let now = Instant::now();
        let key_of = |rule: &Rule| {
            if rule.selector.per_key() {
                held.key.as_deref()
            } else {
                None
            }
        };
        for &i in &held.rules {
            let key = key_of(&s.limits.rules[i]);
            let budget = s.limits.rules[i].budget_mut(key, now);
            budget.level = budget.level.saturating_sub(1);
        }
        for &i in &held.rules {
            let key = key_of(&s.limits.rules[i]);
            self.drain_limit(s, i, key);
        }
    }

    /// Releases parked tasks of one budget while they fit (each checked by
    /// every other limit too), in their order; each is promised what it needs.
    fn drain_limit(&self, s: &mut Sched, i: usize, key: Option<&str>) {
        let Some(core) = self.me.upgrade() else {
            return;
        };
        let now = Instant::now();
        loop {
            s.limits.rules[i].refill(key, now);
            let rule = &s.limits.rules[i];
            let Some(budget) = rule.budget(key) else {
                break;
            };
            let Some(head) = budget.parked.values().next() else {
                break;
            };
            let need = rule.need(&head.queued.task);
            if !rule.fits(budget, need, 0, now) {
                break;
            }
            let name = rule.name.clone();
            let rule = &mut s.limits.rules[i];
            let Some((_, parked)) = rule.budget_mut(key, now).parked.pop_first() else {
                break;
            };
            let queued = parked.queued;
            s.limits.parked_at.remove(&queued.task.id());
            self.bus.emit(TaskUnthrottled {
                task_id: queued.task.id(),
                limit: name,
                waited: now.saturating_duration_since(parked.since),
            });
            // Every other limit still has its say.
            let Some(queued) = self.hold_if_limited(s, queued) else {
                continue;
            };
            s.limits.rules[i].budget_mut(key, now).promised += need;
            s.limits.promised_to.insert(queued.task.id(), i);
            core.place_admitted(s, queued);
        }
        s.limits.rules[i].forget_idle_keys(now);
        self.arm_limit_timer(s);
    }

    /// Makes the one timer match the earliest moment a parked head fits by
    /// time alone: none when nothing can, untouched when it already fires then.
    fn arm_limit_timer(&self, s: &mut Sched) {
        let now = Instant::now();
        let limits = &mut s.limits;
        let earliest = limits
            .rules
            .iter()
            .flat_map(|rule| {
                std::iter::once(&rule.one)
                    .chain(rule.keys.values())
                    .filter(|b| !b.parked.is_empty())
                    .filter_map(move |b| rule.head_due(b, now))
            })
            .min();
        if let (Some(at), Some(timer)) = (earliest, &limits.timer) {
            if timer.at == at {
                return;
            }
        }
        if let Some(timer) = limits.timer.take() {
            timer.handle.abort();
        }
        let Some(at) = earliest else {
            return;
        };
        limits.generation += 1;
        let generation = limits.generation;
        let core = self.me.clone();
        let handle = self.runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(core) = core.upgrade() {
                core.limits_due(generation);
            }
        });
        limits.timer = Some(Timer {
            at,
            generation,
            handle,
        });
    }

    /// The timer fired: every budget whose parked head fits releases what fits.
    fn limits_due(&self, generation: u64) {
        Counters::bump(&self.counters.wakeups);
        let mut s = self.sched.lock();
        if s.limits.timer.as_ref().map(|t| t.generation) != Some(generation) {
            return; // superseded while it waited for the lock
        }
        s.limits.timer = None;
        let now = Instant::now();
        let due: Vec<(usize, Option<Arc<str>>)> = s
            .limits
            .rules
            .iter()
            .enumerate()
            .flat_map(|(i, rule)| {
                let one = (!rule.one.parked.is_empty()).then_some((i, None));
                let keys = rule
                    .keys
                    .iter()
                    .filter(|(_, b)| !b.parked.is_empty())
                    .map(move |(k, _)| (i, Some(Arc::clone(k))));
                one.into_iter().chain(keys)
            })
            .filter(|(i, key)| {
                let rule = &s.limits.rules[*i];
                rule.budget(key.as_deref())
                    .and_then(|b| rule.head_due(b, now))
                    .is_some_and(|at| at <= now)
            })
            .collect();
        for (i, key) in due {
            self.drain_limit(&mut s, i, key.as_deref());
        }
        self.arm_limit_timer(&mut s);
    }
}

#[cfg(test)]
mod tests;
