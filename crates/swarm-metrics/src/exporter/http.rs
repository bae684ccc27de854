//! A minimal HTTP/1.1 server for `/metrics`, on std threads.
//!
//! One thread accepts connections and hands each to a short-lived thread of
//! its own (at most [`MAX_CONNECTIONS`] at once), so a slow client never delays
//! another's scrape. Each connection has a whole-request deadline: its request
//! head must arrive within [`REQUEST_DEADLINE`] and its answer be taken within
//! [`RESPONSE_DEADLINE`], however slowly it trickles bytes, so no client holds a
//! thread longer than that. We serve this ourselves rather than through
//! metrics-exporter-prometheus's listener because that one needs a tokio
//! runtime and cannot report the port it bound (port 0 in tests), nor stop.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

use super::error::ExporterError;

/// How long a connection may take to send its whole request head, counted
/// from its accept (not per read: a byte every few seconds does not extend it).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long a connection may take to read the whole answer.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once (a scraper retries on
/// its next interval). Each one lasts at most the two deadlines.
const MAX_CONNECTIONS: usize = 16;
/// The largest request head read; scrapes send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub(crate) fn start(addr: SocketAddr, handle: PrometheusHandle) -> Result<Self, ExporterError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| ExporterError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ExporterError::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name("swarm-metrics-http".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || serve(&listener, &handle, &stop)
            })
            .map_err(|source| ExporterError::Spawn {
                what: "http listener",
                source,
            })?;
        Ok(HttpServer {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    /// Stops accepting and waits for the accept thread only, which never
    /// blocks on a client. Connections being served finish on their own
    /// threads, within their deadlines.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.addr.port())
            }
            _ => self.addr,
        };
        if TcpStream::connect_timeout(&wake, REQUEST_DEADLINE).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        // If the wake-up failed the thread is left to exit on its next connection.
    }
}

/// Counts a connection as served until dropped (also if its thread panics).
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(listener: &TcpListener, handle: &PrometheusHandle, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "cannot accept a metrics scrape connection");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(
                max = MAX_CONNECTIONS,
                "too many metrics connections at once; closing a new one"
            );
            continue;
        }
        let guard = Active(Arc::clone(&active));
        let handle = handle.clone();
        let spawned = thread::Builder::new()
            .name("swarm-metrics-conn".into())
            .spawn(move || {
                let _guard = guard;
                if let Err(error) = respond(stream, &handle, Instant::now()) {
                    tracing::debug!(%error, "metrics scrape connection failed");
                }
            });
        if let Err(error) = spawned {
            // The closure, with the stream and the guard, is dropped.
            tracing::warn!(%error, "cannot start a thread for a metrics scrape connection");
        }
    }
}

fn respond(mut stream: TcpStream, handle: &PrometheusHandle, accepted: Instant) -> io::Result<()> {
    let head = match read_head(&mut stream, accepted + REQUEST_DEADLINE) {
        Ok(head) => head,
        Err(error) if error.kind() == io::ErrorKind::TimedOut => {
            // Best effort: the client may not be reading either.
            let answer =
                "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = write_by(
                &mut stream,
                answer.as_bytes(),
                Instant::now() + Duration::from_millis(100),
            );
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, handle.render()),
        ("GET" | "HEAD", "/health") => ("200 OK", "text/plain", "OK\n".to_owned()),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "not found: metrics are served at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "use GET /metrics\n".to_owned(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    write_by(
        &mut stream,
        response.as_bytes(),
        Instant::now() + RESPONSE_DEADLINE,
    )
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
fn time_left(deadline: Instant, what: &str) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client did not {what} in time"),
        )),
    }
}

/// Whether an I/O error is a socket timeout (`WouldBlock` on Unix).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads up to the end of the request head, all of it by `deadline`, and
/// returns its first line.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        // Each read waits only for what is left of the whole request's time.
        stream.set_read_timeout(Some(time_left(deadline, "send its request")?))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                time_left(deadline, "send its request")?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n")
            || head.windows(2).any(|w| w == b"\n\n")
            || head.len() >= MAX_REQUEST_HEAD
        {
            break;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(line).trim().to_owned())
}

/// Writes all of `bytes` by `deadline`, then flushes.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(time_left(deadline, "read the answer")?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                time_left(deadline, "read the answer")?;
            }
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}
