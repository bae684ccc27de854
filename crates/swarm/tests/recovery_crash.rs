//! Crash recovery: a child process runs a swarm on a FileStore and is
//! SIGKILLed mid-run; a new swarm on the same directory finishes the work.
//! Every task ends completed, none is lost, and only tasks that were in flight
//! at the kill ran twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use swarm::{
    Agent, ExecuteError, FileStore, Priority, Swarm, SystemState, Task, TaskOutput, TaskStatus,
};

const TASKS: u64 = 200;
const CHILD_ENV: &str = "SWARM_RECOVERY_CHILD_DIR";

/// Appends `start <id>` and `end <id>` lines to a marker file around a short
/// real-time sleep.
#[derive(Clone)]
struct MarkingAgent {
    markers: PathBuf,
}

impl MarkingAgent {
    fn mark(&self, what: &str, task: &Task) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.markers)
            .unwrap();
        // One small write per line: O_APPEND keeps lines whole.
        file.write_all(format!("{what} {}\n", task.id().as_u64()).as_bytes())
            .unwrap();
    }
}

impl Agent for MarkingAgent {
    async fn execute(&self, task: &Task) -> Result<TaskOutput, ExecuteError> {
        self.mark("start", task);
        tokio::time::sleep(Duration::from_millis(15)).await;
        self.mark("end", task);
        Ok(TaskOutput::from("ok"))
    }
}

async fn build(dir: &Path) -> Swarm {
    let agent = MarkingAgent {
        markers: dir.join("markers.log"),
    };
    Swarm::builder()
        .agents(4)
        .max_agents(4)
        .autoscale(false)
        .agent_factory(move |_| agent.clone())
        .file_store(dir.join("log"))
        .build()
        .await
        .unwrap()
}

/// The child: submits every task durably, then works until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `a_killed_swarm_resumes_and_loses_nothing` as a child process"]
async fn recovery_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let swarm = build(Path::new(&dir)).await;
    let tasks: Vec<Task> = (1..=TASKS)
        .map(|i| {
            Task::builder("mark")
                .id(swarm::TaskId::from_u64(i))
                .priority(Priority::ALL[(i % 4) as usize])
                .build()
                .unwrap()
        })
        .collect();
    let handles = swarm.submit_batch(tasks).await.unwrap();
    println!("submitted");
    for h in handles {
        let _ = h.await;
    }
}

fn runs(markers: &Path) -> (HashMap<u64, u32>, HashMap<u64, u32>) {
    let text = std::fs::read_to_string(markers).unwrap_or_default();
    let mut starts = HashMap::new();
    let mut ends = HashMap::new();
    for line in text.lines() {
        let Some((what, id)) = line.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        match what {
            "start" => *starts.entry(id).or_insert(0) += 1,
            "end" => *ends.entry(id).or_insert(0) += 1,
            _ => {}
        }
    }
    (starts, ends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_swarm_resumes_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let markers = dir.join("markers.log");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "recovery_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a good share of the work is done, with more in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, ends) = runs(&markers);
        if ends.len() >= (TASKS / 4) as usize {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL (what `Child::kill` sends on Unix): no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let (first_starts, _) = runs(&markers);

    // What the log says at the kill.
    let at_kill = {
        let store = FileStore::open(dir.join("log")).unwrap();
        SystemState::replay(&store).await.unwrap()
    };
    assert_eq!(
        at_kill.tasks().count() as u64,
        TASKS,
        "every submitted task is in the log"
    );
    let completed_at_kill: Vec<u64> = at_kill
        .tasks_with_status(TaskStatus::Completed)
        .map(|t| t.task.id().as_u64())
        .collect();
    assert!(!completed_at_kill.is_empty());
    assert!(
        (completed_at_kill.len() as u64) < TASKS,
        "killed before the end"
    );

    // Resume on the same directory.
    let swarm = build(dir).await;
    let to_finish = swarm.stats().recovered;
    assert_eq!(to_finish, TASKS - completed_at_kill.len() as u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while swarm.stats().completed < to_finish {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovery stalled: {:?}",
            swarm.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    swarm.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(swarm);

    // Every task completed; nothing lost.
    let store = FileStore::open(dir.join("log")).unwrap();
    let end = SystemState::replay(&store).await.unwrap();
    assert_eq!(end.count(TaskStatus::Completed) as u64, TASKS);

    let (starts, _) = runs(&markers);
    for id in 1..=TASKS {
        let n = starts.get(&id).copied().unwrap_or(0);
        assert!(n >= 1, "task {id} never ran");
        assert!(n <= 2, "task {id} ran {n} times");
        if completed_at_kill.contains(&id) {
            assert_eq!(n, 1, "task {id} was completed in the log yet ran again");
        }
        if n == 2 {
            assert!(
                first_starts.contains_key(&id),
                "task {id} ran twice without having started before the kill"
            );
        }
    }
}
