-- Conveyor schema, version 11: durable workflows (docs/workflows.md).
--
-- A workflow run is a row of conveyor.workflow_runs driven by an ordinary job (task = the
-- workflow's name, args {"run_id": ...}): queues, limits, leases, fencing and rescue apply as
-- to any job. Each step the workflow function takes is a row of conveyor.workflow_steps keyed by
-- its position in the run; when the run resumes, the function runs again from the top and every
-- recorded step returns its recorded result. Sleeps, event waits and step backoffs park the
-- driving job in 'scheduled' (no worker slot, no connection); the scheduler resumes it.
-- Events (conveyor.workflow_events) wake runs waiting for their (name, key).

CREATE TABLE conveyor.workflow_runs (
    id              text        PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 200),
    workflow        text        NOT NULL,
    state           text        NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'sleeping', 'waiting', 'completed', 'failed',
                                     'cancelled')),
    args            jsonb       NOT NULL DEFAULT '{}',
    result          jsonb,
    error           jsonb,
    queue           text        NOT NULL DEFAULT 'default',
    -- the job that drives the run (a retried run gets a new one)
    job_id          bigint,
    -- a child workflow's parent run and the parent's step that waits for it
    parent_run_id   text,
    parent_position integer,
    -- the current event wait (state 'waiting'), and when a parked run wakes
    wait_event      text,
    wait_key        text,
    wait_position   integer,
    wait_deadline   timestamptz,
    wake_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX workflow_runs_created_idx ON conveyor.workflow_runs (created_at DESC, id);
CREATE INDEX workflow_runs_job_idx ON conveyor.workflow_runs (job_id);
CREATE INDEX workflow_runs_parent_idx ON conveyor.workflow_runs (parent_run_id, parent_position)
    WHERE parent_run_id IS NOT NULL;
-- send_event looks for the oldest run waiting on (name, key)
CREATE INDEX workflow_runs_waiting_idx ON conveyor.workflow_runs (wait_event, wait_key, updated_at)
    WHERE state = 'waiting';
-- the pruner deletes finished runs past retention
CREATE INDEX workflow_runs_finished_idx ON conveyor.workflow_runs (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE conveyor.workflow_steps (
    run_id      text        NOT NULL REFERENCES conveyor.workflow_runs (id) ON DELETE CASCADE,
    position    integer     NOT NULL CHECK (position >= 0),
    name        text        NOT NULL,
    -- step (ctx.step), sleep, wait (ctx.wait_for_event), patch (ctx.patched); map and child
    -- are kept for fan-out to child jobs and child workflows
    kind        text        NOT NULL DEFAULT 'step'
                CHECK (kind IN ('step', 'sleep', 'wait', 'patch', 'map', 'child')),
    -- completed; failed (its last attempt failed); retrying (waits for its backoff);
    -- sleeping; waiting (for an event)
    state       text        NOT NULL
                CHECK (state IN ('completed', 'failed', 'retrying', 'sleeping', 'waiting')),
    result      jsonb,
    error       jsonb,
    attempts    integer     NOT NULL DEFAULT 0,
    -- a sleep's wake time, a wait's deadline, a retrying step's next attempt
    wake_at     timestamptz,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, position)
);

CREATE TABLE conveyor.workflow_events (
    id              bigserial   PRIMARY KEY,
    name            text        NOT NULL,
    key             text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    consumed_by_run text,
    consumed_at     timestamptz
);
-- a wait consumes the oldest unconsumed event of its (name, key)
CREATE INDEX workflow_events_open_idx ON conveyor.workflow_events (name, key, id)
    WHERE consumed_by_run IS NULL;
CREATE INDEX workflow_events_expires_idx ON conveyor.workflow_events (expires_at);

-- How long an event nobody consumed is kept (send_event reads it; change it with
-- UPDATE conveyor.workflow_settings SET event_retention = '30 days').
CREATE TABLE conveyor.workflow_settings (
    only_row        boolean  PRIMARY KEY DEFAULT true CHECK (only_row),
    event_retention interval NOT NULL DEFAULT '7 days'
);
INSERT INTO conveyor.workflow_settings DEFAULT VALUES;

-- Start a run of `workflow` with `args` (a JSON object of its keyword arguments) and return its
-- id. A run_id already taken returns that run's id and starts nothing (an idempotent start).
-- Works inside the caller's transaction: nothing is started if it rolls back. The run's job
-- goes to `queue` (default 'default': give the workflow's queue when it declares one) with
-- `priority` (default 0).
CREATE FUNCTION conveyor.start_workflow(
    workflow text,
    args jsonb DEFAULT '{}',
    run_id text DEFAULT NULL,
    queue text DEFAULT NULL,
    priority integer DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    rid text := coalesce(start_workflow.run_id, gen_random_uuid()::text);
    q text := coalesce(start_workflow.queue, 'default');
    existing text;
    new_job bigint;
BEGIN
    IF start_workflow.workflow IS NULL OR octet_length(start_workflow.workflow) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'conveyor.start_workflow: workflow must be a name of 1 to 1000 bytes'
            USING ERRCODE = '22023';
    END IF;
    IF octet_length(rid) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'conveyor.start_workflow: run_id must be 1 to 200 bytes, got %',
            octet_length(rid)
            USING ERRCODE = '22023', HINT = 'Pass a hash of the id (e.g. md5(...))';
    END IF;
    IF start_workflow.args IS NULL OR jsonb_typeof(start_workflow.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.start_workflow: args must be a JSON object of keyword arguments, got %',
            coalesce(jsonb_typeof(start_workflow.args), 'NULL')
            USING ERRCODE = '22023', HINT = 'Pass args like ''{"order_id": 42}''::jsonb';
    END IF;
    IF octet_length(start_workflow.args::text) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.start_workflow: args are % bytes, over the 1 MiB limit',
            octet_length(start_workflow.args::text)
            USING ERRCODE = '22023', HINT = 'Store the data elsewhere and pass its id';
    END IF;
    INSERT INTO conveyor.workflow_runs AS r (id, workflow, args, queue)
    VALUES (rid, start_workflow.workflow, start_workflow.args, q)
    ON CONFLICT (id) DO NOTHING
    RETURNING r.id INTO existing;
    IF existing IS NULL THEN
        SELECT r.workflow INTO existing FROM conveyor.workflow_runs r WHERE r.id = rid;
        IF existing IS DISTINCT FROM start_workflow.workflow THEN
            RAISE EXCEPTION 'conveyor.start_workflow: run % belongs to workflow %, not %',
                rid, existing, start_workflow.workflow
                USING ERRCODE = '23505', HINT = 'Give each run id to one workflow';
        END IF;
        RETURN rid;
    END IF;
    new_job := conveyor.enqueue(start_workflow.workflow, jsonb_build_object('run_id', rid), q,
                                priority => start_workflow.priority);
    UPDATE conveyor.workflow_runs r SET job_id = new_job WHERE r.id = rid;
    RETURN rid;
END;
$$;

-- Send an event: the oldest run waiting on (name, key) consumes it and is woken at once;
-- with none waiting it is kept (for event_retention) for the first run that waits on it.
-- Returns the event's id. Works inside the caller's transaction (READ COMMITTED, the
-- default): nothing is sent if it rolls back. Sends and waits on one (name, key) take turns
-- on a transaction advisory lock, so a wait never misses an event sent meanwhile.
CREATE FUNCTION conveyor.send_event(
    name text,
    key text,
    payload jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    event_id bigint;
    waiter_id text;
    waiter_position integer;
    waiter_job bigint;
    woken_queue text;
BEGIN
    IF send_event.name IS NULL OR octet_length(send_event.name) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'conveyor.send_event: name must be 1 to 1000 bytes'
            USING ERRCODE = '22023';
    END IF;
    IF send_event.key IS NULL OR octet_length(send_event.key) > 1000 THEN
        RAISE EXCEPTION 'conveyor.send_event: key must be text of at most 1000 bytes'
            USING ERRCODE = '22023', HINT = 'Pass a hash of the key (e.g. md5(...))';
    END IF;
    IF send_event.payload IS NULL THEN
        RAISE EXCEPTION 'conveyor.send_event: payload must be JSON, not NULL'
            USING ERRCODE = '22023', HINT = 'Pass ''{}''::jsonb for an event without data';
    END IF;
    IF octet_length(send_event.payload::text) > 65536 THEN
        RAISE EXCEPTION 'conveyor.send_event: payload is % bytes, over the 64 KiB limit',
            octet_length(send_event.payload::text)
            USING ERRCODE = '22023', HINT = 'Store the data elsewhere and send its id';
    END IF;
    IF jsonb_path_exists(send_event.payload, 'strict $.**{101}') THEN
        RAISE EXCEPTION 'conveyor.send_event: payload is nested deeper than 100 levels'
            USING ERRCODE = '22023';
    END IF;
    -- the same lock as a wait's registration (sql/workflow.sql, workflow_event_lock)
    PERFORM pg_advisory_xact_lock(1668183655, hashtext(send_event.name || chr(31) || send_event.key));
    INSERT INTO conveyor.workflow_events (name, key, payload, expires_at)
    SELECT send_event.name, send_event.key, send_event.payload, now() + s.event_retention
      FROM conveyor.workflow_settings s
    RETURNING id INTO event_id;
    SELECT r.id, r.wait_position, r.job_id INTO waiter_id, waiter_position, waiter_job
      FROM conveyor.workflow_runs r
     WHERE r.state = 'waiting' AND r.wait_event = send_event.name AND r.wait_key = send_event.key
     ORDER BY r.updated_at, r.created_at, r.id
     LIMIT 1
       FOR UPDATE;
    IF waiter_id IS NULL THEN
        RETURN event_id;
    END IF;
    UPDATE conveyor.workflow_events e SET consumed_by_run = waiter_id, consumed_at = now()
     WHERE e.id = event_id;
    UPDATE conveyor.workflow_steps st
       SET state = 'completed', finished_at = now(),
           result = jsonb_build_object('event_id', event_id, 'payload', send_event.payload)
     WHERE st.run_id = waiter_id AND st.position = waiter_position;
    UPDATE conveyor.workflow_runs r
       SET state = 'running', wait_event = NULL, wait_key = NULL, wait_position = NULL,
           wait_deadline = NULL, wake_at = NULL, updated_at = now()
     WHERE r.id = waiter_id;
    UPDATE conveyor.job j SET state = 'available', run_at = now()
     WHERE j.id = waiter_job AND j.state = 'scheduled'
    RETURNING j.queue INTO woken_queue;
    IF woken_queue IS NOT NULL THEN
        PERFORM pg_notify('conveyor_jobs', woken_queue);
    END IF;
    RETURN event_id;
END;
$$;
