//! The listener: one TCP socket, HTTP/1.1 on hyper, bounded connections,
//! a header timeout, and a graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use swarm::Swarm;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::api;
use crate::config::DashboardConfig;
use crate::error::DashboardError;
use crate::state::AppState;

/// A running dashboard server: the page, `/metrics`, the JSON API and the
/// event stream on one address.
///
/// Dropping it stops the server too, without waiting for open requests;
/// [`Dashboard::shutdown`] lets them finish first.
#[derive(Debug)]
pub struct Dashboard {
    local_addr: SocketAddr,
    /// `Some(grace)` once a stop was asked for.
    stop: watch::Sender<Option<Duration>>,
    task: Option<JoinHandle<()>>,
}

impl Dashboard {
    /// Binds `config`'s address and serves `swarm` there until
    /// [`shutdown`](Dashboard::shutdown) (needs a Tokio runtime).
    ///
    /// # Errors
    ///
    /// [`DashboardError::TokenRequired`] for a non-loopback address without
    /// an explicit token ([`crate::Token::new`]; a generated one is not
    /// enough), [`DashboardError::Bind`] when the address cannot be bound.
    pub async fn serve(swarm: Swarm, config: DashboardConfig) -> Result<Dashboard, DashboardError> {
        let addr = config.addr;
        if !addr.ip().is_loopback() && config.token.as_ref().is_none_or(|t| t.is_generated()) {
            return Err(DashboardError::TokenRequired(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let limits = Limits {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
        };
        let app = api::router(AppState::new(swarm, config));
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, app, limits, stopped));
        tracing::info!(addr = %local_addr, "serving the swarm dashboard");
        Ok(Dashboard {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on (with the port picked when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The dashboard's URL, `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// Stops accepting connections, lets open requests finish for up to
    /// `grace`, then closes the rest (event streams included).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        if let Some(task) = self.task.take() {
            // The accept loop waits `grace` itself, then aborts what is left;
            // the extra second bounds that abort.
            let _ = tokio::time::timeout(grace + Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    max_connections: usize,
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    mut stopped: watch::Receiver<Option<Duration>>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "the dashboard could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _permit = permit;
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "dashboard connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = stopped.borrow().unwrap_or_default();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("open dashboard connections did not finish in time; closing them");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
