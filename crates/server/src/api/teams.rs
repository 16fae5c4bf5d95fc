//! Teams and tokens. Creating teams is reserved to admin teams.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rankfit_store::teams::{self, IssuedToken, Team};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::{Admin, Auth};
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct TeamBody {
    pub team: Team,
}

#[derive(Serialize, ToSchema)]
pub struct TeamCreated {
    pub team: Team,
    /// The team's first token; the secret is shown once.
    pub token: IssuedToken,
}

#[derive(Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<Team>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    /// The secret is shown once and never stored.
    pub token: IssuedToken,
}

/// The team of the token.
#[utoipa::path(get, path = "/me", tag = "teams", responses((status = 200, body = TeamBody), (status = 401, body = ErrorBody)))]
pub async fn me(Auth(team): Auth) -> Json<TeamBody> {
    Json(TeamBody { team })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// 1 to 100 printable characters, unique.
    name: String,
    #[serde(default)]
    is_admin: bool,
}

/// Create a team and its first token (admin teams only).
#[utoipa::path(post, path = "/teams", tag = "teams", request_body = CreateTeam,
    responses((status = 201, body = TeamCreated), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    Admin(_): Admin,
    super::JsonBody(body): super::JsonBody<CreateTeam>,
) -> ApiResult<(StatusCode, Json<TeamCreated>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::unprocessable("invalid_field", "name: 1 to 100 printable characters").with_details(json!({"field": "name"})));
    }
    let team = teams::create_team(&st.pool, name, body.is_admin).await?;
    let token = teams::issue_token(&st.pool, team.id, "initial").await?;
    Ok((StatusCode::CREATED, Json(TeamCreated { team, token })))
}

/// Every team (admin teams only).
#[utoipa::path(get, path = "/teams", tag = "teams", responses((status = 200, body = TeamList), (status = 403, body = ErrorBody)))]
pub async fn list(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<TeamList>> {
    Ok(Json(TeamList { teams: teams::list_teams(&st.pool).await? }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    #[serde(default)]
    name: String,
}

/// Issue another token for your team.
#[utoipa::path(post, path = "/tokens", tag = "teams", request_body = IssueToken,
    responses((status = 201, body = TokenCreated), (status = 422, body = ErrorBody)))]
pub async fn issue_token(
    State(st): State<AppState>,
    Auth(team): Auth,
    super::JsonBody(body): super::JsonBody<IssueToken>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let token = teams::issue_token(&st.pool, team.id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { token })))
}

/// Revoke one of your team's tokens.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "teams", params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = super::parse_id(&id, "token")?;
    teams::revoke_token(&st.pool, team.id, id).await.map_err(|e| match e {
        rankfit_store::StoreError::NotFound => AppError::not_found("token"),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
