//! Fuzz target `log_one_segment`: see `swarm_fuzz::log_one_segment` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::log_one_segment(data));
