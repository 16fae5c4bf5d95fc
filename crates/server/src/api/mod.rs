//! REST API, JSON, under `/api/v1`; every route but the OpenAPI document needs a team token.

mod catalog;
mod datasets;
mod download;
pub(crate) mod estimates;
mod openapi;
mod runs;
pub(crate) mod studies;
mod suites;
mod teams;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router(state: AppState) -> Router<AppState> {
    // Uploads enforce their own streaming cap (ServerConfig::max_upload_bytes).
    let uploads = Router::new()
        .route("/datasets", post(datasets::upload).get(datasets::list))
        .route("/suites", post(suites::upload).get(suites::list))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/me", get(teams::me))
        .route("/teams", post(teams::create).get(teams::list))
        .route("/tokens", post(teams::issue_token))
        .route("/tokens/{id}", axum::routing::delete(teams::revoke_token))
        .merge(uploads)
        .route("/datasets/{id}", get(datasets::get).delete(datasets::delete))
        .route("/datasets/{id}/rows", get(datasets::rows))
        .route("/suites/{id}", get(suites::get))
        .route("/runs", post(runs::create).get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/metrics", get(runs::metrics))
        .route("/runs/{id}/rank-map", get(runs::rank_map))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/artifacts", get(runs::artifacts))
        .route("/runs/{id}/adapter", get(runs::download_adapter))
        .route("/runs/{id}/predictions", get(runs::predictions))
        .route("/runs/{id}/publish", post(runs::publish).delete(runs::unpublish))
        .route("/studies", post(studies::create).get(studies::list))
        .route("/studies/{id}", get(studies::get))
        .route("/studies/{id}/cancel", post(studies::cancel))
        .route("/studies/{id}/extend", post(studies::extend))
        .route("/studies/{id}/table", get(studies::table))
        .route("/studies/{id}/events", get(studies::events))
        .route("/studies/{id}/publish", post(studies::publish).delete(studies::unpublish))
        .route("/models", get(catalog::models))
        .route("/tasks", get(catalog::tasks))
        .route("/leaderboards", get(catalog::leaderboard))
        .route("/public/leaderboards", get(catalog::public_leaderboard))
        .fallback(|| async { crate::AppError::not_found("API route") })
        .with_state(state)
}

/// Parses a path id, with a clear 400 instead of axum's plain-text rejection.
pub(crate) fn parse_id(raw: &str, what: &str) -> crate::ApiResult<uuid::Uuid> {
    raw.parse().map_err(|_| crate::AppError::bad_request(format!("{what} id {raw:?} is not a UUID")))
}

/// A JSON body whose decoding errors are reported in our error format (422 with the
/// serde message, which names the field) instead of axum's plain-text rejection.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = crate::AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(crate::AppError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| crate::AppError::bad_request(format!("could not read the body: {e}")))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(JsonBody).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if field == "." || inner.is_syntax() || inner.is_eof() {
                crate::AppError::unprocessable("invalid_json", format!("request body: {inner}"))
            } else {
                crate::AppError::unprocessable("invalid_field", format!("{field}: {inner}"))
                    .with_details(serde_json::json!({ "field": field }))
            }
        })
    }
}

/// Query parameters whose decoding errors are reported in our error format (400 naming the
/// parameter) instead of axum's plain-text rejection.
pub(crate) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = crate::AppError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(QueryParams).map_err(|e| crate::AppError::bad_request(format!("query string: {e}")))
    }
}

/// A file response: `content_type`, `Content-Disposition` (`attachment`, or `inline` for
/// text a browser may show) with `filename`, and the body.
pub(crate) fn file_response(
    content_type: &str,
    disposition: &str,
    filename: &str,
    body: impl Into<axum::body::Body>,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("{disposition}; filename=\"{filename}\"")),
        ],
        body.into(),
    )
        .into_response()
}

/// `?format=...` of the download endpoints (adapter, predictions, study table).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    pub format: Option<String>,
}
