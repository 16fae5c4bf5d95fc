-- What a run was estimated to cost when it was queued (steps, seconds, peak memory, basis),
-- where it is now (phase, step/total, ETA; written by its worker about once a second), and
-- each test prediction's input text.
alter table run add column estimate jsonb;
alter table run add column progress jsonb;
alter table prediction add column input text;
