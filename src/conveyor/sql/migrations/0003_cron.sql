-- Cron schedules (version 3).
--
-- conveyor.cron_schedule has one row per schedule, written by the workers that run it: its
-- definition and its progress. next_slot is the earliest time not yet handled (enqueued or,
-- under catch_up = 'skip', dropped as missed); last_slot is the latest time enqueued.
--
-- conveyor.cron_slot has one row per enqueued time of a schedule. Its primary key is what
-- makes "one job per time" hold with any number of workers: the row and the job are written
-- by one statement, and a second writer of the same time inserts neither.

CREATE TABLE conveyor.cron_schedule (
    name        text        PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    task        text        NOT NULL,
    cron        text        NOT NULL,
    timezone    text        NOT NULL,
    catch_up    text        NOT NULL CHECK (catch_up IN ('skip', 'once')),
    last_slot   timestamptz,
    next_slot   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conveyor.cron_slot (
    schedule    text        NOT NULL,
    slot        timestamptz NOT NULL,
    job_id      bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);
-- The pruner deletes old slot rows by age.
CREATE INDEX cron_slot_created_idx ON conveyor.cron_slot (created_at);
