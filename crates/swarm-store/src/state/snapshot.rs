//! The snapshot codec of [`SystemState`]: a compact positional binary layout
//! with an explicit layout version, and the decoder of the first layout
//! (MessagePack with named fields) so that old snapshots still load.
//!
//! # Layout 2 (written)
//!
//! Integers are LEB128 varints, except task ids and timestamps (µs since the Unix
//! epoch), which are 8 bytes little-endian (a varint of either takes 8 to 10);
//! a string or byte string is a varint length and the bytes; `count` is a
//! varint.
//!
//! ```text
//! magic "SWRMSTAT" (8 bytes), layout version (varint, 2)
//! last_seq, retire_no, paused (1 byte: 0 or 1)
//! counters: count, then that many varints in the order of `Counters`'
//!           fields (a reader takes the ones it knows, missing ones are 0)
//! kinds:    count × (name, created, completed, dead_lettered, cancelled)
//! agents:   count × (id, health (1 byte), flags (1 byte: 1 busy, 2 reserve),
//!           [busy_with], completed, failed)
//! task kinds: count × name          (the table `kind` indexes below)
//! tasks:    count × record
//! finished: count × entry           (completed and cancelled, finishing order)
//! dead:     count × entry           (dead letters, dead-lettering order)
//!
//! record := task id (8 bytes LE), flags, status (1 byte), attempts,
//!           [agent], [last_error], errors: count × string, created_seq,
//!           [updated_at], retire_no,
//!           priority (1 byte, level), kind (index), payload (bytes),
//!           attempt, created_at, [affinity], [timeout µs], [max_attempts],
//!           [key], [cost], [not_before], [retry_at]
//!           — a [field] is there when its bit of `flags` is set
//!           (`retry_at` came later: a snapshot without it reads as before)
//! entry  := task id (8 bytes LE), number, has_time (1 byte), [time]
//! ```
//!
//! Decoding checks every length against the bytes left, every enum value and
//! flag bit, and the state's own invariants (each task once; queue entries in
//! numbering order and numbered no higher than the state's counter), so a
//! damaged snapshot gives [`StoreError::BadSnapshot`], never a panic and never
//! a state that panics later. How many queue entries are stale is not stored:
//! it is counted again from the records.
//!
//! A task is rebuilt with [`Task::from_parts`]; the tasks of one kind share
//! one `Arc<str>`, as they do when the scheduler makes them, and so do the
//! tasks of one key (one `Arc` per decoding thread).
//!
//! # Decoding in two threads
//!
//! From 16 384 task records on (and with two cores), a helper thread decodes
//! the first three quarters of the records while the calling thread walks
//! over them reading only ids and lengths, builds the id index, and decodes
//! the rest. A damaged snapshot, or any disagreement between the walk and
//! the helper, is decoded again in one thread, so errors are the same either
//! way. 100 000 live tasks went from about 45 ms to about 21 ms on a 2-core
//! machine (`store.replay_from_snapshot_ms`, docs/benchmarks.md).
//!
//! # Layout 1 (read only)
//!
//! `{version: 1, state: SystemState}` as MessagePack with named fields
//! (rmp-serde's `to_vec_named`), written by earlier versions. Every field
//! name is written and compared: 100 000 live tasks (16-byte payloads) took
//! 21.9 MB and 437 ms to load in the store bench; in layout 2 they take
//! 5.2 MB and about 45 ms of CPU in one thread.

mod decode;
mod encode;
mod wire;

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use swarm_core::event::AgentHealth;

use super::{Counters, SystemState, TaskStatus};
use crate::error::{Result, StoreError};
use crate::store::Snapshot;

/// The first bytes of a layout-2 snapshot's data. A layout-1 snapshot starts
/// with a MessagePack map marker, never with these.
const MAGIC: [u8; 8] = *b"SWRMSTAT";
/// The layout [`SystemState::to_snapshot`] writes.
const LAYOUT: u64 = 2;
/// The layout of the MessagePack envelope.
const LEGACY_LAYOUT: u32 = 1;

// Flag bits of a task record.
const AGENT: u64 = 1 << 0;
const LAST_ERROR: u64 = 1 << 1;
const WILL_RETRY: u64 = 1 << 2;
const UPDATED_AT: u64 = 1 << 3;
const AFFINITY: u64 = 1 << 4;
const PINNED: u64 = 1 << 5;
const TIMEOUT: u64 = 1 << 6;
const MAX_ATTEMPTS: u64 = 1 << 7;
const KEY: u64 = 1 << 8;
const COST: u64 = 1 << 9;
const NOT_BEFORE: u64 = 1 << 10;
const RETRY_AT: u64 = 1 << 11;
const KNOWN_FLAGS: u64 = (1 << 12) - 1;

// Flag bits of an agent record.
const BUSY: u8 = 1 << 0;
const RESERVE: u8 = 1 << 1;

/// The cost a task has when it does not set one (swarm-core's default).
const DEFAULT_COST: u32 = 1;

/// The smallest encoded sizes, to bound counts by the bytes left.
const MIN_RECORD_BYTES: usize = 8 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 8;
const MIN_ENTRY_BYTES: usize = 8 + 1 + 1;
const MIN_AGENT_BYTES: usize = 1 + 1 + 1 + 1 + 1;
const MIN_KIND_BYTES: usize = 1 + 4;

fn status_byte(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Queued => 1,
        TaskStatus::Running => 2,
        TaskStatus::Completed => 3,
        TaskStatus::Failed => 4,
        TaskStatus::DeadLettered => 5,
        TaskStatus::Cancelled => 6,
    }
}

fn status_of(byte: u8) -> Option<TaskStatus> {
    Some(match byte {
        0 => TaskStatus::Pending,
        1 => TaskStatus::Queued,
        2 => TaskStatus::Running,
        3 => TaskStatus::Completed,
        4 => TaskStatus::Failed,
        5 => TaskStatus::DeadLettered,
        6 => TaskStatus::Cancelled,
        _ => return None,
    })
}

fn health_byte(health: AgentHealth) -> u8 {
    match health {
        AgentHealth::Healthy => 0,
        AgentHealth::Degraded => 1,
        AgentHealth::Unhealthy => 2,
    }
}

fn health_of(byte: u8) -> Option<AgentHealth> {
    Some(match byte {
        0 => AgentHealth::Healthy,
        1 => AgentHealth::Degraded,
        2 => AgentHealth::Unhealthy,
        _ => return None,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Counters {
    /// The counters in layout order.
    fn as_array(&self) -> [u64; 13] {
        [
            self.events,
            self.tasks_created,
            self.tasks_completed,
            self.attempts_failed,
            self.retries,
            self.tasks_dead_lettered,
            self.tasks_cancelled,
            self.tasks_stolen,
            self.agent_errors,
            self.agents_created,
            self.agents_removed,
            self.tasks_retired,
            self.dead_letters_dropped,
        ]
    }

    fn from_array(v: [u64; 13]) -> Counters {
        let [
            events,
            tasks_created,
            tasks_completed,
            attempts_failed,
            retries,
            tasks_dead_lettered,
            tasks_cancelled,
            tasks_stolen,
            agent_errors,
            agents_created,
            agents_removed,
            tasks_retired,
            dead_letters_dropped,
        ] = v;
        Counters {
            events,
            tasks_created,
            tasks_completed,
            attempts_failed,
            retries,
            tasks_dead_lettered,
            tasks_cancelled,
            tasks_stolen,
            agent_errors,
            agents_created,
            agents_removed,
            tasks_retired,
            dead_letters_dropped,
        }
    }
}

/// Checks what the state's methods rely on, and counts the stale queue
/// entries again (layout 1 stored the count; a wrong one would underflow).
fn check_and_count(state: &mut SystemState) -> std::result::Result<(), String> {
    let top = state.retire_no;
    if let Some(t) = state.tasks.values().find(|t| t.retire_no > top) {
        return Err(format!(
            "task {} is numbered {} in a retention queue numbered up to {top}",
            t.task.id(),
            t.retire_no
        ));
    }
    // Entries are numbered from one counter: a number is in one queue once.
    let mut numbers = HashSet::with_capacity(state.dead.entries.len());
    for (name, queue) in [("dead", &mut state.dead), ("finished", &mut state.finished)] {
        let mut prev = 0;
        let mut stale = 0;
        for e in &queue.entries {
            if e.no <= prev || e.no > top {
                return Err(format!(
                    "the {name} queue's entry {} for task {} is out of order (after {prev}, up to {top})",
                    e.no, e.id
                ));
            }
            prev = e.no;
            if name == "dead" {
                numbers.insert(e.no);
            } else if numbers.contains(&e.no) {
                return Err(format!("entry {} is in both retention queues", e.no));
            }
            let stands = state.tasks.get(&e.id).is_some_and(|t| t.retire_no == e.no);
            if !stands {
                stale += 1;
            }
        }
        queue.stale = stale;
    }
    Ok(())
}

impl SystemState {
    /// Encodes the state as a snapshot at [`last_seq`](Self::last_seq), in
    /// the compact layout (see the module docs of `state::snapshot`). Its size
    /// and time are O(live tasks + the retention window).
    pub fn to_snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            seq: self.last_seq,
            data: encode::encode(self),
        })
    }

    /// Decodes a snapshot made by [`to_snapshot`](Self::to_snapshot), or by
    /// an earlier version of swarm (the MessagePack layout). A damaged or
    /// unknown one is [`StoreError::BadSnapshot`], naming what is wrong and
    /// where.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<SystemState> {
        let bad = |message: String| StoreError::BadSnapshot {
            seq: snapshot.seq,
            message,
        };
        let data = &snapshot.data;
        let mut state = if data.starts_with(&MAGIC) {
            decode::decode(
                &mut wire::Reader::new(data, MAGIC.len()),
                decode::PARALLEL_FROM,
            )
            .map_err(|e| bad(e.to_string()))?
        } else if matches!(data.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            decode_legacy(data).map_err(bad)?
        } else {
            return Err(bad(
                "the data is neither layout 2 (it does not start with \"SWRMSTAT\") nor layout 1 (a MessagePack map)".into(),
            ));
        };
        if state.last_seq != snapshot.seq {
            return Err(bad(format!(
                "the state inside is at sequence {}",
                state.last_seq
            )));
        }
        check_and_count(&mut state).map_err(bad)?;
        Ok(state)
    }
}

/// Decodes layout 1: `{version, state}` in MessagePack with named fields.
fn decode_legacy(data: &[u8]) -> std::result::Result<SystemState, String> {
    #[derive(Deserialize)]
    struct Envelope {
        version: u32,
        state: SystemState,
    }
    let envelope: Envelope = rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
    if envelope.version != LEGACY_LAYOUT {
        return Err(format!(
            "snapshot version {} is not {LEGACY_LAYOUT}",
            envelope.version
        ));
    }
    Ok(envelope.state)
}

/// Encodes `state` in layout 1, for tests of the old layout's decoding.
#[cfg(test)]
pub(crate) fn encode_legacy(state: &SystemState) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        version: u32,
        state: &'a SystemState,
    }
    match rmp_serde::to_vec_named(&Borrowed {
        version: LEGACY_LAYOUT,
        state,
    }) {
        Ok(data) => data,
        Err(e) => unreachable!("a state always encodes: {e}"),
    }
}

#[cfg(test)]
mod tests;
