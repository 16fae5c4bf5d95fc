-- Browser sessions: a team signs in with one of its API tokens and gets an HttpOnly
-- cookie. Only the sha256 of the cookie's secret is stored (like api_token), with the
-- session's CSRF token that every state-changing form or XHR must echo back.
create table web_session (
    id          bytea primary key check (length(id) = 32),
    team_id     uuid not null references team(id) on delete cascade,
    csrf_token  text not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null
);
create index web_session_team on web_session(team_id);
create index web_session_expiry on web_session(expires_at);
