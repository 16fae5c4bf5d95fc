//! Server-rendered HTML pages (askama templates in `templates/`, CSS/JS in `static/`).
//!
//! Browsers sign in with a team token and get an HttpOnly, SameSite=Strict session
//! cookie; the session's CSRF token is embedded in every page (a `<meta>` tag and hidden
//! form fields) and checked on every state-changing request. Page failures render a
//! friendly HTML error page; the JSON API keeps its own error format.

mod compare;
mod comparisons;
mod dashboard;
mod datasets;
mod fleet;
mod plots;
mod runs;
mod session;
mod shared;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rankfit_store::StoreError;

use crate::AppState;

pub use session::WebSession;

/// What every page's layout needs: who is signed in, the CSRF token, the active page.
pub struct Nav {
    pub signed_in: bool,
    pub team: String,
    pub csrf: String,
    pub page: &'static str,
    pub links: Vec<NavLink>,
    pub version: &'static str,
}

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

impl Nav {
    pub fn signed_in(s: &WebSession, page: &'static str) -> Nav {
        const LINKS: [(&str, &str, &str); 8] = [
            ("/", "Dashboard", "dashboard"),
            ("/datasets", "Datasets", "datasets"),
            ("/runs", "Runs", "runs"),
            ("/runs/new", "Launch", "launch"),
            ("/studies", "Studies", "studies"),
            ("/leaderboard", "Leaderboard", "leaderboard"),
            ("/leaderboard/public", "Public boards", "public"),
            ("/compare", "Compare", "compare"),
        ];
        // Operators (admin teams) also see the fleet.
        let admin = s.team.is_admin.then_some(("/workers", "Workers", "workers"));
        Nav {
            signed_in: true,
            team: s.team.name.clone(),
            csrf: s.csrf.clone(),
            page,
            links: LINKS.iter().copied().chain(admin).map(|(href, label, p)| NavLink { href, label, current: p == page }).collect(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn anonymous(page: &'static str) -> Nav {
        Nav { signed_in: false, team: String::new(), csrf: String::new(), page, links: Vec::new(), version: env!("CARGO_PKG_VERSION") }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    nav: Nav,
    status: u16,
    message: String,
}

/// A page failure, rendered as a friendly HTML page with the right status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, title: title.into(), message: message.into() }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", format!("There is no {what} here, or it belongs to another team."))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => PageError::not_found("such item"),
            StoreError::Conflict(m) => PageError::new(StatusCode::CONFLICT, "Conflict", m),
            StoreError::ReadOnly(m) => PageError::forbidden(m),
            other => {
                tracing::error!("page error: {other}");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not load this page. The server log has the details; try again in a moment.",
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = ErrorPage { title: self.title, nav: Nav::anonymous("error"), status: self.status.as_u16(), message: self.message };
        let mut resp = render(page);
        *resp.status_mut() = self.status;
        resp
    }
}

pub type PageResult = Result<Response, PageError>;

/// Renders a template; a template failure becomes a plain 500 (it cannot render itself).
pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut resp = Html(html).into_response();
            resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::error!("template error: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error; the server log has details").into_response()
        }
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    match sqlx::query("select 1").execute(&st.pool).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}")).into_response(),
    }
}

async fn page_not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address.")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/sign-in", get(session::sign_in_form).post(session::sign_in))
        .route("/sign-out", post(session::sign_out))
        .route("/", get(dashboard::dashboard))
        .route("/datasets", get(datasets::datasets))
        .route("/datasets/{id}", get(datasets::dataset))
        .route("/runs", get(runs::runs))
        .route("/runs/new", get(runs::launch))
        .route("/runs/{id}", get(runs::run))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/studies", get(comparisons::studies_page))
        .route("/studies/{id}", get(comparisons::study_page))
        .route("/leaderboard", get(comparisons::leaderboard))
        .route("/leaderboard/public", get(comparisons::public_leaderboard))
        .route("/compare", get(compare::compare))
        .route("/workers", get(fleet::workers))
        .fallback(page_not_found)
}
