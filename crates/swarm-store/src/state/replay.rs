//! Rebuilding a [`SystemState`] from a store: the newest snapshot, then the
//! events after it.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::{Retention, SystemState};
use crate::error::{Result, StoreError};
use crate::store::EventStore;

impl SystemState {
    /// The state as of the log's last sequence.
    pub async fn replay<S: EventStore + ?Sized>(store: &S) -> Result<SystemState> {
        SystemState::replay_with(store, Retention::default()).await
    }

    /// [`replay`](Self::replay) into a state that keeps finished tasks as
    /// `retention` says.
    pub async fn replay_with<S: EventStore + ?Sized>(
        store: &S,
        retention: Retention,
    ) -> Result<SystemState> {
        let last = store.last_seq().await?;
        SystemState::replay_to_with(store, last, retention).await
    }

    /// The state as of sequence `seq` (or the log's end, if shorter): the newest
    /// valid snapshot at or before `seq`, then the events after it. A snapshot
    /// that cannot be decoded is skipped (logged) and the log read from the start.
    /// Records of event kinds this version does not know
    /// ([`StoreError::UnknownEvent`], written by a newer version) are skipped
    /// and named in a warning.
    ///
    /// When the events after the snapshot (or, with no snapshot, from the
    /// start) are no longer in the log, because a retention policy removed
    /// them, this fails with [`StoreError::Compacted`], which names the
    /// earliest sequence the log still holds.
    pub async fn replay_to<S: EventStore + ?Sized>(store: &S, seq: u64) -> Result<SystemState> {
        SystemState::replay_to_with(store, seq, Retention::default()).await
    }

    /// [`replay_to`](Self::replay_to) into a state that keeps finished tasks
    /// as `retention` says.
    pub async fn replay_to_with<S: EventStore + ?Sized>(
        store: &S,
        seq: u64,
        retention: Retention,
    ) -> Result<SystemState> {
        let mut state = match store.latest_snapshot(seq).await? {
            Some(snapshot) => match SystemState::from_snapshot(&snapshot) {
                Ok(mut state) => {
                    state.set_retention(retention);
                    state
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring snapshot; replaying from the start");
                    SystemState::with_retention(retention)
                }
            },
            None => SystemState::with_retention(retention),
        };
        if state.last_seq >= seq {
            return Ok(state);
        }
        let mut events = store.read(state.last_seq + 1);
        // Records of event kinds a newer version wrote: skipped, by name.
        let mut ignored: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(stored) = events.next().await {
            let stored = match stored {
                Ok(stored) => stored,
                Err(StoreError::UnknownEvent { seq: at, name, .. }) if at <= seq => {
                    *ignored.entry(name).or_default() += 1;
                    state.last_seq = at;
                    if at == seq {
                        break;
                    }
                    continue;
                }
                Err(StoreError::UnknownEvent { .. }) => break,
                Err(e) => return Err(e),
            };
            if stored.seq > seq {
                break;
            }
            state.apply(&stored);
            if stored.seq == seq {
                break;
            }
        }
        if !ignored.is_empty() {
            let list: Vec<String> = ignored
                .iter()
                .map(|(name, n)| format!("{n} × {name}"))
                .collect();
            tracing::warn!(
                ignored = %list.join(", "),
                "the log was written by a newer version of swarm: replay ignored the events this version does not know"
            );
        }
        Ok(state)
    }
}
