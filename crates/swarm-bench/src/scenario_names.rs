// The one list of scenario names. `swarm-bench` reads it as a module
// (src/main.rs) and `xtask` pulls the same file in with `include!`
// (xtask/src/bench/mod.rs), so `cargo xtask bench --scenario NAME` checks
// names without depending on this crate. Keep it a single item with no
// inner attributes or `//!` docs: `include!` accepts nothing else.

/// Every scenario, in the order a full run goes through them.
pub(crate) const SCENARIOS: &[&str] = &[
    "seed_comparison",
    "throughput",
    "dispatch_latency",
    "priority",
    "fairness",
    "delay",
    "idle_cpu",
    "work_stealing",
    "store",
    "memory",
    "distributed",
    "soak",
    "rate_limit",
];
