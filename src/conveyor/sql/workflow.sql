-- Workflows: runs, their recorded steps, and events (docs/workflows.md).
--
-- Fencing: every write of the engine holds the driving job's row FOR SHARE while it checks the
-- lease token, so a rescue or a cancel waits for the write's commit (and a stale worker's
-- write, whose token is gone, changes nothing). The rescuer claims with SKIP LOCKED: it skips
-- such a job and looks again on its next pass.

-- name: workflow_run_begin
-- The run a job drives, running again (a sleep or wait that parked it is over: the replay
-- finds a wait's event, or its timeout, under the event lock) and marked started on its first
-- attempt, while the job's lease holds. `now` is the time the replay compares with (a sleep is over when its wake time is
-- not after it).
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), held AS (
    SELECT j.id FROM conveyor.job j
     WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
       FOR SHARE
), old AS (
    SELECT r.started_at IS NULL AS first FROM conveyor.workflow_runs r WHERE r.id = %(run_id)s
)
UPDATE conveyor.workflow_runs r
   SET started_at = coalesce(r.started_at, n.t),
       state = CASE WHEN r.state IN ('sleeping', 'waiting') THEN 'running' ELSE r.state END,
       wait_event = NULL, wait_key = NULL, wait_position = NULL, wait_deadline = NULL,
       wake_at = NULL, updated_at = n.t
  FROM n, old
 WHERE r.id = %(run_id)s AND EXISTS (SELECT FROM held)
RETURNING r.id, r.workflow, r.state, r.args, r.result, r.error, old.first, n.t AS now;

-- name: workflow_step_list
-- A run's recorded steps, in the order the workflow took them.
SELECT run_id, position, name, kind, state, result, error, attempts, wake_at, started_at,
       finished_at
  FROM conveyor.workflow_steps
 WHERE run_id = %(run_id)s
 ORDER BY position;

-- name: workflow_job_hold
-- Lock the driving job while this worker still holds it (the first statement of an atomic
-- step's transaction, so the step's writes wait for nothing else).
SELECT j.id FROM conveyor.job j
 WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
   FOR SHARE;

-- name: workflow_step_record
-- Record a step at its position (completed, failed, retrying, sleeping, waiting, a patch
-- marker) while the driving job's lease holds; a completed step is never written over.
-- Returns the step's wake time (a sleep's end, a wait's deadline, a retry's next attempt).
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), held AS (
    SELECT j.id FROM conveyor.job j
     WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
       FOR SHARE
), input AS (
    SELECT %(state)s::text AS state, %(result)s::jsonb AS result, %(error)s::jsonb AS error,
           coalesce(%(wake_at)s::timestamptz,
                    n.t + make_interval(secs => %(wake_seconds)s::float8)) AS wake_at,
           n.t
      FROM n
)
INSERT INTO conveyor.workflow_steps AS s (run_id, position, name, kind, state, result, error,
                                         attempts, wake_at, started_at, finished_at)
SELECT %(run_id)s, %(position)s, %(name)s, %(kind)s, i.state, i.result, i.error, %(attempts)s,
       i.wake_at, i.t, CASE WHEN i.state IN ('completed', 'failed') THEN i.t END
  FROM input i
 WHERE EXISTS (SELECT FROM held)
    ON CONFLICT (run_id, position) DO UPDATE
   SET state = excluded.state, result = excluded.result, error = excluded.error,
       attempts = excluded.attempts, wake_at = excluded.wake_at,
       finished_at = excluded.finished_at
 WHERE s.state <> 'completed'
RETURNING s.wake_at;

-- name: workflow_park
-- Park a run until `wake_at` (NULL: until an event wakes it): its job goes back to scheduled
-- (available when the time has come) without counting the attempt, holding no worker slot;
-- the run records why it waits. Fenced by the job's lease token.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), job AS (
    UPDATE conveyor.job j
       SET state = CASE WHEN coalesce(%(wake_at)s::timestamptz <= n.t, false) THEN 'available'
                        ELSE 'scheduled' END,
           run_at = coalesce(%(wake_at)s::timestamptz, '9999-12-30 00:00+00'),
           attempt = greatest(j.attempt - 1, 0),
           lease_expires_at = NULL, lease_token = NULL, worker_id = NULL
      FROM n
     WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
    RETURNING j.id, j.queue, j.state
), run AS (
    UPDATE conveyor.workflow_runs r
       SET state = %(state)s, wake_at = %(wake_at)s::timestamptz, updated_at = n.t,
           wait_event = %(event)s, wait_key = %(key)s, wait_position = %(position)s,
           wait_deadline = CASE WHEN %(event)s::text IS NULL THEN NULL
                                ELSE %(wake_at)s::timestamptz END
      FROM n
     WHERE r.id = %(run_id)s AND EXISTS (SELECT FROM job)
    RETURNING r.id
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', job.queue)) AS n FROM job WHERE job.state = 'available'
)
SELECT job.id, (SELECT notified.n FROM notified) AS notified FROM job;

-- name: workflow_event_lock
-- Take the (name, key) lock that conveyor.send_event takes: a wait's look for an event and its
-- registration happen in turn with any send, so no event slips between them. A statement of
-- its own: the statements after it see what a send committed while this one waited.
SELECT pg_advisory_xact_lock(1668183655, hashtext(%(name)s::text || chr(31) || %(key)s::text))
       IS NULL AS locked;

-- name: workflow_event_consume
-- The oldest unexpired event of (name, key) that no run consumed, now consumed by this run;
-- no row when there is none. Run after workflow_event_lock, in the same transaction.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), ev AS (
    SELECT e.id FROM conveyor.workflow_events e, n
     WHERE e.name = %(name)s AND e.key = %(key)s AND e.consumed_by_run IS NULL
       AND e.expires_at > n.t
     ORDER BY e.id
     LIMIT 1
       FOR UPDATE OF e
)
UPDATE conveyor.workflow_events e
   SET consumed_by_run = %(run_id)s, consumed_at = n.t
  FROM ev, n
 WHERE e.id = ev.id
RETURNING e.id, e.payload;

-- name: workflow_run_finish
-- The run ended (completed with its result, or failed with its error) while its job's lease
-- holds; a run cancelled meanwhile stays cancelled. The completer then ends the job.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), held AS (
    SELECT j.id FROM conveyor.job j
     WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
       FOR SHARE
)
UPDATE conveyor.workflow_runs r
   SET state = %(state)s, result = %(result)s::jsonb, error = %(error)s::jsonb,
       wait_event = NULL, wait_key = NULL, wait_position = NULL, wait_deadline = NULL,
       wake_at = NULL, updated_at = n.t, finished_at = n.t
  FROM n
 WHERE r.id = %(run_id)s AND r.state NOT IN ('completed', 'failed', 'cancelled')
   AND EXISTS (SELECT FROM held)
RETURNING r.id;

-- ------------------------------------------------------------------------------------------------
-- Reading and acting on runs: the public Client and the CLI.

-- name: workflow_run_get
SELECT id, workflow, state, args, result, error, queue, job_id, parent_run_id, parent_position,
       wait_event, wait_key, wait_position, wait_deadline, wake_at, created_at, updated_at,
       started_at, finished_at
  FROM conveyor.workflow_runs
 WHERE id = %(run_id)s;

-- name: workflow_run_list
-- Newest first, keyset-paginated by (created_at, id); every filter is optional.
SELECT id, workflow, state, args, result, error, queue, job_id, parent_run_id, parent_position,
       wait_event, wait_key, wait_position, wait_deadline, wake_at, created_at, updated_at,
       started_at, finished_at
  FROM conveyor.workflow_runs
 WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
   AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
   AND (%(before_created)s::timestamptz IS NULL
        OR (created_at, id) < (%(before_created)s::timestamptz, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s;

-- name: workflow_run_cancel
-- Cancel an unfinished run and, recursively, its unfinished child runs: their waits or sleeps
-- end, their jobs and the unfinished child jobs of their fan-outs are cancelled (a running one
-- is told to stop through NOTIFY, and its next write is refused: the job is gone). Returns a
-- row when the run itself was cancelled.
WITH RECURSIVE n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), tree AS (
    SELECT r.id FROM conveyor.workflow_runs r
     WHERE r.id = %(run_id)s AND r.state NOT IN ('completed', 'failed', 'cancelled')
    UNION
    SELECT c.id FROM conveyor.workflow_runs c JOIN tree ON c.parent_run_id = tree.id
     WHERE c.state NOT IN ('completed', 'failed', 'cancelled')
), run AS (
    UPDATE conveyor.workflow_runs r
       SET state = 'cancelled', wait_event = NULL, wait_key = NULL, wait_position = NULL,
           wait_deadline = NULL, wake_at = NULL, updated_at = n.t, finished_at = n.t
      FROM n
     WHERE r.id IN (SELECT tree.id FROM tree)
    RETURNING r.id, r.job_id
), kids AS (
    SELECT c.job_id FROM conveyor.workflow_children c
     WHERE c.run_id IN (SELECT tree.id FROM tree) AND c.state = 'pending'
), gone AS (
    DELETE FROM conveyor.job j
     WHERE j.id IN (SELECT run.job_id FROM run UNION SELECT kids.job_id FROM kids)
    RETURNING j.*
), moved AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                                   correlation_id, trace_context)
    SELECT g.id, g.task, g.queue, 'cancelled', g.priority, g.attempt, g.max_attempts, g.args,
           g.errors, g.unique_key, g.timeout_seconds, g.created_at, g.run_at, g.attempted_at,
           n.t, NULL, g.worker_id, g.progress, g.correlation_id, g.trace_context
      FROM gone g, n
    RETURNING id
), notified AS (
    SELECT count(pg_notify('conveyor_cancel', g.id::text)) AS n FROM gone g WHERE g.state = 'running'
)
SELECT run.id, (SELECT count(*) FROM run) AS runs, (SELECT count(*) FROM moved) AS jobs,
       (SELECT notified.n FROM notified) AS notified
  FROM run
 WHERE run.id = %(run_id)s;

-- name: workflow_run_retry
-- Resume a failed run from where it failed: its failed step is forgotten (it runs again with a
-- fresh round of attempts), every completed step is kept, and a new job drives it. An
-- unfinished run whose job is gone (it failed for good on crashes or database errors, or was
-- cancelled as a job) resumes the same way.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), run AS (
    UPDATE conveyor.workflow_runs r
       SET state = 'running', error = NULL, result = NULL, finished_at = NULL, updated_at = n.t,
           job_id = nextval('conveyor.job_id_seq')
      FROM n
     WHERE r.id = %(run_id)s
       AND (r.state = 'failed'
            OR (r.state IN ('running', 'sleeping', 'waiting')
                AND NOT EXISTS (SELECT FROM conveyor.job j WHERE j.id = r.job_id)))
    RETURNING r.id, r.workflow, r.queue, r.job_id
), forgotten AS (
    DELETE FROM conveyor.workflow_steps s USING run
     WHERE s.run_id = run.id AND s.state = 'failed'
    RETURNING s.position
), job AS (
    INSERT INTO conveyor.job (id, task, queue, args, run_at, state, created_at)
    SELECT run.job_id, run.workflow, run.queue, jsonb_build_object('run_id', run.id), n.t,
           'available', n.t
      FROM run, n
    RETURNING id, queue
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', job.queue)) AS n FROM job
)
SELECT job.id AS job_id, (SELECT count(*) FROM forgotten) AS forgotten,
       (SELECT notified.n FROM notified) AS notified
  FROM job;

-- name: workflow_send_event
-- Send an event through the SQL function every language uses (docs/workflows.md).
SELECT conveyor.send_event(%(name)s::text, %(key)s::text, %(payload)s::jsonb) AS id;

-- name: workflow_start
-- Start a run through the SQL function every language uses; returns the run's id.
SELECT conveyor.start_workflow(%(workflow)s::text, %(args)s::jsonb, %(run_id)s::text,
                               %(queue)s::text, %(priority)s::int) AS id;

-- name: workflow_prune
-- Delete runs finished before their retention (their steps go with them) and events that
-- expired; at most %(limit)s of each per call.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), runs AS (
    DELETE FROM conveyor.workflow_runs r
     WHERE r.id IN (
           SELECT d.id FROM conveyor.workflow_runs d, n
            WHERE d.finished_at IS NOT NULL
              AND ((d.state = 'completed' AND d.finished_at < n.t - make_interval(secs => %(completed_seconds)s))
                OR (d.state = 'cancelled' AND d.finished_at < n.t - make_interval(secs => %(cancelled_seconds)s))
                OR (d.state = 'failed' AND d.finished_at < n.t - make_interval(secs => %(failed_seconds)s)))
            LIMIT %(limit)s)
    RETURNING r.id
), events AS (
    DELETE FROM conveyor.workflow_events e
     WHERE e.id IN (SELECT x.id FROM conveyor.workflow_events x, n
                     WHERE x.expires_at < n.t LIMIT %(limit)s)
    RETURNING e.id
)
SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM events) AS events;

-- ------------------------------------------------------------------------------------------------
-- Workflow fan-out: a run's child jobs and child runs (ctx.map, ctx.run_workflow), whose ends
-- the trigger of migration 0012 counts (docs/workflows.md).

-- name: workflow_fanout_start
-- Record a fan-out step (waiting) with its counters, its children's jobs (the first
-- %(concurrency)s available, the others parked until the year 9999 for the trigger to let go),
-- their child runs when the children are workflows, and their links; while the parent's job
-- lease holds. One statement for any number of children. Returns how many were created.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), held AS (
    SELECT j.id FROM conveyor.job j
     WHERE j.id = %(job_id)s AND j.lease_token = %(token)s
       FOR SHARE
), items AS (
    SELECT (x.ord - 1)::int AS idx, nextval('conveyor.job_id_seq') AS job_id, x.args,
           CASE WHEN %(is_workflow)s::bool THEN gen_random_uuid()::text END AS child_run_id
      FROM jsonb_array_elements(%(items)s::jsonb) WITH ORDINALITY AS x(args, ord)
     WHERE EXISTS (SELECT FROM held)
), step AS (
    INSERT INTO conveyor.workflow_steps (run_id, position, name, kind, state, attempts,
                                         started_at)
    SELECT %(run_id)s, %(position)s, %(name)s, %(kind)s, 'waiting', 1, n.t
      FROM n
     WHERE EXISTS (SELECT FROM held)
    RETURNING run_id
), fan AS (
    INSERT INTO conveyor.workflow_fanouts (run_id, position, total, remaining, released,
                                           on_failure)
    SELECT %(run_id)s, %(position)s, count(*), count(*), least(count(*), %(concurrency)s),
           %(on_failure)s
      FROM items
    HAVING EXISTS (SELECT FROM step)
    RETURNING run_id, released
), runs AS (
    INSERT INTO conveyor.workflow_runs (id, workflow, args, queue, job_id, parent_run_id,
                                        parent_position, created_at, updated_at)
    SELECT i.child_run_id, %(task)s, i.args, %(queue)s, i.job_id, %(run_id)s, %(position)s,
           n.t, n.t
      FROM items i, n
     WHERE i.child_run_id IS NOT NULL AND EXISTS (SELECT FROM fan)
    RETURNING id
), jobs AS (
    INSERT INTO conveyor.job (id, task, queue, args, priority, max_attempts, run_at, state,
                              timeout_seconds, created_at, concurrency_key, correlation_id)
    SELECT i.job_id, %(task)s, %(queue)s, a.args, %(priority)s, %(max_attempts)s,
           CASE WHEN i.idx < f.released THEN n.t ELSE '9999-12-30 00:00+00' END,
           CASE WHEN i.idx < f.released THEN 'available' ELSE 'scheduled' END,
           %(timeout_seconds)s, n.t,
           (SELECT a.args ->> c.key_arg FROM conveyor.queue c WHERE c.name = %(queue)s),
           %(correlation_id)s
      FROM items i
     CROSS JOIN n
     CROSS JOIN fan f
     CROSS JOIN LATERAL (
           SELECT CASE WHEN i.child_run_id IS NULL THEN i.args
                       ELSE jsonb_build_object('run_id', i.child_run_id) END AS args
     ) a
    RETURNING id, state
), links AS (
    INSERT INTO conveyor.workflow_children (run_id, position, idx, job_id, child_run_id)
    SELECT %(run_id)s, %(position)s, i.idx, i.job_id, i.child_run_id
      FROM items i
     WHERE EXISTS (SELECT FROM fan)
    RETURNING idx
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', %(queue)s)) AS n
      FROM (SELECT FROM jobs WHERE jobs.state = 'available' LIMIT 1) x
)
SELECT (SELECT count(*) FROM links) AS children, (SELECT count(*) FROM runs) AS runs,
       (SELECT count(*) FROM jobs) AS jobs, (SELECT notified.n FROM notified) AS notified
  FROM fan;

-- name: workflow_fanout_lock
-- A fan-out step's state, its row locked: the trigger that ends the step waits for this
-- transaction, so a replay that finds the step still waiting parks before the last child's
-- end can wake it (and then the wake finds the job parked).
SELECT s.state, s.error FROM conveyor.workflow_steps s
 WHERE s.run_id = %(run_id)s AND s.position = %(position)s
   FOR UPDATE;

-- name: workflow_children_list
-- A fan-out's children in input order, with their outcome.
SELECT idx, job_id, child_run_id, state, result, error, finished_at
  FROM conveyor.workflow_children
 WHERE run_id = %(run_id)s AND position = %(position)s
 ORDER BY idx;

-- name: workflow_fanout_list
-- The fan-outs of a run (ctx.map, ctx.run_workflow), by position: how many children, how many
-- still to finish, failed, and let go under the concurrency bound.
SELECT f.position, s.name, s.kind, f.total, f.remaining, f.failed, f.released, f.on_failure
  FROM conveyor.workflow_fanouts f
  JOIN conveyor.workflow_steps s ON s.run_id = f.run_id AND s.position = f.position
 WHERE f.run_id = %(run_id)s
 ORDER BY f.position;

-- name: workflow_child_list
-- A run's children in fan-out order, the first %(limit)s (a map may have 10,000).
SELECT position, idx, job_id, child_run_id, state, error, finished_at
  FROM conveyor.workflow_children
 WHERE run_id = %(run_id)s
 ORDER BY position, idx
 LIMIT %(limit)s;
