//! The hasher of the state's task map: task ids are 64-bit integers, and
//! SipHash (std's default) spent a fifth of the instructions of a replay and
//! of a snapshot load on them.
//!
//! Each map gets a random seed (taken from std's `RandomState`), and the id
//! is mixed with the seed by the 64-bit finalizer of MurmurHash3, a bijection
//! whose every output bit depends on every input bit. Ids a user chooses
//! (`TaskId::from_u64`) cannot be lined up into one bucket without knowing
//! the seed. It is not a keyed cryptographic hash: what it protects is a
//! process's memory and time, not a secret.

use std::hash::{BuildHasher, Hasher, RandomState};

/// Builds [`IdHasher`]s with this map's seed.
#[derive(Clone, Debug)]
pub(crate) struct IdHashBuilder {
    seed: u64,
}

impl Default for IdHashBuilder {
    fn default() -> Self {
        IdHashBuilder {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.seed }
    }
}

/// Hashes one `u64` (a task id) in a few instructions; other input is folded
/// in eight bytes at a time.
#[derive(Debug)]
pub(crate) struct IdHasher {
    state: u64,
}

/// MurmurHash3's `fmix64`.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Hasher for IdHasher {
    fn write_u64(&mut self, v: u64) {
        self.state = mix(self.state ^ v);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut raw = [0u8; 8];
            raw[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(raw));
        }
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use swarm_core::TaskId;

    #[test]
    fn sequential_ids_spread_over_the_low_and_high_bits() {
        // hashbrown picks the bucket by the low bits and the control byte by
        // the top 7: both must vary for ids a user numbers 1, 2, 3, ...
        let build = IdHashBuilder::default();
        let hashes: Vec<u64> = (0..4096u64)
            .map(|i| build.hash_one(TaskId::from_u64(i)))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2500, "{} distinct low 12-bit values", low.len());
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn maps_get_different_seeds() {
        let (a, b) = (IdHashBuilder::default(), IdHashBuilder::default());
        let id = TaskId::from_u64(42);
        assert_ne!(a.hash_one(id), b.hash_one(id));
        assert_eq!(a.hash_one(id), a.hash_one(id));
    }
}
