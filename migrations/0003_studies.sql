-- Studies (a named grid of runs: datasets x methods x budgets x seeds) and the per-example
-- test predictions of every run, from which intervals and paired comparisons are computed.

create table study (
    id          uuid primary key,
    team_id     uuid not null references team(id) on delete cascade,
    name        text not null check (length(name) between 1 and 200),
    -- the validated grid as submitted (datasets, methods, budgets, seeds, overrides)
    spec        jsonb not null,
    visibility  text not null default 'team' check (visibility in ('team', 'public')),
    cancelled_at timestamptz,
    created_at  timestamptz not null default now(),
    unique (team_id, name)
);
create index study_team on study (team_id, created_at desc);

alter table run add column study_id uuid references study(id) on delete set null;
create index run_study on run (study_id) where study_id is not null;
-- One run per grid point of a study: extending a study never reruns an existing cell.
create unique index run_study_point on run (study_id, dataset_id, base_model_id, method, budget, seed) where study_id is not null;

create table prediction (
    run_id         uuid not null references run(id) on delete cascade,
    split          text not null,
    example_index  integer not null check (example_index >= 0),
    predicted      jsonb not null,
    reference      jsonb not null,
    -- per-example values whose mean is the split's metric (accuracy as 0/1, ROUGE F, ...)
    scores         jsonb not null default '{}',
    primary key (run_id, split, example_index)
);
