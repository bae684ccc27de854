//! Opt-in fair share: deficit round robin over keys within each level.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Reads an item's key (its fairness group, `None` for the one "no key"
/// group) and its cost (units charged against the key's deficit; 0 counts as 1).
///
/// A plain function, so a fair queue stays `Clone` and the key is read from
/// the item itself: nothing can disagree with it.
pub type KeyOf<T> = for<'a> fn(&'a T) -> (Option<&'a str>, u32);

/// The discipline of a [`FairQueue`](crate::FairQueue): deficit round robin
/// (DRR) over keys, within each priority level.
///
/// Each level keeps one *flow* per key that has items queued, served in
/// rounds. When a flow's turn comes it earns its quantum (`quantum × weight`,
/// weight 1 unless set with [`weight`](Self::weight)) and pops items while
/// the front item's cost fits in what it has earned; the rest carries over
/// to its next turn. A key's state is dropped as soon as its backlog empties
/// (its unspent deficit with it), so memory follows the keys queued now, not
/// every key ever seen. A new key joins the end of the round.
///
/// Levels still come first and aging still bounds starvation across levels
/// (see [`AgingPolicy`](crate::AgingPolicy)); fair share only decides which
/// item of a level a pop of that level returns. The guarantee, checked by
/// property tests:
///
/// - **Bound**: while a key stays backlogged, between two of its pops (or
///   from its arrival to its first pop) at most
///   `m × (quantum × max_weight + max_cost − 1)` cost units of other keys are
///   popped from its level, where `m` is the number of other keys popped in
///   between (at most the keys active in the level − 1), provided every cost
///   is at most `quantum`. With unit costs: `m × quantum × max_weight`. Larger
///   costs are served too (a key saves up over several turns; rounds in which
///   no key can pay are skipped at once, so a pop is O(keys), never O(cost)),
///   and the bound is multiplied by `⌈max_cost / quantum⌉`.
/// - **Shares**: while keys stay backlogged, each key's popped cost units stay
///   within `2 × quantum × weight + max_cost × (1 + keys × weight / total_weight)`
///   of its weighted share of all pops so far: shares proportional to weight.
/// - **One key**: with a single key (or none) the level is FIFO, exactly as
///   without fair share.
/// - Within a key, items pop in FIFO order.
///
/// ```
/// use std::num::NonZeroU32;
/// use swarm_queue::{FairQueue, FairShare, Priority};
///
/// // Items are (tenant, name); each costs 1.
/// let share = FairShare::new(NonZeroU32::MIN).weight("b", NonZeroU32::new(2).unwrap());
/// let mut queue = FairQueue::new(share, |item: &(&str, &str)| (Some(item.0), 1));
/// for name in ["a1", "a2", "a3", "a4"] {
///     queue.push(("a", name), Priority::Normal)?;
/// }
/// for name in ["b1", "b2", "b3", "b4"] {
///     queue.push(("b", name), Priority::Normal)?;
/// }
/// let order: Vec<&str> = queue.drain().map(|((_, name), _)| name).collect();
/// assert_eq!(order, ["a1", "b1", "b2", "a2", "b3", "b4", "a3", "a4"]);
/// # Ok::<(), swarm_queue::QueueFull<(&str, &str)>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct FairShare {
    quantum: NonZeroU32,
    weights: HashMap<Box<str>, NonZeroU32>,
}

impl fmt::Debug for FairShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairShare")
            .field("quantum", &self.quantum)
            .field("weighted_keys", &self.weights.len())
            .finish()
    }
}

impl Default for FairShare {
    /// A quantum of 1 (one unit-cost item per key and turn), every weight 1.
    fn default() -> Self {
        FairShare::new(NonZeroU32::MIN)
    }
}

impl FairShare {
    /// Fair share where a key of weight 1 earns `quantum` cost units a turn.
    pub fn new(quantum: NonZeroU32) -> Self {
        FairShare {
            quantum,
            weights: HashMap::new(),
        }
    }

    /// Gives `key` `weight` times the base quantum (weights default to 1; the
    /// "no key" group always has weight 1).
    pub fn weight(mut self, key: impl Into<Box<str>>, weight: NonZeroU32) -> Self {
        self.weights.insert(key.into(), weight);
        self
    }

    /// The base quantum.
    pub fn quantum(&self) -> u32 {
        self.quantum.get()
    }

    /// The weight of `key` (1 unless set).
    pub fn weight_of(&self, key: Option<&str>) -> u32 {
        key.and_then(|k| self.weights.get(k)).map_or(1, |w| w.get())
    }

    /// What `key` earns a turn: `quantum × weight`.
    pub fn quantum_of(&self, key: Option<&str>) -> u64 {
        u64::from(self.quantum.get()) * u64::from(self.weight_of(key))
    }
}

/// One key's backlog in a level.
#[derive(Clone, Debug)]
pub(crate) struct Flow<T> {
    key: Option<Arc<str>>,
    pub(crate) items: VecDeque<T>,
    quantum: u64,
}

/// A flow's place in the round: which flow, its first item not yet served
/// (always 0 in the queue; advanced by the pop-order iterator's replay), and
/// what it may still spend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Turn {
    pub(crate) flow: usize,
    pub(crate) next: usize,
    deficit: u64,
}

/// One level under fair share.
///
/// Invariant (after every public operation): every flow with items is in
/// `round` exactly once, no other flow is, and the front turn can pay for its
/// front item, so `front` and `pop` are O(1).
#[derive(Clone, Debug)]
pub(crate) struct FairLevel<T> {
    /// A slab: `None` marks a free slot, reused by the next new key.
    pub(crate) flows: Vec<Option<Flow<T>>>,
    free: Vec<usize>,
    by_key: HashMap<Arc<str>, usize>,
    no_key: Option<usize>,
    pub(crate) round: VecDeque<Turn>,
    len: usize,
}

impl<T> Default for FairLevel<T> {
    fn default() -> Self {
        FairLevel {
            flows: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            no_key: None,
            round: VecDeque::new(),
            len: 0,
        }
    }
}

fn cost_of<T>(key_of: KeyOf<T>, item: &T) -> u64 {
    u64::from(key_of(item).1.max(1))
}

impl<T> FairLevel<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys with items queued in this level.
    pub(crate) fn active_keys(&self) -> usize {
        self.round.len()
    }

    pub(crate) fn push(&mut self, item: T, share: &FairShare, key_of: KeyOf<T>) {
        // Look the key up while `item` is borrowed; own it only for a new flow.
        let (existing, quantum, new_key) = match key_of(&item).0 {
            None => (self.no_key, share.quantum_of(None), None),
            Some(k) => match self.by_key.get(k) {
                Some(&slot) => (Some(slot), 0, None),
                None => (None, share.quantum_of(Some(k)), Some(Arc::<str>::from(k))),
            },
        };
        self.len += 1;
        if let Some(slot) = existing {
            if let Some(flow) = &mut self.flows[slot] {
                flow.items.push_back(item);
                return;
            }
        }
        let flow = Flow {
            key: new_key.clone(),
            items: VecDeque::from([item]),
            quantum,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.flows[slot] = Some(flow);
                slot
            }
            None => {
                self.flows.push(Some(flow));
                self.flows.len() - 1
            }
        };
        match new_key {
            None => self.no_key = Some(slot),
            Some(k) => {
                self.by_key.insert(k, slot);
            }
        }
        let was_empty = self.round.is_empty();
        // A new key joins the end of the round with nothing earned; in an
        // empty level its turn starts at once.
        self.round.push_back(Turn {
            flow: slot,
            next: 0,
            deficit: 0,
        });
        if was_empty {
            grant_front(&mut self.round, &self.flows);
            settle(&mut self.round, &self.flows, key_of);
        }
    }

    pub(crate) fn front(&self) -> Option<&T> {
        let turn = self.round.front()?;
        self.flows[turn.flow].as_ref()?.items.front()
    }

    pub(crate) fn pop(&mut self, key_of: KeyOf<T>) -> Option<T> {
        let turn = self.round.front_mut()?;
        let flow = self.flows[turn.flow].as_mut()?;
        let item = flow.items.pop_front()?;
        turn.deficit = turn.deficit.saturating_sub(cost_of(key_of, &item));
        self.len -= 1;
        if flow.items.is_empty() {
            let slot = turn.flow;
            self.round.pop_front();
            self.release(slot);
            grant_front(&mut self.round, &self.flows);
        }
        settle(&mut self.round, &self.flows, key_of);
        Some(item)
    }

    /// Frees an empty flow's slot and forgets its key.
    fn release(&mut self, slot: usize) {
        if let Some(flow) = self.flows[slot].take() {
            match flow.key {
                None => self.no_key = None,
                Some(k) => {
                    self.by_key.remove(&k);
                }
            }
            self.free.push(slot);
        }
        // Keep the slab short when its tail is free.
        while let Some(None) = self.flows.last() {
            self.flows.pop();
        }
        let len = self.flows.len();
        self.free.retain(|&s| s < len);
    }

    /// After items were removed from anywhere: drops the flows left empty
    /// and restores the invariant. A removed front hands the turn on.
    fn after_removal(&mut self, key_of: KeyOf<T>) {
        let front_before = self.round.front().map(|t| t.flow);
        let mut emptied = Vec::new();
        let flows = &self.flows;
        self.round.retain(|turn| {
            let keep = flows[turn.flow]
                .as_ref()
                .is_some_and(|f| !f.items.is_empty());
            if !keep {
                emptied.push(turn.flow);
            }
            keep
        });
        for slot in emptied {
            self.release(slot);
        }
        self.len = self
            .round
            .iter()
            .filter_map(|t| self.flows[t.flow].as_ref())
            .map(|f| f.items.len())
            .sum();
        if self.round.front().map(|t| t.flow) != front_before {
            grant_front(&mut self.round, &self.flows);
        }
        settle(&mut self.round, &self.flows, key_of);
    }

    pub(crate) fn retain(&mut self, keep: &mut impl FnMut(&T) -> bool, key_of: KeyOf<T>) {
        for flow in self.flows.iter_mut().flatten() {
            flow.items.retain(|item| keep(item));
        }
        self.after_removal(key_of);
    }

    /// Picks up to `budget` items in round order for which `take` holds:
    /// (flow slot, index in flow) pairs, each flow's indices ascending.
    pub(crate) fn pick(
        &self,
        budget: &mut usize,
        take: &mut impl FnMut(&T) -> bool,
    ) -> Vec<(usize, Vec<usize>)> {
        let mut picked = Vec::new();
        for turn in &self.round {
            if *budget == 0 {
                break;
            }
            let Some(flow) = &self.flows[turn.flow] else {
                continue;
            };
            let mut indices = Vec::new();
            for (index, item) in flow.items.iter().enumerate() {
                if *budget == 0 {
                    break;
                }
                if take(item) {
                    indices.push(index);
                    *budget -= 1;
                }
            }
            if !indices.is_empty() {
                picked.push((turn.flow, indices));
            }
        }
        picked
    }

    /// Removes what [`pick`](Self::pick) chose, in round order, into `out`.
    pub(crate) fn extract(
        &mut self,
        picked: &[(usize, Vec<usize>)],
        key_of: KeyOf<T>,
        mut extract: impl FnMut(&mut VecDeque<T>, &[usize]),
    ) {
        if picked.is_empty() {
            return;
        }
        for (slot, indices) in picked {
            if let Some(flow) = &mut self.flows[*slot] {
                extract(&mut flow.items, indices);
            }
        }
        self.after_removal(key_of);
    }

    pub(crate) fn clear(&mut self) {
        *self = FairLevel::default();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let items: usize = self
            .flows
            .iter()
            .flatten()
            .map(|f| f.items.capacity().saturating_mul(size_of::<T>()))
            .sum();
        items
            + self.flows.capacity() * size_of::<Option<Flow<T>>>()
            + self.round.capacity() * size_of::<Turn>()
            + self.free.capacity() * size_of::<usize>()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        for flow in self.flows.iter_mut().flatten() {
            flow.items.shrink_to_fit();
        }
        self.flows.shrink_to_fit();
        self.free.shrink_to_fit();
        self.round.shrink_to_fit();
        self.by_key.shrink_to_fit();
    }
}

/// The front flow's turn begins: it earns its quantum.
fn grant_front<T>(round: &mut VecDeque<Turn>, flows: &[Option<Flow<T>>]) {
    if let Some(turn) = round.front_mut() {
        let quantum = flows[turn.flow].as_ref().map_or(1, |f| f.quantum);
        turn.deficit = turn.deficit.saturating_add(quantum);
    }
}

/// The front item of `turn`'s flow (past the items a replay already served).
fn head<'a, T>(turn: &Turn, flows: &'a [Option<Flow<T>>]) -> Option<&'a T> {
    flows[turn.flow].as_ref()?.items.get(turn.next)
}

/// Advances the round until the front turn can pay for its front item: a
/// turn that cannot ends (its flow goes to the back, keeping its deficit) and
/// the next begins. When a whole round passes with nobody able to pay (costs
/// above the quanta), the rounds in which still nobody could pay are granted
/// at once instead of one by one, so a pop costs O(keys), never O(cost).
pub(crate) fn settle<T>(round: &mut VecDeque<Turn>, flows: &[Option<Flow<T>>], key_of: KeyOf<T>) {
    let mut failed = 0;
    loop {
        let Some(turn) = round.front() else {
            return;
        };
        let Some(item) = head(turn, flows) else {
            return; // unreachable: every turn's flow has items
        };
        if turn.deficit >= cost_of(key_of, item) {
            return;
        }
        failed += 1;
        if failed >= round.len() {
            skip_idle_rounds(round, flows, key_of);
            failed = 0;
        }
        round.rotate_left(1);
        grant_front(round, flows);
    }
}

/// Every turn just failed to pay: grants each flow the `r − 1` further quanta
/// of the rounds in which, still, none could pay (`r` = the fewest turns any
/// flow needs), so the next round has a payer.
fn skip_idle_rounds<T>(round: &mut VecDeque<Turn>, flows: &[Option<Flow<T>>], key_of: KeyOf<T>) {
    let quantum = |t: &Turn| flows[t.flow].as_ref().map_or(1, |f| f.quantum.max(1));
    let need = |t: &Turn| {
        let cost = head(t, flows).map_or(0, |item| cost_of(key_of, item));
        cost.saturating_sub(t.deficit).div_ceil(quantum(t))
    };
    let Some(rounds) = round.iter().map(need).min() else {
        return;
    };
    let skipped = rounds.saturating_sub(1);
    if skipped == 0 {
        return;
    }
    for turn in round.iter_mut() {
        let q = quantum(turn);
        turn.deficit = turn.deficit.saturating_add(q.saturating_mul(skipped));
    }
}

/// Replays one pop of a level without changing it (the pop-order iterator):
/// the item that pop would return.
pub(crate) fn replay_pop<'a, T>(
    round: &mut VecDeque<Turn>,
    flows: &'a [Option<Flow<T>>],
    key_of: KeyOf<T>,
) -> Option<&'a T> {
    let turn = round.front_mut()?;
    let flow = flows[turn.flow].as_ref()?;
    let item = flow.items.get(turn.next)?;
    turn.deficit = turn.deficit.saturating_sub(cost_of(key_of, item));
    turn.next += 1;
    if turn.next >= flow.items.len() {
        round.pop_front();
        grant_front(round, flows);
    }
    settle(round, flows, key_of);
    Some(item)
}
