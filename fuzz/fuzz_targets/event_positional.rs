//! Fuzz target `event_positional`: see `swarm_fuzz::event_positional` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::event_positional(data));
