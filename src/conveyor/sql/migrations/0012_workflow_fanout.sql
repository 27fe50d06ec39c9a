-- Conveyor schema, version 12: workflow fan-out (ctx.map, ctx.run_workflow; docs/workflows.md).
--
-- A fan-out is a step of the parent run (kind 'map' or 'child', state 'waiting') with a row of
-- conveyor.workflow_fanouts (its counters) and one row of conveyor.workflow_children per child
-- job (a task's job, or the driving job of a child run). The children past the concurrency
-- bound start parked ('scheduled' until the year 9999). A trigger on conveyor.job_done, in the
-- transaction that moves a child's job there (completed, failed for good, or cancelled, by any
-- path: completer, rescuer, cancel), records the child's outcome once, counts it down, lets
-- the next parked children go, and wakes the parent's job when the last child has finished.

CREATE TABLE conveyor.workflow_fanouts (
    run_id     text    NOT NULL,
    position   integer NOT NULL,
    total      integer NOT NULL CHECK (total >= 0),
    -- children not finished yet; the parent wakes when it reaches 0
    remaining  integer NOT NULL CHECK (remaining >= 0),
    -- children that failed or were cancelled
    failed     integer NOT NULL DEFAULT 0,
    -- the children with idx < released have been let go (the concurrency bound)
    released   integer NOT NULL,
    on_failure text    NOT NULL CHECK (on_failure IN ('fail', 'return')),
    PRIMARY KEY (run_id, position),
    FOREIGN KEY (run_id, position) REFERENCES conveyor.workflow_steps (run_id, position)
        ON DELETE CASCADE
);

CREATE TABLE conveyor.workflow_children (
    run_id       text        NOT NULL,
    position     integer     NOT NULL,
    idx          integer     NOT NULL,
    job_id       bigint      NOT NULL,
    -- the child run, when the child is a workflow
    child_run_id text,
    state        text        NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'completed', 'failed', 'cancelled')),
    result       jsonb,
    error        jsonb,
    finished_at  timestamptz,
    PRIMARY KEY (run_id, position, idx),
    FOREIGN KEY (run_id, position) REFERENCES conveyor.workflow_fanouts (run_id, position)
        ON DELETE CASCADE
);
-- the trigger finds a finished job's link by its id
CREATE UNIQUE INDEX workflow_children_job_idx ON conveyor.workflow_children (job_id);
-- the unfinished children a cancel takes
CREATE INDEX workflow_children_pending_idx ON conveyor.workflow_children (run_id, position, idx)
    WHERE state = 'pending';

-- Runs for every statement that moves jobs to job_done. Statements run one by one so that each
-- sees what the ones before it committed (READ COMMITTED): the fan-out's counter row is locked
-- before the children to let go are chosen, so two completions never let the same child go.
-- The step ends (and the parent's job wakes) once: when the last child ends, or, with
-- on_failure 'fail', when the first child fails: then the children not let go yet are
-- cancelled here (this trigger runs again for them and finds the step ended) and those
-- already running finish on their own.
CREATE FUNCTION conveyor.workflow_children_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    k record;
    f record;
    woken text;
    freed integer;
    lo integer;
    culprit jsonb;
BEGIN
    FOR k IN
        WITH fin AS (
            UPDATE conveyor.workflow_children c
               SET state = d.state, result = d.result, finished_at = d.finished_at,
                   error = CASE WHEN d.state = 'completed' THEN NULL
                                ELSE coalesce(d.errors -> -1, jsonb_build_object(
                                     'type', 'Cancelled', 'message', 'the child was cancelled'))
                           END
              FROM finished d
             -- ARRAY(...) keeps the planner on the job_id index (a transition table has no
             -- statistics: a join may be planned as a scan of every link)
             WHERE c.job_id = ANY(ARRAY(SELECT x.id FROM finished x))
               AND c.job_id = d.id AND c.state = 'pending'
            RETURNING c.run_id, c.position, c.state
        )
        SELECT fin.run_id, fin.position, count(*)::int AS n,
               (count(*) FILTER (WHERE fin.state <> 'completed'))::int AS bad
          FROM fin
         GROUP BY fin.run_id, fin.position
         ORDER BY fin.run_id, fin.position  -- lock counters in one order: no deadlock
    LOOP
        woken := NULL;
        culprit := NULL;
        SELECT o.released INTO lo FROM conveyor.workflow_fanouts o
         WHERE o.run_id = k.run_id AND o.position = k.position
           FOR UPDATE;
        UPDATE conveyor.workflow_fanouts o
           SET remaining = o.remaining - k.n, failed = o.failed + k.bad,
               released = least(o.total, o.released + k.n)
         WHERE o.run_id = k.run_id AND o.position = k.position
        RETURNING o.* INTO f;
        IF f.failed > 0 AND f.on_failure = 'fail' THEN
            -- the first failed child by index (of those ended so far)
            SELECT jsonb_build_object(
                       'type', 'conveyor.errors.ChildFailed',
                       'message', 'child ' || c.idx || ' ('
                                  || coalesce('run ' || c.child_run_id, 'job ' || c.job_id)
                                  || ') ' || c.state || ': ' || coalesce(c.error ->> 'type', '')
                                  || ': ' || coalesce(c.error ->> 'message', ''),
                       'attempt', 1,
                       'child', jsonb_build_object('index', c.idx, 'job_id', c.job_id,
                                                   'run_id', c.child_run_id, 'state', c.state,
                                                   'error', c.error))
              INTO culprit
              FROM conveyor.workflow_children c
             WHERE c.run_id = f.run_id AND c.position = f.position
               AND c.state IN ('failed', 'cancelled')
             ORDER BY c.idx LIMIT 1;
        ELSE
            WITH go AS (
                UPDATE conveyor.job j SET state = 'available', run_at = now()
                  FROM conveyor.workflow_children c
                 WHERE c.run_id = f.run_id AND c.position = f.position
                   AND c.idx >= lo AND c.idx < f.released AND j.id = c.job_id
                   AND j.state = 'scheduled' AND j.run_at >= '9999-01-01'
                RETURNING j.queue
            )
            SELECT count(pg_notify('conveyor_jobs', q.queue)) INTO freed
              FROM (SELECT DISTINCT go.queue FROM go) q;
        END IF;
        IF f.remaining = 0 OR culprit IS NOT NULL THEN
            UPDATE conveyor.workflow_steps s
               SET state = CASE WHEN culprit IS NULL THEN 'completed' ELSE 'failed' END,
                   result = jsonb_build_object('total', f.total, 'failed', f.failed),
                   error = culprit, finished_at = now()
             WHERE s.run_id = f.run_id AND s.position = f.position AND s.state = 'waiting'
               AND EXISTS (SELECT FROM conveyor.workflow_runs r
                            WHERE r.id = f.run_id AND r.state IN ('running', 'waiting'));
            IF FOUND THEN
                IF culprit IS NOT NULL THEN
                    -- children never let go will not be: cancel them (child runs with them)
                    UPDATE conveyor.workflow_runs r
                       SET state = 'cancelled', updated_at = now(), finished_at = now()
                      FROM conveyor.workflow_children c, conveyor.job j
                     WHERE c.run_id = f.run_id AND c.position = f.position
                       AND c.state = 'pending' AND r.id = c.child_run_id AND j.id = c.job_id
                       AND j.state = 'scheduled' AND j.run_at >= '9999-01-01';
                    WITH gone AS (
                        DELETE FROM conveyor.job j
                         USING conveyor.workflow_children c
                         WHERE c.run_id = f.run_id AND c.position = f.position
                           AND c.state = 'pending' AND j.id = c.job_id
                           AND j.state = 'scheduled' AND j.run_at >= '9999-01-01'
                        RETURNING j.*
                    )
                    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt,
                                                   max_attempts, args, errors, unique_key,
                                                   timeout_seconds, created_at, run_at,
                                                   attempted_at, finished_at, result, worker_id,
                                                   progress, correlation_id, trace_context)
                    SELECT g.id, g.task, g.queue, 'cancelled', g.priority, g.attempt,
                           g.max_attempts, g.args, g.errors, g.unique_key, g.timeout_seconds,
                           g.created_at, g.run_at, g.attempted_at, now(), NULL, g.worker_id,
                           g.progress, g.correlation_id, g.trace_context
                      FROM gone g;
                END IF;
                UPDATE conveyor.job j SET state = 'available', run_at = now()
                  FROM conveyor.workflow_runs r
                 WHERE r.id = f.run_id AND j.id = r.job_id AND j.state = 'scheduled'
                RETURNING j.queue INTO woken;
                IF woken IS NOT NULL THEN
                    PERFORM pg_notify('conveyor_jobs', woken);
                END IF;
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workflow_children_finished
    AFTER INSERT ON conveyor.job_done
    REFERENCING NEW TABLE AS finished
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor.workflow_children_finished();
