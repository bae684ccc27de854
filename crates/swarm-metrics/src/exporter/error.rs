//! Errors of building and installing a [`PrometheusExporter`](super::PrometheusExporter).

use std::io;
use std::net::SocketAddr;

/// Why a [`PrometheusExporter`](super::PrometheusExporter) could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// The `/metrics` listener could not bind its address.
    #[error(
        "cannot listen for scrapes on {addr}: {source}; pick a free address with `listen_addr` \
         (port 0 lets the system choose)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The histogram buckets are unusable.
    #[error(
        "histogram buckets must be non-empty, finite and strictly increasing upper bounds in seconds, got {buckets:?}"
    )]
    InvalidBuckets {
        /// The buckets given.
        buckets: Vec<f64>,
    },
    /// Another `metrics` recorder is already installed in this process.
    #[error(
        "a global `metrics` recorder is already installed in this process (only one can be): \
         keep using it, or skip the global install and record through `PrometheusExporter::swarm_metrics`"
    )]
    GlobalRecorderTaken,
    /// A background thread (listener or upkeep) could not be started.
    #[error("cannot start the exporter's {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}
