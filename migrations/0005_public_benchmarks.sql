-- Benchmarks shared across teams: suites of datasets registered together (a GLUE folder,
-- the built-in BIG-bench suite), public datasets that belong to no team and are
-- read-only, each dataset's ranking metric, and publishing of runs and studies onto the
-- public leaderboards of public datasets.

create table suite (
    id          uuid primary key,
    -- null: a public suite (built in, installed by an administrator)
    team_id     uuid references team(id) on delete cascade,
    name        text not null check (length(name) between 1 and 200),
    kind        text not null check (kind in ('glue', 'builtin')),
    -- per dataset: its source files and split sizes; files that were not read
    report      jsonb not null,
    created_at  timestamptz not null default now()
);
create unique index suite_name on suite (team_id, name) nulls not distinct;

-- A public dataset has no team: every team reads it and runs on it, nobody changes it.
alter table dataset alter column team_id drop not null;
alter table dataset drop constraint dataset_team_id_name_key;
create unique index dataset_name on dataset (team_id, name) nulls not distinct;
alter table dataset add column suite_id uuid references suite(id) on delete restrict;
-- The metric its leaderboards rank by and checkpoints are selected on, e.g. mcc for CoLA,
-- f1 for MRPC; existing datasets get their task family's primary metric.
alter table dataset add column primary_metric text;
update dataset set primary_metric = case task_family when 'classification' then 'accuracy'
                                                     when 'regression' then 'pearson' else 'rougeL' end;
alter table dataset alter column primary_metric set not null;
-- Where a benchmark dataset came from, e.g. glue/cola or bigbench/epistemic_reasoning.
alter table dataset add column benchmark text;
create index dataset_public on dataset (name) where team_id is null;

-- A run shown on the public leaderboard of its (public) dataset; studies publish through
-- study.visibility = 'public'.
alter table run add column published_at timestamptz;
create index run_published on run (dataset_id) where published_at is not null;
create index study_public on study (id) where visibility = 'public';
