//! Fuzz target `event_msgpack`: see `swarm_fuzz::event_msgpack` for the properties it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_fuzz::event_msgpack(data));
