-- rankfit schema: teams, tokens, datasets, base models, runs (= the queue), metrics,
-- rank snapshots, evaluations, artifacts and the replayable run event log.

create table team (
    id          uuid primary key,
    name        text not null unique check (length(name) between 1 and 100),
    is_admin    boolean not null default false,
    created_at  timestamptz not null default now()
);

create table api_token (
    id          uuid primary key,
    team_id     uuid not null references team(id) on delete cascade,
    name        text not null default '',
    -- sha256 of the secret; the secret itself is never stored
    token_hash  bytea not null unique check (length(token_hash) = 32),
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);
create index api_token_team on api_token(team_id);

create table base_model (
    id            text primary key,
    name          text not null,
    architecture  text not null check (architecture in ('bert', 'llama')),
    source        text not null,
    sha256        text,
    created_at    timestamptz not null default now()
);

create table dataset (
    id            uuid primary key,
    team_id       uuid not null references team(id) on delete cascade,
    name          text not null check (length(name) between 1 and 200),
    task_family   text not null check (task_family in ('classification', 'regression', 'summarization', 'instruction')),
    format        text not null check (format in ('jsonl', 'csv', 'glue_tsv', 'bigbench')),
    parse_options jsonb not null,
    label_set     jsonb not null default '[]',
    row_count     bigint not null check (row_count > 0),
    splits        jsonb not null,
    bytes         bigint not null,
    sha256        text not null,
    uri           text not null,
    report        jsonb not null,
    created_at    timestamptz not null default now(),
    unique (team_id, name)
);

create table run (
    id                uuid primary key,
    team_id           uuid not null references team(id) on delete cascade,
    dataset_id        uuid not null references dataset(id) on delete restrict,
    base_model_id     text not null references base_model(id),
    method            text not null check (method in ('lora', 'adalora', 'salientlora', 'alora', 'rolora')),
    config            jsonb not null,
    budget            integer not null check (budget > 0),
    seed              bigint not null,
    name              text not null default '',
    status            text not null default 'queued'
                      check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority          integer not null default 0,
    attempts          integer not null default 0,
    max_attempts      integer not null default 3 check (max_attempts > 0),
    not_before        timestamptz not null default now(),
    lease_owner       text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    cancel_requested  boolean not null default false,
    continue_from     uuid references run(id) on delete set null,
    error             text,
    summary           jsonb not null default '{}',
    created_at        timestamptz not null default now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    check ((status = 'running') = (lease_token is not null))
);
create index run_claimable on run (priority desc, created_at, id) where status = 'queued';
create index run_expiring on run (lease_expires_at) where status = 'running';
create index run_team on run (team_id, created_at desc);

create table run_metric (
    run_id  uuid not null references run(id) on delete cascade,
    step    bigint not null,
    split   text not null,
    name    text not null,
    value   double precision not null,
    primary key (run_id, split, name, step)
);

create table rank_snapshot (
    run_id   uuid not null references run(id) on delete cascade,
    step     bigint not null,
    budget   bigint not null,
    ranks    jsonb not null,
    primary key (run_id, step)
);

create table evaluation (
    run_id      uuid not null references run(id) on delete cascade,
    split       text not null,
    metrics     jsonb not null,
    created_at  timestamptz not null default now(),
    primary key (run_id, split)
);

create table artifact (
    id          uuid primary key,
    run_id      uuid not null references run(id) on delete cascade,
    kind        text not null check (kind in ('adapter_peft', 'adapter_lora', 'adapter_merged', 'checkpoint')),
    uri         text not null,
    bytes       bigint not null,
    sha256      text not null,
    created_at  timestamptz not null default now(),
    unique (run_id, kind)
);

-- Replayable, typed event log behind the SSE stream (Last-Event-ID = id).
create table run_event (
    id          bigserial primary key,
    run_id      uuid not null references run(id) on delete cascade,
    kind        text not null,
    data        jsonb not null,
    created_at  timestamptz not null default now()
);
create index run_event_run on run_event (run_id, id);

-- Wake idle workers when a run becomes claimable.
create function rankfit_notify_queued() returns trigger language plpgsql as $$
begin
    if new.status = 'queued' then
        perform pg_notify('rankfit_run_queued', new.id::text);
    end if;
    return new;
end $$;

create trigger run_queued_notify
    after insert or update of status on run
    for each row execute function rankfit_notify_queued();

-- Wake SSE streams when a run has new events.
create function rankfit_notify_event() returns trigger language plpgsql as $$
begin
    perform pg_notify('rankfit_run_event', new.run_id::text);
    return new;
end $$;

create trigger run_event_notify
    after insert on run_event
    for each row execute function rankfit_notify_event();
