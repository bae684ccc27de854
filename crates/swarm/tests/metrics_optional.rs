//! A swarm that records no metrics runs no exporter thread; one that does,
//! does (so the first check can fail). Linux: threads are read from /proc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use swarm::Swarm;

fn exporter_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("swarm-metrics"))
        .count()
}

#[tokio::test]
async fn record_metrics_off_runs_no_exporter_thread() {
    if !std::path::Path::new("/proc/self/task").is_dir() {
        eprintln!("skipped: no /proc to count threads");
        return;
    }
    let quiet = Swarm::builder()
        .agents(1)
        .record_metrics(false)
        .build()
        .await
        .unwrap();
    assert_eq!(exporter_threads(), 0, "an exporter thread runs for nothing");
    assert!(quiet.render_metrics().is_none());
    quiet
        .shutdown(std::time::Duration::from_secs(1))
        .await
        .unwrap();

    let recording = Swarm::builder().agents(1).build().await.unwrap();
    // A new thread names itself once it runs: give it a moment.
    let mut seen = exporter_threads();
    for _ in 0..200 {
        if seen >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        seen = exporter_threads();
    }
    assert!(seen >= 1, "the exporter's upkeep thread is not seen");
    assert!(recording.render_metrics().unwrap().contains("swarm_"));
    recording
        .shutdown(std::time::Duration::from_secs(1))
        .await
        .unwrap();
}
