//! A small, seeded, reproducible random number generator.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64: tiny, fast, and the same sequence for the same seed on every
/// platform. Used for back-off jitter and by [`SimAgent`](crate::SimAgent);
/// not for anything that needs unpredictability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// SplitMix64 over an atomic: shared by reference without a lock, one atomic
/// add per draw. The sequence is reproducible when draws are not concurrent.
#[derive(Debug)]
pub(crate) struct AtomicSplitMix64 {
    state: AtomicU64,
}

impl AtomicSplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        AtomicSplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        mix(self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA))
    }

    /// A float uniform in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        unit_f64(self.next_u64())
    }
}

/// Maps 64 random bits to a float uniform in `[0, 1)`.
pub(crate) fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
