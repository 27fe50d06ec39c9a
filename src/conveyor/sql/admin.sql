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

-- name: queue_counts
-- Jobs per queue and state.
SELECT queue, state, count(*) AS count FROM conveyor.job GROUP BY queue, state
UNION ALL
SELECT queue, state, count(*) AS count FROM conveyor.job_done GROUP BY queue, state;

-- name: queue_oldest_available
-- Age in seconds of the oldest available job per queue. An infinite run_at (written by hand)
-- has no age: subtracting it is an error that would fail the whole status, so it is skipped.
SELECT queue,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now())
                          - min(run_at) FILTER (WHERE isfinite(run_at)))::float8 AS age_seconds
  FROM conveyor.job WHERE state = 'available' GROUP BY queue;

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

-- name: worker_list_live
SELECT id, hostname, pid, queues, tasks, started_at, last_seen
  FROM conveyor.worker
 WHERE last_seen > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(live_seconds)s)
 ORDER BY started_at;
