//! Hash maps keyed by ids, with a cheap hasher.
//!
//! Task ids are 64-bit numbers (random for generated ids, small and dense for
//! ids a user picks); SipHash's DoS resistance buys nothing for keys the swarm
//! itself hands out and costs a visible share of the hot path. One multiply
//! spreads dense ids over the high bits that hashbrown's probing uses.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by TaskId/AgentId (they hash one u64); kept correct anyway.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;
