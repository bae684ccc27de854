//! [`NatsStore`]: the event log in a NATS JetStream stream, snapshots in a KV
//! bucket (feature `nats`).
//!
//! # Layout
//!
//! For a swarm named `S` (see [`NatsStoreOptions`]):
//!
//! - stream `SWARM_S_EVENTS`, file storage, subjects `swarm.S.events.>`; each
//!   event is one message on `swarm.S.events.<entity>.<action>` (for example
//!   `swarm.S.events.task.created`), its body the event in MessagePack with
//!   named fields (self-describing: a field added later does not break old streams).
//!   The stream denies deleting single messages (and, unless the retention
//!   policy purges, purges), so its sequence stays gap-free.
//! - KV bucket `SWARM_S_SNAPSHOTS`: snapshots keyed by sequence, chunked to
//!   fit the server's max payload.
//!
//! # Sequences
//!
//! The store's global sequence *is* the JetStream stream sequence: JetStream
//! numbers stored messages 1, 2, 3, ... and never reuses or skips a number
//! unless messages are deleted, which the stream config forbids for single
//! messages (`deny_delete`). Retention (below) removes messages from the head
//! only, so the log stays gap-free from its first sequence on. A refused
//! publish (a duplicate or a failed expectation) takes no number. Reads check
//! that the sequences they see follow each other and fail instead of skipping.
//!
//! # Retention
//!
//! [`NatsStoreOptions::retention`] takes the [`LogRetention`] of the file
//! store and maps it onto the stream:
//!
//! - the default, [`LogRetention::keep_all`]: no limits, purges denied;
//! - [`max_age`](LogRetention::max_age) and
//!   [`max_bytes`](LogRetention::max_bytes): the stream's own `max_age` and
//!   `max_bytes` limits (discarding the oldest messages). The server enforces
//!   them per message, even while no swarm process runs, and **without
//!   regard to snapshots**: unlike the file store, it may remove events no
//!   snapshot covers yet (snapshot more often than the limits bite);
//! - [`covered_by_snapshot`](LogRetention::covered_by_snapshot): after each
//!   [`save_snapshot`](EventStore::save_snapshot), the stream is purged below
//!   that snapshot's sequence + 1 (a JetStream purge with a sequence), and
//!   the older snapshots, which no longer have their tail, are removed from
//!   the bucket (so it holds one snapshot). The stream must allow purges:
//!   one created without this option denies them for good (the server refuses
//!   to undo `deny_purge`), and [`NatsStore::connect`] then fails saying so.
//!
//! [`connect`](NatsStore::connect) sets an existing stream's limits to the
//! options'. [`first_seq`](EventStore::first_seq) is the stream's first
//! sequence; a read or subscription from before it yields
//! [`StoreError::Compacted`] and ends.
//!
//! # Writers
//!
//! Appends of one `NatsStore` go through one writer task, in order, so they get
//! contiguous ranges. Every message is fenced with `Nats-Expected-Last-Sequence`
//! (and, within a pipelined round, `Nats-Expected-Last-Msg-Id` of the message
//! before it): when two processes append to the same log, the server refuses
//! whichever publish arrives second, so their events never interleave
//! silently. An append with `expected = Some(s)` then fails with
//! [`StoreError::Conflict`]; one with `expected = None` is retried at the new
//! end of the log. Across processes an append of several events is not
//! atomic: if another process's publish lands between two of its messages
//! (possible only when both write at the same moment), the events already
//! stored stay and the append fails with `Conflict`.
//!
//! With [`NatsStoreOptions::shared_writers`], single-event appends without an
//! expected sequence are published unfenced instead (one message cannot
//! interleave), for logs that many processes append to at once.
//!
//! # De-duplication
//!
//! Each message's `Nats-Msg-Id` is `<writer id>-<n>`: a random id per
//! `NatsStore` instance and a counter. The writer repeats a publish whose
//! acknowledgement was lost (timeout, reconnect) with the same id, and the
//! server stores it once if the repeat arrives inside the stream's duplicate
//! window (2 minutes by default). De-duplication does not merge two appends
//! of equal events: they are different events.
//!
//! # Durability
//!
//! An append resolves when the server acknowledged every message. What an
//! acknowledgement is worth depends on the server: see docs/nats.md
//! (`sync_interval: always`, three replicas).
//!
//! # Errors
//!
//! Failures to reach or use the server are [`StoreError::Io`] whose path names
//! the server and stream (`nats nats://host:4222 stream SWARM_S_EVENTS`) and
//! whose [`std::io::ErrorKind`] says what happened.

mod error;
mod open;
mod options;
mod snapshot;
mod writer;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sync::Mutex;
use async_nats::ConnectOptions;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use swarm_core::{Event, EventKind, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Result, StoreError};
use crate::file::LogRetention;
use crate::store::{EventStore, EventStream, SeqRange, Snapshot, StoredEvent};

use self::error::{invalid_data, nats_other};
use self::open::existing_stream;
pub use self::open::open_stream;
pub use self::options::{NatsAuth, NatsStoreOptions, NatsTls};
use self::writer::{Encoded, Request, Writer};

/// An [`EventStore`] in a NATS JetStream stream (see the [module docs](self)).
///
/// Cheap to clone (clones share the connection and the writer).
///
/// ```no_run
/// use swarm_core::event::AgentAvailable;
/// use swarm_core::AgentId;
/// use swarm_store::{EventStore, NatsStore, NatsStoreOptions};
///
/// # async fn demo() -> Result<(), swarm_store::StoreError> {
/// let store = NatsStore::connect(NatsStoreOptions::new("nats://127.0.0.1:4222", "demo")).await?;
/// let range = store
///     .append(vec![AgentAvailable { agent_id: AgentId::new(1) }.into()], None)
///     .await?;
/// println!("appended at {range:?}");
/// store.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
}

struct Inner {
    options: NatsStoreOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    kv: kv::Store,
    /// `nats <url> stream <name>`, for errors.
    what: String,
    what_bucket: String,
    /// One subject per event kind, by [`EventKind::index`].
    subjects: Vec<String>,
    chunk_size: usize,
    writer: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
    /// Id prefix and counter of unfenced (shared-writer) publishes.
    direct_id: String,
    direct_next: std::sync::atomic::AtomicU64,
    /// Shared-writer mode: unfenced appends hold it shared, fenced ones
    /// exclusively, so this process's own unfenced events never cut one of
    /// its fenced appends in two.
    order: tokio::sync::RwLock<()>,
}

impl fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsStore")
            .field("url", &self.inner.options.url)
            .field("stream", &self.inner.options.stream_name())
            .field("bucket", &self.inner.options.bucket_name())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The subject token of an event kind: `task:created` -> `task.created`.
fn kind_token(kind: EventKind) -> String {
    kind.name().replace(':', ".")
}

fn random_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    let a = h.finish();
    let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
    h2.write_u64(a);
    format!("{:016x}{:016x}", a, h2.finish())
}

/// The servers of a URL that may list several, comma-separated
/// (`nats://a:4222,nats://b:4222`): async-nats reads one string as one
/// address, so connect with this list instead.
pub fn server_list(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

async fn connect_client(options: &NatsStoreOptions) -> Result<async_nats::Client> {
    let what = options.url.as_str();
    let mut co = ConnectOptions::new()
        .name("swarm-store")
        .connection_timeout(options.connect_timeout)
        .request_timeout(Some(options.request_timeout));
    match &options.auth {
        NatsAuth::None => {}
        NatsAuth::UserPassword { user, password } => {
            co = co.user_and_password(user.clone(), password.clone());
        }
        NatsAuth::Token(token) => co = co.token(token.clone()),
        NatsAuth::CredsFile(path) => {
            co = co.credentials_file(path).await.map_err(|e| {
                error::nats_error(
                    what,
                    e.kind(),
                    format!("cannot read credentials file {}: {e}", path.display()),
                )
            })?;
        }
    }
    let tls = &options.tls;
    if tls.required {
        co = co.require_tls(true);
    }
    for root in &tls.root_certificates {
        co = co.add_root_certificates(root.clone());
    }
    if let Some((cert, key)) = &tls.client_certificate {
        co = co.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.handshake_first {
        co = co.tls_first();
    }
    co.connect(server_list(&options.url)).await.map_err(|e| {
        nats_other(
            what,
            format!("cannot connect: {e}: is nats-server running with JetStream (-js) there?"),
        )
    })
}

impl NatsStore {
    /// Connects to the server and opens (creating if needed) the swarm's
    /// stream and snapshot bucket.
    ///
    /// Fails with [`StoreError::Io`] if the server cannot be reached, refuses
    /// the credentials, or has no JetStream.
    pub async fn connect(options: NatsStoreOptions) -> Result<NatsStore> {
        options.validate()?;
        let client = connect_client(&options).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.request_timeout);
        let stream_name = options.stream_name();
        let what = format!("{} stream {stream_name}", options.url);
        let what_bucket = format!("{} bucket {}", options.url, options.bucket_name());
        let prefix = options.subject_prefix();
        let retention = options.retention;
        let stream_config = stream::Config {
            name: stream_name.clone(),
            description: Some(format!("swarm {} event log", options.swarm)),
            subjects: vec![format!("{prefix}.events.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: options.replicas,
            duplicate_window: options.duplicate_window,
            max_age: retention.get_max_age().unwrap_or_default(),
            max_bytes: stream_max_bytes(&retention),
            deny_delete: true,
            deny_purge: !retention.get_covered_by_snapshot(),
            allow_direct: true,
            ..Default::default()
        };
        let bucket = options.bucket_name();
        // The bucket's stream is made here with the layout of a KV bucket
        // (history 1, roll-ups, direct get) instead of `create_key_value`,
        // whose account query fails against 2.9 servers.
        let bucket_config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(format!("swarm {} snapshots", options.swarm)),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            num_replicas: options.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        let stream = if options.existing_only {
            // Reading a log: create nothing, change no limit.
            let missing = |name: &str| StoreError::NoStream {
                url: options.url.clone(),
                stream: name.to_owned(),
            };
            let stream = existing_stream(&js, &stream_config.name)
                .await
                .map_err(|e| nats_other(&what, format!("cannot open the stream: {e}")))?
                .ok_or_else(|| missing(&stream_config.name))?;
            existing_stream(&js, &bucket_config.name)
                .await
                .map_err(|e| nats_other(&what_bucket, format!("cannot open the bucket: {e}")))?
                .ok_or_else(|| missing(&bucket_config.name))?;
            stream
        } else {
            let mut stream = open_stream(&js, stream_config)
                .await
                .map_err(|e| nats_other(&what, format!("cannot open the stream: {e}")))?;
            apply_retention_limits(&js, &mut stream, &retention, &what).await?;
            open_stream(&js, bucket_config)
                .await
                .map_err(|e| nats_other(&what_bucket, format!("cannot open the bucket: {e}")))?;
            stream
        };
        let kv = js
            .get_key_value(bucket.clone())
            .await
            .map_err(|e| nats_other(&what_bucket, format!("cannot open the bucket: {e}")))?;
        // Room for the key, headers and framing of a KV put.
        let server_max = client
            .server_info()
            .max_payload
            .saturating_sub(4096)
            .max(1024);
        let chunk_size = options.chunk_size.map_or(server_max, |c| c.min(server_max));
        let subjects = EventKind::ALL
            .iter()
            .map(|k| format!("{prefix}.events.{}", kind_token(*k)))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            js: js.clone(),
            stream: stream_name,
            what: what.clone(),
            writer_id: random_id(),
            next_msg: 0,
            last: None,
            max_in_flight: options.max_in_flight,
        };
        tokio::spawn(writer.run(rx));
        let (closed_tx, _) = watch::channel(false);
        Ok(NatsStore {
            inner: Arc::new(Inner {
                options,
                client,
                js,
                stream,
                kv,
                what,
                what_bucket,
                subjects,
                chunk_size,
                writer: Mutex::new(Some(tx)),
                closed: AtomicBool::new(false),
                closed_tx,
                direct_id: random_id(),
                direct_next: std::sync::atomic::AtomicU64::new(0),
                order: tokio::sync::RwLock::new(()),
            }),
        })
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &NatsStoreOptions {
        &self.inner.options
    }

    /// The underlying NATS client (to share the connection).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The size snapshots are cut into.
    pub fn snapshot_chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// Deletes the swarm's stream and snapshot bucket from the server:
    /// everything this swarm stored, for every process using it. Closes this
    /// store first. Meant for tests and for tearing a swarm down.
    pub async fn destroy(&self) -> Result<()> {
        self.close().await?;
        let inner = &self.inner;
        inner
            .js
            .delete_stream(inner.options.stream_name())
            .await
            .map_err(|e| nats_other(&inner.what, format!("cannot delete the stream: {e}")))?;
        inner
            .js
            .delete_stream(format!("KV_{}", inner.options.bucket_name()))
            .await
            .map_err(|e| {
                nats_other(&inner.what_bucket, format!("cannot delete the bucket: {e}"))
            })?;
        Ok(())
    }

    /// One event, published without sequence fencing (see
    /// [`NatsStoreOptions::shared_writers`]); repeated with the same message id
    /// if the acknowledgement is lost.
    async fn append_unfenced(&self, event: Encoded) -> Result<SeqRange> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let n = inner.direct_next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", inner.direct_id);
        let mut last_error = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            let publish = async_nats::jetstream::context::Publish::build()
                .payload(event.payload.clone())
                .message_id(&id);
            let ack = match inner.js.send_publish(event.subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => return Ok(SeqRange::new(ack.sequence, ack.sequence + 1)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(nats_other(
            &inner.what,
            format!(
                "the server did not acknowledge an event ({}): its outcome is unknown, re-read the log",
                last_error.map_or_else(|| "no answer".to_string(), |e| e.to_string())
            ),
        ))
    }

    fn encode(&self, events: &[Event]) -> Result<Vec<Encoded>> {
        events
            .iter()
            .map(|event| {
                let payload = rmp_serde::to_vec_named(event).map_err(|e| StoreError::Encode {
                    what: "event",
                    message: e.to_string(),
                })?;
                let subject = self
                    .inner
                    .subjects
                    .get(event.kind().index())
                    .cloned()
                    .unwrap_or_else(|| {
                        format!(
                            "{}.events.{}",
                            self.inner.options.subject_prefix(),
                            kind_token(event.kind())
                        )
                    });
                Ok(Encoded {
                    subject,
                    payload: Bytes::from(payload),
                })
            })
            .collect()
    }
}

/// The stream's `max_bytes` for a retention policy (-1: no limit).
fn stream_max_bytes(retention: &LogRetention) -> i64 {
    retention
        .get_max_bytes()
        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
}

/// Sets an existing stream's limits to the retention policy's: its
/// `max_age` and `max_bytes`, and purges allowed for `covered_by_snapshot`.
async fn apply_retention_limits(
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    retention: &LogRetention,
    what: &str,
) -> Result<()> {
    let info = stream
        .info()
        .await
        .map_err(|e| nats_other(what, format!("cannot read the stream's config: {e}")))?;
    let mut config = info.config.clone();
    let max_age = retention.get_max_age().unwrap_or_default();
    let max_bytes = stream_max_bytes(retention);
    let purges = retention.get_covered_by_snapshot();
    // The server reports "no limit" as -1 or 0, whichever it was given.
    let same_bytes = config.max_bytes == max_bytes || (max_bytes < 0 && config.max_bytes <= 0);
    if config.max_age == max_age && same_bytes && (!purges || !config.deny_purge) {
        return Ok(());
    }
    config.max_age = max_age;
    config.max_bytes = max_bytes;
    if purges {
        config.deny_purge = false;
    }
    js.update_stream(config).await.map_err(|e| {
        nats_other(
            what,
            format!(
                "cannot set the stream's retention limits ({e}){}",
                if purges && info.config.deny_purge {
                    ": the stream was created denying purges, which the server never lets anyone undo; \
                     use `max_age`/`max_bytes` limits instead of `covered_by_snapshot`, or start a new log \
                     (another swarm name) with this retention"
                } else {
                    ""
                }
            ),
        )
    })?;
    tracing::info!(
        stream = what,
        ?max_age,
        max_bytes,
        purges,
        "set the stream's retention limits"
    );
    Ok(())
}

impl Inner {
    /// The stream's first and last sequence: `(last + 1, last)` when it
    /// holds no message (empty, or everything removed by retention).
    async fn bounds(&self) -> Result<(u64, u64)> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| nats_other(&self.what, e))?;
        let state = info.state;
        let first = if state.messages == 0 {
            state.last_sequence + 1
        } else {
            state.first_sequence.max(1)
        };
        Ok((first, state.last_sequence))
    }

    async fn last_seq(&self) -> Result<u64> {
        Ok(self.bounds().await?.1)
    }

    /// After a snapshot at `seq`, under `covered_by_snapshot`: purges the
    /// stream below `seq + 1` (never past its end).
    async fn purge_covered(&self, seq: u64) -> Result<()> {
        let last = self.last_seq().await?;
        let keep_from = seq.min(last).saturating_add(1);
        let purged = self.stream.purge().sequence(keep_from).await.map_err(|e| {
            nats_other(
                &self.what,
                format!("cannot purge the stream up to sequence {keep_from}: {e}"),
            )
        })?;
        tracing::debug!(stream = %self.what, purged = purged.purged, keep_from, "purged the log up to the snapshot");
        // Older snapshots lost their tail with the purge: they go too, which
        // keeps the bucket at one snapshot.
        let pruned = snapshot::prune_before(
            &self.js,
            &self.kv,
            &self.options.bucket_name(),
            &self.what_bucket,
            seq,
        )
        .await?;
        tracing::debug!(bucket = %self.what_bucket, pruned, "pruned the snapshots the purge made useless");
        Ok(())
    }
}

/// Where a read stops.
enum Until {
    /// At this sequence (`None`: the log's end when the read starts).
    Seq(Option<u64>),
    /// When the store closes.
    Closed(watch::Receiver<bool>),
}

struct Reader {
    inner: Arc<Inner>,
    next: u64,
    until: Until,
    messages: Option<pull::Ordered>,
    done: bool,
}

async fn wait_closed(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Reader {
    fn stream(self) -> EventStream {
        futures::stream::unfold(self, |mut r| async move {
            let item = r.step().await?;
            Some((item, r))
        })
        .boxed()
    }

    fn fail(&mut self, e: StoreError) -> Option<Result<StoredEvent>> {
        self.done = true;
        Some(Err(e))
    }

    async fn step(&mut self) -> Option<Result<StoredEvent>> {
        if self.done {
            return None;
        }
        if self.messages.is_none() {
            // Where the log starts and (for a bounded read) ends, once.
            let (first, last) = match self.inner.bounds().await {
                Ok(bounds) => bounds,
                Err(e) => return self.fail(e),
            };
            if self.next < first {
                return self.fail(StoreError::Compacted {
                    requested: self.next,
                    earliest: first,
                });
            }
            if let Until::Seq(None) = self.until {
                self.until = Until::Seq(Some(last));
            }
        }
        if let Until::Seq(Some(to)) = self.until
            && self.next > to
        {
            self.done = true;
            return None;
        }
        if self.messages.is_none() {
            let consumer = self
                .inner
                .stream
                .create_consumer(pull::OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: self.next,
                    },
                    ..Default::default()
                })
                .await;
            let messages = match consumer {
                Ok(c) => c.messages().await,
                Err(e) => return self.fail(nats_other(&self.inner.what, e)),
            };
            match messages {
                Ok(m) => self.messages = Some(m),
                Err(e) => return self.fail(nats_other(&self.inner.what, e)),
            }
        }
        let messages = self.messages.as_mut()?;
        let message = match &mut self.until {
            Until::Seq(_) => messages.next().await,
            Until::Closed(closed) => {
                tokio::select! {
                    m = messages.next() => m,
                    () = wait_closed(closed) => None,
                }
            }
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(e)) => return self.fail(nats_other(&self.inner.what, e)),
            None => {
                self.done = true;
                return None;
            }
        };
        let (seq, published) = match message.info() {
            Ok(info) => (info.stream_sequence, info.published),
            Err(e) => return self.fail(invalid_data(&self.inner.what, e)),
        };
        if seq > self.next {
            // Retention removed the rest of what this read was to deliver.
            if let Ok((first, _)) = self.inner.bounds().await
                && first > self.next
            {
                return self.fail(StoreError::Compacted {
                    requested: self.next,
                    earliest: first,
                });
            }
        }
        if seq != self.next {
            return self.fail(invalid_data(
                &self.inner.what,
                format!(
                    "the log has a gap: expected sequence {} but the stream delivered {seq} (were messages deleted from the stream?)",
                    self.next
                ),
            ));
        }
        let event: Event = match rmp_serde::from_slice(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                return self.fail(invalid_data(
                    &self.inner.what,
                    format!(
                        "the message at sequence {seq} on {} is not a swarm event ({e}): is another program publishing to the swarm's subjects?",
                        message.subject
                    ),
                ));
            }
        };
        let micros = published.unix_timestamp_nanos() / 1000;
        let timestamp = Timestamp::from_micros(u64::try_from(micros).unwrap_or(0));
        self.next = seq + 1;
        Some(Ok(StoredEvent {
            seq,
            timestamp,
            event,
        }))
    }
}

impl EventStore for NatsStore {
    fn append(&self, events: Vec<Event>, expected: Option<u64>) -> BoxFuture<'_, Result<SeqRange>> {
        Box::pin(async move {
            let mut encoded = self.encode(&events)?;
            let shared = self.inner.options.shared_writers;
            if shared
                && expected.is_none()
                && encoded.len() == 1
                && let Some(one) = encoded.pop()
            {
                let _shared = self.inner.order.read().await;
                return self.append_unfenced(one).await;
            }
            let _exclusive = if shared {
                Some(self.inner.order.write().await)
            } else {
                None
            };
            let (reply, rx) = oneshot::channel();
            {
                let writer = self.inner.writer.lock();
                let Some(tx) = writer.as_ref() else {
                    return Err(StoreError::Closed);
                };
                tx.send(Request::Append {
                    events: encoded,
                    expected,
                    reply,
                })
                .map_err(|_| StoreError::Closed)?;
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn read(&self, from_seq: u64) -> EventStream {
        Reader {
            inner: Arc::clone(&self.inner),
            next: from_seq.max(1),
            until: Until::Seq(None),
            messages: None,
            done: false,
        }
        .stream()
    }

    fn subscribe(&self, from_seq: u64) -> EventStream {
        let until = if self.inner.closed.load(Ordering::Acquire) {
            Until::Seq(None)
        } else {
            Until::Closed(self.inner.closed_tx.subscribe())
        };
        Reader {
            inner: Arc::clone(&self.inner),
            next: from_seq.max(1),
            until,
            messages: None,
            done: false,
        }
        .stream()
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.last_seq())
    }

    fn first_seq(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { Ok(self.inner.bounds().await?.0) })
    }

    /// Saves the snapshot; under
    /// [`covered_by_snapshot`](LogRetention::covered_by_snapshot), then
    /// purges the stream up to its sequence (a failed purge is logged, not
    /// returned: the snapshot is saved, and the next one purges again).
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            snapshot::save(
                &self.inner.kv,
                &self.inner.what_bucket,
                &snapshot,
                self.inner.chunk_size,
            )
            .await?;
            if self.inner.options.retention.get_covered_by_snapshot()
                && let Err(e) = self.inner.purge_covered(snapshot.seq).await
            {
                tracing::error!(error = %e, "log retention after a snapshot failed; the next snapshot tries again");
            }
            Ok(())
        })
    }

    fn latest_snapshot(&self, at_or_before: u64) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        Box::pin(snapshot::latest(
            &self.inner.kv,
            &self.inner.what_bucket,
            at_or_before,
        ))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            let sent = self
                .inner
                .writer
                .lock()
                .as_ref()
                .map(|tx| tx.send(Request::Flush(reply)).is_ok());
            if sent == Some(true) {
                // An error only means the writer stopped, after answering everything.
                let _ = rx.await;
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.flush().await?;
            self.inner.closed.store(true, Ordering::Release);
            // Dropping the sender stops the writer once its queue is empty.
            drop(self.inner.writer.lock().take());
            self.inner.closed_tx.send_replace(true);
            Ok(())
        })
    }
}
