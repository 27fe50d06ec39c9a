-- Flows: parents that wait for their children.

-- name: flow_attach
-- Make a just-inserted job the waiting parent of just-inserted children (same transaction,
-- so no worker ever sees the parent available).
WITH parent AS (
    UPDATE conveyor.job SET state = 'waiting', on_child_failure = %(policy)s
     WHERE id = %(parent_id)s
    RETURNING id
)
INSERT INTO conveyor.flow_child (parent_id, child_id, position)
SELECT p.id, c.child_id, c.position
  FROM parent p, unnest(%(child_ids)s::bigint[]) WITH ORDINALITY AS c(child_id, position)
RETURNING child_id;

-- name: flow_advance
-- Waiting parents whose children are all finished become available; with the 'fail' policy a
-- parent whose child failed or was cancelled fails at once. Runs on every worker: SKIP LOCKED
-- hands each parent to one of them.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), parents AS (
    SELECT p.id, p.on_child_failure,
           (SELECT d.id FROM conveyor.flow_child fc
              JOIN conveyor.job_done d ON d.id = fc.child_id
             WHERE fc.parent_id = p.id AND d.state IN ('failed', 'cancelled')
             ORDER BY fc.position LIMIT 1) AS bad_child,
           EXISTS (SELECT FROM conveyor.flow_child fc
                     JOIN conveyor.job c ON c.id = fc.child_id
                    WHERE fc.parent_id = p.id) AS unfinished
      FROM conveyor.job p
     WHERE p.state = 'waiting'
     ORDER BY p.id
     LIMIT %(limit)s
       FOR UPDATE OF p SKIP LOCKED
), ready AS (
    UPDATE conveyor.job j SET state = 'available', run_at = n.t
      FROM parents p, n
     WHERE j.id = p.id AND NOT p.unfinished
       AND (p.bad_child IS NULL OR p.on_child_failure = 'continue')
    RETURNING j.id, j.queue
), doomed AS (
    DELETE FROM conveyor.job j USING parents p
     WHERE j.id = p.id AND p.bad_child IS NOT NULL AND p.on_child_failure = 'fail'
    RETURNING j.*, p.bad_child
), failed AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                                   correlation_id, trace_context)
    SELECT d.id, d.task, d.queue, 'failed', d.priority, d.attempt, d.max_attempts, d.args,
           d.errors || jsonb_build_array(jsonb_build_object(
               'type', 'ChildFailed',
               'message', 'child job ' || d.bad_child || ' failed or was cancelled, and this'
                          || ' flow was enqueued with on_child_failure=''fail''',
               'traceback', NULL, 'attempt', d.attempt, 'at', n.t)),
           d.unique_key, d.timeout_seconds, d.created_at, d.run_at, d.attempted_at, n.t, NULL,
           d.worker_id, d.progress, d.correlation_id, d.trace_context
      FROM doomed d, n
    RETURNING id
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n FROM (SELECT DISTINCT queue FROM ready) q
)
SELECT (SELECT count(*) FROM ready) AS ready, (SELECT count(*) FROM failed) AS failed,
       (SELECT notified.n FROM notified) AS notified;

-- name: flow_children
-- A parent's children in the order they were given, with their state and result.
SELECT j.id, j.task, j.queue, j.state, j.priority, j.attempt, j.max_attempts, j.args, j.errors,
       j.unique_key, j.timeout_seconds, j.created_at, j.run_at, j.attempted_at, j.finished_at,
       j.result, j.worker_id, j.progress, j.correlation_id, j.trace_context
  FROM conveyor.flow_child fc
  JOIN conveyor.jobs j ON j.id = fc.child_id
 WHERE fc.parent_id = %(parent_id)s
 ORDER BY fc.position;

-- name: flow_prune
-- Forget the links of parents that are gone (pruned or deleted).
DELETE FROM conveyor.flow_child fc
 WHERE NOT EXISTS (SELECT FROM conveyor.job j WHERE j.id = fc.parent_id)
   AND NOT EXISTS (SELECT FROM conveyor.job_done d WHERE d.id = fc.parent_id);
