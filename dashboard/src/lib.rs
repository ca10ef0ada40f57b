//! # dashboard — CityBrain's web front end
//!
//! One axum server with four pages (**Live**, **History**, **Governance**, **Open data**) and a JSON API
//! under `/api/v1/…` (documented in `openapi.json` beside this crate's `Cargo.toml`). Pages are static
//! files embedded in the binary (no CDN, works offline); they load data from the API with `fetch` and
//! build the DOM with `textContent`, never `innerHTML` with data, under a CSP that forbids inline script.
//!
//! Reads go through [`stream_core::store::SeriesStore`] (`Arc<dyn SeriesStore>`, blocking, called from
//! `spawn_blocking`). Live updates come from the broker: a background task subscribes to
//! [`telemetry::topic::output_filters`] and feeds a bounded `tokio::sync::broadcast` channel that
//! every server-sent-events client reads (a client that falls behind loses the oldest events, counted
//! in `/metrics` as `dashboard_live_lagged_total`).
//!
//! Access: API tokens bound to an application, a purpose, a role, datasets, a finest resolution and an
//! expiry, stored argon2-hashed in the dashboard's own SQLite file beside an append-only audit log
//! (see [`access`]). Every read of a dataset writes one audit row.
//!
//! # Layout
//! - [`config`]: [`DashboardConfig`], the typed `[dashboard]` config section.
//! - [`access`]: roles, datasets, resolutions, the policy (who may read what) and the token/audit store.
//! - [`error`]: [`AppError`], mapped to 400 / 401 / 403 / 404 / 429 / 500 responses.
//! - [`api`]: the JSON/CSV handlers under `/api/v1`.
//! - [`rollup`]: 15-minute rows rolled up to 1 h / 1 d (pure).
//! - [`series`]: one series in columns encoded as history JSON (rows or columns) or CSV (pure).
//! - [`live`]: MQTT → broadcast bridge and the SSE endpoint.
//! - [`opendata`]: FIWARE `OffStreetParking` shaping of the delayed open-data product.
//! - [`catalog`]: the data catalog (datasets, owners, classification, retention, lineage).
//! - [`web`]: embedded static assets, security headers, rate limit, metrics middleware.
//! - [`metrics`]: counters rendered in Prometheus text format.

pub mod access;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod live;
pub mod metrics;
pub mod opendata;
pub mod rollup;
pub mod series;
pub mod timefmt;
pub mod web;

pub use config::DashboardConfig;
pub use error::AppError;

use access::AccessStore;
use axum::Router;
use live::LiveEvent;
use metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use stream_core::store::SeriesStore;
use telemetry::registry::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A clock returning UTC epoch ms (tests pin it; production uses the system clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Everything a request handler needs; cheap to clone (all shared behind `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Time-series storage (read side).
    pub store: Arc<dyn SeriesStore>,
    /// Site registry (lots, feeders, devices with schematic positions).
    pub registry: Arc<Registry>,
    /// Token and audit store (the dashboard's own SQLite file).
    pub access: Arc<AccessStore>,
    /// Live events fan-out; the MQTT bridge sends, every SSE client subscribes.
    pub live: broadcast::Sender<LiveEvent>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Limits and settings from the config.
    pub cfg: Arc<DashboardConfig>,
    /// Per-key request rate limiter.
    pub rate: Arc<web::RateLimiter>,
    /// Cancelled at shutdown: open SSE streams end so the server can drain.
    pub shutdown: CancellationToken,
    /// Time source, UTC epoch ms.
    pub clock: Clock,
}

impl AppState {
    /// Builds the state from its parts. The broadcast channel holds `cfg.live_channel_capacity` events
    /// (a slow SSE client loses the oldest ones, counted).
    pub fn new(
        cfg: DashboardConfig,
        store: Arc<dyn SeriesStore>,
        registry: Registry,
        access: AccessStore,
        shutdown: CancellationToken,
    ) -> Self {
        let (live, _) = broadcast::channel(cfg.live_channel_capacity.max(1));
        let rate = web::RateLimiter::new(
            cfg.rate_limit_per_s,
            cfg.rate_limit_burst,
            cfg.rate_limit_max_keys,
        );
        AppState {
            store,
            registry: Arc::new(registry),
            access: Arc::new(access),
            live,
            metrics: Arc::new(Metrics::default()),
            cfg: Arc::new(cfg),
            rate: Arc::new(rate),
            shutdown,
            clock: system_clock(),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Current time, UTC epoch ms.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }
}

/// The whole router: pages, assets, `/healthz`, `/readyz`, `/metrics` and the API, with security
/// headers, a request timeout, the rate limit and request counting.
pub fn app(state: AppState) -> Router {
    web::router(state)
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The site registry could not be loaded.
    #[error("registry: {0}")]
    Registry(#[from] telemetry::registry::RegistryError),
    /// The series store could not be opened.
    #[error("series store: {0}")]
    Store(#[from] stream_core::store::StoreError),
    /// The token/audit database could not be opened.
    #[error("access store: {0}")]
    Access(#[from] access::AccessError),
    /// Binding or serving failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    /// A config value is unusable (the message names the field).
    #[error("config: {0}")]
    Config(String),
}

/// Builds the state from the config: opens the store, the registry and the access database.
///
/// # Errors
/// [`DashboardError`] naming the part that failed.
pub fn state_from_config(
    cfg: &DashboardConfig,
    shutdown: CancellationToken,
) -> Result<AppState, DashboardError> {
    let store = stream_core::store::open_store(&cfg.store)?;
    let registry = Registry::load(&cfg.registry_path)?;
    let access = AccessStore::open(&cfg.access_db_path)?;
    Ok(AppState::new(
        cfg.clone(),
        store,
        registry,
        access,
        shutdown,
    ))
}

/// Runs the dashboard until `shutdown` is cancelled: binds `cfg.listen_addr`, starts the MQTT bridge
/// (unless `cfg.mqtt_enabled` is false) and serves; on shutdown open SSE streams end and in-flight
/// requests finish.
///
/// # Errors
/// [`DashboardError`] when start-up fails or the listener errors.
pub async fn serve(
    cfg: DashboardConfig,
    shutdown: CancellationToken,
) -> Result<(), DashboardError> {
    let state = state_from_config(&cfg, shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "dashboard listening");
    serve_with(listener, state, shutdown).await
}

/// Serves `state` on an already bound listener (tests bind port 0), with the MQTT bridge when
/// `state.cfg.mqtt_enabled`. Cancelling `shutdown` also cancels `state.shutdown` (ending open SSE
/// streams) and then waits for in-flight requests.
///
/// # Errors
/// [`DashboardError::Io`] when the listener fails.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), DashboardError> {
    let bridge = if state.cfg.mqtt_enabled {
        Some(tokio::spawn(live::run_mqtt_bridge(
            state.cfg.mqtt.clone(),
            state.live.clone(),
            state.metrics.clone(),
            shutdown.clone(),
        )))
    } else {
        None
    };
    // Open SSE streams watch `state.shutdown`: cancel it when the server is told to stop.
    let streams = state.shutdown.clone();
    let sd0 = shutdown.clone();
    tokio::spawn(async move {
        sd0.cancelled().await;
        streams.cancel();
    });
    let router = app(state);
    let sd = shutdown.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { sd.cancelled().await })
    .await?;
    if let Some(b) = bridge {
        shutdown.cancel();
        let _ = b.await;
    }
    Ok(())
}
