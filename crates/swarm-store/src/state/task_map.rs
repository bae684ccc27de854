//! The state's tasks by id: the records in one slab (a `Vec` whose free
//! slots are reused), and a small hash index from id to slot.
//!
//! A `HashMap<TaskId, TaskRecord>` keeps each 184-byte record inside its
//! table, so building one writes every record to a random place in tens of
//! megabytes: loading a snapshot of 100 000 live tasks spent most of its time
//! on those cache and TLB misses. Here the records are written one after the
//! other and the index entries are 16 bytes, so a snapshot loads at the speed
//! of its decoding, and dropping a state walks memory in order.
//!
//! Memory is what a map would use: the slab, like a map's table, keeps the
//! size of its largest population (a freed slot waits for the next insert),
//! and the index is a map of 16-byte entries.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use swarm_core::TaskId;

use super::TaskRecord;
use super::id_hash::IdHashBuilder;

/// Task ids to slots.
pub(crate) type Index = HashMap<TaskId, u32, IdHashBuilder>;

/// Task records by id (see the module docs).
#[derive(Clone, Default)]
pub(crate) struct TaskMap {
    index: Index,
    slots: Vec<Option<TaskRecord>>,
    /// Slots whose record was removed, reused before the slab grows.
    free: Vec<u32>,
}

impl TaskMap {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Makes room for `n` more records without growing.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.index.reserve(n);
        self.slots.reserve(n.saturating_sub(self.free.len()));
    }

    pub(crate) fn contains_key(&self, id: &TaskId) -> bool {
        self.index.contains_key(id)
    }

    pub(crate) fn get(&self, id: &TaskId) -> Option<&TaskRecord> {
        let slot = *self.index.get(id)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: &TaskId) -> Option<&mut TaskRecord> {
        let slot = *self.index.get(id)?;
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Stores `record` under `id`; returns the record it replaces.
    #[inline]
    pub(crate) fn insert(&mut self, id: TaskId, record: TaskRecord) -> Option<TaskRecord> {
        match self.index.entry(id) {
            Entry::Occupied(entry) => self
                .slots
                .get_mut(*entry.get() as usize)
                .and_then(|old| old.replace(record)),
            Entry::Vacant(entry) => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        if let Some(place) = self.slots.get_mut(slot as usize) {
                            *place = Some(record);
                        }
                        slot
                    }
                    None => {
                        // More than u32::MAX live tasks would not fit in
                        // memory (a record is 184 bytes): no overflow.
                        let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                        self.slots.push(Some(record));
                        slot
                    }
                };
                entry.insert(slot);
                None
            }
        }
    }

    /// An empty index for [`from_indexed`](Self::from_indexed).
    pub(crate) fn index_with_capacity(n: usize) -> Index {
        let mut index = Index::default();
        index.reserve(n);
        index
    }

    /// The map of `head` then `tail`, whose records `index` gives the slots
    /// of in that order (slot `i` for the `i`-th record). The caller built
    /// the index; a record it does not index is not found.
    pub(crate) fn from_indexed(index: Index, head: Vec<TaskRecord>, tail: Vec<TaskRecord>) -> Self {
        // `Option<TaskRecord>` has the size of `TaskRecord`: the head's
        // vector is reused in place and the tail is appended with one copy.
        let mut slots: Vec<Option<TaskRecord>> = head.into_iter().map(Some).collect();
        slots.reserve_exact(tail.len());
        slots.extend(tail.into_iter().map(Some));
        debug_assert_eq!(slots.len(), index.len());
        TaskMap {
            index,
            slots,
            free: Vec::new(),
        }
    }

    pub(crate) fn remove(&mut self, id: &TaskId) -> Option<TaskRecord> {
        let slot = self.index.remove(id)?;
        let record = self.slots.get_mut(slot as usize)?.take();
        if slot as usize + 1 == self.slots.len() {
            self.slots.pop();
        } else {
            self.free.push(slot);
        }
        record
    }

    /// Every record, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &TaskRecord> {
        self.slots.iter().filter_map(Option::as_ref)
    }
}

impl PartialEq for TaskMap {
    /// The same records under the same ids, wherever they are stored.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .values()
                .all(|r| other.get(&r.task.id()).is_some_and(|o| o == r))
    }
}

impl fmt::Debug for TaskMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.values().map(|r| (r.task.id(), r)))
            .finish()
    }
}

/// As a map from id to record, the form layout 1 snapshots have.
impl Serialize for TaskMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.values().map(|r| (r.task.id(), r)))
    }
}

impl<'de> Deserialize<'de> for TaskMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = HashMap::<TaskId, TaskRecord>::deserialize(deserializer)?;
        let mut tasks = TaskMap::default();
        tasks.reserve(map.len());
        for (id, record) in map {
            tasks.insert(id, record);
        }
        Ok(tasks)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use swarm_core::{Payload, Priority, Task, TaskId, TaskParts, Timestamp};

    use super::*;
    use crate::state::TaskStatus;

    fn record(id: u64, attempts: u32) -> TaskRecord {
        // Fixed fields: two records of one id compare equal.
        let task = Task::from_parts(TaskParts {
            id: TaskId::from_u64(id),
            priority: Priority::Normal,
            kind: "k".into(),
            payload: Payload::empty(),
            attempt: 0,
            created_at: Timestamp::from_micros(1),
            affinity: None,
            pinned: false,
            timeout: None,
            max_attempts: None,
            key: None,
            cost: 1,
            not_before: None,
        });
        TaskRecord {
            task,
            status: TaskStatus::Pending,
            attempts,
            agent: None,
            last_error: None,
            will_retry: false,
            errors: Vec::new(),
            created_seq: 0,
            updated_at: None,
            retry_at: None,
            retire_no: 0,
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Bump(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few ids, so that inserts replace, removes hit and slots are reused.
        prop_oneof![
            (0..24u64, 0..5u32).prop_map(|(id, a)| Op::Insert(id, a)),
            (0..24u64).prop_map(Op::Remove),
            (0..24u64).prop_map(Op::Bump),
        ]
    }

    proptest! {
        /// Against a `HashMap` as the model: every operation answers the
        /// same, and the contents stay equal.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..300)) {
            let mut map = TaskMap::default();
            let mut model: HashMap<u64, TaskRecord> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(id, a) => {
                        let r = record(id, a);
                        let got = map.insert(TaskId::from_u64(id), r.clone());
                        prop_assert_eq!(got, model.insert(id, r));
                    }
                    Op::Remove(id) => {
                        prop_assert_eq!(map.remove(&TaskId::from_u64(id)), model.remove(&id));
                    }
                    Op::Bump(id) => {
                        if let Some(r) = map.get_mut(&TaskId::from_u64(id)) {
                            r.attempts += 1;
                        }
                        if let Some(r) = model.get_mut(&id) {
                            r.attempts += 1;
                        }
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.values().count(), model.len());
                for (id, r) in &model {
                    prop_assert_eq!(map.get(&TaskId::from_u64(*id)), Some(r));
                    prop_assert!(map.contains_key(&TaskId::from_u64(*id)));
                }
                // No slot is lost: the slab holds the records and the free
                // slots, nothing else.
                prop_assert_eq!(map.slots.len(), map.len() + map.free.len());
            }
        }
    }

    #[test]
    fn equality_ignores_where_records_are_stored() {
        let mut a = TaskMap::default();
        let mut b = TaskMap::default();
        for id in 0..4 {
            a.insert(TaskId::from_u64(id), record(id, 0));
        }
        for id in (0..5).rev() {
            b.insert(TaskId::from_u64(id), record(id, 0));
        }
        assert_ne!(a, b);
        b.remove(&TaskId::from_u64(4));
        assert_eq!(a, b);
        if let Some(r) = b.get_mut(&TaskId::from_u64(2)) {
            r.attempts = 3;
        }
        assert_ne!(a, b);
    }
}
