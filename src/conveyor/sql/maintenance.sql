-- Periodic services: promote due jobs, rescue expired leases, prune history, leader lock.

-- name: job_promote_due
-- Make scheduled and retryable jobs whose run_at has come available; one NOTIFY per queue.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), due AS (
    SELECT j.id FROM conveyor.job j, n
     WHERE j.state IN ('scheduled', 'retryable') AND j.run_at <= n.t
     ORDER BY j.run_at
     LIMIT %(limit)s
       FOR UPDATE OF j SKIP LOCKED
), moved AS (
    UPDATE conveyor.job j SET state = 'available' FROM due WHERE j.id = due.id RETURNING j.queue
)
SELECT s.queue, s.count, pg_notify('conveyor_jobs', s.queue) IS NULL AS notified
  FROM (SELECT queue, count(*) AS count FROM moved GROUP BY queue) s;

-- name: job_next_run_at
-- The earliest run_at of a scheduled or retryable job (NULL when none wait).
SELECT min(run_at) AS run_at FROM conveyor.job WHERE state IN ('scheduled', 'retryable');

-- name: job_rescue_expired
-- Running jobs whose lease expired (their worker died or was cut off): available again, or
-- failed when out of attempts. The lost attempt is recorded as an error.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), expired AS (
    SELECT j.id,
           j.attempt >= coalesce(j.max_attempts, 1) AS exhausted,
           jsonb_build_array(jsonb_build_object(
               'type', 'LeaseExpired',
               'message', 'worker ' || coalesce(j.worker_id, '?')
                          || ' stopped renewing its lease (crashed, killed or cut off)',
               'traceback', NULL,
               'attempt', j.attempt,
               'at', n.t)) AS error
      FROM conveyor.job j, n
     WHERE j.state = 'running' AND j.lease_expires_at < n.t
     ORDER BY j.lease_expires_at
     LIMIT %(limit)s
       FOR UPDATE OF j SKIP LOCKED
), retried AS (
    UPDATE conveyor.job j
       SET state = 'available', run_at = n.t, errors = j.errors || e.error,
           lease_expires_at = NULL, lease_token = NULL, worker_id = NULL
      FROM expired e, n
     WHERE j.id = e.id AND NOT e.exhausted
    RETURNING j.id, j.queue
), dead AS (
    DELETE FROM conveyor.job j USING expired e WHERE j.id = e.id AND e.exhausted
    RETURNING j.*, e.error AS new_error
), moved AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                                   correlation_id, trace_context)
    SELECT d.id, d.task, d.queue, 'failed', d.priority, d.attempt, d.max_attempts, d.args,
           d.errors || d.new_error, d.unique_key, d.timeout_seconds, d.created_at, d.run_at,
           d.attempted_at, n.t, NULL, d.worker_id, d.progress, d.correlation_id,
           d.trace_context
      FROM dead d, n
    RETURNING id
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n
      FROM (SELECT DISTINCT queue FROM retried) q
)
SELECT (SELECT count(*) FROM retried) AS retried,
       (SELECT count(*) FROM moved) AS failed,
       (SELECT notified.n FROM notified) AS notified;

-- name: job_prune_done
-- Delete finished jobs past their retention; at most %(limit)s per call.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), doomed AS (
    SELECT d.id FROM conveyor.job_done d, n
     -- the first condition lets the BRIN index on finished_at skip recent block ranges
     WHERE d.finished_at < n.t - make_interval(secs => least(%(completed_seconds)s,
                                                             %(cancelled_seconds)s,
                                                             %(failed_seconds)s))
       AND ((d.state = 'completed' AND d.finished_at < n.t - make_interval(secs => %(completed_seconds)s))
        OR (d.state = 'cancelled' AND d.finished_at < n.t - make_interval(secs => %(cancelled_seconds)s))
        OR (d.state = 'failed' AND d.finished_at < n.t - make_interval(secs => %(failed_seconds)s)))
     LIMIT %(limit)s
)
DELETE FROM conveyor.job_done d USING doomed WHERE d.id = doomed.id;

-- name: idempotency_prune
-- Forget idempotency keys older than their retention.
DELETE FROM conveyor.idempotency_key
 WHERE created_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s);

-- name: leader_try_lock
-- Become the maintenance leader while this session lives (session-level advisory lock).
SELECT pg_try_advisory_lock(hashtextextended('conveyor.leader', 0)) AS leader;

-- name: leader_unlock
SELECT pg_advisory_unlock(hashtextextended('conveyor.leader', 0)) AS released;

-- name: table_dead_tuples
-- Dead and live row estimates of the hot table and the history (for the vacuumer).
SELECT relname AS name, coalesce(n_dead_tup, 0) AS dead, coalesce(n_live_tup, 0) AS live
  FROM pg_stat_user_tables WHERE schemaname = 'conveyor' AND relname IN ('job', 'job_done');

-- name: job_table_vacuum
-- VACUUM cannot take parameters or run in a transaction: a fixed statement on autocommit.
VACUUM (ANALYZE) conveyor.job;

-- name: job_done_table_vacuum
-- Also summarizes new block ranges of the BRIN index on finished_at, which the pruner uses.
VACUUM (ANALYZE) conveyor.job_done;

-- name: queue_depths
-- Unfinished jobs per queue and state; for 'available', the age in seconds of the oldest one.
SELECT queue, state, count(*) AS count,
       CASE WHEN state = 'available'
            THEN extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at))::float8
       END AS oldest_seconds
  FROM conveyor.job
 GROUP BY queue, state;
