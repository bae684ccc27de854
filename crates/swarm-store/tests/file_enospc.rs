//! A full disk in the middle of a group commit: the append is refused, and the
//! records of that batch that did reach the file before `ENOSPC` must not come
//! back after a restart (an event the caller was told failed never reappears).
//!
//! Uses a real full disk: a 64 KiB tmpfs mounted for the test (root only); the
//! test is skipped, saying why, where mounting is not permitted.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use futures::StreamExt;
use swarm_core::AgentId;
use swarm_core::event::AgentRemoved;
use swarm_store::{EventStore, FileStore, FileStoreOptions, StoreError};

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Event `n` of batch `b`, about 1 KiB, recognisable after reopening.
fn event(b: u64, n: u64) -> swarm_core::Event {
    AgentRemoved {
        agent_id: AgentId::new(b * 1000 + n),
        reason: "x".repeat(1000),
    }
    .into()
}

const BATCH: u64 = 8;

#[tokio::test]
async fn a_batch_refused_by_a_full_disk_leaves_no_record_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let tmpfs = match Tmpfs::mount(&mnt, "64k") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!("skipped: cannot mount a small tmpfs to fill ({reason})");
            return;
        }
    };
    let dir = tmpfs.dir.join("store");
    let options = FileStoreOptions::default();

    let mut acked_end = 1;
    let refused = {
        let store = FileStore::open_with(&dir, options.clone()).unwrap();
        let mut refused = None;
        for b in 0..200 {
            let events = (0..BATCH).map(|n| event(b, n)).collect();
            match store.append(events, None).await {
                Ok(range) => {
                    assert_eq!(range.start, acked_end);
                    acked_end = range.end;
                }
                Err(e) => {
                    refused = Some((b, e));
                    break;
                }
            }
        }
        let (b, e) = refused.expect("a 64 KiB disk never filled up");
        eprintln!("batch {b} refused: {e}");
        // Once refused, the store refuses everything after it.
        assert!(e.is_poisoned(), "{e:?}");
        assert!(store.is_poisoned());
        let again = store.append(vec![event(999, 0)], None).await;
        assert!(
            matches!(&again, Err(StoreError::Poisoned { .. })),
            "an append after the failure: {again:?}"
        );
        let _ = store.close().await;
        b
    };

    // After a restart: exactly the acknowledged events, none of the refused batch.
    let store = FileStore::open_with(&dir, options).unwrap();
    let events: Vec<_> = store.read(1).map(|e| e.unwrap()).collect().await;
    let refused_ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.event {
            swarm_core::Event::AgentRemoved(r) if r.agent_id.as_u64() / 1000 >= refused => {
                Some(r.agent_id.as_u64())
            }
            _ => None,
        })
        .collect();
    assert!(
        refused_ids.is_empty(),
        "{} events of the refused batch {refused} are in the log after reopening (log ends at {}, last acknowledged {})",
        refused_ids.len(),
        store.open_report().last_seq,
        acked_end - 1
    );
    assert_eq!(store.open_report().last_seq, acked_end - 1);
    assert_eq!(events.len() as u64, acked_end - 1);
    let _ = store.close().await;
    drop(store);
    drop(tmpfs);
}
