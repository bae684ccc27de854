//! Every `swarm_*` metric name that the docs and the Grafana dashboard use is
//! one the exporter really emits.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "prometheus")]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use swarm_core::event::{TaskThrottled, TaskUnthrottled};
use swarm_metrics::PrometheusExporter;

const DOCS: [&str; 2] = ["docs/operations.md", "docs/grafana/swarm.json"];

fn workspace_file(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `swarm_[a-z0-9_]+` token of `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("swarm_") {
        let start = i + pos;
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - start);
        if !preceded_by_word {
            names.insert(text[start..end].trim_end_matches('_').to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// The names the exporter emits: every family (`# TYPE` line) and every
/// series name, so histograms count with and without `_bucket|_sum|_count`.
fn exported_names() -> BTreeSet<String> {
    let exporter = PrometheusExporter::builder()
        .without_listener()
        .build()
        .unwrap();
    let metrics = exporter.swarm_metrics();
    // The per-limit families get their series when a limit first holds a task.
    let task_id = swarm_core::TaskId::from_u64(1);
    let limit = "rate(kind=llm, 60/60s)".to_owned();
    metrics.record(
        &TaskThrottled {
            task_id,
            limit: limit.clone(),
        }
        .into(),
    );
    metrics.record(
        &TaskUnthrottled {
            task_id,
            limit,
            waited: std::time::Duration::from_millis(20),
        }
        .into(),
    );
    let text = exporter.render();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned);
    let series = support::samples(&text)
        .into_keys()
        .map(|series| series.split('{').next().unwrap_or(&series).to_owned());
    families.chain(series).collect()
}

#[test]
fn the_extractor_finds_names_and_skips_longer_words() {
    let names = metric_names(
        r#"rate(swarm_events_total{event="x"}[5m]) and histogram_quantile(0.99, sum by (le) (rate(swarm_task_queue_wait_seconds_bucket[5m]))) my_swarm_thing crate swarm_metrics_"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "swarm_events_total",
            "swarm_metrics",
            "swarm_task_queue_wait_seconds_bucket"
        ]
    );
}

#[test]
fn every_metric_name_in_the_docs_is_exported() {
    let exported = exported_names();
    // Crate and file names that start with swarm_ but are not metrics.
    let not_metrics = ["swarm_core", "swarm_metrics", "swarm_dashboard"];
    for doc in DOCS {
        let names = metric_names(&workspace_file(doc));
        let names: Vec<_> = names
            .into_iter()
            .filter(|n| !not_metrics.contains(&n.as_str()))
            .collect();
        assert!(names.len() >= 8, "{doc} mentions only {names:?}");
        let missing: Vec<_> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{doc} uses metric names the exporter does not emit: {missing:?}\nexported: {exported:?}"
        );
    }
}

#[test]
fn every_exported_metric_is_documented_in_operations_md() {
    let documented = metric_names(&workspace_file("docs/operations.md"));
    for name in swarm_metrics::names::ALL {
        assert!(
            documented.contains(name),
            "docs/operations.md does not mention {name}"
        );
    }
}
