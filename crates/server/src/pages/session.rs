//! Sign-in, sign-out and the signed-in session extractor of the pages.

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use rankfit_store::teams::Team;
use rankfit_store::{sessions, teams};
use serde::Deserialize;

use super::{render, Nav, PageError, PageResult};
use crate::auth::{constant_time_eq, cookie, SESSION_COOKIE};
use crate::AppState;

/// Cookie binding the sign-in form to the browser that loaded it (double-submit
/// CSRF protection for the one form that has no session yet).
const SIGN_IN_COOKIE: &str = "rankfit_signin";
/// How long a browser session lasts.
const SESSION_HOURS: i64 = 12;

/// A signed-in browser: the team and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub team: Team,
    pub csrf: String,
    secret: String,
}

impl WebSession {
    /// Checks a CSRF token sent with a form.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageError> {
        if constant_time_eq(sent, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::forbidden("This form's security token is missing or stale. Reload the page and try again."))
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only same-site paths are accepted as a place to return to after signing in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) => n.to_string(),
        _ => "/".to_string(),
    }
}

impl FromRequestParts<AppState> for WebSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_sign_in = || {
            let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let target = if here == "/" { "/sign-in".to_string() } else { format!("/sign-in?next={}", url_encode(here)) };
            Redirect::to(&target).into_response()
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        match sessions::lookup(&state.pool, secret).await {
            Ok(Some(s)) => Ok(WebSession { team: s.team, csrf: s.csrf_token, secret: secret.to_string() }),
            Ok(None) => Err(to_sign_in()),
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// `Secure` is added when the request came through an HTTPS proxy.
fn secure_attr(headers: &HeaderMap) -> &'static str {
    match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some(p) if p.eq_ignore_ascii_case("https") => "; Secure",
        _ => "",
    }
}

fn set_cookie(resp: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    title: String,
    nav: Nav,
    csrf: String,
    next: String,
    error: String,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

fn sign_in_page(headers: &HeaderMap, next: String, error: String, status: StatusCode) -> Response {
    let csrf = rankfit_store::random_secret();
    let mut resp = render(SignInPage { title: "Sign in".into(), nav: Nav::anonymous("sign-in"), csrf: csrf.clone(), next, error });
    *resp.status_mut() = status;
    set_cookie(
        &mut resp,
        format!("{SIGN_IN_COOKIE}={csrf}; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600{}", secure_attr(headers)),
    );
    resp
}

pub async fn sign_in_form(State(st): State<AppState>, headers: HeaderMap, Query(q): Query<SignInQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = sessions::lookup(&st.pool, secret).await {
            return Redirect::to(&next).into_response();
        }
    }
    sign_in_page(&headers, next, String::new(), StatusCode::OK)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn sign_in(State(st): State<AppState>, headers: HeaderMap, Form(f): Form<SignInForm>) -> PageResult {
    let next = safe_next(f.next.as_deref());
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(&f.csrf, expected) {
        let mut resp = sign_in_page(
            &headers,
            next,
            "The sign-in form expired or was not loaded from this site. Please try again.".into(),
            StatusCode::FORBIDDEN,
        );
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return Ok(resp);
    }
    let token = f.token.trim();
    let team = if token.is_empty() { None } else { teams::authenticate(&st.pool, token).await? };
    let Some(team) = team else {
        let message = if token.is_empty() {
            "Enter your team's API token."
        } else {
            "That token is unknown or has been revoked. Check it and try again, or ask an admin for a new one (rankfit team token <team>)."
        };
        return Ok(sign_in_page(&headers, next, message.into(), StatusCode::UNAUTHORIZED));
    };
    let session = sessions::create(&st.pool, team.id, chrono::Duration::hours(SESSION_HOURS)).await?;
    let mut resp = Redirect::to(&next).into_response();
    let secure = secure_attr(&headers);
    set_cookie(
        &mut resp,
        format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", session.secret, SESSION_HOURS * 3600),
    );
    set_cookie(&mut resp, format!("{SIGN_IN_COOKIE}=; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=0{secure}"));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn sign_out(State(st): State<AppState>, headers: HeaderMap, s: WebSession, Form(f): Form<CsrfForm>) -> PageResult {
    s.check_csrf(&f.csrf)?;
    sessions::delete(&st.pool, &s.secret).await?;
    let mut resp = Redirect::to("/sign-in").into_response();
    set_cookie(&mut resp, format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", secure_attr(&headers)));
    Ok(resp)
}
