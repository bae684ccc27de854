//! Fuzz target `event_json`: see `swarm_fuzz::event_json` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::event_json(data));
