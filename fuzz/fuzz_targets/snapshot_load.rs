//! Fuzz target `snapshot_load`: see `swarm_fuzz::snapshot_load` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::snapshot_load(data));
