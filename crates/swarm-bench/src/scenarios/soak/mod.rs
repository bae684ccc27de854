//! A swarm that runs for a while: does its memory, snapshot lag and open file
//! count stay flat under steady load, and how long does it take to restart on
//! the store it leaves behind?
//!
//! A default swarm (`Swarm::builder()`, 4 instant simulated agents, metrics
//! recorded) on a `FileStore` in the work directory takes [`RATE`] no-op tasks
//! per second for 60 s (`--quick`: 10 s). A submitter wakes every [`TICK`] and
//! submits, in one `submit_batch`, the tasks due by then (`RATE × elapsed −
//! submitted`, at most [`MAX_BATCH`]), so a slow batch (an fsync that took
//! long) is made up on the next tick and the rate holds on average; handles
//! are dropped at once. A sampler thread, apart from the runtime so a busy
//! runtime does not delay it, reads every [`SAMPLE_EVERY`]: the resident set
//! (`/proc/self/statm`), the open file descriptors (entries of
//! `/proc/self/fd`), the tasks finished (`Swarm::stats`), and the snapshot lag:
//! `store.last_seq()` minus the sequence of `store.latest_snapshot(u64::MAX)`
//! (the whole log when there is no snapshot yet).
//!
//! `retained_bytes_per_finished_task` is the least-squares slope of RSS
//! against tasks finished over the samples after the warm-up (the first
//! [`WARM_UP_FRACTION`] of the load), up to the end of the load: the bytes the
//! process keeps for every task that has come and gone. A swarm whose memory
//! depends only on what is live has a slope near 0.
//!
//! Then the swarm is shut down (its final snapshot written) and restarted on
//! the soaked store: `restart_ms` is the time `build()` takes to open the
//! store, replay it and start the agents, that is until the swarm takes work
//! (one task is then run through it, `details.restart_first_task_ms`).
//! `restart_ms_fresh` is the same on an empty store, in the same process.
//! Rounds alternate soaked and fresh; the medians are reported.
//!
//! Last, `covered` runs the load again (half as long) on a store with
//! `LogRetention::covered_by_snapshot` and small segments, and reports the
//! most segment files alive at once (`covered_max_segments`).
//!
//! RSS is per process: this scenario runs in a process of its own (`cargo
//! xtask bench` starts one per scenario, and `swarm-bench` given several
//! scenarios re-runs this one in a child), so no other scenario's
//! allocations enter the slope.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use swarm::{EventStore, Swarm};

mod covered;

use super::{Result, ms, task};
use crate::sys::{median, r3, rss_bytes};
use crate::{Options, Outcome};

/// Tasks submitted per second.
pub(crate) const RATE: u64 = 20_000;
/// How often the submitter wakes.
const TICK: Duration = Duration::from_millis(10);
/// The most tasks in one `submit_batch` (0.1 s of load): a swarm that falls
/// behind is not handed one huge batch, it shows as a lower achieved rate.
const MAX_BATCH: u64 = RATE / 10;
/// How often the sampler reads RSS, open files, tasks finished and the lag.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The share of the load left out of the fit (allocator arenas, the
/// runtime's and the store's buffers, metrics histograms grow at first).
const WARM_UP_FRACTION: f64 = 1.0 / 6.0;
/// The longest wait for the submitted tasks to finish after the load.
const DRAIN_FOR: Duration = Duration::from_secs(60);

/// One reading of the sampler.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Since the load started.
    at: Duration,
    rss: u64,
    open_fds: u64,
    finished: u64,
    last_seq: u64,
    snapshot_seq: u64,
    snapshot_bytes: u64,
    /// How long reading the newest snapshot took.
    probe: Duration,
}

impl Sample {
    fn lag(&self) -> u64 {
        self.last_seq.saturating_sub(self.snapshot_seq)
    }
}

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let load_for = if options.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(60)
    };
    let rounds = if options.quick { 1 } else { 3 };
    std::fs::create_dir_all(&options.work_dir).map_err(|e| {
        format!(
            "cannot create the work directory {}: {e}",
            options.work_dir.display()
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("swarm-bench-soak")
        .tempdir_in(&options.work_dir)
        .map_err(|e| {
            format!(
                "cannot make a directory in {}: {e}",
                options.work_dir.display()
            )
        })?;
    let soaked = dir.path().join("soaked");

    let rss_before_build = rss_bytes();
    let swarm = Swarm::builder()
        .file_store(&soaked)
        .build()
        .await
        .map_err(|e| format!("cannot build the soaked swarm on {}: {e}", soaked.display()))?;
    let load = soak(&swarm, load_for).await?;
    let shutdown_started = Instant::now();
    swarm
        .shutdown(Duration::from_secs(30))
        .await
        .map_err(|e| format!("shutting the soaked swarm down failed: {e}"))?;
    let shutdown_ms = ms(shutdown_started.elapsed());
    drop(swarm);

    let mut restarts = Restarts::default();
    for round in 0..rounds {
        restarts.soaked.push(restart(&soaked).await?);
        restarts
            .fresh
            .push(restart(&dir.path().join(format!("fresh-{round}"))).await?);
    }

    // The disk side, after every RSS and restart measurement of the soak.
    let covered = covered::run(&dir.path().join("covered"), load_for / 2).await?;

    let fit = load.fit(load_for)?;
    let second_half = load.fit_from(load_for / 2)?;
    // The whole run's average, warm-up included, for comparison with the slope.
    let whole_run = match (load.samples.first(), load.at_load_end()) {
        (Some(first), Some(end)) if end.finished > first.finished => {
            end.rss.saturating_sub(first.rss) as f64 / (end.finished - first.finished) as f64
        }
        _ => 0.0,
    };
    let samples = &load.samples;
    let max_lag = samples.iter().map(Sample::lag).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.open_fds).max().unwrap_or(0);
    let rss_start = samples.first().map_or(0, |s| s.rss);
    let rss_end = load.at_load_end().map_or(0, |s| s.rss);
    let mib = |b: u64| r3(b as f64 / (1024.0 * 1024.0));
    let restart_ms = median(&mut restarts.build_ms(true));
    let restart_ms_fresh = median(&mut restarts.build_ms(false));

    let values = json!({
        "retained_bytes_per_finished_task": r3(fit.slope),
        "max_snapshot_lag_events": max_lag,
        "restart_ms": r3(restart_ms),
        "restart_ms_fresh": r3(restart_ms_fresh),
        "tasks_per_sec": r3(load.submitted as f64 / load.submit_s),
        "max_open_fds": max_fds,
        "rss_start_mib": mib(rss_start),
        "rss_end_mib": mib(rss_end),
        "covered_max_segments": covered.max_segments,
    });
    let details = json!({
        "target_tasks_per_sec": RATE,
        "load_s": load_for.as_secs_f64(),
        "submit_tick_ms": ms(TICK),
        "max_batch": MAX_BATCH,
        "sample_every_ms": ms(SAMPLE_EVERY),
        "samples": samples.len(),
        "warm_up_s": r3(load_for.as_secs_f64() * WARM_UP_FRACTION),
        "fit_samples": fit.points,
        "fit_r2": r3(fit.r2),
        "retained_bytes_per_finished_task_second_half": r3(second_half.slope),
        "rss_growth_per_finished_task_whole_run": r3(whole_run),
        "rss_growth_bytes_per_sec": r3(fit.slope_per_sec),
        "rss_before_build_mib": mib(rss_before_build),
        "rss_max_mib": mib(samples.iter().map(|s| s.rss).max().unwrap_or(0)),
        "tasks_submitted": load.submitted,
        "tasks_finished": load.finished,
        "drain_ms": r3(load.drain_ms),
        "submit_batch_p50_ms": r3(load.submit_hist.value_at_quantile(0.5) as f64 / 1e3),
        "submit_batch_p99_ms": r3(load.submit_hist.value_at_quantile(0.99) as f64 / 1e3),
        "submit_batch_max_ms": r3(load.submit_hist.max() as f64 / 1e3),
        "events_stored": load.events_stored,
        "snapshot_failures": load.snapshot_failures,
        "end_snapshot_lag_events": load.at_load_end().map_or(0, Sample::lag),
        "max_snapshot_bytes": samples.iter().map(|s| s.snapshot_bytes).max().unwrap_or(0),
        "snapshot_probe_max_ms": r3(samples.iter().map(|s| ms(s.probe)).fold(0.0, f64::max)),
        "min_open_fds": samples.iter().map(|s| s.open_fds).min().unwrap_or(0),
    });
    // Two objects: one `json!` this long passes the macro recursion limit.
    let restart_details = json!({
        "shutdown_ms": r3(shutdown_ms),
        "restart_rounds": rounds,
        // Also here for the report's aim on restart_ms.
        "restart_ms_fresh": r3(restart_ms_fresh),
        "restart_ms_rounds": restarts.build_ms(true).into_iter().map(r3).collect::<Vec<_>>(),
        "restart_ms_fresh_rounds": restarts.build_ms(false).into_iter().map(r3).collect::<Vec<_>>(),
        "restart_first_task_ms": r3(median(&mut restarts.first_task_ms(true))),
        "restart_first_task_ms_fresh": r3(median(&mut restarts.first_task_ms(false))),
        "restart_tail_events": restarts.soaked.first().map_or(0, |r| r.tail_events),
        "restart_log_events": restarts.soaked.first().map_or(0, |r| r.log_events),
        "restart_rss_growth_mib": mib(restarts.soaked.iter().map(|r| r.rss_growth).max().unwrap_or(0)),
        "restart_rss_growth_mib_fresh": mib(restarts.fresh.iter().map(|r| r.rss_growth).max().unwrap_or(0)),
        "store_bytes": dir_bytes(&soaked),
        "setup": "Swarm::builder() defaults (4 instant sim agents, autoscale, metrics recorded) on file_store(dir) (Durability::Fsync)",
        "retained_method": "least-squares slope of RSS (/proc/self/statm) against tasks finished, samples after the warm-up up to the end of the load",
        "lag_method": "store.last_seq() - store.latest_snapshot(u64::MAX).seq, each sample",
        "restart_method": "time of Swarm::builder().file_store(dir).build() after a graceful shutdown; median of the rounds, soaked and fresh alternating",
    });
    let mut details = object(details);
    details.extend(object(restart_details));
    details.insert("covered".into(), covered.details);
    let t: Vec<f64> = samples.iter().map(|s| r3(s.at.as_secs_f64())).collect();
    let series = json!({
        "t_s": t,
        "rss_mib": samples.iter().map(|s| mib(s.rss)).collect::<Vec<_>>(),
        "finished": samples.iter().map(|s| s.finished).collect::<Vec<_>>(),
        "snapshot_lag_events": samples.iter().map(Sample::lag).collect::<Vec<_>>(),
        "open_fds": samples.iter().map(|s| s.open_fds).collect::<Vec<_>>(),
    });
    Ok(Outcome {
        values: object(values),
        details,
        series: object(series),
    })
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// What the load phase saw.
struct Load {
    samples: Vec<Sample>,
    submitted: u64,
    /// Time spent submitting (the load's length, give or take a tick).
    submit_s: f64,
    finished: u64,
    drain_ms: f64,
    submit_hist: Histogram<u64>,
    events_stored: u64,
    snapshot_failures: u64,
}

/// A least-squares line through (tasks finished, RSS).
struct Fit {
    /// Bytes per finished task.
    slope: f64,
    /// Bytes per second, over the same samples.
    slope_per_sec: f64,
    r2: f64,
    points: usize,
}

impl Load {
    /// The last sample taken while tasks were still being submitted.
    fn at_load_end(&self) -> Option<&Sample> {
        let end = Duration::from_secs_f64(self.submit_s);
        self.samples
            .iter()
            .rev()
            .find(|s| s.at <= end)
            .or(self.samples.last())
    }

    fn fit(&self, load_for: Duration) -> Result<Fit> {
        self.fit_from(load_for.mul_f64(WARM_UP_FRACTION))
    }

    /// The fit over the samples from `from` to the end of the load.
    fn fit_from(&self, from: Duration) -> Result<Fit> {
        let until = Duration::from_secs_f64(self.submit_s);
        let points: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at <= until)
            .collect();
        let by_task = least_squares(points.iter().map(|s| (s.finished as f64, s.rss as f64)))
            .ok_or_else(|| {
                format!(
                    "too few samples after the warm-up to fit RSS against tasks finished ({} samples, {} tasks finished)",
                    points.len(),
                    self.finished
                )
            })?;
        let by_time = least_squares(points.iter().map(|s| (s.at.as_secs_f64(), s.rss as f64)))
            .map_or(0.0, |(slope, _)| slope);
        Ok(Fit {
            slope: by_task.0,
            slope_per_sec: by_time,
            r2: by_task.1,
            points: points.len(),
        })
    }
}

/// The least-squares slope of `y` over `x` and the fit's r², or `None` with
/// fewer than 3 points or no spread in `x`.
fn least_squares(points: impl Iterator<Item = (f64, f64)> + Clone) -> Option<(f64, f64)> {
    let n = points.clone().count();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let (sx, sy) = points
        .clone()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / nf, sy / nf);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        (sxy * sxy) / (sxx * syy)
    } else {
        1.0
    };
    Some((slope, r2))
}

/// Runs the load for `load_for` with the sampler on, then waits for the
/// submitted tasks to finish.
async fn soak(swarm: &Swarm, load_for: Duration) -> Result<Load> {
    let kind: Arc<str> = Arc::from("soak");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let swarm = swarm.clone();
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("soak-sampler".into())
            .spawn(move || sample_until(&swarm, started, &stop))
            .map_err(|e| format!("cannot start the sampler thread: {e}"))?
    };

    let mut submit_hist =
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut submitted = 0u64;
    let result: Result<()> = async {
        loop {
            ticks.tick().await;
            let elapsed = started.elapsed();
            if elapsed >= load_for {
                break;
            }
            let due = (RATE as f64 * elapsed.as_secs_f64()) as u64;
            let n = due.saturating_sub(submitted).min(MAX_BATCH);
            if n == 0 {
                continue;
            }
            let batch = (0..n).map(|_| task(&kind)).collect::<Result<Vec<_>>>()?;
            let t = Instant::now();
            let handles = swarm
                .submit_batch(batch)
                .await
                .map_err(|e| format!("submit_batch failed after {submitted} tasks: {e}"))?;
            submit_hist
                .saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            // Nobody waits for the outcome: a service's callers come and go.
            drop(handles);
            submitted += n;
        }
        Ok(())
    }
    .await;
    let submit_s = started.elapsed().as_secs_f64();
    let drain_started = Instant::now();
    if result.is_ok() {
        while swarm.stats().finished() < submitted && drain_started.elapsed() < DRAIN_FOR {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let drain_ms = ms(drain_started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| "the sampler thread panicked".to_owned())??;
    result?;
    let stats = swarm.stats();
    if stats.finished() < submitted {
        return Err(format!(
            "only {} of {submitted} tasks finished within {} s of the load's end",
            stats.finished(),
            DRAIN_FOR.as_secs()
        ));
    }
    Ok(Load {
        samples,
        submitted,
        submit_s,
        finished: stats.finished(),
        drain_ms,
        submit_hist,
        events_stored: stats.events_stored,
        snapshot_failures: stats.snapshot_failures,
    })
}

/// The sampler thread: a reading every [`SAMPLE_EVERY`] until `stop`.
fn sample_until(swarm: &Swarm, started: Instant, stop: &AtomicBool) -> Result<Vec<Sample>> {
    // The file store reads snapshots on tokio's blocking pool: a small
    // runtime of this thread's own drives those reads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the sampler's runtime: {e}"))?;
    let store = Arc::clone(swarm.store());
    let mut samples = Vec::new();
    let mut next = started;
    while !stop.load(Ordering::Relaxed) {
        samples.push(runtime.block_on(sample(swarm, &*store, started))?);
        next += SAMPLE_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // A slow reading: start again from now rather than in a burst.
            next = now;
        }
    }
    Ok(samples)
}

async fn sample(swarm: &Swarm, store: &dyn EventStore, started: Instant) -> Result<Sample> {
    // The cheap readings first, so the snapshot read's buffers are not in them.
    let at = started.elapsed();
    let rss = rss_bytes();
    let open_fds = open_fds();
    let finished = swarm.stats().finished();
    let probe_started = Instant::now();
    let snapshot = store
        .latest_snapshot(u64::MAX)
        .await
        .map_err(|e| format!("cannot read the newest snapshot: {e}"))?;
    let probe = probe_started.elapsed();
    // After the snapshot, so the lag is never negative.
    let last_seq = store
        .last_seq()
        .await
        .map_err(|e| format!("cannot read the log's last sequence: {e}"))?;
    let (snapshot_seq, snapshot_bytes) = snapshot.map_or((0, 0), |s| (s.seq, s.data.len() as u64));
    Ok(Sample {
        at,
        rss,
        open_fds,
        finished,
        last_seq,
        snapshot_seq,
        snapshot_bytes,
        probe,
    })
}

/// Open file descriptors of this process (0 where `/proc` is missing).
fn open_fds() -> u64 {
    match std::fs::read_dir("/proc/self/fd") {
        // Less the descriptor of the listing itself.
        Ok(entries) => (entries.count() as u64).saturating_sub(1),
        Err(_) => 0,
    }
}

/// Bytes of the files directly in `dir` (the store's segments and snapshots).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// One restart: how long `build` took, then one task through the swarm.
#[derive(Debug, Clone, Copy)]
struct Restart {
    build_ms: f64,
    first_task_ms: f64,
    rss_growth: u64,
    /// Events after the newest snapshot, just after the start.
    tail_events: u64,
    /// Events in the log, just after the start.
    log_events: u64,
}

#[derive(Debug, Default)]
struct Restarts {
    soaked: Vec<Restart>,
    fresh: Vec<Restart>,
}

impl Restarts {
    fn build_ms(&self, soaked: bool) -> Vec<f64> {
        self.of(soaked).iter().map(|r| r.build_ms).collect()
    }

    fn first_task_ms(&self, soaked: bool) -> Vec<f64> {
        self.of(soaked).iter().map(|r| r.first_task_ms).collect()
    }

    fn of(&self, soaked: bool) -> &[Restart] {
        if soaked { &self.soaked } else { &self.fresh }
    }
}

/// Builds a swarm on the store in `dir`, runs one task, shuts it down.
async fn restart(dir: &Path) -> Result<Restart> {
    let rss_before = rss_bytes();
    let started = Instant::now();
    let swarm = Swarm::builder()
        .file_store(dir)
        .build()
        .await
        .map_err(|e| format!("cannot restart a swarm on {}: {e}", dir.display()))?;
    let build_ms = ms(started.elapsed());
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    // What the restart found beyond its newest snapshot (plus the few events
    // the start itself recorded): the tail it had to replay.
    let store = swarm.store();
    let snapshot_seq = store
        .latest_snapshot(u64::MAX)
        .await
        .map_err(|e| format!("cannot read the restarted store's snapshot: {e}"))?
        .map_or(0, |s| s.seq);
    let last_seq = store
        .last_seq()
        .await
        .map_err(|e| format!("cannot read the restarted store's last sequence: {e}"))?;
    let tail_events = last_seq.saturating_sub(snapshot_seq);
    let first = Instant::now();
    let handle = swarm
        .submit(task(&Arc::from("restart"))?)
        .await
        .map_err(|e| format!("the restarted swarm refused a task: {e}"))?;
    let outcome = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .map_err(|_| "the restarted swarm did not run a task within 60 s".to_owned())?;
    if !outcome.is_completed() {
        return Err(format!(
            "the restarted swarm did not complete its task: {outcome:?}"
        ));
    }
    let first_task_ms = ms(first.elapsed());
    swarm
        .shutdown(Duration::from_secs(30))
        .await
        .map_err(|e| format!("shutting the restarted swarm down failed: {e}"))?;
    Ok(Restart {
        build_ms,
        first_task_ms,
        rss_growth,
        tail_events,
        log_events: last_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::least_squares;

    #[test]
    fn least_squares_finds_the_slope_of_a_line_and_its_fit() {
        let line = (0..10).map(|i| (i as f64 * 1000.0, 5e6 + 450.0 * i as f64 * 1000.0));
        let (slope, r2) = least_squares(line).unwrap();
        assert!((slope - 450.0).abs() < 1e-9, "{slope}");
        assert!((r2 - 1.0).abs() < 1e-9, "{r2}");

        // Flat memory with noise: a slope near 0, a poor fit.
        let flat = [(0.0, 10.0), (1.0, 12.0), (2.0, 10.0), (3.0, 12.0)];
        let (slope, r2) = least_squares(flat.into_iter()).unwrap();
        assert!(slope.abs() < 1.0, "{slope}");
        assert!(r2 < 0.5, "{r2}");
    }

    #[test]
    fn least_squares_needs_three_points_and_a_spread() {
        assert!(least_squares([(0.0, 1.0), (1.0, 2.0)].into_iter()).is_none());
        assert!(least_squares([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)].into_iter()).is_none());
    }
}
