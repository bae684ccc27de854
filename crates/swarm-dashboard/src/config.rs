//! What the dashboard server listens on, its token, and its limits.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::error::DashboardError;
use crate::submit::{TaskFactory, default_task_factory};

/// The default listen address: loopback only, the port of the Prometheus exporter.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Fewest characters an explicit token may have.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token that every action (each `POST`) must present.
///
/// `Debug` does not print it. Compare with [`Token::matches`], which takes
/// the same time whatever the candidate is.
#[derive(Clone)]
pub struct Token {
    secret: Arc<str>,
    generated: bool,
}

impl Token {
    /// An explicit token (from `--dashboard-token` or `SWARM_DASHBOARD_TOKEN`):
    /// at least [`MIN_TOKEN_LEN`] visible ASCII characters, no spaces.
    ///
    /// # Errors
    ///
    /// [`DashboardError::BadToken`] when it is too short or holds other characters.
    pub fn new(secret: impl Into<String>) -> Result<Token, DashboardError> {
        let secret = secret.into();
        if secret.len() < MIN_TOKEN_LEN {
            return Err(DashboardError::BadToken(format!(
                "it has {} characters, fewer than {MIN_TOKEN_LEN}: use a long random one, such as the output of `openssl rand -hex 32`",
                secret.len()
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DashboardError::BadToken(
                "it may hold only visible ASCII characters (no spaces or control characters)"
                    .into(),
            ));
        }
        Ok(Token {
            secret: secret.into(),
            generated: false,
        })
    }

    /// A fresh random token of 32 bytes from the operating system, hex-encoded.
    ///
    /// A generated token is good for loopback only: [`crate::Dashboard::serve`]
    /// refuses a non-loopback address without an explicit token.
    ///
    /// # Errors
    ///
    /// [`DashboardError::Random`] when the operating system has no randomness to give.
    pub fn generate() -> Result<Token, DashboardError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| DashboardError::Random(e.to_string()))?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Token {
            secret: secret.into(),
            generated: true,
        })
    }

    /// The token's text (to print it once, or to send it).
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// Whether this token was made by [`Token::generate`].
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// Whether `candidate` is this token, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // ct_eq on slices of different lengths returns false at once; the
        // length of a token is no secret.
        bool::from(self.secret.as_bytes().ct_eq(candidate))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("generated", &self.generated)
            .finish()
    }
}

/// How the dashboard server is set up: [`DashboardConfig::new`], then the
/// setters, then [`crate::Dashboard::serve`].
///
/// Defaults: no token (every action is refused with 403 until one is set),
/// request bodies up to 64 KiB, 10 s to send request headers, 30 s per
/// request (event streams excepted), at most 256 connections and 32 event
/// streams at once.
#[derive(Clone)]
pub struct DashboardConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<Token>,
    pub(crate) body_limit: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_event_streams: usize,
    pub(crate) sse_keep_alive: Duration,
    pub(crate) task_factory: TaskFactory,
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("addr", &self.addr)
            .field("token", &self.token)
            .field("body_limit", &self.body_limit)
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_event_streams", &self.max_event_streams)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .finish_non_exhaustive()
    }
}

impl DashboardConfig {
    /// Listens on `addr` (port 0 picks a free port; see
    /// [`crate::Dashboard::local_addr`]).
    pub fn new(addr: SocketAddr) -> DashboardConfig {
        DashboardConfig {
            addr,
            token: None,
            body_limit: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_event_streams: 32,
            sse_keep_alive: Duration::from_secs(15),
            task_factory: default_task_factory(),
        }
    }

    /// The bearer token every action must present (and, on a non-loopback
    /// address, every read too).
    #[must_use]
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// The largest request body accepted; a larger one gets 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long a client has to send a request's headers before the
    /// connection is closed (also how long an idle keep-alive connection lasts).
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a request (other than an event stream) may take; a slower one gets 408.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The most connections served at once; more wait to be accepted.
    #[must_use]
    pub fn max_connections(mut self, count: usize) -> Self {
        self.max_connections = count.max(1);
        self
    }

    /// The most `GET /api/v1/events` streams open at once; one more gets 503.
    #[must_use]
    pub fn max_event_streams(mut self, count: usize) -> Self {
        self.max_event_streams = count;
        self
    }

    /// How often an idle event stream sends a comment, so proxies keep it open.
    #[must_use]
    pub fn sse_keep_alive(mut self, every: Duration) -> Self {
        self.sse_keep_alive = every;
        self
    }

    /// How `POST /api/v1/tasks` turns a request into a [`swarm::Task`]
    /// (default: [`crate::submit::default_task_factory`]). An application
    /// whose agents expect a payload of their own shape checks and builds it
    /// here; an `Err` is answered with 400 and its message.
    #[must_use]
    pub fn task_factory(mut self, factory: TaskFactory) -> Self {
        self.task_factory = factory;
        self
    }

    /// The address to listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether reads need the token too: when the address is not loopback.
    pub fn reads_need_token(&self) -> bool {
        !self.addr.ip().is_loopback()
    }
}
