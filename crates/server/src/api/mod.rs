//! REST API, JSON, under `/api/v1`; every route but the OpenAPI document needs a team token.

mod catalog;
mod datasets;
mod download;
pub(crate) mod estimates;
pub(crate) mod fleet;
pub mod openapi;
mod runs;
pub(crate) mod studies;
mod suites;
mod teams;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Every route of the API with its OpenAPI description: a handler is registered only
/// through `routes!`, which takes its path, method, parameters and responses from the
/// handler's `#[utoipa::path]`.
pub fn documented() -> OpenApiRouter<AppState> {
    // Uploads enforce their own streaming cap (ServerConfig::max_upload_bytes).
    let uploads = OpenApiRouter::new()
        .routes(routes!(datasets::upload, datasets::list))
        .routes(routes!(suites::upload, suites::list))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(teams::me))
        .routes(routes!(teams::create, teams::list))
        .routes(routes!(teams::issue_token))
        .routes(routes!(teams::revoke_token))
        .merge(uploads)
        .routes(routes!(datasets::get, datasets::delete))
        .routes(routes!(datasets::rows))
        .routes(routes!(suites::get))
        .routes(routes!(runs::create, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::publish, runs::unpublish))
        .routes(routes!(runs::metrics))
        .routes(routes!(runs::rank_map))
        .routes(routes!(runs::events))
        .routes(routes!(runs::artifacts))
        .routes(routes!(runs::download_adapter))
        .routes(routes!(runs::predictions))
        .routes(routes!(studies::create, studies::list))
        .routes(routes!(studies::get))
        .routes(routes!(studies::cancel))
        .routes(routes!(studies::extend))
        .routes(routes!(studies::publish, studies::unpublish))
        .routes(routes!(studies::table))
        .routes(routes!(studies::events))
        .routes(routes!(catalog::models))
        .routes(routes!(catalog::tasks))
        .routes(routes!(catalog::leaderboard))
        .routes(routes!(catalog::public_boards))
        .routes(routes!(catalog::public_leaderboard))
        .routes(routes!(fleet::list))
        .routes(routes!(fleet::queue))
}

/// The OpenAPI document of [`documented`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

pub fn router(state: AppState) -> Router<AppState> {
    let (api, doc) = documented().split_for_parts();
    let doc: Arc<str> = doc.to_pretty_json().expect("the OpenAPI document serializes").into();
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    api.route("/openapi.json", get(move || std::future::ready((json, doc.to_string()))))
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
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// adapter: peft (default), lora or merged; predictions: jsonl (default) or csv; study table: json (default), csv, md or tex.
    pub format: Option<String>,
}
