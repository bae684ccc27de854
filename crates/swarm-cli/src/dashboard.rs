//! `--dashboard ADDR` and `--dashboard-token TOKEN`: the HTTP dashboard, API
//! and `/metrics` of the swarm a command runs (crate `swarm-dashboard`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use swarm::Swarm;
use swarm_dashboard::{Dashboard, DashboardConfig, DashboardError, TaskFactory, Token};

use crate::error::CliError;

/// The dashboard flags of `demo`, `run` and `worker`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DashboardArgs {
    /// Serve the web dashboard, the JSON API (/api/v1/...) and /metrics on
    /// this address, e.g. 127.0.0.1:9464. Reads are open on a loopback
    /// address; every action needs the token. A non-loopback address needs
    /// an explicit --dashboard-token and then reads need it too.
    #[arg(long, value_name = "ADDR")]
    pub(crate) dashboard: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) token: TokenArg,
}

/// `--dashboard-token`, shared with `swarm serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TokenArg {
    /// The bearer token that dashboard actions (every POST) need, at least 16
    /// characters. Without one a token is generated and printed once on stderr.
    #[arg(
        long = "dashboard-token",
        env = "SWARM_DASHBOARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
}

/// Starts the dashboard of `swarm` on `addr`; `factory` shapes the tasks
/// `POST /api/v1/tasks` submits (the default takes any kind and payload).
pub(crate) async fn start(
    swarm: &Swarm,
    addr: SocketAddr,
    token: &TokenArg,
    factory: Option<TaskFactory>,
) -> Result<Dashboard, CliError> {
    let token = match &token.token {
        Some(secret) => Token::new(secret.clone()).map_err(dashboard_error)?,
        None => {
            if !addr.ip().is_loopback() {
                return Err(dashboard_error(DashboardError::TokenRequired(addr)));
            }
            let token = Token::generate().map_err(dashboard_error)?;
            eprintln!(
                "dashboard token (needed for actions; set --dashboard-token or SWARM_DASHBOARD_TOKEN to choose one): {}",
                token.expose()
            );
            token
        }
    };
    let mut config = DashboardConfig::new(addr).token(token);
    if let Some(factory) = factory {
        config = config.task_factory(factory);
    }
    let dashboard = Dashboard::serve(swarm.clone(), config)
        .await
        .map_err(dashboard_error)?;
    eprintln!("dashboard: {}", dashboard.url());
    Ok(dashboard)
}

/// Starts the dashboard when `--dashboard` was given.
pub(crate) async fn start_if_asked(
    swarm: &Swarm,
    args: &DashboardArgs,
) -> Result<Option<Dashboard>, CliError> {
    match args.dashboard {
        None => Ok(None),
        Some(addr) => start(swarm, addr, &args.token, None).await.map(Some),
    }
}

/// Stops a dashboard, letting open requests finish for a moment.
pub(crate) async fn stop(dashboard: Option<Dashboard>) {
    if let Some(dashboard) = dashboard {
        dashboard.shutdown(Duration::from_secs(2)).await;
    }
}

fn dashboard_error(e: DashboardError) -> CliError {
    // Every start failure is the user's to fix: a taken port, a bad token,
    // a non-loopback address without one.
    CliError::BadInput(e.to_string())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), naming it.
pub(crate) async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops it");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
