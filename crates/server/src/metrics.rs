//! `GET /metrics` in the Prometheus/OpenMetrics text format (admin teams' tokens only):
//! HTTP requests and latency by route and status, uploads, and the fleet as the database
//! sees it at scrape time (runs by state, queue depth and oldest queued age, claims, lease
//! expiries and reaps, workers by device and state).

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rankfit_domain::fleet::WorkerState;
use rankfit_store::workers;

use crate::auth::Admin;
use crate::{ApiResult, AppError, AppState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route's pattern (`/api/v1/runs/{id}`), never the raw path.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    device: String,
    state: String,
}

/// The server's metrics; one per process, shared by every request.
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, Histogram>,
    upload_bytes: Counter,
    upload_rejects: Family<StatusLabels, Counter>,
    runs: Family<StatusLabels, Gauge>,
    queue_depth: Gauge,
    oldest_queued: Gauge<f64, AtomicU64>,
    claims: Counter,
    reaps: Counter,
    lease_expiries: Counter,
    workers: Family<WorkerLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rankfit");
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        // 1 ms .. ~33 s.
        let latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register("http_request_duration_seconds", "HTTP request latency by method, route and status", latency.clone());
        let upload_bytes = Counter::default();
        registry.register("upload_bytes", "Bytes of accepted dataset and suite uploads", upload_bytes.clone());
        let upload_rejects = Family::<StatusLabels, Counter>::default();
        registry.register("upload_rejects", "Rejected dataset and suite uploads by HTTP status", upload_rejects.clone());
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register("runs", "Runs by status", runs.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Queued runs", queue_depth.clone());
        let oldest_queued = Gauge::<f64, AtomicU64>::default();
        registry.register("queue_oldest_seconds", "Age of the oldest queued run (0 when none)", oldest_queued.clone());
        let claims = Counter::default();
        registry.register("claims", "Runs claimed by workers (rate() gives claims/s)", claims.clone());
        let reaps = Counter::default();
        registry.register("reaps", "Expired leases requeued or failed by workers", reaps.clone());
        let lease_expiries = Counter::default();
        registry.register("lease_expiries", "Leases that expired (a worker stopped heartbeating mid-run)", lease_expiries.clone());
        let workers = Family::<WorkerLabels, Gauge>::default();
        registry.register("workers", "Workers heard from in the last day, by device and state", workers.clone());
        Metrics {
            registry,
            requests,
            latency,
            upload_bytes,
            upload_rejects,
            runs,
            queue_depth,
            oldest_queued,
            claims,
            reaps,
            lease_expiries,
            workers,
        }
    }
}

/// Raises a counter to a total read from the database (totals only grow there).
fn catch_up(counter: &Counter, total: i64) {
    let total = total.max(0) as u64;
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    fn observe(&self, method: &Method, route: String, status: u16, seconds: f64, request_bytes: Option<u64>) {
        let is_upload = *method == Method::POST && (route == "/api/v1/datasets" || route == "/api/v1/suites");
        let labels = HttpLabels { method: method.to_string(), route, status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
        if is_upload {
            if (200..300).contains(&status) {
                self.upload_bytes.inc_by(request_bytes.unwrap_or(0));
            } else {
                self.upload_rejects.get_or_create(&StatusLabels { status: status.to_string() }).inc();
            }
        }
    }

    /// Reads the fleet's state from the database into the gauges and counters.
    async fn refresh(&self, st: &AppState) -> Result<(), rankfit_store::StoreError> {
        let s = workers::stats(&st.pool).await?;
        for (status, n) in
            [("queued", s.queued), ("running", s.running), ("succeeded", s.succeeded), ("failed", s.failed), ("cancelled", s.cancelled)]
        {
            self.runs.get_or_create(&StatusLabels { status: status.into() }).set(n);
        }
        self.queue_depth.set(s.queued);
        self.oldest_queued.set(s.oldest_queued_seconds.unwrap_or(0.0));
        catch_up(&self.claims, s.claims);
        catch_up(&self.reaps, s.reaped);
        catch_up(&self.lease_expiries, s.lease_expiries);
        let list = crate::api::fleet::worker_list(st).await?;
        self.workers.clear();
        for w in &list.workers {
            self.workers.get_or_create(&WorkerLabels { device: w.worker.device.clone(), state: w.state.as_str().into() }).inc();
        }
        // Every state appears, so an alert on `alive == 0` sees a zero, not an absent series.
        for device in list.workers.iter().map(|w| w.worker.device.clone()).chain(["cpu".to_string()]) {
            for state in [WorkerState::Alive, WorkerState::Stale, WorkerState::Gone] {
                let _ = self.workers.get_or_create(&WorkerLabels { device: device.clone(), state: state.as_str().into() });
            }
        }
        Ok(())
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Middleware (a route layer, so the matched route is known): counts and times every
/// request that reached a route.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let bytes = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let resp = next.run(req).await;
    st.metrics.observe(&method, route, resp.status().as_u16(), started.elapsed().as_secs_f64(), bytes);
    resp
}

/// `GET /metrics` (admin token): scrape with `authorization: {type: Bearer, credentials: <token>}`.
pub async fn scrape(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Response> {
    st.metrics.refresh(&st).await.map_err(AppError::from)?;
    let body = st.metrics.encode();
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_pattern_and_uploads_by_outcome() {
        let m = Metrics::default();
        m.observe(&Method::GET, "/api/v1/runs/{id}".into(), 200, 0.003, None);
        m.observe(&Method::GET, "/api/v1/runs/{id}".into(), 200, 0.005, None);
        m.observe(&Method::POST, "/api/v1/datasets".into(), 201, 0.2, Some(1234));
        m.observe(&Method::POST, "/api/v1/datasets".into(), 422, 0.1, Some(99));
        let text = m.encode();
        assert!(text.contains(r#"rankfit_http_requests_total{method="GET",route="/api/v1/runs/{id}",status="200"} 2"#), "{text}");
        assert!(
            text.contains(r#"rankfit_http_request_duration_seconds_count{method="GET",route="/api/v1/runs/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains("rankfit_upload_bytes_total 1234"), "{text}");
        assert!(text.contains(r#"rankfit_upload_rejects_total{status="422"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn database_totals_only_move_counters_up() {
        let c = Counter::default();
        catch_up(&c, 5);
        catch_up(&c, 3);
        catch_up(&c, 7);
        assert_eq!(c.get(), 7);
    }
}
