//! The distributed task queue on loopback: no-op tasks queued on a JetStream
//! work-queue stream, then drained by 1 and by 2 nodes (each with its own NATS
//! connection and 256 agents), counted as their `task:completed` events land in
//! the shared NatsStore log. The measurement of the ignored test
//! `throughput_one_and_two_nodes` in `crates/swarm/tests/distributed_nats.rs`.
//!
//! Needs a nats-server with JetStream at `SWARM_NATS_URL` (default
//! `nats://127.0.0.1:4222`); if none answers, the scenario is reported as
//! skipped (`details.distributed.skipped`) and its values are left out.
//! Every round uses its own streams (named after the process, the time and
//! the round) and deletes them afterwards.
//!
//! Beside the rates, what a task costs: the nats-server's CPU and I/O per
//! task (from `/proc/<pid>` of the process listening on the URL's port, when
//! it runs on this machine and can be read), this process's CPU per task (the
//! nodes, plus the bench's own read of the log), and the log's bytes per task
//! on the server. docs/nats.md builds its cost model on these.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use swarm::Swarm;
use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm_agents::{Agent, ExecuteError, TaskOutput};
use swarm_core::{Event, Priority, Task};
use swarm_store::{EventStore, NatsStore, NatsStoreOptions};

use super::Result;
use crate::sys::{ProcUsage, cpu_time, listener_pid, median, r3};
use crate::{Options, Outcome};

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// Agents per node: enough that a node is never short of a free agent.
const AGENTS: usize = 256;
/// Tasks a node holds locally per priority (its pull batch).
const PREFETCH: usize = 256;
/// How long the bench waits for the next completion before it gives up.
const STALL: Duration = Duration::from_secs(120);

static ROUND: AtomicU64 = AtomicU64::new(0);

/// Completes at once.
struct Noop;

impl Agent for Noop {
    async fn execute(&self, _task: &Task) -> std::result::Result<TaskOutput, ExecuteError> {
        Ok(TaskOutput::empty())
    }
}

/// The server URL: `SWARM_NATS_URL`, or the local default.
fn server_url() -> String {
    match std::env::var("SWARM_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => DEFAULT_URL.to_owned(),
    }
}

/// A swarm name no other run or round uses.
fn unique_swarm() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "bench_{}_{nanos}_{}",
        std::process::id(),
        ROUND.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn run(options: &Options) -> Result<Outcome> {
    let (tasks, rounds) = if options.quick {
        (2_000, 1)
    } else {
        (20_000, 3)
    };
    let url = server_url();
    // Is a server with JetStream there? If not, skip instead of failing the bench.
    let server_version = match probe(&url).await {
        Ok(version) => version,
        Err(reason) => {
            eprintln!("swarm-bench: distributed skipped: {reason}");
            let details = json!({
                "skipped": true,
                "reason": reason,
                "nats_url": url,
            });
            return Ok(Outcome {
                values: serde_json::Map::new(),
                details: details.as_object().cloned().unwrap_or_default(),
                series: serde_json::Map::new(),
            });
        }
    };
    let server_pid = server_port(&url).and_then(listener_pid);
    // Warm-up: connections, stream creation paths, allocator.
    round(&url, server_pid, 1, tasks / 10).await?;
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let mut events_per_task = Vec::new();
    let mut costs: [Costs; 2] = Default::default();
    for _ in 0..rounds {
        for (nodes, rates) in [(1, &mut one), (2, &mut two)] {
            let figures = round(&url, server_pid, nodes, tasks).await?;
            rates.push(figures.rate);
            events_per_task.push(figures.events as f64 / tasks as f64);
            costs[nodes - 1].add(&figures, tasks);
        }
    }
    let [mut cost_one, mut cost_two] = costs;
    let one_node = r3(median(&mut one));
    let details = json!({
        "nats_url": url,
        "nats_server_version": server_version,
        "tasks_per_round": tasks,
        "rounds": rounds,
        "agents_per_node": AGENTS,
        "prefetch_per_priority": PREFETCH,
        "priorities": "round-robin over critical, high, normal, low",
        "method": "tasks queued first (pipelined publishes, all acknowledged), then the nodes start; the clock runs from starting the nodes to the last task:completed read back from the shared NatsStore log",
        "nodes": "each node in this process with its own NATS connections (queue and log), a Node over an AgentPool of no-op agents; they share the runtime's worker threads and the machine with the nats-server",
        "tasks_per_sec_1_worker_rounds": one.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        // What the 2-node aim compares with (the report's aim sees details only).
        "tasks_per_sec_1_worker": one_node,
        "tasks_per_sec_2_workers_rounds": two.iter().map(|x| r3(*x)).collect::<Vec<_>>(),
        "log_events_per_task": r3(median(&mut events_per_task)),
        "log_events": "each event is one JetStream publish acknowledged before the task is acked, and read back by the bench's log subscription",
        "nats_server_pid": server_pid,
        "cost_1_worker": cost_one.summary(),
        "cost_2_workers": cost_two.summary(),
        "cost_method": "medians over the rounds, per task drained: server_* from /proc/<pid>/stat and /proc/<pid>/io of the nats-server listening on the URL's port (rchar/wchar count socket and file bytes alike, write_bytes what reached storage); process_cpu_us this process (the nodes plus the bench's own read of the log; the tasks were queued before the clock started); log_bytes the log stream's size on the server",
    });
    let mut values = json!({
        "tasks_per_sec_1_worker": one_node,
        "tasks_per_sec_2_workers": r3(median(&mut two)),
        "process_cpu_us_per_task": r3(median(&mut cost_one.process_cpu_us)),
    });
    if !cost_one.server_cpu_us.is_empty() {
        values["server_cpu_us_per_task"] = json!(r3(median(&mut cost_one.server_cpu_us)));
    }
    Ok(Outcome {
        values: values.as_object().cloned().unwrap_or_default(),
        details: details.as_object().cloned().unwrap_or_default(),
        series: serde_json::Map::new(),
    })
}

/// Connects, opens a throwaway log and deletes it: `Ok(server version)` if a
/// JetStream server answers, otherwise why not.
async fn probe(url: &str) -> std::result::Result<String, String> {
    let options = NatsStoreOptions::new(url, unique_swarm())
        .connect_timeout(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(5));
    let store =
        match tokio::time::timeout(Duration::from_secs(10), NatsStore::connect(options)).await {
            Ok(Ok(store)) => store,
            Ok(Err(e)) => return Err(format!("no NATS JetStream server at {url}: {e}")),
            Err(_) => {
                return Err(format!(
                    "no NATS JetStream server at {url}: connecting timed out"
                ));
            }
        };
    let version = store.client().server_info().version;
    store
        .destroy()
        .await
        .map_err(|e| format!("the NATS server at {url} would not delete a stream: {e}"))?;
    Ok(version)
}

/// The port of a `nats://host:port` URL (the first of a list), 4222 if none is given.
fn server_port(url: &str) -> Option<u16> {
    let first = url.split(',').next()?.trim();
    let rest = first.split_once("://").map_or(first, |(_, r)| r);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((_, port)) => port.trim_end_matches('/').parse().ok(),
        None => Some(4222),
    }
}

/// What one round measured.
struct Figures {
    rate: f64,
    events: u64,
    /// The nats-server's use over the drain (if it could be read).
    server: Option<ProcUsage>,
    /// This process's CPU over the drain.
    process_cpu: Duration,
    /// The log stream's size on the server after the drain.
    log_bytes: Option<u64>,
}

/// Per-task costs over the rounds of one node count.
#[derive(Default)]
struct Costs {
    server_cpu_us: Vec<f64>,
    server_read_bytes: Vec<f64>,
    server_written_bytes: Vec<f64>,
    server_storage_bytes: Vec<f64>,
    process_cpu_us: Vec<f64>,
    log_bytes: Vec<f64>,
}

impl Costs {
    fn add(&mut self, f: &Figures, tasks: usize) {
        let per = |x: f64| x / tasks as f64;
        if let Some(s) = &f.server {
            self.server_cpu_us.push(per(s.cpu.as_secs_f64() * 1e6));
            self.server_read_bytes.push(per(s.rchar as f64));
            self.server_written_bytes.push(per(s.wchar as f64));
            self.server_storage_bytes.push(per(s.write_bytes as f64));
        }
        self.process_cpu_us
            .push(per(f.process_cpu.as_secs_f64() * 1e6));
        if let Some(bytes) = f.log_bytes {
            self.log_bytes.push(per(bytes as f64));
        }
    }

    fn summary(&mut self) -> serde_json::Value {
        let m = |v: &mut Vec<f64>| (!v.is_empty()).then(|| r3(median(v)));
        json!({
            "server_cpu_us_per_task": m(&mut self.server_cpu_us),
            "server_read_bytes_per_task": m(&mut self.server_read_bytes),
            "server_written_bytes_per_task": m(&mut self.server_written_bytes),
            "server_storage_write_bytes_per_task": m(&mut self.server_storage_bytes),
            "process_cpu_us_per_task": m(&mut self.process_cpu_us),
            "log_bytes_per_task": m(&mut self.log_bytes),
        })
    }
}

/// One measurement on fresh streams, which are deleted afterwards whatever
/// happened.
async fn round(url: &str, server_pid: Option<u32>, nodes: usize, tasks: usize) -> Result<Figures> {
    let swarm_name = unique_swarm();
    let mut config = TaskQueueConfig::new(&swarm_name);
    config.prefetch = PREFETCH;
    let store_options = NatsStoreOptions::new(url, &swarm_name).shared_writers(true);
    let log = NatsStore::connect(store_options.clone())
        .await
        .map_err(|e| format!("opening the log: {e}"))?;
    let queue = match TaskQueue::open(log.client().clone(), config.clone()).await {
        Ok(queue) => queue,
        Err(e) => {
            let _ = log.destroy().await;
            return Err(format!("opening the task queue: {e}"));
        }
    };
    let result = measure(
        &queue,
        &log,
        &config,
        &store_options,
        server_pid,
        nodes,
        tasks,
    )
    .await;
    let queue_gone = queue.destroy().await;
    let log_gone = log.destroy().await;
    let measured = result?;
    queue_gone.map_err(|e| format!("deleting the task queue: {e}"))?;
    log_gone.map_err(|e| format!("deleting the log: {e}"))?;
    Ok(measured)
}

async fn measure(
    queue: &TaskQueue,
    log: &NatsStore,
    config: &TaskQueueConfig,
    store_options: &NatsStoreOptions,
    server_pid: Option<u32>,
    nodes: usize,
    tasks: usize,
) -> Result<Figures> {
    let mut acks = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let task = Task::builder("noop")
            .priority(Priority::ALL[i % Priority::ALL.len()])
            .build()
            .map_err(|e| e.to_string())?;
        acks.push(
            queue
                .submit_pipelined(&task)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    for ack in acks {
        ack.await.map_err(|e| format!("queueing a task: {e}"))?;
    }
    let mut live = log.subscribe(1);
    let server_before = server_pid.and_then(ProcUsage::of);
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        match start_node(config, store_options).await {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                stop(handles).await;
                return Err(e);
            }
        }
    }
    let mut done = HashSet::with_capacity(tasks);
    let mut outcome = Ok(());
    while done.len() < tasks {
        match tokio::time::timeout(STALL, live.next()).await {
            Ok(Some(Ok(e))) => {
                if let Event::TaskCompleted(c) = &e.event {
                    done.insert(c.task_id);
                }
            }
            Ok(Some(Err(e))) => {
                outcome = Err(format!("reading the log: {e}"));
                break;
            }
            Ok(None) => {
                outcome = Err("the log subscription ended".to_owned());
                break;
            }
            Err(_) => {
                outcome = Err(format!(
                    "no task completed for {STALL:?} ({} of {tasks} done)",
                    done.len()
                ));
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let process_cpu = cpu_time().saturating_sub(cpu_before);
    let server = server_before
        .zip(server_pid.and_then(ProcUsage::of))
        .map(|(before, after)| after.since(&before));
    stop(handles).await;
    outcome?;
    let js = swarm::distributed::async_nats::jetstream::new(log.client().clone());
    let log_bytes = match js.get_stream(store_options.stream_name()).await {
        Ok(mut stream) => stream.info().await.ok().map(|i| i.state.bytes),
        Err(_) => None,
    };
    let events = log
        .last_seq()
        .await
        .map_err(|e| format!("reading the log's end: {e}"))?;
    eprintln!(
        "swarm-bench: distributed: {nodes} node(s), {tasks} tasks in {secs:.2} s: {:.0} tasks/s",
        tasks as f64 / secs
    );
    Ok(Figures {
        rate: tasks as f64 / secs,
        events,
        server,
        process_cpu,
        log_bytes,
    })
}

async fn start_node(config: &TaskQueueConfig, _store_options: &NatsStoreOptions) -> Result<Swarm> {
    // A node is a Swarm whose work comes from the shared queue; it opens its
    // own connection and its own writer of the shared log.
    Swarm::builder()
        .agents(AGENTS)
        .max_agents(AGENTS)
        .autoscale(false)
        .agent_factory(|_id| Noop)
        .nats(server_url())
        .task_queue(config.clone())
        .build()
        .await
        .map_err(|e| format!("a node could not start: {e}"))
}

async fn stop(handles: Vec<Swarm>) {
    for handle in handles {
        if let Err(e) = handle.shutdown(Duration::from_secs(30)).await {
            eprintln!("swarm-bench: distributed: stopping a node: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_port;

    #[test]
    fn the_port_comes_from_the_first_url_of_a_list() {
        assert_eq!(server_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(
            server_port("nats://u:p@host:5000,nats://b:6000"),
            Some(5000)
        );
        assert_eq!(server_port("localhost"), Some(4222));
        assert_eq!(server_port("nats://[::1]:4333"), Some(4333));
    }
}
