//! swarm-store: append throughput (memory; file with fsync and 1/8/64 concurrent
//! appenders, through group commit), p99 append latency, replay of 1M events,
//! and replay from a snapshot. Baselines in the same run: pushing to a `Vec`,
//! and one raw `write` + `fdatasync` per event (what group commit saves).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use swarm_core::event::{QueueLocation, TaskAssigned, TaskCompleted, TaskCreated, TaskEnqueued};
use swarm_core::{AgentId, Event, Priority, Task, TaskId};
use swarm_store::{Durability, EventStore, FileStore, FileStoreOptions, MemoryStore, SystemState};

fn small_event(n: u64) -> Event {
    TaskEnqueued {
        task_id: TaskId::from_u64(n),
        priority: Priority::Normal,
        queue: QueueLocation::Global,
    }
    .into()
}

/// Four events per task: created, enqueued, assigned, completed.
fn lifecycle_event(n: u64) -> Event {
    let id = TaskId::from_u64(n / 4);
    match n % 4 {
        0 => TaskCreated {
            task: Task::builder("bench")
                .id(id)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        }
        .into(),
        1 => TaskEnqueued {
            task_id: id,
            priority: Priority::Normal,
            queue: QueueLocation::Global,
        }
        .into(),
        2 => TaskAssigned {
            task_id: id,
            agent_id: AgentId::new(n % 16),
            attempt: 1,
            priority: Priority::Normal,
            queue_wait: Duration::from_micros(n % 1000),
        }
        .into(),
        _ => TaskCompleted {
            task_id: id,
            agent_id: AgentId::new(n % 16),
            attempt: 1,
            duration: Duration::from_micros(n % 5000),
            output: Default::default(),
        }
        .into(),
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("swarm-store-bench-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn quantile(latencies: &mut [Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[i]
}

fn bench_memory(c: &mut Criterion) {
    let rt = benches::current_thread();
    let mut g = c.benchmark_group("store/append_memory");
    g.throughput(Throughput::Elements(1));
    let store = MemoryStore::new();
    g.bench_function("memory_store_append_1", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            rt.block_on(store.append(vec![small_event(n)], None))
        });
    });
    g.bench_function("baseline_vec_push", |b| {
        let mut v = Vec::new();
        let mut n = 0;
        b.iter(|| {
            n += 1;
            v.push(small_event(n));
        });
    });
    g.finish();
}

/// `appenders` tasks append `batch` events per call until `total` events are in;
/// returns the elapsed time and every append's latency.
fn run_appenders(
    rt: &tokio::runtime::Runtime,
    store: &Arc<FileStore>,
    appenders: u64,
    batch: u64,
    total: u64,
) -> (Duration, Vec<Duration>) {
    let per_task = (total / appenders / batch).max(1);
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..appenders {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task as usize);
                for i in 0..per_task {
                    let events = (0..batch)
                        .map(|k| small_event((w << 40) | (i * batch + k)))
                        .collect();
                    let t = Instant::now();
                    store
                        .append(events, None)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
        }
        (start.elapsed(), all)
    })
}

fn bench_file_fsync(c: &mut Criterion) {
    let rt = benches::runtime(2);
    let mut g = c.benchmark_group("store/append_file_fsync");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(1));
    for (appenders, batch) in [(1u64, 1u64), (8, 1), (64, 1), (64, 16)] {
        let dir = scratch_dir(&format!("fsync-{appenders}-{batch}"));
        let store = Arc::new(FileStore::open(&dir).unwrap_or_else(|e| panic!("{e}")));
        let mut latencies = Vec::new();
        g.bench_with_input(
            BenchmarkId::new(format!("{appenders}_appenders_batch_{batch}"), appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| {
                    let (elapsed, lat) = run_appenders(&rt, &store, appenders, batch, iters);
                    latencies.extend(lat);
                    // Per event, even when the last round is short.
                    let done = (iters / appenders / batch).max(1) * appenders * batch;
                    elapsed.mul_f64(iters as f64 / done as f64)
                });
            },
        );
        let p50 = quantile(&mut latencies, 0.5);
        let p99 = quantile(&mut latencies, 0.99);
        eprintln!(
            "store/append_file_fsync/{appenders}_appenders_batch_{batch}: append latency p50 {p50:?} p99 {p99:?} ({} appends)",
            latencies.len()
        );
        rt.block_on(store.close()).unwrap_or_else(|e| panic!("{e}"));
        let _ = fs::remove_dir_all(&dir);
    }
    // Baseline: one write and one fdatasync per event, no grouping.
    let dir = scratch_dir("raw");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let record = [7u8; 72];
    g.bench_function("baseline_raw_write_fdatasync_per_event", |b| {
        b.iter(|| {
            file.write_all(&record).unwrap_or_else(|e| panic!("{e}"));
            file.sync_data().unwrap_or_else(|e| panic!("{e}"));
        });
    });
    let _ = fs::remove_dir_all(&dir);
    g.finish();
}

const REPLAY_EVENTS: u64 = 1_000_000;

fn build_log(dir: &Path) {
    let rt = benches::runtime(2);
    rt.block_on(async {
        let store = FileStore::open_with(
            dir,
            FileStoreOptions::default().durability(Durability::None),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut n = 0;
        while n < REPLAY_EVENTS {
            let events = (n..n + 1000).map(lifecycle_event).collect();
            store
                .append(events, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            n += 1000;
        }
        store.close().await.unwrap_or_else(|e| panic!("{e}"));
    });
}

fn bench_replay(c: &mut Criterion) {
    let dir = scratch_dir("replay");
    build_log(&dir);
    let rt = benches::runtime(2);
    let mut g = c.benchmark_group("store/replay");
    g.sample_size(10).measurement_time(Duration::from_secs(20));

    let t = Instant::now();
    let store = FileStore::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "store/replay: open (recovery scan of {REPLAY_EVENTS} events) took {:?}",
        t.elapsed()
    );

    g.throughput(Throughput::Elements(REPLAY_EVENTS));
    g.bench_function("replay_1m_events_file", |b| {
        b.iter(|| {
            rt.block_on(SystemState::replay(&store))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    });
    // Baseline: fold the same events already in memory.
    let events: Vec<_> = {
        let mem = MemoryStore::new();
        rt.block_on(async {
            let mut n = 0;
            while n < REPLAY_EVENTS {
                let batch = (n..n + 1000).map(lifecycle_event).collect();
                mem.append(batch, None)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                n += 1000;
            }
            use futures::StreamExt;
            mem.read(1)
                .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
                .collect::<Vec<_>>()
                .await
        })
    };
    g.bench_function("baseline_fold_1m_in_memory", |b| {
        b.iter(|| {
            let mut s = SystemState::new();
            for e in &events {
                s.apply(e);
            }
            s
        });
    });

    // From a snapshot 1000 events before the end.
    let at = REPLAY_EVENTS - 1000;
    let state = rt
        .block_on(SystemState::replay_to(&store, at))
        .unwrap_or_else(|e| panic!("{e}"));
    let snapshot = state.to_snapshot().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "store/replay: snapshot at {at} is {} bytes",
        snapshot.data.len()
    );
    rt.block_on(store.save_snapshot(snapshot))
        .unwrap_or_else(|e| panic!("{e}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("replay_from_snapshot_1000_before_end", |b| {
        b.iter(|| {
            rt.block_on(SystemState::replay(&store))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    });
    g.finish();
    let _ = rt.block_on(store.close());
    let _ = fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_memory, bench_file_fsync, bench_replay);
criterion_main!(benches);
