//! Teams and tokens. Creating teams is reserved to admin teams.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rankfit_store::teams;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Admin, Auth};
use crate::{ApiResult, AppError, AppState};

pub async fn me(Auth(team): Auth) -> Json<Value> {
    Json(json!({ "team": team }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    name: String,
    #[serde(default)]
    is_admin: bool,
}

pub async fn create(
    State(st): State<AppState>,
    Admin(_): Admin,
    super::JsonBody(body): super::JsonBody<CreateTeam>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::unprocessable("invalid_field", "name: 1 to 100 printable characters").with_details(json!({"field": "name"})));
    }
    let team = teams::create_team(&st.pool, name, body.is_admin).await?;
    let token = teams::issue_token(&st.pool, team.id, "initial").await?;
    Ok((StatusCode::CREATED, Json(json!({ "team": team, "token": token }))))
}

pub async fn list(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "teams": teams::list_teams(&st.pool).await? })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    #[serde(default)]
    name: String,
}

pub async fn issue_token(
    State(st): State<AppState>,
    Auth(team): Auth,
    super::JsonBody(body): super::JsonBody<IssueToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name;
    let token = teams::issue_token(&st.pool, team.id, &name).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token }))))
}

pub async fn revoke_token(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = super::parse_id(&id, "token")?;
    teams::revoke_token(&st.pool, team.id, id).await.map_err(|e| match e {
        rankfit_store::StoreError::NotFound => AppError::not_found("token"),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
