-- The fleet: every worker process registers when it starts and heartbeats while it lives,
-- so operators see which workers are alive, what each is running, and how each has fared.
-- Its counters (claims, expired leases it reaped, outcomes) feed /metrics.
create table worker (
    name            text primary key,               -- the lease owner it claims runs as
    host            text not null,
    pid             integer not null,
    device          text not null,                  -- cpu, cuda:N
    features        text[] not null default '{}',   -- build features (cuda, s3, ...)
    version         text not null,
    lease_secs      integer not null check (lease_secs > 0),
    started_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    stopped_at      timestamptz,                    -- set on a clean exit
    current_run_id  uuid references run(id) on delete set null,
    claims          bigint not null default 0,
    reaped          bigint not null default 0,
    succeeded       bigint not null default 0,
    failed          bigint not null default 0
);
create index worker_last_seen on worker (last_seen_at desc);
create index run_event_lease_expired on run_event (id) where kind = 'status' and data->>'reason' = 'lease expired';
