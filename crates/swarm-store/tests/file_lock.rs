//! One writer per directory: `FileStore::open` takes an OS advisory lock that
//! it keeps for the store's life; a second open (in this process or another)
//! is refused with `StoreError::Locked`; closing, dropping or killing the
//! holder frees the directory.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;
use swarm_store::{EventStore, FileStore, StoreError};

const CHILD_ENV: &str = "SWARM_STORE_LOCK_CHILD_DIR";

fn event(n: u64) -> swarm_core::Event {
    AgentAvailable {
        agent_id: AgentId::new(n),
    }
    .into()
}

/// Asserts that opening `dir` now is refused because the directory is held.
fn assert_locked(dir: &Path) {
    let Err(e) = FileStore::open(dir) else {
        panic!(
            "a second open of {} succeeded while another store holds it",
            dir.display()
        );
    };
    let message = e.to_string();
    assert!(
        matches!(&e, StoreError::Locked { dir: d } if d == dir),
        "wrong error: {e:?}"
    );
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("another process"), "{message}");
}

#[tokio::test]
async fn a_second_open_in_the_same_process_is_refused_until_the_first_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path()).unwrap();
    first.append(vec![event(1)], None).await.unwrap();
    assert_locked(dir.path());

    // Closing frees the directory, even while a clone of the handle lives on.
    let clone = first.clone();
    first.close().await.unwrap();
    let second = FileStore::open(dir.path()).unwrap();
    assert_eq!(second.open_report().last_seq, 1);
    drop(clone);
    assert_locked(dir.path());

    // Dropping the last handle frees it too, by the time drop returns.
    drop(second);
    let third = FileStore::open(dir.path()).unwrap();
    assert_eq!(third.open_report().last_seq, 1);
}

/// The child: opens the store, says so, and waits to be killed.
#[test]
#[ignore = "run by a_store_held_by_another_process_is_refused_and_freed_by_its_death as its child"]
fn lock_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _store = FileStore::open(&dir).unwrap();
    println!("opened");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn a_store_held_by_another_process_is_refused_and_freed_by_its_death() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lock_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let opened = lines.any(|l| l.is_ok_and(|l| l.contains("opened")));
    assert!(opened, "the child never opened the store");
    assert_locked(dir.path());

    // SIGKILL: no destructor runs, the OS drops the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.open_report().last_seq, 0);
}
