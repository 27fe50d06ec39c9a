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
SELECT s.state FROM conveyor.workflow_steps s
 WHERE s.run_id = %(run_id)s AND s.position = %(position)s
   FOR UPDATE;

-- name: workflow_children_list
-- A fan-out's children in input order, with their outcome.
SELECT idx, job_id, child_run_id, state, result, error, finished_at
  FROM conveyor.workflow_children
 WHERE run_id = %(run_id)s AND position = %(position)s
 ORDER BY idx;
