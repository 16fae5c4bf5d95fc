//! Browser sessions for the web pages. The cookie carries a random secret; the table
//! keys sessions by its sha256 (as `api_token` does), so a database dump holds no
//! usable cookie. Each session has its own CSRF token for state-changing requests.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::teams::{hash_token, Team};
use crate::{random_secret, Result};

/// A freshly created session; `secret` goes into the cookie and is never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A live session and the team it belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    pub team: Team,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SessionJoin {
    id: Uuid,
    name: String,
    is_admin: bool,
    created_at: DateTime<Utc>,
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

/// Opens a session for `team_id` lasting `ttl`. Expired sessions are purged on the way.
pub async fn create(pool: &PgPool, team_id: Uuid, ttl: Duration) -> Result<NewSession> {
    purge_expired(pool).await?;
    let secret = random_secret();
    let csrf_token = random_secret();
    let expires_at = Utc::now() + ttl;
    sqlx::query("insert into web_session (id, team_id, csrf_token, expires_at) values ($1, $2, $3, $4)")
        .bind(hash_token(&secret))
        .bind(team_id)
        .bind(&csrf_token)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(NewSession { secret, csrf_token, expires_at })
}

/// The live (unexpired) session whose cookie secret is `secret`, or None.
pub async fn lookup(pool: &PgPool, secret: &str) -> Result<Option<Session>> {
    let row: Option<SessionJoin> = sqlx::query_as(
        "select t.id, t.name, t.is_admin, t.created_at, s.csrf_token, s.expires_at
         from web_session s join team t on t.id = s.team_id
         where s.id = $1 and s.expires_at > now()",
    )
    .bind(hash_token(secret))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Session {
        team: Team { id: r.id, name: r.name, is_admin: r.is_admin, created_at: r.created_at },
        csrf_token: r.csrf_token,
        expires_at: r.expires_at,
    }))
}

/// Ends the session with this cookie secret (no error if there is none).
pub async fn delete(pool: &PgPool, secret: &str) -> Result<()> {
    sqlx::query("delete from web_session where id = $1").bind(hash_token(secret)).execute(pool).await?;
    Ok(())
}

/// Removes every expired session; returns how many.
pub async fn purge_expired(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query("delete from web_session where expires_at <= now()").execute(pool).await?.rows_affected())
}

/// Number of recent runs per status for a team (dashboard counters).
pub async fn run_status_counts(pool: &PgPool, team_id: Uuid) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("select status, count(*) from run where team_id = $1 group by status order by status")
        .bind(team_id)
        .fetch_all(pool)
        .await?)
}
