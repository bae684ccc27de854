//! The state every handler shares.

use std::sync::Arc;

use swarm::Swarm;
use tokio::sync::Semaphore;

use crate::config::DashboardConfig;

/// The swarm, the configuration, and the permits of the event streams.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) swarm: Swarm,
    pub(crate) config: Arc<DashboardConfig>,
    pub(crate) event_streams: Arc<Semaphore>,
}

impl AppState {
    pub(crate) fn new(swarm: Swarm, config: DashboardConfig) -> AppState {
        let streams = config.max_event_streams;
        AppState {
            swarm,
            config: Arc::new(config),
            event_streams: Arc::new(Semaphore::new(streams)),
        }
    }
}
