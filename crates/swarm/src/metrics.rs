//! Wiring swarm-metrics to the swarm's bus and store (feature `prometheus`;
//! without it, nothing is recorded and no exporter runs).

use std::net::SocketAddr;
use std::sync::Arc;

use swarm_core::EventBus;

use crate::error::BuildError;
use crate::journal::AppendObserver;

#[cfg(feature = "prometheus")]
pub(crate) struct MetricsWiring {
    exporter: Option<swarm_metrics::PrometheusExporter>,
    metrics: Option<swarm_metrics::SwarmMetrics>,
    _subscription: Option<swarm_core::Subscription>,
}

#[cfg(feature = "prometheus")]
impl MetricsWiring {
    /// With `addr`, serves `/metrics` there; with `record` alone, records into
    /// an exporter without a listener (for `render`).
    pub(crate) fn attach(
        bus: &EventBus,
        record: bool,
        addr: Option<SocketAddr>,
    ) -> Result<MetricsWiring, BuildError> {
        use swarm_metrics::PrometheusExporter;
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
        Some(Arc::new(move |elapsed| {
            metrics.record_store_append(elapsed)
        }))
    }

    /// Counts a failed snapshot (`swarm_snapshot_failures_total`).
    pub(crate) fn snapshot_failure_counter(&self) -> Option<Arc<dyn Fn() + Send + Sync>> {
        let metrics = self.metrics.clone()?;
        Some(Arc::new(move || metrics.record_snapshot_failure()))
    }

    /// Sets `swarm_snapshot_lag_events`.
    pub(crate) fn snapshot_lag_gauge(&self) -> Option<Arc<dyn Fn(u64) + Send + Sync>> {
        let metrics = self.metrics.clone()?;
        Some(Arc::new(move |lag| metrics.record_snapshot_lag(lag)))
    }

    pub(crate) fn render(&self) -> Option<String> {
        self.exporter
            .as_ref()
            .map(swarm_metrics::PrometheusExporter::render)
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.exporter
            .as_ref()
            .and_then(swarm_metrics::PrometheusExporter::local_addr)
    }
}

/// Without the `prometheus` feature: records nothing, serves nothing.
#[cfg(not(feature = "prometheus"))]
pub(crate) struct MetricsWiring;

#[cfg(not(feature = "prometheus"))]
impl MetricsWiring {
    /// Refuses an exporter address: there is no exporter in this build.
    pub(crate) fn attach(
        _bus: &EventBus,
        _record: bool,
        addr: Option<SocketAddr>,
    ) -> Result<MetricsWiring, BuildError> {
        match addr {
            Some(addr) => Err(BuildError::Config(format!(
                "metrics({addr}) needs the `prometheus` feature of swarm (on by default)"
            ))),
            None => Ok(MetricsWiring),
        }
    }

    pub(crate) fn append_observer(&self) -> Option<AppendObserver> {
        None
    }

    pub(crate) fn snapshot_failure_counter(&self) -> Option<Arc<dyn Fn() + Send + Sync>> {
        None
    }

    pub(crate) fn snapshot_lag_gauge(&self) -> Option<Arc<dyn Fn(u64) + Send + Sync>> {
        None
    }

    pub(crate) fn render(&self) -> Option<String> {
        None
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}
