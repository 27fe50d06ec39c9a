-- Reads behind the dashboard's job search and charts, run through the public Client.

-- name: job_search
-- Newest first, the jobs whose args contain a text among at most %(scan)s filtered rows.
-- Bounded on purpose: a search reads the same number of rows on a million jobs as on a
-- thousand. One row per match, or one row of NULL job columns when nothing matched; every row
-- says how many rows were read and the lowest id read, where the next page goes on.
WITH scanned AS (
    SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
           timeout_seconds, created_at, run_at, attempted_at, finished_at, result, worker_id,
           progress, correlation_id, trace_context
      FROM conveyor.jobs
     WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR task = %(task)s::text)
       AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
     ORDER BY id DESC
     LIMIT %(scan)s
), window_read AS (
    SELECT count(*) AS scanned, min(id) AS scanned_to FROM scanned
)
SELECT w.scanned, w.scanned_to, m.*
  FROM window_read w
  LEFT JOIN LATERAL (
      SELECT s.* FROM scanned s
       WHERE s.args::text ILIKE %(pattern)s::text
       ORDER BY s.id DESC
       LIMIT %(limit)s
  ) m ON true
 ORDER BY m.id DESC;

-- name: job_throughput
-- Finished jobs per minute, queue and state over the last %(seconds)s (BRIN on finished_at).
SELECT date_trunc('minute', finished_at) AS minute, queue, state, count(*) AS count
  FROM conveyor.job_done
 WHERE finished_at >= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s)
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3;

-- name: job_failed_by_task
-- Failed jobs per queue and task, most first (read from the partial index of failed jobs).
SELECT queue, task, count(*) AS count
  FROM conveyor.job_done
 WHERE state = 'failed'
 GROUP BY queue, task
 ORDER BY count(*) DESC, queue, task
 LIMIT %(limit)s;
