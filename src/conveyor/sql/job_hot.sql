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
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
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
-- drops jobs when full.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
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
    SELECT count(pg_notify('conveyor_jobs', ins.queue)) AS n FROM ins WHERE ins.state = 'available'
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
       (SELECT notified.n FROM notified) AS notified;

-- name: job_reserve_ids
-- Draw %(n)s job ids (for COPY), with the database's now.
SELECT nextval('conveyor.job_id_seq') AS id, coalesce(%(now)s::timestamptz, now()) AS now
  FROM generate_series(1, %(n)s);

-- name: job_set_concurrency_keys
-- After a COPY: give the new jobs of keyed queues their concurrency key.
UPDATE conveyor.job j SET concurrency_key = j.args ->> c.key_arg
  FROM conveyor.queue c
 WHERE j.id = ANY(%(ids)s::bigint[]) AND c.name = j.queue AND c.key_arg IS NOT NULL;

-- name: job_find_by_unique_key
-- The id of the active job holding each unique key (keys with none are left out).
SELECT unique_key, id FROM conveyor.job WHERE unique_key = ANY(%(keys)s::text[]);

-- name: job_fetch_available
-- Claim up to %(limit)s available jobs of one queue and the given tasks for this worker
-- (a queue without controls: see queue.sql for the others).
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
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
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
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
-- retry_in seconds (available at once when 0), or to job_done as failed when retry_in is NULL.
-- Times come from the database clock, so skewed worker hosts agree.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), input AS (
    SELECT f.id, f.token,
           f.error::jsonb || jsonb_build_object('at', n.t) AS error,
           n.t + make_interval(secs => f.retry_in) AS retry_at
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(errors)s::text[],
                  %(retry_in)s::float8[]) AS f(id, token, error, retry_in), n
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
    RETURNING j.*, f.error AS new_error
), moved AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                               correlation_id, trace_context)
    SELECT d.id, d.task, d.queue, 'failed', d.priority, d.attempt, d.max_attempts, d.args,
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
UPDATE conveyor.job j
   SET lease_expires_at = coalesce(%(now)s::timestamptz, now())
                          + make_interval(secs => %(lease_seconds)s)
  FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS h(id, token)
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
-- The columns a COPY of new jobs fills, in the order job_copy_rows() writes them.
COPY conveyor.job (id, task, queue, args, priority, max_attempts, run_at, state,
                   timeout_seconds, created_at, correlation_id, trace_context) FROM STDIN;

-- name: job_notify
-- Wake the workers of a queue that got available jobs by COPY (the INSERTs notify in their own SQL).
SELECT pg_notify('conveyor_jobs', %(queue)s);
