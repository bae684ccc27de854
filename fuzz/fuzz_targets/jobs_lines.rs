//! Fuzz target `jobs_lines`: see `swarm_fuzz::jobs_lines` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::jobs_lines(data));
