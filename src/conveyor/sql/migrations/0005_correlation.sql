-- Conveyor schema, version 5: correlation ids and trace context travel with each job.
--
-- correlation_id ties a job to whatever caused it (a web request id, a parent job's id); the
-- worker logs it on every line about the job and hands it to jobs the handler enqueues.
-- trace_context carries W3C trace headers ({"traceparent": ..., "tracestate": ...}) so the
-- worker's span is a child of the span that enqueued the job.

ALTER TABLE conveyor.job
    ADD COLUMN correlation_id text CHECK (length(correlation_id) <= 255),
    ADD COLUMN trace_context jsonb;
ALTER TABLE conveyor.job_done
    ADD COLUMN correlation_id text,
    ADD COLUMN trace_context jsonb;

-- The contract view gains both columns (at the end, as CREATE OR REPLACE requires).
CREATE OR REPLACE VIEW conveyor.jobs AS
    SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
           timeout_seconds, created_at, run_at, attempted_at, NULL::timestamptz AS finished_at,
           NULL::jsonb AS result, worker_id, lease_expires_at, progress, correlation_id,
           trace_context
      FROM conveyor.job
    UNION ALL
    SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
           timeout_seconds, created_at, run_at, attempted_at, finished_at,
           result, worker_id, NULL::timestamptz AS lease_expires_at, progress, correlation_id,
           trace_context
      FROM conveyor.job_done;

-- The SQL function takes an optional correlation id (a new signature, so the old one goes).
DROP FUNCTION conveyor.enqueue(text, jsonb, text, timestamptz, integer, text);
CREATE FUNCTION conveyor.enqueue(
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
