//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Parses the exposition text into `series -> value`, where `series` is the
/// text before the value (`name{label="v",...}`).
pub fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line has a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (series.to_owned(), value)
        })
        .collect()
}

/// The value of one series, panicking with the whole exposition if it is missing.
pub fn value(exposition: &str, series: &str) -> f64 {
    match samples(exposition).get(series) {
        Some(v) => *v,
        None => panic!("series {series} is not exported; exposition:\n{exposition}"),
    }
}

/// A plain HTTP/1.1 GET over a fresh connection: (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    http_request(addr, "GET", path)
}

/// A plain HTTP/1.1 request.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a response has a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}
