//! Prometheus instrumentation for swarm, and an HDR-histogram event monitor.
//!
//! - [`SwarmMetrics`] subscribes to an [`EventBus`](swarm_core::EventBus) and
//!   records the swarm metric set (names in [`names`]) through the [`metrics`]
//!   facade, with every handle registered up front: recording an event does no
//!   registry lookup.
//! - [`PrometheusExporter`] owns a metrics-exporter-prometheus recorder, serves
//!   `/metrics` (loopback, port 9464 by default) and renders the exposition text
//!   for users who serve it themselves.
//! - [`EventMonitor`] keeps per event kind count, mean, p50, p99 and max in HDR
//!   histograms, recordable from many threads without a global lock.
//!
//! This crate sits on `swarm-core` only. The `swarm` facade wires it into a
//! scheduler; depend on it directly to instrument a bare `EventBus`.
//! `docs/operations.md` has the Prometheus scrape config, PromQL and the
//! Grafana dashboard (`docs/grafana/swarm.json`).
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `prometheus` | yes (through `http-listener`) | [`PrometheusExporter`]: the metrics-exporter-prometheus recorder and the exposition text; without it, [`SwarmMetrics`] records through any `metrics` recorder and [`EventMonitor`] works alone, on `swarm-core`, `metrics` and `hdrhistogram` only |
//! | `http-listener` | yes | the exporter's built-in `/metrics` HTTP listener (std threads, no runtime); turns on `prometheus` |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use swarm_core::event::TaskAssigned;
//! use swarm_core::{AgentId, EventBus, EventKind, Priority, TaskId};
//! use swarm_metrics::{EventMonitor, PrometheusExporter};
//!
//! let exporter = PrometheusExporter::builder().without_listener().build()?;
//! let monitor = EventMonitor::new();
//! let bus = EventBus::new();
//! let _subscription = exporter.swarm_metrics().attach_with_monitor(&bus, &monitor)?;
//!
//! bus.emit(TaskAssigned {
//!     task_id: TaskId::from_u64(1),
//!     agent_id: AgentId::new(0),
//!     attempt: 1,
//!     priority: Priority::High,
//!     queue_wait: Duration::from_millis(2),
//! });
//!
//! let text = exporter.render();
//! assert!(text.contains(r#"swarm_task_queue_wait_seconds_count{priority="high"} 1"#));
//! assert_eq!(monitor.report().get(EventKind::TaskAssigned).map(|k| k.count), Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "prometheus")]
mod exporter;
mod monitor;
pub mod names;
mod observer;
mod recorder;

pub use error::AttachError;
#[cfg(feature = "http-listener")]
pub use exporter::DEFAULT_LISTEN_ADDR;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use exporter::{
    DEFAULT_BUCKETS, DEFAULT_UPKEEP_INTERVAL, ExporterError, PrometheusExporter,
    PrometheusExporterBuilder,
};
pub use monitor::{EventMonitor, KindReport, MonitorReport};
pub use observer::FanOutObserver;
pub use recorder::{AgentState, SwarmMetrics};

/// The metrics-exporter-prometheus handle that renders the exposition text.
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use metrics_exporter_prometheus::PrometheusHandle;
