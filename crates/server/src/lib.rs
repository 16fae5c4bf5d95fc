//! rankfit's HTTP server: the REST API under `/api/v1`, the HTML pages and the SSE
//! event streams. It talks to PostgreSQL and the artifact store through `rankfit-store`
//! and never links the training code.

pub mod api;
pub mod auth;
pub mod error;
pub mod events;
pub mod metrics;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use rankfit_store::{ArtifactStore, Pool};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

pub use error::{ApiResult, AppError};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted dataset upload, in bytes; larger uploads are cut off with 413
    /// as soon as the limit is crossed (they are never buffered whole).
    pub max_upload_bytes: usize,
    /// Directory of static assets (CSS/JS).
    pub static_dir: std::path::PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_upload_bytes: 64 * 1024 * 1024, static_dir: default_static_dir() }
    }
}

/// `static/` of the workspace this binary was built from, or `./static`.
pub fn default_static_dir() -> std::path::PathBuf {
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static");
    if built.is_dir() {
        built
    } else {
        "static".into()
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub artifacts: ArtifactStore,
    pub config: Arc<ServerConfig>,
    pub events: events::EventHub,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub async fn new(pool: Pool, artifacts: ArtifactStore, config: ServerConfig) -> Result<Self, rankfit_store::StoreError> {
        let events = events::EventHub::start(pool.clone()).await?;
        Ok(Self { pool, artifacts, config: Arc::new(config), events, metrics: Arc::default() })
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let static_dir = state.config.static_dir.clone();
    Router::new()
        .nest("/api/v1", api::router(state.clone()))
        .merge(pages::router())
        .route("/metrics", axum::routing::get(metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .nest_service("/static", ServeDir::new(static_dir))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
