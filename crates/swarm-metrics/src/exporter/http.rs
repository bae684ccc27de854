//! A minimal HTTP/1.1 server for `/metrics`, on a std thread.
//!
//! Scrapes come every few seconds from one or two Prometheus servers, so one
//! thread that answers connections one at a time is plenty; each connection has
//! read and write timeouts, so a stuck client delays the next scrape by at most
//! [`IO_TIMEOUT`] and never hangs the server. We serve this ourselves rather than
//! through metrics-exporter-prometheus's listener because that one needs a tokio
//! runtime and cannot report the port it bound (port 0 in tests), nor stop.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use super::error::ExporterError;

/// How long one connection may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
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
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        // If the wake-up failed the thread is left to exit on its next connection.
    }
}

fn serve(listener: &TcpListener, handle: &PrometheusHandle, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => {
                if let Err(error) = respond(stream, handle) {
                    tracing::debug!(%error, "metrics scrape connection failed");
                }
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "cannot accept a metrics scrape connection");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn respond(mut stream: TcpStream, handle: &PrometheusHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
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
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads up to the end of the request head and returns its first line.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
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
