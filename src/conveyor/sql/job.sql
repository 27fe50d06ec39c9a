-- Jobs: every statement whose subject is a job (conveyor.job and its history).

-- Hot path: enqueue, claim, complete, fail, lease renewal and release.
-- Every time-dependent query takes %(now)s; NULL means the database's clock.
--
-- Fencing: a job's lease_token is set by the claim and cleared by every statement that takes
-- the job out of `running`, so "lease_token = the token I was given" alone proves the caller
-- still holds the job. (Adding "state = 'running'" would tempt the planner onto the lease
-- index, whose dead entries from completed jobs grow between vacuums.)

-- name: job_insert_many
-- Insert jobs given as a JSON array of objects; return each one's id in input order and whether
-- it is new (false when an active job already held its unique key). One NOTIFY per queue.
-- %(relaxed)s: commit without waiting for the WAL flush (an opt-in, docs/enqueue.md).
WITH n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END
             AS relaxed
), input AS (
    -- ids are drawn up front so each input row knows its own id (RETURNING has no order)
    SELECT nextval('conveyor.job_id_seq') AS id, x.*
      FROM jsonb_to_recordset(%(jobs)s::jsonb) AS x(
           ord int, task text, queue text, args jsonb, priority int, max_attempts int,
           run_at timestamptz, delay double precision, unique_key text,
           timeout_seconds double precision, correlation_id text, trace_context jsonb)
), batch AS (
    SELECT coalesce(i.queue, 'default') AS queue, count(*) AS k FROM input i GROUP BY 1
), refused AS (
    -- backpressure: a queue that rejects takes none of the batch's jobs if they overfill it
    SELECT c.name FROM conveyor.queue c JOIN batch b ON b.queue = c.name
     WHERE c.on_full = 'reject'
       AND (SELECT count(*) FROM (SELECT FROM conveyor.job j
                                   WHERE j.queue = c.name
                                     AND j.state IN ('scheduled', 'available', 'retryable')
                                   LIMIT c.max_depth) d) + b.k > c.max_depth
), ins AS (
    INSERT INTO conveyor.job AS j (id, task, queue, args, priority, max_attempts, run_at, state,
                                   unique_key, timeout_seconds, created_at, concurrency_key,
                                   correlation_id, trace_context)
    SELECT i.id, i.task, coalesce(i.queue, 'default'), coalesce(i.args, '{}'),
           coalesce(i.priority, 0), i.max_attempts, r.run_at,
           CASE WHEN r.run_at > n.t THEN 'scheduled' ELSE 'available' END,
           i.unique_key, i.timeout_seconds, n.t, i.args ->> c.key_arg, i.correlation_id,
           i.trace_context
      FROM input i
     CROSS JOIN n
      LEFT JOIN conveyor.queue c ON c.name = coalesce(i.queue, 'default')
     CROSS JOIN LATERAL (
           SELECT coalesce(i.run_at, n.t + make_interval(secs => coalesce(i.delay, 0))) AS run_at
     ) r
     WHERE coalesce(i.queue, 'default') NOT IN (SELECT refused.name FROM refused)
     ORDER BY i.ord
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING j.id, j.unique_key, j.queue, j.state
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n
      FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT i.ord, coalesce(ins.id, dup.id, old.id) AS id, ins.id IS NOT NULL AS created,
       coalesce(i.queue, 'default') IN (SELECT refused.name FROM refused) AS refused,
       EXISTS (SELECT FROM conveyor.queue c
                WHERE c.name = coalesce(i.queue, 'default') AND c.max_depth IS NOT NULL
                  AND c.on_full <> 'reject') AS crowded,
       (SELECT notified.n FROM notified) AS notified
  FROM input i
  LEFT JOIN ins ON ins.id = i.id
  LEFT JOIN LATERAL (
       SELECT d.id FROM ins d WHERE ins.id IS NULL AND d.unique_key = i.unique_key LIMIT 1
  ) dup ON true
  LEFT JOIN LATERAL (
       SELECT o.id FROM conveyor.job o
        WHERE ins.id IS NULL AND dup.id IS NULL AND o.unique_key = i.unique_key
  ) old ON true
 ORDER BY i.ord;

-- name: job_insert_one
-- Insert one job (the common single enqueue, lighter than job_insert_many's JSON recordset);
-- return its id, or the id of the active job already holding its unique key. Same columns
-- as job_insert_many: `refused` when its queue is full and rejects, `crowded` when its queue
-- drops jobs when full. %(relaxed)s: commit without waiting for the WAL flush (an opt-in,
-- docs/enqueue.md; only on the app's own connections, never in a caller's transaction).
WITH n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END
             AS relaxed
), r AS (
    SELECT n.t, coalesce(%(run_at)s::timestamptz,
                         n.t + make_interval(secs => coalesce(%(delay)s::float8, 0))) AS run_at
      FROM n
), c AS (
    SELECT q.key_arg, q.max_depth, q.on_full FROM conveyor.queue q
     WHERE q.name = coalesce(%(queue)s::text, 'default')
), refused AS (
    -- backpressure: a full queue whose policy is to reject takes no new job
    SELECT FROM c
     WHERE c.on_full = 'reject'
       AND (SELECT count(*) FROM (SELECT FROM conveyor.job j
                                   WHERE j.queue = coalesce(%(queue)s::text, 'default')
                                     AND j.state IN ('scheduled', 'available', 'retryable')
                                   LIMIT c.max_depth) d) >= c.max_depth
), ins AS (
    INSERT INTO conveyor.job (task, queue, args, priority, max_attempts, run_at, state,
                              unique_key, timeout_seconds, created_at, concurrency_key,
                              correlation_id, trace_context)
    SELECT %(task)s::text, coalesce(%(queue)s::text, 'default'), %(args)s::jsonb,
           coalesce(%(priority)s::int, 0), %(max_attempts)s::int, r.run_at,
           CASE WHEN r.run_at > r.t THEN 'scheduled' ELSE 'available' END,
           %(unique_key)s::text, %(timeout_seconds)s::float8, r.t,
           (SELECT %(args)s::jsonb ->> c.key_arg FROM c), %(correlation_id)s::text,
           %(trace_context)s::jsonb
      FROM r
     WHERE NOT EXISTS (SELECT FROM refused)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id, queue, state
), notified AS (
    -- %(wake_later)s: the caller wakes the queue itself after the commit (job_wake), see
    -- _store/enqueue.py: NOTIFY holds a cluster-wide lock through its transaction's commit flush
    SELECT count(pg_notify('conveyor_jobs', ins.queue)) AS n FROM ins
     WHERE ins.state = 'available' AND NOT %(wake_later)s::bool
)
SELECT 0 AS ord,
       coalesce((SELECT id FROM ins),
                (SELECT o.id FROM conveyor.job o
                  WHERE o.unique_key = %(unique_key)s::text AND NOT EXISTS (SELECT FROM ins)))
         AS id,
       EXISTS (SELECT FROM ins) AS created,
       EXISTS (SELECT FROM refused) AS refused,
       -- a full queue that drops jobs: the caller runs queue_make_room next
       EXISTS (SELECT FROM c WHERE c.max_depth IS NOT NULL AND c.on_full <> 'reject') AS crowded,
       (SELECT notified.n FROM notified) AS notified,
       (SELECT ins.queue FROM ins WHERE ins.state = 'available') AS wake;

-- name: job_wake
-- Wake the workers of a queue that got an available job, in a transaction of its own after the
-- job's (job_insert_one with wake_later).
SELECT pg_notify('conveyor_jobs', %(queue)s);

-- name: job_reserve_ids
-- Before a COPY of new jobs (%(queues)s, and how many enter each: %(counts)s): draw %(n)s job
-- ids in `ids`, with the database's now; unless a queue that rejects would overfill: `refused`
-- names those, and `ids` is NULL. `keyed` when a queue of the batch takes a concurrency key
-- from an argument (job_copied sets them), `dropping` when one drops jobs when full
-- (queue_make_room follows). %(relaxed)s: commit without waiting for the WAL flush.
WITH b AS (
    SELECT * FROM unnest(%(queues)s::text[], %(counts)s::int[]) AS b(queue, k)
), relaxed AS MATERIALIZED (
    SELECT set_config('synchronous_commit', 'off', true) WHERE %(relaxed)s::bool
), refused AS (
    SELECT c.name FROM conveyor.queue c JOIN b ON b.queue = c.name
     WHERE c.on_full = 'reject'
       AND (SELECT count(*) FROM (SELECT FROM conveyor.job j
                                   WHERE j.queue = c.name
                                     AND j.state IN ('scheduled', 'available', 'retryable')
                                   LIMIT c.max_depth) d) + b.k > c.max_depth
)
SELECT ARRAY(SELECT r.name FROM refused r ORDER BY 1) AS refused,
       CASE WHEN NOT EXISTS (SELECT FROM refused) THEN
            ARRAY(SELECT nextval('conveyor.job_id_seq') FROM generate_series(1, %(n)s))
       END AS ids,
       coalesce(%(now)s::timestamptz, now()) AS now,
       EXISTS (SELECT FROM conveyor.queue c JOIN b ON b.queue = c.name
                WHERE c.key_arg IS NOT NULL) AS keyed,
       EXISTS (SELECT FROM conveyor.queue c JOIN b ON b.queue = c.name
                WHERE c.max_depth IS NOT NULL AND c.on_full <> 'reject') AS dropping,
       EXISTS (SELECT FROM relaxed) AS relaxed;

-- name: job_copied
-- After a COPY of new jobs, in its transaction: give the jobs %(ids)s of keyed queues their
-- concurrency key (pass no ids when no queue of the batch is keyed) and wake the workers of the
-- queues %(wake)s that got available jobs (NOTIFY is delivered at commit).
WITH keyed AS (
    UPDATE conveyor.job j SET concurrency_key = j.args ->> c.key_arg
      FROM conveyor.queue c
     WHERE j.id = ANY(%(ids)s::bigint[]) AND c.name = j.queue AND c.key_arg IS NOT NULL
    RETURNING j.id
)
SELECT (SELECT count(*) FROM keyed) AS keyed,
       (SELECT count(pg_notify('conveyor_jobs', q.name))
          FROM unnest(%(wake)s::text[]) AS q(name)) AS notified;

-- name: job_find_by_unique_key
-- The id of the active job holding each unique key (keys with none are left out).
SELECT unique_key, id FROM conveyor.job WHERE unique_key = ANY(%(keys)s::text[]);

-- name: job_fetch_available
-- Claim up to %(limit)s available jobs of one queue and the given tasks for this worker
-- (a queue without controls: see queue.sql for the others). %(relaxed)s: commit without
-- waiting for the WAL flush (WorkerConfig.durable_transitions off, docs/worker.md).
WITH n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END AS relaxed
), picked AS (
    -- CTE fences the planner: LIMIT and SKIP LOCKED must apply before the UPDATE
    SELECT j.id
      FROM conveyor.job j
     WHERE j.state = 'available' AND j.queue = %(queue)s AND j.task = ANY(%(tasks)s::text[])
       -- a paused, snoozed or limited queue is claimed by job_fetch_limited or not at all
       AND NOT EXISTS (SELECT FROM conveyor.queue c, n
                        WHERE c.name = %(queue)s
                          AND (c.paused_at IS NOT NULL OR c.snoozed_until > n.t
                               OR c.concurrency IS NOT NULL OR c.rate_limit IS NOT NULL
                               OR c.key_arg IS NOT NULL))
     ORDER BY j.priority DESC, j.id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE conveyor.job j
   SET state = 'running',
       attempt = j.attempt + 1,
       attempted_at = n.t,
       lease_expires_at = n.t + make_interval(secs => %(lease_seconds)s),
       lease_token = %(token)s,
       worker_id = %(worker_id)s,
       max_attempts = coalesce(j.max_attempts, (
           SELECT d.max_attempts
             FROM unnest(%(tasks)s::text[], %(task_max_attempts)s::int[]) AS d(task, max_attempts)
            WHERE d.task = j.task LIMIT 1))
  FROM n
 -- ARRAY(...) keeps the planner on the primary key: a join with `picked` is planned as a hash
 -- join over a sequential scan of the whole table when a few thousand jobs wait
 WHERE j.id = ANY(ARRAY(SELECT picked.id FROM picked))
-- errors stay behind: the handler does not need them, and parsing them costs every claim
RETURNING j.id, j.task, j.queue, j.state, j.priority, j.attempt, j.max_attempts, j.args,
          NULL::jsonb AS errors, j.unique_key, j.timeout_seconds, j.created_at, j.run_at, j.attempted_at,
          NULL::timestamptz AS finished_at, NULL::jsonb AS result, j.worker_id,
          j.correlation_id, j.trace_context;

-- name: job_complete_many
-- Move jobs still held by the given lease tokens to job_done as completed; return their ids.
-- %(relaxed)s: as in job_fetch_available.
WITH n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END AS relaxed
), done AS (
    DELETE FROM conveyor.job j
     USING unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(results)s::text[]) AS c(id, token, result)
     WHERE j.id = ANY(%(ids)s::bigint[])  -- primary key lookups
       AND j.id = c.id AND j.lease_token = c.token
    RETURNING j.*, c.result AS new_result
)
INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                               errors, unique_key, timeout_seconds, created_at, run_at,
                               attempted_at, finished_at, result, worker_id, progress,
                               correlation_id, trace_context)
SELECT d.id, d.task, d.queue, 'completed', d.priority, d.attempt, d.max_attempts, d.args,
       d.errors, d.unique_key, d.timeout_seconds, d.created_at, d.run_at, d.attempted_at, n.t,
       d.new_result::jsonb, d.worker_id, d.progress, d.correlation_id, d.trace_context
  FROM done d, n
RETURNING id;

-- name: job_fail_many
-- Record a failed attempt of jobs still held by their lease tokens: retryable again after
-- retry_in seconds (available at once when 0), or to job_done as failed when retry_in is NULL
-- (as cancelled when cancel: an endpoint answered 410 Gone).
-- Times come from the database clock, so skewed worker hosts agree. %(relaxed)s: as in
-- job_fetch_available.
WITH n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END AS relaxed
), input AS (
    SELECT f.id, f.token,
           f.error::jsonb || jsonb_build_object('at', n.t) AS error,
           n.t + make_interval(secs => f.retry_in) AS retry_at,
           coalesce(f.cancel, false) AS cancel
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(errors)s::text[],
                  %(retry_in)s::float8[], %(cancel)s::bool[])
           AS f(id, token, error, retry_in, cancel), n
), retried AS (
    UPDATE conveyor.job j
       SET state = CASE WHEN f.retry_at <= n.t THEN 'available' ELSE 'retryable' END,
           run_at = f.retry_at,
           errors = j.errors || jsonb_build_array(f.error),
           lease_expires_at = NULL,
           lease_token = NULL
      FROM input f, n
     WHERE j.id = ANY(%(ids)s::bigint[])  -- primary key lookups
       AND j.id = f.id AND j.lease_token = f.token
       AND f.retry_at IS NOT NULL
    RETURNING j.id, j.queue, j.state
), dead AS (
    DELETE FROM conveyor.job j
     USING input f
     WHERE j.id = ANY(%(ids)s::bigint[])  -- primary key lookups
       AND j.id = f.id AND j.lease_token = f.token AND f.retry_at IS NULL
    RETURNING j.*, f.error AS new_error, f.cancel AS new_cancel
), moved AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                               correlation_id, trace_context)
    SELECT d.id, d.task, d.queue, CASE WHEN d.new_cancel THEN 'cancelled' ELSE 'failed' END,
           d.priority, d.attempt, d.max_attempts, d.args,
           d.errors || jsonb_build_array(d.new_error), d.unique_key, d.timeout_seconds,
           d.created_at, d.run_at, d.attempted_at, n.t, NULL, d.worker_id, d.progress,
           d.correlation_id, d.trace_context
      FROM dead d, n
    RETURNING id
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n
      FROM (SELECT DISTINCT queue FROM retried WHERE state = 'available') q
)
SELECT id, 'retried' AS outcome, (SELECT notified.n FROM notified) AS notified FROM retried
UNION ALL
SELECT id, 'failed' AS outcome, NULL FROM moved;

-- name: job_extend_lease
-- Renew the leases of jobs this worker still holds; return the ids still held.
-- %(relaxed)s: as in job_fetch_available.
WITH n AS MATERIALIZED (
    SELECT CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END AS relaxed
)
UPDATE conveyor.job j
   SET lease_expires_at = coalesce(%(now)s::timestamptz, now())
                          + make_interval(secs => %(lease_seconds)s)
  FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS h(id, token), n
 WHERE j.id = ANY(%(ids)s::bigint[])  -- primary key lookups
   AND j.id = h.id AND j.lease_token = h.token
RETURNING j.id;

-- name: job_release_many
-- Put running jobs back as available without counting the attempt (graceful shutdown).
WITH released AS (
    UPDATE conveyor.job j
       SET state = 'available',
           attempt = greatest(j.attempt - 1, 0),
           run_at = coalesce(%(now)s::timestamptz, now()),
           lease_expires_at = NULL,
           lease_token = NULL,
           worker_id = NULL
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS h(id, token)
     WHERE j.id = ANY(%(ids)s::bigint[])  -- primary key lookups
       AND j.id = h.id AND j.lease_token = h.token
    RETURNING j.id, j.queue
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n
      FROM (SELECT DISTINCT queue FROM released) q
)
SELECT r.id, (SELECT notified.n FROM notified) AS notified FROM released r;

-- name: job_copy
-- The columns a COPY of new jobs fills, in the order _store/enqueue.py's _copy_rows() writes them
-- (binary: _COPY_TYPES there gives their types).
COPY conveyor.job (id, task, queue, args, priority, max_attempts, run_at, state,
                   timeout_seconds, created_at, correlation_id, trace_context)
FROM STDIN (FORMAT BINARY);

-- ------------------------------------------------------------------------------------------------
-- Claims and snoozes that go through a queue's controls.

-- name: job_snooze_queue
-- Put a running job back without counting its attempt and snooze its queue: the handler said
-- the queue's downstream is down. Fenced by the lease token like every outcome.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), back AS (
    UPDATE conveyor.job j
       SET state = 'available', attempt = greatest(j.attempt - 1, 0), run_at = n.t,
           lease_expires_at = NULL, lease_token = NULL, worker_id = NULL
      FROM n
     WHERE j.id = %(id)s AND j.lease_token = %(token)s
    RETURNING j.id, j.queue
), snoozed AS (
    INSERT INTO conveyor.queue AS q (name, snoozed_until, snooze_reason, updated_at)
    SELECT b.queue, n.t + make_interval(secs => %(seconds)s), %(reason)s, n.t FROM back b, n
        ON CONFLICT (name) DO UPDATE
       SET snoozed_until = greatest(q.snoozed_until, excluded.snoozed_until),
           snooze_reason = excluded.snooze_reason, updated_at = excluded.updated_at
    RETURNING q.name
)
SELECT b.id, pg_notify('conveyor_queue', b.queue) IS NULL AS notified,
       (SELECT count(*) FROM snoozed) AS snoozed
  FROM back b;

-- name: job_fetch_limited
-- Claim like job_fetch_available, within the queue's limits: running jobs of the queue (all
-- workers), jobs started in the current rate window, and running jobs per concurrency key.
-- Keyed jobs are taken round-robin: every key's best job before any key's second, starting
-- after the key where the last claim stopped, so a key with 100,000 jobs cannot starve one
-- with 10. Runs after queue_lock_for_claim, in its transaction. %(relaxed)s: as in
-- job_fetch_available (for the whole transaction).
WITH RECURSIVE n AS MATERIALIZED (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t,
           CASE WHEN %(relaxed)s::bool THEN set_config('synchronous_commit', 'off', true) END AS relaxed
), c AS (
    SELECT q.* FROM conveyor.queue q WHERE q.name = %(queue)s
), win AS (
    SELECT CASE WHEN c.rate_window_start IS NULL
                  OR n.t >= c.rate_window_start + make_interval(secs => c.rate_period)
                THEN n.t ELSE c.rate_window_start END AS start,
           CASE WHEN c.rate_window_start IS NULL
                  OR n.t >= c.rate_window_start + make_interval(secs => c.rate_period)
                THEN 0 ELSE c.rate_window_used END AS used
      FROM c, n
), running AS (
    SELECT j.concurrency_key AS key FROM conveyor.job j
     WHERE j.state = 'running' AND j.queue = %(queue)s
), room AS (
    SELECT greatest(0, least(
               %(limit)s::int,
               coalesce(c.concurrency - (SELECT count(*) FROM running), %(limit)s::int),
               coalesce(c.rate_limit - win.used, %(limit)s::int))) AS n
      FROM c, win, n
     WHERE c.paused_at IS NULL AND (c.snoozed_until IS NULL OR c.snoozed_until <= n.t)
), walk (key, depth) AS (
    (SELECT j.concurrency_key, 1 FROM conveyor.job j, c
      WHERE j.state = 'available' AND j.queue = %(queue)s AND c.key_arg IS NOT NULL
        AND j.concurrency_key > coalesce(c.key_cursor, '')
      ORDER BY j.concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.concurrency_key FROM conveyor.job j
             WHERE j.state = 'available' AND j.queue = %(queue)s
               AND j.concurrency_key > w.key
             ORDER BY j.concurrency_key LIMIT 1),
           w.depth + 1
      FROM walk w
     WHERE w.key IS NOT NULL AND w.depth < %(limit)s::int
), keys AS (
    SELECT w.key, w.depth,
           c.key_concurrency - (SELECT count(*) FROM running r WHERE r.key = w.key) AS free
      FROM walk w, c
     WHERE w.key IS NOT NULL
), keyed AS (
    SELECT p.id, p.priority, row_number() OVER (PARTITION BY p.key ORDER BY p.priority DESC, p.id)
             AS turn, p.depth
      FROM keys k
     CROSS JOIN LATERAL (
           SELECT j.id, j.priority, j.concurrency_key AS key, k.depth FROM conveyor.job j
            WHERE j.state = 'available' AND j.queue = %(queue)s AND j.concurrency_key = k.key
              AND j.task = ANY(%(tasks)s::text[])
            ORDER BY j.priority DESC, j.id
            LIMIT greatest(k.free, 0)
              FOR UPDATE SKIP LOCKED
     ) p
), plain AS (
    -- jobs without a key: no per-key limit; they take turns with the keys
    SELECT s.id, s.priority, row_number() OVER (ORDER BY s.priority DESC, s.id) AS turn,
           0 AS depth
      FROM (SELECT j.id, j.priority FROM conveyor.job j
             WHERE j.state = 'available' AND j.queue = %(queue)s AND j.concurrency_key IS NULL
               AND j.task = ANY(%(tasks)s::text[])
             ORDER BY j.priority DESC, j.id
             LIMIT coalesce((SELECT room.n FROM room), 0)
               FOR UPDATE SKIP LOCKED) s
), picked AS (
    SELECT x.id FROM (SELECT * FROM keyed UNION ALL SELECT * FROM plain) x
     ORDER BY x.turn, x.priority DESC, x.depth, x.id
     LIMIT coalesce((SELECT room.n FROM room), 0)
), claimed AS (
    UPDATE conveyor.job j
       SET state = 'running',
           attempt = j.attempt + 1,
           attempted_at = n.t,
           lease_expires_at = n.t + make_interval(secs => %(lease_seconds)s),
           lease_token = %(token)s,
           worker_id = %(worker_id)s,
           max_attempts = coalesce(j.max_attempts, (
               SELECT d.max_attempts
                 FROM unnest(%(tasks)s::text[], %(task_max_attempts)s::int[]) AS d(task, max_attempts)
                WHERE d.task = j.task LIMIT 1))
      FROM n
     WHERE j.id = ANY(ARRAY(SELECT picked.id FROM picked))
    RETURNING j.id, j.task, j.queue, j.state, j.priority, j.attempt, j.max_attempts, j.args,
              NULL::jsonb AS errors, j.unique_key, j.timeout_seconds, j.created_at, j.run_at,
              j.attempted_at, NULL::timestamptz AS finished_at, NULL::jsonb AS result,
              j.worker_id, j.correlation_id, j.trace_context
), counted AS (
    UPDATE conveyor.queue q
       SET rate_window_start = CASE WHEN q.rate_limit IS NULL THEN NULL ELSE win.start END,
           rate_window_used = CASE WHEN q.rate_limit IS NULL THEN 0
                                   ELSE win.used + (SELECT count(*) FROM claimed) END,
           -- the walk reached the last key: start from the first one next time
           key_cursor = CASE WHEN (SELECT count(*) FROM keys) < %(limit)s::int THEN NULL
                             ELSE (SELECT k.key FROM keys k ORDER BY k.depth DESC LIMIT 1) END
      FROM win
     WHERE q.name = %(queue)s
    RETURNING q.name
)
SELECT * FROM claimed;

-- ------------------------------------------------------------------------------------------------
-- Progress reported by running jobs.

-- name: job_set_progress
-- A running job reports progress; fenced by its lease token like every write of a worker.
UPDATE conveyor.job
   SET progress = jsonb_build_object('value', %(value)s::float8, 'message', %(message)s::text,
                                     'at', coalesce(%(now)s::timestamptz, now()))
 WHERE id = %(id)s AND lease_token = %(token)s
RETURNING id;

-- ------------------------------------------------------------------------------------------------
-- Periodic services: promote due jobs, rescue expired leases, prune history, vacuum.

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

-- ------------------------------------------------------------------------------------------------
-- Reading and acting on jobs and queues: the public Client, the CLI and the dashboard.

-- name: job_get
SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
       timeout_seconds, created_at, run_at, attempted_at, finished_at, result, worker_id,
       progress, correlation_id, trace_context
  FROM conveyor.jobs WHERE id = %(id)s;

-- name: job_list
-- Newest first, keyset-paginated by id; every filter is optional.
SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
       timeout_seconds, created_at, run_at, attempted_at, finished_at, result, worker_id,
       progress, correlation_id, trace_context
  FROM conveyor.jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(task)s::text IS NULL OR task = %(task)s::text)
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: job_retry_many
-- Put failed or cancelled jobs back as available with a fresh round of attempts; errors stay.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), back AS (
    DELETE FROM conveyor.job_done d
     WHERE d.state IN ('failed', 'cancelled')
       AND (%(ids)s::bigint[] IS NULL OR d.id = ANY(%(ids)s::bigint[]))
       AND (%(task)s::text IS NULL OR d.task = %(task)s::text)
       AND (%(queue)s::text IS NULL OR d.queue = %(queue)s::text)
       AND (%(only_failed)s::boolean IS NOT TRUE OR d.state = 'failed')
    RETURNING d.*
), ins AS (
    INSERT INTO conveyor.job (id, task, queue, state, priority, attempt, max_attempts, args,
                              errors, unique_key, timeout_seconds, created_at, run_at,
                              concurrency_key, correlation_id, trace_context)
    SELECT b.id, b.task, b.queue, 'available', b.priority, b.attempt,
           b.attempt + b.max_attempts, b.args, b.errors,
           -- an active job may hold the key by now; the retried job then runs without it
           CASE WHEN EXISTS (SELECT 1 FROM conveyor.job a WHERE a.unique_key = b.unique_key)
                THEN NULL ELSE b.unique_key END,
           b.timeout_seconds, b.created_at, n.t,
           (SELECT b.args ->> c.key_arg FROM conveyor.queue c WHERE c.name = b.queue),
           b.correlation_id, b.trace_context
      FROM back b, n
    RETURNING id, queue
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', q.queue)) AS n FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT i.id, (SELECT notified.n FROM notified) AS notified FROM ins i;

-- name: job_cancel_many
-- Cancel jobs that have not finished; a running one is told to stop through NOTIFY.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), gone AS (
    DELETE FROM conveyor.job j WHERE j.id = ANY(%(ids)s::bigint[]) RETURNING j.*
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
SELECT m.id, (SELECT notified.n FROM notified) AS notified FROM moved m;

-- name: job_delete_many
-- Delete jobs for good, except running ones (cancel those first).
WITH hot AS (
    DELETE FROM conveyor.job WHERE id = ANY(%(ids)s::bigint[]) AND state <> 'running' RETURNING id
), done AS (
    DELETE FROM conveyor.job_done WHERE id = ANY(%(ids)s::bigint[]) RETURNING id
)
SELECT id FROM hot UNION ALL SELECT id FROM done;

-- name: job_orphaned_tasks
-- Waiting jobs whose task no live worker serving their queue has registered.
SELECT j.queue, j.task, count(*) AS count
  FROM conveyor.job j
 WHERE j.state IN ('available', 'scheduled', 'retryable')
   AND NOT EXISTS (
       SELECT 1 FROM conveyor.worker w
        WHERE w.last_seen > coalesce(%(now)s::timestamptz, now())
                            - make_interval(secs => %(live_seconds)s)
          AND j.task = ANY(w.tasks) AND j.queue = ANY(w.queues))
 GROUP BY j.queue, j.task
 ORDER BY j.queue, j.task;

-- name: job_waiting_elsewhere
-- Waiting jobs of some tasks in queues other than some: a worker serving only those queues never
-- claims them (a job enqueued from SQL without its task's queue waits in 'default').
SELECT queue, task, count(*) AS count
  FROM conveyor.job
 WHERE state IN ('available', 'scheduled', 'retryable')
   AND task = ANY(%(tasks)s::text[])
   AND queue <> ALL(%(queues)s::text[])
 GROUP BY queue, task
 ORDER BY queue, task;
