//! Authentication: `Authorization: Bearer rf_...` resolves to a team; browsers may
//! instead send the `rankfit_session` cookie of a signed-in session, in which case every
//! state-changing request (anything but GET/HEAD/OPTIONS) must also carry the session's
//! CSRF token in the `X-CSRF-Token` header. A request with an Authorization header is
//! always judged by its bearer token alone (unchanged API behaviour).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use rankfit_store::sessions;
use rankfit_store::teams::{self, Team};

use crate::{AppError, AppState};

/// Cookie holding a browser session's secret.
pub const SESSION_COOKIE: &str = "rankfit_session";
/// Header that carries the session's CSRF token on XHR/fetch requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The team making the request.
#[derive(Debug, Clone)]
pub struct Auth(pub Team);

/// A request from an admin team.
#[derive(Debug, Clone)]
pub struct Admin(pub Team);

fn bearer(parts: &Parts) -> Result<&str, AppError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| AppError::unauthorized("missing Authorization header; send `Authorization: Bearer <team token>`"))?;
    let value = header.to_str().map_err(|_| AppError::unauthorized("Authorization header is not valid text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::unauthorized("Authorization must be `Bearer <team token>`"))
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Equality that does not stop at the first differing byte.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a request method may change state (and so needs the CSRF token).
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.get(axum::http::header::AUTHORIZATION).is_none() {
            if let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) {
                let session = sessions::lookup(&state.pool, secret)
                    .await?
                    .ok_or_else(|| AppError::unauthorized("your session has expired or was signed out; sign in again"))?;
                if is_state_changing(&parts.method) {
                    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !constant_time_eq(sent, &session.csrf_token) {
                        return Err(AppError::forbidden(
                            "missing or wrong X-CSRF-Token header: a cookie-authenticated request that changes state must carry the session's CSRF token",
                        ));
                    }
                }
                return Ok(Auth(session.team));
            }
        }
        let token = bearer(parts)?;
        match teams::authenticate(&state.pool, token).await? {
            Some(team) => Ok(Auth(team)),
            None => Err(AppError::unauthorized("unknown or revoked token")),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Auth(team) = Auth::from_request_parts(parts, state).await?;
        if !team.is_admin {
            return Err(AppError::forbidden("this action needs an admin team's token"));
        }
        Ok(Admin(team))
    }
}
