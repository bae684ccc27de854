//! Installing the exporter as the process's global `metrics` recorder works
//! once; a second install is a clear error. (Its own test binary: the global
//! recorder is process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "prometheus")]

use swarm_metrics::{ExporterError, PrometheusExporter, SwarmMetrics};

#[test]
fn install_once_then_refuse() {
    let exporter = PrometheusExporter::builder()
        .without_listener()
        .install()
        .unwrap();
    // Other code's metrics and a SwarmMetrics made from the global recorder land here.
    metrics::counter!("app_widgets_total").increment(2);
    SwarmMetrics::new().record_store_append(std::time::Duration::from_millis(1));
    let text = exporter.render();
    assert!(text.contains("app_widgets_total 2"), "{text}");
    assert!(
        text.contains("swarm_store_append_duration_seconds_count 1"),
        "{text}"
    );

    let second = PrometheusExporter::builder().without_listener().install();
    assert!(matches!(second, Err(ExporterError::GlobalRecorderTaken)));
    let again = exporter.install_global().unwrap_err();
    assert!(again.to_string().contains("already installed"), "{again}");
}
