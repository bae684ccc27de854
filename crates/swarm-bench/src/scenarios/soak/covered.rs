//! The disk side of a long run: the same load on a `FileStore` whose log
//! keeps only what a snapshot does not cover
//! (`LogRetention::covered_by_snapshot`), with small segments
//! ([`SEGMENT_BYTES`]) so that many roll over during the load. A thread
//! counts the segment files every [`SAMPLE_EVERY`]; `covered_max_segments`
//! is the most alive at once after the warm-up: with retention deleting every
//! segment older than the newest snapshot, the log holds the segment being
//! written and the one holding that snapshot's start, so at most 2, however
//! long the swarm runs (issue 16's aim: disk within 2 segments + snapshots).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swarm::{FileStoreOptions, LogRetention, Swarm};

use super::{Result, WARM_UP_FRACTION, soak};
use crate::sys::r3;

/// Segment size of this run: small, so the load rolls over many.
const SEGMENT_BYTES: u64 = 4 << 20;
/// How often the segment files are counted.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the retention run saw.
pub(super) struct Covered {
    pub(super) max_segments: usize,
    pub(super) details: Value,
}

/// Runs the load for `load_for` on a retention-bounded store in `dir`.
pub(super) async fn run(dir: &Path, load_for: Duration) -> Result<Covered> {
    let options = FileStoreOptions::default()
        .segment_size(SEGMENT_BYTES)
        .retention(LogRetention::covered_by_snapshot());
    let swarm = Swarm::builder()
        .file_store_with(dir, options)
        .build()
        .await
        .map_err(|e| format!("cannot build the retention swarm on {}: {e}", dir.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let (dir, stop) = (dir.to_path_buf(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("soak-segments".into())
            .spawn(move || count_until(&dir, &stop, load_for))
            .map_err(|e| format!("cannot start the segment counter: {e}"))?
    };
    let load = soak(&swarm, load_for).await;
    stop.store(true, Ordering::Relaxed);
    let counts = counter
        .join()
        .map_err(|_| "the segment counter panicked".to_string())?;
    let load = load?;
    swarm
        .shutdown(Duration::from_secs(30))
        .await
        .map_err(|e| format!("shutting the retention swarm down failed: {e}"))?;
    let segments_at_end = segments(dir).len();
    Ok(Covered {
        max_segments: counts.max_after_warm_up,
        details: json!({
            "segment_bytes": SEGMENT_BYTES,
            "load_s": load_for.as_secs_f64(),
            "tasks_finished": load.finished,
            "segments_written": counts.seen.len(),
            "max_segments_whole_run": counts.max_whole_run,
            "segments_at_end": segments_at_end,
            "max_disk_mib": r3(counts.max_bytes as f64 / (1024.0 * 1024.0)),
            "method": "segment files (*.log) counted every 100 ms; the maximum after the warm-up",
        }),
    })
}

#[derive(Default)]
struct Counts {
    seen: BTreeSet<PathBuf>,
    max_after_warm_up: usize,
    max_whole_run: usize,
    max_bytes: u64,
}

fn count_until(dir: &Path, stop: &AtomicBool, load_for: Duration) -> Counts {
    let started = Instant::now();
    let warm_up = load_for.mul_f64(WARM_UP_FRACTION);
    let mut counts = Counts::default();
    while !stop.load(Ordering::Relaxed) {
        let now = segments(dir);
        counts.max_whole_run = counts.max_whole_run.max(now.len());
        if started.elapsed() >= warm_up {
            counts.max_after_warm_up = counts.max_after_warm_up.max(now.len());
        }
        counts.max_bytes = counts.max_bytes.max(super::dir_bytes(dir));
        counts.seen.extend(now);
        std::thread::sleep(SAMPLE_EVERY);
    }
    counts
}

/// The segment files in `dir` now.
fn segments(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default()
}
