//! SplitMix64: a small, seeded, reproducible random number generator.
//!
//! Tiny, fast, and the same sequence for the same seed on every platform. swarm
//! uses it wherever it needs numbers that look random but must be reproducible:
//! back-off jitter, simulated agents, generated workloads, and mixing counters
//! into task ids. It is not for anything that needs unpredictability (keys,
//! tokens).
//!
//! With the `rand` feature, [`SplitMix64`] implements `rand::RngCore`, so it
//! can drive anything written against `rand`.
//!
//! ```
//! use swarm_core::rng::SplitMix64;
//!
//! let mut a = SplitMix64::new(7);
//! let mut b = SplitMix64::new(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let x = a.next_f64();
//! assert!((0.0..1.0).contains(&x));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

// The output function: a bijection on u64.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps 64 random bits to a float uniform in `[0, 1)` (the top 53 bits).
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The SplitMix64 generator (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    ///
    /// The first draw of `SplitMix64::new(x)` is a bijection of `x`: distinct
    /// seeds give distinct first draws.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// The next float, uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

#[cfg(feature = "rand")]
#[cfg_attr(docsrs, doc(cfg(feature = "rand")))]
impl rand::RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (SplitMix64::next_u64(self) >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        SplitMix64::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = SplitMix64::next_u64(self).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// [`SplitMix64`] over an atomic: shared by reference without a lock, one
/// atomic add per draw. Draws that do not overlap give the same sequence as
/// [`SplitMix64`] with the same seed; concurrent draws each get a distinct
/// value of it, in some order.
#[derive(Debug)]
pub struct AtomicSplitMix64 {
    state: AtomicU64,
}

impl AtomicSplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        AtomicSplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        mix(self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA))
    }

    /// The next float, uniform in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        unit_f64(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn atomic_and_plain_forms_give_the_same_sequence() {
        let mut plain = SplitMix64::new(42);
        let atomic = AtomicSplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(plain.next_u64(), atomic.next_u64());
        }
    }

    #[test]
    fn unit_floats_stay_in_range() {
        assert_eq!(unit_f64(0), 0.0);
        assert!(unit_f64(u64::MAX) < 1.0);
        let mut rng = SplitMix64::new(9);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.next_f64())));
    }

    #[cfg(feature = "rand")]
    #[test]
    fn rand_core_draws_the_same_stream() {
        use rand::RngCore;
        let mut plain = SplitMix64::new(5);
        let mut via_rand = SplitMix64::new(5);
        assert_eq!(plain.next_u64(), RngCore::next_u64(&mut via_rand));
        let mut bytes = [0u8; 12];
        via_rand.fill_bytes(&mut bytes);
        let a = plain.next_u64().to_le_bytes();
        let b = plain.next_u64().to_le_bytes();
        assert_eq!(bytes[..8], a);
        assert_eq!(bytes[8..], b[..4]);
    }
}
