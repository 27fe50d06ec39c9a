-- Conveyor schema, version 9: HTTP endpoints, so a job can be delivered to a URL.
--
-- A job whose task is an endpoint's name is POSTed, signed, to the endpoint's URL by any
-- worker that serves the job's queue (`conveyor deliver` needs no Python code at all).
-- `secrets` holds one or two secrets (two while rotating): each a literal or 'env:NAME', the
-- name of an environment variable of the delivering worker, so a secret need not sit in the
-- database. conveyor.enqueue now puts an endpoint's jobs in the endpoint's queue when the
-- caller names none; its signature and behaviour are otherwise unchanged.
CREATE TABLE conveyor.endpoint (
    name text PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    url text NOT NULL CHECK (url ~ '^https?://'),
    secrets text[] NOT NULL
        CHECK (cardinality(secrets) BETWEEN 1 AND 2 AND array_position(secrets, NULL) IS NULL),
    timeout_seconds double precision NOT NULL DEFAULT 30
        CHECK (timeout_seconds > 0 AND timeout_seconds <= 3600),
    queue text NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    retry_4xx boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION conveyor.enqueue(
    task text,
    args jsonb DEFAULT '{}',
    queue text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL,
    unique_key text DEFAULT NULL,
    correlation_id text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
    q text := coalesce(enqueue.queue,
                       (SELECT e.queue FROM conveyor.endpoint e WHERE e.name = enqueue.task),
                       'default');
    due boolean := enqueue.run_at IS NULL OR enqueue.run_at <= now();
BEGIN
    IF enqueue.args IS NULL OR jsonb_typeof(enqueue.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args must be a JSON object of keyword arguments, got %',
            coalesce(jsonb_typeof(enqueue.args), 'NULL')
            USING ERRCODE = '22023', HINT = 'Pass args like ''{"order_id": 42}''::jsonb';
    END IF;
    -- level 101 exists only when lists and objects nest deeper than 100 (codec.MAX_NESTING)
    IF jsonb_path_exists(enqueue.args, 'strict $.**{101}') THEN
        RAISE EXCEPTION 'conveyor.enqueue: args are nested deeper than 100 levels'
            USING ERRCODE = '22023',
                  HINT = 'Flatten the arguments, or store the data elsewhere and pass its id';
    END IF;
    IF enqueue.run_at IS NOT NULL
       AND NOT (enqueue.run_at BETWEEN '0001-01-02 00:00+00' AND '9999-12-30 00:00+00') THEN
        RAISE EXCEPTION 'conveyor.enqueue: run_at % is out of range', enqueue.run_at
            USING ERRCODE = '22023',
                  HINT = 'Give a time between 0001-01-02 and 9999-12-30, or NULL to run now';
    END IF;
    IF octet_length(enqueue.unique_key) > 1000 THEN
        RAISE EXCEPTION 'conveyor.enqueue: unique_key is % bytes, over the 1000-byte limit',
            octet_length(enqueue.unique_key)
            USING ERRCODE = '22023', HINT = 'Pass a hash of the key (e.g. md5(...))';
    END IF;
    -- A unique key held by an active job returns that job's id. The holder can finish between
    -- our insert and our lookup; then the key is free again and we insert once more.
    LOOP
        INSERT INTO conveyor.job AS j (task, queue, args, run_at, priority, unique_key, state,
                                       concurrency_key, correlation_id)
        VALUES (enqueue.task, q, enqueue.args, coalesce(enqueue.run_at, now()),
                coalesce(enqueue.priority, 0), enqueue.unique_key,
                CASE WHEN due THEN 'available' ELSE 'scheduled' END,
                (SELECT enqueue.args ->> c.key_arg FROM conveyor.queue c WHERE c.name = q),
                enqueue.correlation_id)
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
