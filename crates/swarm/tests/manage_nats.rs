//! The management API on distributed nodes against a real nats-server: task
//! lookup sees every node's tasks (the view follows the shared log), a dead
//! letter retried from another node runs again with fresh attempts, and a
//! pause from one node holds every node until a resume from any.
//!
//! Needs `SWARM_NATS_URL` (skipped without it, except under `SWARM_CI=1`).
#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use swarm::distributed::{TaskQueue, TaskQueueConfig};
use swarm::{
    Agent, ExecuteError, ManageError, Swarm, Task, TaskFilter, TaskId, TaskOutcome, TaskOutput,
    TaskStatus,
};
use swarm_store::{NatsStore, NatsStoreOptions};
use swarm_testkit::nats::{server_url, unique_name};

/// `"flaky"` fails for good while `broken` is set; anything else succeeds.
/// Counts the attempts it starts.
#[derive(Clone)]
struct TestAgent {
    broken: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
}

impl Agent for TestAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if task.kind() == "flaky" && self.broken.load(Ordering::SeqCst) {
            return Err(ExecuteError::permanent("the service is broken"));
        }
        Ok(TaskOutput::from("ok"))
    }
}

/// Two nodes of one distributed swarm, sharing `agent`'s flags, and the
/// handles to tear the swarm's streams down.
struct Cluster {
    nodes: Vec<Swarm>,
    agent: TestAgent,
    queue: TaskQueue,
    log: NatsStore,
    url: String,
    options: NatsStoreOptions,
}

impl Cluster {
    async fn start(url: &str, tag: &str) -> Cluster {
        let name = unique_name("manage", tag);
        let config = TaskQueueConfig::new(&name);
        let options = NatsStoreOptions::new(url, &name).shared_writers(true);
        let client = async_nats::connect(url).await.unwrap();
        let queue = TaskQueue::open(client, config.clone()).await.unwrap();
        let log = NatsStore::connect(options.clone()).await.unwrap();
        let agent = TestAgent {
            broken: Arc::new(AtomicBool::new(true)),
            started: Arc::new(AtomicUsize::new(0)),
        };
        let mut cluster = Cluster {
            nodes: Vec::new(),
            agent,
            queue,
            log,
            url: url.to_owned(),
            options,
        };
        for _ in 0..2 {
            let node = cluster.node().await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// A new node of the cluster's swarm.
    async fn node(&self) -> Swarm {
        let store = NatsStore::connect(self.options.clone()).await.unwrap();
        let agent = self.agent.clone();
        Swarm::builder()
            .agents(2)
            .max_agents(2)
            .autoscale(false)
            .agent_factory(move |_| agent.clone())
            .store(Arc::new(store), true)
            .nats(&self.url)
            .task_queue(self.queue.config().clone())
            .build()
            .await
            .unwrap()
    }

    async fn stop(self) {
        for node in self.nodes {
            let _ = node.shutdown(Duration::from_secs(10)).await;
        }
        let _ = self.queue.destroy().await;
        let _ = self.log.destroy().await;
    }
}

fn task(kind: &str, id: u64) -> Task {
    Task::builder(kind)
        .id(TaskId::from_u64(id))
        .max_attempts(2)
        .build()
        .unwrap()
}

/// Runs `body` on a fresh cluster and tears it down even if `body` panics.
async fn with_cluster<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Arc<Cluster>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(url) = server_url() else { return };
    let cluster = Arc::new(Cluster::start(&url, tag).await);
    let result = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(60),
        body(Arc::clone(&cluster)),
    ))
    .await;
    let cluster = Arc::into_inner(cluster).expect("the test body let go of the cluster");
    cluster.stop().await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the test timed out"),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_nats_task_lookup_sees_every_nodes_tasks() {
    with_cluster("lookup", |c| async move {
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        let mut handles = Vec::new();
        for id in 1..=8 {
            handles.push(a.submit(task("ok", id)).await.unwrap());
        }
        for handle in handles {
            assert!(handle.await.is_completed());
        }
        b.sync_view().await.unwrap();
        for id in 1..=8 {
            let info = b.task(TaskId::from_u64(id)).expect("B sees A's task");
            assert_eq!(info.status, TaskStatus::Completed);
            assert_eq!(info.attempts, 1);
            assert!(info.updated_at.is_some());
        }
        let page = b.tasks(&TaskFilter::new().status(TaskStatus::Completed).limit(5));
        assert_eq!(page.tasks.len(), 5);
        assert_eq!(page.next, Some(TaskId::from_u64(5)));
        assert_eq!(b.overview().tasks.completed, 8);
        let events = b.task_events(TaskId::from_u64(3), 50).await.unwrap();
        assert_eq!(events.first().map(|e| e.event.name()), Some("task:created"));
        assert_eq!(
            events.last().map(|e| e.event.name()),
            Some("task:completed")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_nats_retry_dead_letter_from_another_node() {
    with_cluster("retry", |c| async move {
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        let id = TaskId::from_u64(1);
        let handle = a.submit(task("flaky", 1)).await.unwrap();
        assert!(matches!(handle.await, TaskOutcome::DeadLettered { .. }));
        assert!(matches!(
            b.retry_dead_letter(TaskId::from_u64(2)).await,
            Err(ManageError::UnknownTask(_))
        ));
        c.agent.broken.store(false, Ordering::SeqCst);
        let retried = b.retry_dead_letter(id).await.unwrap();
        match retried.await {
            TaskOutcome::Completed { attempt, .. } => assert_eq!(attempt, 1),
            other => panic!("the retried task ended {other:?}"),
        }
        a.sync_view().await.unwrap();
        let info = a.task(id).unwrap();
        assert_eq!(info.status, TaskStatus::Completed);
        assert!(info.errors.is_empty());
        assert!(a.dead_letters(&TaskFilter::new()).tasks.is_empty());
        assert!(matches!(
            a.retry_dead_letter(id).await,
            Err(ManageError::NotDeadLettered { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_nats_pause_on_one_node_holds_every_node() {
    with_cluster("pause", |c| async move {
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        a.pause().await.unwrap();
        b.sync_view().await.unwrap();
        assert!(a.is_paused() && b.is_paused());
        let mut handles = Vec::new();
        for id in 1..=6 {
            handles.push(b.submit(task("ok", id)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            c.agent.started.load(Ordering::SeqCst),
            0,
            "a paused node ran a task"
        );
        assert_eq!(
            c.queue.pending().await.unwrap(),
            6,
            "the tasks wait on the server"
        );
        // A node that joins (or restarts) on the paused log starts paused.
        let late = c.node().await;
        assert!(late.is_paused());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            c.agent.started.load(Ordering::SeqCst),
            0,
            "the new node ran a task"
        );
        b.resume().await.unwrap();
        for handle in handles {
            assert!(handle.await.is_completed());
        }
        a.sync_view().await.unwrap();
        late.sync_view().await.unwrap();
        assert!(!a.is_paused() && !late.is_paused());
        late.shutdown(Duration::from_secs(10)).await.unwrap();
    })
    .await;
}
