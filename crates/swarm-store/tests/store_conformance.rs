//! MemoryStore and FileStore (every durability, small segments) pass the conformance suite.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use swarm_store::{Durability, FileStore, FileStoreOptions, MemoryStore, conformance};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}

async fn file_store_conforms(options: FileStoreOptions) {
    let dirs: Arc<Mutex<Vec<TempDir>>> = Arc::default();
    conformance::run_all(|| {
        let dirs = Arc::clone(&dirs);
        let options = options.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let store = FileStore::open_with(dir.path(), options).unwrap();
            dirs.lock().unwrap().push(dir);
            store
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_fsync_conforms() {
    file_store_conforms(FileStoreOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_buffered_small_segments_conforms() {
    file_store_conforms(
        FileStoreOptions::default()
            .durability(Durability::Buffered)
            .segment_size(512),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_no_sync_conforms() {
    file_store_conforms(
        FileStoreOptions::default()
            .durability(Durability::None)
            .segment_size(4096),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_store_conforms_on_one_thread() {
    conformance::run_all(|| async { MemoryStore::new() }).await;
}
