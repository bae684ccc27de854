//! Snapshots in a JetStream KV bucket, chunked to fit the server's max payload.
//!
//! A snapshot at sequence `s` is stored as chunks `<s:020>.c<i>` and then a
//! manifest `<s:020>.m`: magic `SWRMSNAP` (8), version (4), sequence (8), data
//! length (8), CRC32C of the data (4), chunk count (4). The manifest is written
//! last, so a snapshot whose save was interrupted has no manifest and is never
//! read; one whose chunks do not add up to the manifest is skipped.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;

use super::error::nats_other;
use crate::error::Result;
use crate::file::format::{u32_at, u64_at};
use crate::store::Snapshot;

const MAGIC: [u8; 8] = *b"SWRMSNAP";
const VERSION: u32 = 1;
const MANIFEST_LEN: usize = 36;

fn manifest_key(seq: u64) -> String {
    format!("{seq:020}.m")
}

fn chunk_key(seq: u64, i: usize) -> String {
    format!("{seq:020}.c{i}")
}

pub(crate) async fn save(
    kv: &kv::Store,
    what: &str,
    snapshot: &Snapshot,
    chunk: usize,
) -> Result<()> {
    let chunks: Vec<&[u8]> = if snapshot.data.is_empty() {
        Vec::new()
    } else {
        snapshot.data.chunks(chunk.max(1)).collect()
    };
    for (i, c) in chunks.iter().enumerate() {
        kv.put(chunk_key(snapshot.seq, i), Bytes::copy_from_slice(c))
            .await
            .map_err(|e| nats_other(what, format!("saving snapshot {}: {e}", snapshot.seq)))?;
    }
    let mut m = [0u8; MANIFEST_LEN];
    m[0..8].copy_from_slice(&MAGIC);
    m[8..12].copy_from_slice(&VERSION.to_le_bytes());
    m[12..20].copy_from_slice(&snapshot.seq.to_le_bytes());
    m[20..28].copy_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    m[28..32].copy_from_slice(&crc32c::crc32c(&snapshot.data).to_le_bytes());
    m[32..36].copy_from_slice(&(chunks.len() as u32).to_le_bytes());
    kv.put(manifest_key(snapshot.seq), Bytes::copy_from_slice(&m))
        .await
        .map_err(|e| nats_other(what, format!("saving snapshot {}: {e}", snapshot.seq)))?;
    Ok(())
}

/// The sequences of the snapshots that have a manifest, newest first.
async fn list(kv: &kv::Store, what: &str) -> Result<Vec<u64>> {
    let mut keys = kv
        .keys()
        .await
        .map_err(|e| nats_other(what, format!("listing snapshots: {e}")))?;
    let mut seqs = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| nats_other(what, format!("listing snapshots: {e}")))?;
        if let Some(seq) = key.strip_suffix(".m").and_then(|s| s.parse::<u64>().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(seqs)
}

async fn read_valid(kv: &kv::Store, what: &str, seq: u64) -> Result<Result<Snapshot, String>> {
    let get = |key: String| async move {
        kv.get(key)
            .await
            .map_err(|e| nats_other(what, format!("reading snapshot {seq}: {e}")))
    };
    let Some(m) = get(manifest_key(seq)).await? else {
        return Ok(Err("the manifest is gone".into()));
    };
    if m.len() != MANIFEST_LEN || m[0..8] != MAGIC {
        return Ok(Err("not a snapshot manifest".into()));
    }
    let version = u32_at(&m, 8);
    if version != VERSION {
        return Ok(Err(format!(
            "snapshot format version {version} is not {VERSION}"
        )));
    }
    if u64_at(&m, 12) != seq {
        return Ok(Err(
            "the sequence in the manifest does not match its key".into()
        ));
    }
    let len = u64_at(&m, 20);
    let crc = u32_at(&m, 28);
    let count = u32_at(&m, 32) as usize;
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 30));
    for i in 0..count {
        let Some(c) = get(chunk_key(seq, i)).await? else {
            return Ok(Err(format!("chunk {i} of {count} is missing")));
        };
        data.extend_from_slice(&c);
    }
    if data.len() as u64 != len {
        return Ok(Err(format!(
            "the chunks hold {} bytes, the manifest says {len}",
            data.len()
        )));
    }
    if crc32c::crc32c(&data) != crc {
        return Ok(Err("snapshot checksum mismatch".into()));
    }
    Ok(Ok(Snapshot { seq, data }))
}

/// The newest valid snapshot at or before `at_or_before`; damaged ones are
/// skipped (and logged).
pub(crate) async fn latest(
    kv: &kv::Store,
    what: &str,
    at_or_before: u64,
) -> Result<Option<Snapshot>> {
    for seq in list(kv, what).await? {
        if seq > at_or_before {
            continue;
        }
        match read_valid(kv, what, seq).await? {
            Ok(s) => return Ok(Some(s)),
            Err(reason) => tracing::warn!(bucket = what, seq, %reason, "skipping damaged snapshot"),
        }
    }
    Ok(None)
}

/// Removes every snapshot older than `seq` (its manifest and chunks, with one
/// subject-filtered purge of the bucket's stream each, so no tombstone is
/// left behind); returns how many. For `covered_by_snapshot`, where the log
/// before `seq` is purged and older snapshots can no longer be replayed.
pub(crate) async fn prune_before(
    js: &jetstream::Context,
    kv: &kv::Store,
    bucket: &str,
    what: &str,
    seq: u64,
) -> Result<usize> {
    let old: Vec<u64> = list(kv, what)
        .await?
        .into_iter()
        .filter(|s| *s < seq)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let stream = js
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|e| nats_other(what, format!("pruning snapshots: {e}")))?;
    for s in &old {
        stream
            .purge()
            .filter(format!("$KV.{bucket}.{s:020}.>"))
            .await
            .map_err(|e| nats_other(what, format!("pruning snapshot {s}: {e}")))?;
    }
    Ok(old.len())
}
