//! [`PrometheusExporter`]: the Prometheus recorder, its `/metrics` listener and upkeep.

mod error;
#[cfg(feature = "http-listener")]
mod http;
mod upkeep;

use std::fmt;
use std::net::SocketAddr;
#[cfg(feature = "http-listener")]
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::recorder::SwarmMetrics;
use upkeep::{Upkeep, UpkeepRecorder};

pub use error::ExporterError;

/// The default scrape address: loopback only, port 9464 (the port
/// OpenTelemetry's Prometheus exporter uses).
#[cfg(feature = "http-listener")]
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Histogram bucket upper bounds, in seconds: 1 µs to 5 min, roughly three per
/// decade, so one set serves handler time (microseconds), queue wait and run
/// time (milliseconds to minutes).
pub const DEFAULT_BUCKETS: [f64; 26] = [
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
];

/// How long recorded histogram samples wait before they are folded into their
/// buckets, when no scrape folds them first.
///
/// Until then each sample is kept (8 bytes), so this bounds the memory a busy
/// swarm holds between scrapes: at a million samples a second, about 8 MB.
/// The upkeep thread sleeps until a histogram sample is recorded and folds
/// this long after it; with nothing recorded it never wakes.
pub const DEFAULT_UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A Prometheus exporter for the swarm metrics (metrics-exporter-prometheus).
///
/// [`PrometheusExporter::builder`] makes one; by default it serves `/metrics`
/// on [`DEFAULT_LISTEN_ADDR`] (feature `http-listener`, on by default).
/// [`PrometheusExporter::render`] gives the exposition text, for users who serve
/// `/metrics` from their own server.
///
/// The exporter owns its recorder. [`PrometheusExporter::swarm_metrics`]
/// registers the swarm metric set on it directly, so no process-wide state is
/// needed and any number of exporters can live in one process (tests do this).
/// [`PrometheusExporter::install_global`] also makes it the process's global
/// `metrics` recorder, for other code's `metrics::counter!` calls; that works
/// once per process.
///
/// Histogram samples are folded into their buckets at each scrape and, when
/// nobody scrapes, one upkeep interval after they were recorded (see
/// [`DEFAULT_UPKEEP_INTERVAL`]): the upkeep thread wakes only for samples, so
/// an idle process has no timer running here.
///
/// Dropping the exporter stops its listener and upkeep threads; recorded
/// handles keep working but nobody serves them.
///
/// ```
/// use swarm_core::EventBus;
/// use swarm_core::event::AgentCreated;
/// use swarm_core::AgentId;
/// use swarm_metrics::PrometheusExporter;
///
/// // Port 0: the system picks a free port; `local_addr` tells which.
/// let exporter = PrometheusExporter::builder()
///     .listen_addr(([127, 0, 0, 1], 0).into())
///     .build()?;
/// assert!(exporter.local_addr().is_some());
///
/// let bus = EventBus::new();
/// let _subscription = exporter.swarm_metrics().attach(&bus)?;
/// bus.emit(AgentCreated { agent_id: AgentId::new(1), reserve: false });
/// assert!(exporter.render().contains(r#"swarm_agents{state="idle"} 1"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PrometheusExporter {
    recorder: Arc<PrometheusRecorder>,
    /// `recorder` with histograms that wake the upkeep thread: what the swarm
    /// metrics and the global install record through.
    waking: Arc<UpkeepRecorder>,
    handle: PrometheusHandle,
    metrics: SwarmMetrics,
    #[cfg(feature = "http-listener")]
    server: Option<http::HttpServer>,
    _upkeep: Upkeep,
}

impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter")
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl PrometheusExporter {
    /// A builder with the defaults: listen on [`DEFAULT_LISTEN_ADDR`],
    /// [`DEFAULT_BUCKETS`], upkeep every [`DEFAULT_UPKEEP_INTERVAL`].
    pub fn builder() -> PrometheusExporterBuilder {
        PrometheusExporterBuilder::default()
    }

    /// The swarm metric set, registered on this exporter's recorder (once, when
    /// the exporter was built; every call returns a handle to the same set).
    pub fn swarm_metrics(&self) -> SwarmMetrics {
        self.metrics.clone()
    }

    /// The exposition text, as served on `/metrics`.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// A handle that renders the exposition text, cheap to clone and share
    /// with your own HTTP server.
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }

    /// The recorder, to register other metrics on it without installing it
    /// globally (`metrics::with_local_recorder(exporter.recorder(), ..)`).
    ///
    /// Histograms registered directly on it do not wake the upkeep thread:
    /// their samples are folded at each scrape and whenever upkeep runs for the
    /// exporter's own histograms. Recording through the global install
    /// ([`install_global`](Self::install_global)) wakes it.
    pub fn recorder(&self) -> &PrometheusRecorder {
        &self.recorder
    }

    /// The address `/metrics` is served on, if the listener runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "http-listener")]
        {
            self.server.as_ref().map(http::HttpServer::local_addr)
        }
        #[cfg(not(feature = "http-listener"))]
        {
            None
        }
    }

    /// Makes this exporter's recorder the process's global `metrics` recorder,
    /// so `metrics::counter!` and friends anywhere in the process record here.
    ///
    /// # Errors
    ///
    /// [`ExporterError::GlobalRecorderTaken`] if a global recorder is already
    /// installed (there can be one per process).
    pub fn install_global(&self) -> Result<(), ExporterError> {
        metrics::set_global_recorder(Arc::clone(&self.waking))
            .map_err(|_| ExporterError::GlobalRecorderTaken)
    }
}

/// Configures a [`PrometheusExporter`].
#[derive(Clone, Debug)]
pub struct PrometheusExporterBuilder {
    #[cfg(feature = "http-listener")]
    listen: Option<SocketAddr>,
    buckets: Vec<f64>,
    upkeep_interval: Duration,
    global_labels: Vec<(String, String)>,
}

impl Default for PrometheusExporterBuilder {
    fn default() -> Self {
        PrometheusExporterBuilder {
            #[cfg(feature = "http-listener")]
            listen: Some(DEFAULT_LISTEN_ADDR),
            buckets: DEFAULT_BUCKETS.to_vec(),
            upkeep_interval: DEFAULT_UPKEEP_INTERVAL,
            global_labels: Vec::new(),
        }
    }
}

impl PrometheusExporterBuilder {
    /// Serves `/metrics` on `addr` (default [`DEFAULT_LISTEN_ADDR`]). Port 0
    /// picks a free port; [`PrometheusExporter::local_addr`] tells which. An
    /// address other than loopback exposes the metrics to the network.
    #[cfg(feature = "http-listener")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-listener")))]
    pub fn listen_addr(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Serves nothing: use [`PrometheusExporter::render`] from your own server.
    #[cfg(feature = "http-listener")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http-listener")))]
    pub fn without_listener(mut self) -> Self {
        self.listen = None;
        self
    }

    /// Without the `http-listener` feature there is never a listener; this
    /// exists so the same code builds with and without it.
    #[cfg(not(feature = "http-listener"))]
    pub fn without_listener(self) -> Self {
        self
    }

    /// Histogram bucket upper bounds in seconds, for every histogram
    /// (default [`DEFAULT_BUCKETS`]).
    pub fn buckets(mut self, buckets: &[f64]) -> Self {
        self.buckets = buckets.to_vec();
        self
    }

    /// How long histogram samples wait to be folded into buckets when no
    /// scrape comes first (default [`DEFAULT_UPKEEP_INTERVAL`]); bounds their
    /// memory when nobody scrapes. Upkeep runs only after samples are recorded.
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.upkeep_interval = interval;
        self
    }

    /// Adds a label to every exported series (`instance`-like labels such as a node name).
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((key.into(), value.into()));
        self
    }

    /// Builds the recorder, registers the swarm metric set on it, and starts
    /// the listener (if configured) and the upkeep thread (asleep until a
    /// histogram sample is recorded). Installs nothing globally.
    ///
    /// # Errors
    ///
    /// [`ExporterError::InvalidBuckets`], [`ExporterError::Bind`] if the listen
    /// address is taken or not local, [`ExporterError::Spawn`].
    pub fn build(self) -> Result<PrometheusExporter, ExporterError> {
        let valid = !self.buckets.is_empty()
            && self.buckets.iter().all(|b| b.is_finite())
            && self.buckets.windows(2).all(|w| w[0] < w[1]);
        if !valid {
            return Err(ExporterError::InvalidBuckets {
                buckets: self.buckets,
            });
        }
        let mut builder = PrometheusBuilder::new()
            .set_buckets(&self.buckets)
            .map_err(|_| ExporterError::InvalidBuckets {
                buckets: self.buckets.clone(),
            })?;
        for (key, value) in self.global_labels {
            builder = builder.add_global_label(key, value);
        }
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        let (upkeep, waking) = Upkeep::start(Arc::clone(&recorder), self.upkeep_interval)?;
        let waking = Arc::new(waking);
        let metrics = SwarmMetrics::register_shared(
            Arc::clone(&waking) as Arc<dyn metrics::Recorder + Send + Sync>
        );
        #[cfg(feature = "http-listener")]
        let server = match self.listen {
            Some(addr) => Some(http::HttpServer::start(addr, handle.clone())?),
            None => None,
        };
        Ok(PrometheusExporter {
            recorder,
            waking,
            handle,
            metrics,
            #[cfg(feature = "http-listener")]
            server,
            _upkeep: upkeep,
        })
    }

    /// [`build`](Self::build), then [`install_global`](PrometheusExporter::install_global).
    ///
    /// # Errors
    ///
    /// As `build`, and [`ExporterError::GlobalRecorderTaken`].
    pub fn install(self) -> Result<PrometheusExporter, ExporterError> {
        let exporter = self.build()?;
        exporter.install_global()?;
        Ok(exporter)
    }
}
