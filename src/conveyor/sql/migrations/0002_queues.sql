-- Conveyor schema, version 2: queue controls shared by every worker.
--
-- A row in conveyor.queue holds what a queue is told to do: paused, snoozed (its downstream
-- is down), at most N running jobs (all workers together, and per concurrency key), at most N
-- jobs started per period, and at most N jobs waiting. A queue without a row has none of
-- these. Claims lock the row only when the queue has limits, so unlimited queues pay nothing.

CREATE TABLE conveyor.queue (
    name              text        PRIMARY KEY CHECK (name <> '' AND length(name) <= 100),
    paused_at         timestamptz,
    snoozed_until     timestamptz,
    snooze_reason     text,
    -- running jobs of the queue, all workers together
    concurrency       integer     CHECK (concurrency > 0),
    -- the args field whose value is a job's concurrency key (e.g. tenant_id), and how many
    -- jobs per key may run at once
    key_arg           text        CHECK (key_arg <> ''),
    key_concurrency   integer     CHECK (key_concurrency > 0),
    -- at most rate_limit jobs start per window of rate_period seconds (windows follow one
    -- another, as in BullMQ's limiter)
    rate_limit        integer     CHECK (rate_limit > 0),
    rate_period       double precision CHECK (rate_period > 0),
    rate_window_start timestamptz,
    rate_window_used  integer     NOT NULL DEFAULT 0,
    -- keyed claims go round the keys: the next one starts after this key
    key_cursor        text,
    -- backpressure: at most max_depth jobs waiting (scheduled, available, retryable)
    max_depth         integer     CHECK (max_depth > 0),
    on_full           text        NOT NULL DEFAULT 'reject'
                      CHECK (on_full IN ('reject', 'drop_oldest', 'drop_newest')),
    dropped           bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL)),
    CHECK ((key_arg IS NULL) = (key_concurrency IS NULL))
);

-- A job's concurrency key, taken from args->>key_arg of its queue when it is enqueued.
ALTER TABLE conveyor.job ADD COLUMN concurrency_key text;

-- Keyed claims walk the keys that have available jobs, in key order, and take each key's best
-- jobs; only jobs of keyed queues are in this index.
CREATE INDEX job_key_claim_idx ON conveyor.job (queue, concurrency_key, priority DESC, id)
    WHERE state = 'available' AND concurrency_key IS NOT NULL;

-- The SQL interface takes the concurrency key from the queue's key_arg too, and no longer
-- returns NULL when a unique key's holder finishes while it looks the holder up.
CREATE OR REPLACE FUNCTION conveyor.enqueue(
    task text,
    args jsonb DEFAULT '{}',
    queue text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL,
    unique_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
    q text := coalesce(enqueue.queue, 'default');
    due boolean := enqueue.run_at IS NULL OR enqueue.run_at <= now();
BEGIN
    IF enqueue.args IS NULL OR jsonb_typeof(enqueue.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args must be a JSON object of keyword arguments, got %',
            coalesce(jsonb_typeof(enqueue.args), 'NULL')
            USING ERRCODE = '22023', HINT = 'Pass args like ''{"order_id": 42}''::jsonb';
    END IF;
    -- A unique key held by an active job returns that job's id. The holder can finish between
    -- our insert and our lookup; then the key is free again and we insert once more.
    LOOP
        INSERT INTO conveyor.job AS j (task, queue, args, run_at, priority, unique_key, state,
                                       concurrency_key)
        VALUES (enqueue.task, q, enqueue.args, coalesce(enqueue.run_at, now()),
                coalesce(enqueue.priority, 0), enqueue.unique_key,
                CASE WHEN due THEN 'available' ELSE 'scheduled' END,
                (SELECT enqueue.args ->> c.key_arg FROM conveyor.queue c WHERE c.name = q))
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
        EXIT WHEN new_id IS NOT NULL;
        SELECT j.id INTO new_id FROM conveyor.job AS j WHERE j.unique_key = enqueue.unique_key;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
    END LOOP;
    IF due THEN
        PERFORM pg_notify('conveyor_jobs', q);
    END IF;
    RETURN new_id;
END;
$$;
