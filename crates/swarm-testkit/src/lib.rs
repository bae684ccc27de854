//! Test support shared by the swarm crates' tests (a dev-dependency only;
//! not published): the one NATS test harness.
//!
//! - [`nats::server_url`]: the server the NATS tests run against
//!   (`SWARM_NATS_URL`); without it a test is skipped, except under
//!   `SWARM_CI=1` (CI), where a missing server fails it;
//! - [`nats::unique_name`]: a swarm / stream name no other test or test
//!   process uses;
//! - [`nats::OwnServer`]: a nats-server with JetStream that a test starts on
//!   its own port and store directory, to kill and restart it;
//! - [`cluster::Cluster`]: a 3-server NATS cluster with JetStream, each
//!   server in its own network namespace, to kill, restart, isolate and heal
//!   servers (root only; [`cluster::start_or_skip`] skips elsewhere);
//! - [`promtool`]: `promtool check metrics` on an exposition.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]
// Test support: a harness that cannot start is a failed test, so it panics.
#![allow(clippy::expect_used)]

pub mod cluster;
pub mod nats;
pub mod promtool;
