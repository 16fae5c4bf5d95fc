//! Teams and their API tokens. Only the sha256 of a token is stored; lookups go by
//! hash, so comparing secrets never happens byte-by-byte in our code.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{conflict_on_unique, random_secret, Result, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A freshly issued token; `secret` is shown once and never stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: Uuid,
    pub team_id: Uuid,
    pub secret: String,
}

/// Prefix that makes rankfit tokens recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "rf_";

pub fn hash_token(secret: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).to_vec()
}

pub async fn create_team(pool: &PgPool, name: &str, is_admin: bool) -> Result<Team> {
    sqlx::query_as("insert into team (id, name, is_admin) values ($1, $2, $3) returning id, name, is_admin, created_at")
        .bind(Uuid::new_v4())
        .bind(name)
        .bind(is_admin)
        .fetch_one(pool)
        .await
        .map_err(|e| conflict_on_unique(e, &format!("a team named {name:?} already exists")))
}

pub async fn find_team_by_name(pool: &PgPool, name: &str) -> Result<Option<Team>> {
    Ok(sqlx::query_as("select id, name, is_admin, created_at from team where name = $1").bind(name).fetch_optional(pool).await?)
}

pub async fn list_teams(pool: &PgPool) -> Result<Vec<Team>> {
    Ok(sqlx::query_as("select id, name, is_admin, created_at from team order by name").fetch_all(pool).await?)
}

pub async fn issue_token(pool: &PgPool, team_id: Uuid, name: &str) -> Result<IssuedToken> {
    let secret = format!("{TOKEN_PREFIX}{}", random_secret());
    let id = Uuid::new_v4();
    sqlx::query("insert into api_token (id, team_id, name, token_hash) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(team_id)
        .bind(name)
        .bind(hash_token(&secret))
        .execute(pool)
        .await?;
    Ok(IssuedToken { id, team_id, secret })
}

/// The team owning a live token, or None.
pub async fn authenticate(pool: &PgPool, secret: &str) -> Result<Option<Team>> {
    Ok(sqlx::query_as(
        "select t.id, t.name, t.is_admin, t.created_at from api_token k join team t on t.id = k.team_id
         where k.token_hash = $1 and k.revoked_at is null",
    )
    .bind(hash_token(secret))
    .fetch_optional(pool)
    .await?)
}

/// Revokes one of `team_id`'s tokens.
pub async fn revoke_token(pool: &PgPool, team_id: Uuid, token_id: Uuid) -> Result<()> {
    let done = sqlx::query("update api_token set revoked_at = now() where id = $1 and team_id = $2 and revoked_at is null")
        .bind(token_id)
        .bind(team_id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
