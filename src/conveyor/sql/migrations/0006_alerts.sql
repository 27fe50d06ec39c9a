-- Alerts (version 6).
--
-- conveyor.alert_episode has one row per episode of an alert rule for one subject (a queue,
-- or a queue and task): opened (pending) when the condition is first seen, fired once it held
-- long enough, resolved when it cleared. At most one episode per rule and subject is open
-- (resolved_at IS NULL); that partial unique index is what keeps two evaluators (a leader
-- change mid-pass) from opening or firing the same episode twice. A later breach opens a new
-- row.
--
-- conveyor.alert_notification is the outbox: one row per fire or resolve and channel, written
-- by the statement that fired or resolved the episode, delivered (and retried) afterwards.
--
-- conveyor.alert_watermark remembers, per JobFailed rule, up to which finished_at failed jobs
-- were already looked at.

CREATE TABLE conveyor.alert_episode (
    id             bigint      PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    rule           text        NOT NULL CHECK (rule <> '' AND length(rule) <= 200),
    subject        text        NOT NULL,
    pending_since  timestamptz NOT NULL,
    fired_at       timestamptz,
    -- the evaluation that fired the episode last: tells the firing statement what it fired
    fired_pass     uuid,
    fire_count     integer     NOT NULL DEFAULT 0,
    resolved_at    timestamptz,
    last_value     double precision,
    details        jsonb,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX alert_episode_open_idx ON conveyor.alert_episode (rule, subject)
    WHERE resolved_at IS NULL;
-- Resolved episodes are pruned by age.
CREATE INDEX alert_episode_resolved_idx ON conveyor.alert_episode (resolved_at)
    WHERE resolved_at IS NOT NULL;

CREATE TABLE conveyor.alert_notification (
    id             bigint      PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    episode_id     bigint      NOT NULL REFERENCES conveyor.alert_episode (id) ON DELETE CASCADE,
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    channel        text        NOT NULL,
    value          double precision,
    details        jsonb,
    created_at     timestamptz NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    -- an evaluator delivering this row holds it until then; a crashed one's claim expires
    claimed_until  timestamptz,
    delivered_at   timestamptz,
    abandoned_at   timestamptz,
    last_error     text
);
CREATE INDEX alert_notification_pending_idx ON conveyor.alert_notification (id)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX alert_notification_episode_idx ON conveyor.alert_notification (episode_id);

CREATE TABLE conveyor.alert_watermark (
    rule        text        PRIMARY KEY,
    seen_until  timestamptz NOT NULL
);

-- JobFailed finds the failed jobs that arrived since its watermark by finished_at; the BRIN
-- index over all finished jobs is too coarse for a window of seconds.
CREATE INDEX job_done_failed_finished_idx ON conveyor.job_done (finished_at)
    WHERE state = 'failed';
