//! A store holds every task's payload: on unix its directory is created 0700
//! and its files 0600, readable by their owner only.
#![cfg(unix)]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use swarm_core::AgentId;
use swarm_core::event::AgentAvailable;
use swarm_store::{EventStore, FileStore, FileStoreOptions, Snapshot};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_new_store_is_readable_by_its_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("parent").join("store");
    // Small segments: the rolled segments are checked too.
    let store = FileStore::open_with(&dir, FileStoreOptions::default().segment_size(64)).unwrap();
    for n in 0..4 {
        store
            .append(
                vec![
                    AgentAvailable {
                        agent_id: AgentId::new(n),
                    }
                    .into(),
                ],
                None,
            )
            .await
            .unwrap();
    }
    store
        .save_snapshot(Snapshot {
            seq: 4,
            data: b"state".to_vec(),
        })
        .await
        .unwrap();
    assert!(store.segment_paths().len() > 1, "no segment rolled");

    assert_eq!(mode(&dir), 0o700, "the store's directory");
    assert_eq!(
        mode(&tmp.path().join("parent")),
        0o700,
        "a parent it created"
    );
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    // Segments, a snapshot and the lock file.
    assert!(files >= 4, "only {files} files");
    store.close().await.unwrap();
}
