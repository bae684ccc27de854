//! Wiring swarm-metrics to the swarm's bus and store.

use std::net::SocketAddr;

use swarm_core::{EventBus, Subscription};
use swarm_metrics::{PrometheusExporter, SwarmMetrics};

use crate::error::BuildError;
use crate::journal::AppendObserver;

pub(crate) struct MetricsWiring {
    exporter: Option<PrometheusExporter>,
    metrics: Option<SwarmMetrics>,
    _subscription: Option<Subscription>,
}

impl MetricsWiring {
    /// With `addr`, serves `/metrics` there; with `record` alone, records into
    /// an exporter without a listener (for `render`).
    pub(crate) fn attach(
        bus: &EventBus,
        record: bool,
        addr: Option<SocketAddr>,
    ) -> Result<MetricsWiring, BuildError> {
        if !record && addr.is_none() {
            return Ok(MetricsWiring {
                exporter: None,
                metrics: None,
                _subscription: None,
            });
        }
        let builder = PrometheusExporter::builder();
        let builder = match addr {
            Some(addr) => builder.listen_addr(addr),
            None => builder.without_listener(),
        };
        let exporter = builder.build()?;
        let metrics = exporter.swarm_metrics();
        let subscription = metrics.attach(bus)?;
        if let Some(addr) = exporter.local_addr() {
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        }
        Ok(MetricsWiring {
            exporter: Some(exporter),
            metrics: Some(metrics),
            _subscription: Some(subscription),
        })
    }

    pub(crate) fn append_observer(&self) -> Option<AppendObserver> {
        let metrics = self.metrics.clone()?;
        Some(std::sync::Arc::new(move |elapsed| {
            metrics.record_store_append(elapsed)
        }))
    }

    pub(crate) fn render(&self) -> Option<String> {
        self.exporter.as_ref().map(PrometheusExporter::render)
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.exporter
            .as_ref()
            .and_then(PrometheusExporter::local_addr)
    }
}
