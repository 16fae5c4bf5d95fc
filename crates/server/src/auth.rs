//! Bearer-token authentication: `Authorization: Bearer rf_...` resolves to a team.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rankfit_store::teams::{self, Team};

use crate::{AppError, AppState};

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

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
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
