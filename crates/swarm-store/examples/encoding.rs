//! Measures the two self-describing encodings considered for log records:
//! MessagePack with named fields (the one used) and JSON. Prints bytes per
//! event and encode+decode time per event.
//!
//! `cargo run --release -p swarm-store --features conformance --example encoding`

// A measurement tool: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use swarm_core::Event;

fn main() {
    let events = swarm_store::conformance::sample_events();
    let rounds = 20_000;

    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        for e in &events {
            let buf = rmp_serde::to_vec_named(e).unwrap();
            bytes += buf.len();
            let back: Event = rmp_serde::from_slice(&buf).unwrap();
            assert_eq!(&back, e);
        }
    }
    let n = (rounds * events.len()) as f64;
    let rmp_ns = start.elapsed().as_nanos() as f64 / n;
    let rmp_bytes = bytes as f64 / n;

    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        for e in &events {
            let buf = serde_json::to_vec(e).unwrap();
            bytes += buf.len();
            let back: Event = serde_json::from_slice(&buf).unwrap();
            assert_eq!(&back, e);
        }
    }
    let json_ns = start.elapsed().as_nanos() as f64 / n;
    let json_bytes = bytes as f64 / n;

    println!("msgpack (named): {rmp_bytes:.1} bytes/event, {rmp_ns:.0} ns encode+decode");
    println!("json:            {json_bytes:.1} bytes/event, {json_ns:.0} ns encode+decode");
}
