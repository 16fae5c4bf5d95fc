//! Server-rendered HTML pages (askama templates in `templates/`).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rankfit_domain::catalog::BASE_MODELS;
use rankfit_domain::run::Method;

use crate::AppState;

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    methods: Vec<&'static str>,
    models: Vec<(&'static str, &'static str)>,
    version: &'static str,
}

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("template error: {e}")).into_response(),
    }
}

async fn index(State(_st): State<AppState>) -> Response {
    render(IndexPage {
        methods: Method::ALL.iter().map(|m| m.display_name()).collect(),
        models: BASE_MODELS.iter().map(|m| (m.id, m.name)).collect(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn healthz(State(st): State<AppState>) -> Response {
    match sqlx::query("select 1").execute(&st.pool).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}")).into_response(),
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/healthz", get(healthz))
}
