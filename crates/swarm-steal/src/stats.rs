//! Counters of a steal pool.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`StealPool`](crate::StealPool) has moved since it was created.
///
/// Steal operations and stolen items are counted separately: a few big steals
/// and many small ones move the same number of items but mean different things.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StealStats {
    /// Successful [`steal_half`](crate::StealPool::steal_half) calls (each moved at least one item).
    pub steals: u64,
    /// Items moved by those steals.
    pub stolen: u64,
    /// `steal_half` calls that moved nothing (the thief was not empty, or no
    /// agent had more stealable items than the threshold).
    pub empty_steals: u64,
    /// Moves made by [`rebalance`](crate::StealPool::rebalance) (one per donor/recipient pair step).
    pub rebalance_moves: u64,
    /// Items moved by rebalancing.
    pub rebalanced: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    steals: AtomicU64,
    stolen: AtomicU64,
    empty_steals: AtomicU64,
    rebalance_moves: AtomicU64,
    rebalanced: AtomicU64,
}

impl Counters {
    pub(crate) fn steal(&self, items: usize) {
        self.steals.fetch_add(1, Ordering::Relaxed);
        self.stolen.fetch_add(items as u64, Ordering::Relaxed);
    }

    pub(crate) fn empty_steal(&self) {
        self.empty_steals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rebalance_move(&self, items: usize) {
        self.rebalance_moves.fetch_add(1, Ordering::Relaxed);
        self.rebalanced.fetch_add(items as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StealStats {
        StealStats {
            steals: self.steals.load(Ordering::Relaxed),
            stolen: self.stolen.load(Ordering::Relaxed),
            empty_steals: self.empty_steals.load(Ordering::Relaxed),
            rebalance_moves: self.rebalance_moves.load(Ordering::Relaxed),
            rebalanced: self.rebalanced.load(Ordering::Relaxed),
        }
    }
}
