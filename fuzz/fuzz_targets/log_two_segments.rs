//! Fuzz target `log_two_segments`: see `swarm_fuzz::log_two_segments` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::log_two_segments(data));
