//! [`NatsStoreOptions`]: where the server is, how to log in, and how the
//! stream and bucket are laid out.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::file::LogRetention;

use super::error::invalid_input;

/// How a [`NatsStore`](super::NatsStore) authenticates to the server.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum NatsAuth {
    /// No credentials (or credentials given in the URL, `nats://user:pass@host`).
    #[default]
    None,
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password (never printed by `Debug`).
        password: String,
    },
    /// A token.
    Token(String),
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    CredsFile(PathBuf),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
            NatsAuth::Token(_) => f.write_str("Token(<hidden>)"),
            NatsAuth::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// TLS settings. TLS is used when the server asks for it, when the URL is
/// `tls://...`, or when [`required`](NatsTls::required) is set.
#[derive(Clone, Debug, Default)]
pub struct NatsTls {
    /// Refuse to connect without TLS.
    pub required: bool,
    /// PEM files of extra root certificates to trust (besides the system's).
    pub root_certificates: Vec<PathBuf>,
    /// A client certificate and its key (PEM files), for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Start TLS before the server's INFO (servers configured with `handshake_first`).
    pub handshake_first: bool,
}

/// The options of [`NatsStore::connect`](super::NatsStore::connect).
///
/// A swarm named `orders` keeps its log in stream `SWARM_orders_EVENTS`
/// (subjects `swarm.orders.events.<entity>.<action>`) and its snapshots in the
/// KV bucket `SWARM_orders_SNAPSHOTS`.
///
/// ```
/// use std::time::Duration;
/// use swarm_store::NatsStoreOptions;
///
/// let options = NatsStoreOptions::new("nats://127.0.0.1:4222", "orders")
///     .user_password("swarm", "secret")
///     .replicas(3)
///     .request_timeout(Duration::from_secs(10));
/// assert_eq!(options.stream_name(), "SWARM_orders_EVENTS");
/// assert_eq!(options.subject_prefix(), "swarm.orders");
/// assert!(!format!("{options:?}").contains("secret"));
/// ```
#[derive(Clone, Debug)]
pub struct NatsStoreOptions {
    pub(crate) url: String,
    pub(crate) swarm: String,
    pub(crate) auth: NatsAuth,
    pub(crate) tls: NatsTls,
    pub(crate) replicas: usize,
    pub(crate) duplicate_window: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) chunk_size: Option<usize>,
    pub(crate) max_in_flight: usize,
    pub(crate) shared_writers: bool,
    pub(crate) retention: LogRetention,
    pub(crate) existing_only: bool,
}

impl NatsStoreOptions {
    /// Options for the swarm `swarm` on the server(s) at `url`
    /// (`nats://host:port`, several separated by commas).
    ///
    /// Swarm names may hold ASCII letters, digits, `-` and `_`.
    pub fn new(url: impl Into<String>, swarm: impl Into<String>) -> Self {
        NatsStoreOptions {
            url: url.into(),
            swarm: swarm.into(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            chunk_size: None,
            max_in_flight: 4096,
            shared_writers: false,
            retention: LogRetention::keep_all(),
            existing_only: false,
        }
    }

    /// Opens only a log that exists, for reading it (`swarm events`,
    /// `swarm replay`): [`connect`](super::NatsStore::connect) then creates no
    /// stream or bucket and leaves the stream's limits as they are, and a
    /// swarm that never ran there is [`StoreError::NoStream`](crate::StoreError::NoStream).
    /// Off by default: a swarm's nodes create its log when they first start.
    pub fn existing_only(mut self, existing_only: bool) -> Self {
        self.existing_only = existing_only;
        self
    }

    /// Authenticates with a user name and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = NatsAuth::UserPassword {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = NatsAuth::Token(token.into());
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = NatsAuth::CredsFile(path.into());
        self
    }

    /// Sets the authentication.
    pub fn auth(mut self, auth: NatsAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the TLS settings.
    pub fn tls(mut self, tls: NatsTls) -> Self {
        self.tls = tls;
        self
    }

    /// How many servers of a cluster keep a copy of the stream and the bucket
    /// when this store creates them (1 by default; 3 recommended, see docs/nats.md).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How long the server remembers message ids to drop duplicates
    /// (2 minutes by default).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long to wait for the server to answer a request or acknowledge a
    /// publish (10 s by default).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long to wait for the first connection (5 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Splits snapshots into chunks of at most `bytes` (by default just under
    /// the server's max payload, which is also the upper bound).
    pub fn snapshot_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = Some(bytes.max(1));
        self
    }

    /// How many publishes one writer keeps unacknowledged at once (4096).
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages.max(1);
        self
    }

    /// Many processes append to this log at once (the nodes of a distributed
    /// swarm): an append of a single event with `expected = None` is then
    /// published on its own without sequence fencing (one message cannot
    /// interleave with anything) and takes whatever sequence the server gives
    /// it, instead of contending for the log's end with the other writers.
    /// Appends of several events, and appends with an expected sequence, stay
    /// fenced. Off by default.
    pub fn shared_writers(mut self, shared: bool) -> Self {
        self.shared_writers = shared;
        self
    }

    /// Sets what is kept of the log (default [`LogRetention::keep_all`]),
    /// mapped onto the stream (see the [module docs](super#retention)):
    /// [`max_age`](LogRetention::max_age) and
    /// [`max_bytes`](LogRetention::max_bytes) become the stream's `max_age`
    /// and `max_bytes` limits, which the server enforces on its own, per
    /// message, **whether or not a snapshot covers the messages**;
    /// [`covered_by_snapshot`](LogRetention::covered_by_snapshot) purges the
    /// stream up to each snapshot's sequence after the snapshot is saved.
    /// [`connect`](super::NatsStore::connect) updates an existing stream's
    /// limits to these.
    pub fn retention(mut self, retention: LogRetention) -> Self {
        self.retention = retention;
        self
    }

    /// What is kept of the log.
    pub fn get_retention(&self) -> LogRetention {
        self.retention
    }

    /// The server URL(s).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The swarm name.
    pub fn swarm(&self) -> &str {
        &self.swarm
    }

    /// The JetStream stream that holds the log: `SWARM_<swarm>_EVENTS`.
    pub fn stream_name(&self) -> String {
        format!("SWARM_{}_EVENTS", self.swarm)
    }

    /// The KV bucket that holds snapshots: `SWARM_<swarm>_SNAPSHOTS`.
    pub fn bucket_name(&self) -> String {
        format!("SWARM_{}_SNAPSHOTS", self.swarm)
    }

    /// The subject prefix: `swarm.<swarm>`; events go to
    /// `swarm.<swarm>.events.<entity>.<action>`.
    pub fn subject_prefix(&self) -> String {
        format!("swarm.{}", self.swarm)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let ok = !self.swarm.is_empty()
            && self.swarm.len() <= 200
            && self
                .swarm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(invalid_input(
                &self.url,
                format!(
                    "swarm name {:?} is not usable as a stream name: use 1 to 200 ASCII letters, digits, '-' or '_'",
                    self.swarm
                ),
            ))
        }
    }
}
