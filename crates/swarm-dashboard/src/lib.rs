//! swarm-dashboard: HTTP for a live swarm, on axum and hyper.
//!
//! One listener serves:
//!
//! - `GET /`: the web dashboard (assets embedded, nothing fetched elsewhere);
//! - `GET /metrics`: the Prometheus exposition text;
//! - the JSON API under `/api/v1/` (overview, tasks, dead letters, and the
//!   actions: submit, cancel, retry, discard, pause, resume, scale);
//! - `GET /api/v1/events`: the event log as Server-Sent Events whose ids are
//!   store sequences, so a client that reconnects with `Last-Event-ID` goes
//!   on from the log with no gap.
//!
//! This crate sits above the facade `swarm`; depend on it to put a swarm on
//! the network. docs/operations.md has the API with curl examples.
//!
//! # Security
//!
//! The default address is loopback. Every action (each `POST`) needs
//! `Authorization: Bearer TOKEN`, compared in constant time: without a
//! configured token actions get 403, with a missing or wrong one 401. Reads
//! are open on a loopback address; on any other address they need the token
//! too, and [`Dashboard::serve`] refuses such an address without an explicit
//! token ([`Token::new`]). There are no CORS headers, request bodies are
//! bounded (413), headers must arrive in time, and event streams are few.
//!
//! # Example
//!
//! ```no_run
//! use swarm::Swarm;
//! use swarm_dashboard::{Dashboard, DashboardConfig, Token};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let swarm = Swarm::builder().agents(2).memory_store().build().await?;
//! let token = Token::generate()?;
//! eprintln!("dashboard token: {}", token.expose());
//! let config = DashboardConfig::new("127.0.0.1:9464".parse()?).token(token);
//! let dashboard = Dashboard::serve(swarm.clone(), config).await?;
//! println!("open {}", dashboard.url());
//! # dashboard.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod api;
mod auth;
mod config;
mod error;
pub mod json;
mod manage;
mod server;
mod sse;
mod state;
pub mod submit;

pub use config::{DEFAULT_ADDR, DashboardConfig, MIN_TOKEN_LEN, Token};
pub use error::{ApiError, DashboardError};
pub use server::Dashboard;
pub use submit::{NewTask, TaskFactory};
