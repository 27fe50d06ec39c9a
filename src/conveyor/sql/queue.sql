-- Queue controls: pause, snooze, shared concurrency and rate limits, backpressure settings.
-- Every change notifies 'conveyor_queue' so workers re-read the controls at once.

-- name: queue_configure
-- Set the named fields (%(fields)s) of a queue's limits, keeping the others; jobs waiting in
-- the queue take their concurrency key from the (new) key_arg.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), up AS (
    INSERT INTO conveyor.queue AS q (name, concurrency, key_arg, key_concurrency, rate_limit,
                                     rate_period, max_depth, on_full, updated_at)
    SELECT %(name)s, %(concurrency)s::int, %(key_arg)s::text, %(key_concurrency)s::int,
           %(rate_limit)s::int, %(rate_period)s::float8, %(max_depth)s::int,
           coalesce(%(on_full)s::text, 'reject'), n.t
      FROM n
        ON CONFLICT (name) DO UPDATE SET
           concurrency = CASE WHEN 'concurrency' = ANY(%(fields)s::text[])
                              THEN excluded.concurrency ELSE q.concurrency END,
           key_arg = CASE WHEN 'key' = ANY(%(fields)s::text[])
                          THEN excluded.key_arg ELSE q.key_arg END,
           key_concurrency = CASE WHEN 'key' = ANY(%(fields)s::text[])
                                  THEN excluded.key_concurrency ELSE q.key_concurrency END,
           rate_limit = CASE WHEN 'rate_limit' = ANY(%(fields)s::text[])
                             THEN excluded.rate_limit ELSE q.rate_limit END,
           rate_period = CASE WHEN 'rate_limit' = ANY(%(fields)s::text[])
                              THEN excluded.rate_period ELSE q.rate_period END,
           max_depth = CASE WHEN 'max_depth' = ANY(%(fields)s::text[])
                            THEN excluded.max_depth ELSE q.max_depth END,
           on_full = CASE WHEN 'max_depth' = ANY(%(fields)s::text[])
                          THEN excluded.on_full ELSE q.on_full END,
           updated_at = excluded.updated_at
    RETURNING q.name, q.key_arg
), rekeyed AS (
    UPDATE conveyor.job j SET concurrency_key = j.args ->> up.key_arg
      FROM up
     WHERE 'key' = ANY(%(fields)s::text[]) AND j.queue = up.name AND j.state <> 'running'
       AND j.concurrency_key IS DISTINCT FROM j.args ->> up.key_arg
    RETURNING j.id
)
SELECT up.name, (SELECT count(*) FROM rekeyed) AS rekeyed,
       pg_notify('conveyor_queue', up.name) IS NULL AS notified
  FROM up;

-- name: queue_pause
-- Stop new jobs of the queue from starting (running ones finish); enqueue goes on.
INSERT INTO conveyor.queue AS q (name, paused_at, updated_at)
VALUES (%(name)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
    ON CONFLICT (name) DO UPDATE SET paused_at = coalesce(q.paused_at, excluded.paused_at),
                                     updated_at = excluded.updated_at
RETURNING q.name, pg_notify('conveyor_queue', q.name) IS NULL AS notified;

-- name: queue_resume
-- Let the queue's jobs start again (also ends a snooze) and wake the workers.
UPDATE conveyor.queue q
   SET paused_at = NULL, snoozed_until = NULL, snooze_reason = NULL,
       updated_at = coalesce(%(now)s::timestamptz, now())
 WHERE q.name = %(name)s
RETURNING q.name, pg_notify('conveyor_queue', q.name) IS NULL AS notified,
          pg_notify('conveyor_jobs', q.name) IS NULL AS woken;

-- name: queue_snooze
-- Hold the queue's jobs back for %(seconds)s (its downstream is down); a longer snooze wins.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
)
INSERT INTO conveyor.queue AS q (name, snoozed_until, snooze_reason, updated_at)
SELECT %(name)s, n.t + make_interval(secs => %(seconds)s), %(reason)s, n.t FROM n
    ON CONFLICT (name) DO UPDATE
   SET snoozed_until = greatest(q.snoozed_until, excluded.snoozed_until),
       snooze_reason = CASE WHEN q.snoozed_until IS NULL
                              OR excluded.snoozed_until >= q.snoozed_until
                            THEN excluded.snooze_reason ELSE q.snooze_reason END,
       updated_at = excluded.updated_at
RETURNING q.name, q.snoozed_until, pg_notify('conveyor_queue', q.name) IS NULL AS notified;

-- name: queue_controls
-- What the producer needs per queue: paused, how long it is snoozed for, and whether claims
-- must go through the limits (a transaction holding the queue row).
SELECT q.name, q.paused_at IS NOT NULL AS paused,
       greatest(extract(epoch FROM q.snoozed_until - coalesce(%(now)s::timestamptz, now())), 0)
         AS snoozed_for,
       (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_arg IS NOT NULL)
         AS limited
  FROM conveyor.queue q
 WHERE q.name = ANY(%(names)s::text[]);

-- name: queue_lock_for_claim
-- Serialize the claims of a limited queue (running-job counts must not race), and say how
-- long to wait when nothing may start: paused (NULL wait), snoozed, or out of rate.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
)
SELECT q.paused_at IS NOT NULL AS paused,
       greatest(
           extract(epoch FROM q.snoozed_until - n.t),
           CASE WHEN q.rate_limit IS NOT NULL AND q.rate_window_used >= q.rate_limit
                THEN extract(epoch FROM q.rate_window_start
                                        + make_interval(secs => q.rate_period) - n.t) END,
           0) AS wait,
       (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.key_arg IS NOT NULL)
         AS limited
  FROM conveyor.queue q, n
 WHERE q.name = %(queue)s
   FOR UPDATE OF q;

-- name: queue_list
-- Every queue with controls or jobs: its controls, waiting and running counts.
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.state <> 'running') AS waiting,
           count(*) FILTER (WHERE j.state = 'running') AS running
      FROM conveyor.job j GROUP BY j.queue
)
SELECT coalesce(q.name, c.queue) AS name, q.paused_at IS NOT NULL AS paused,
       q.snoozed_until, q.snooze_reason, q.concurrency, q.key_arg, q.key_concurrency,
       q.rate_limit, q.rate_period, q.max_depth, coalesce(q.on_full, 'reject') AS on_full,
       coalesce(q.dropped, 0) AS dropped, coalesce(c.waiting, 0) AS waiting,
       coalesce(c.running, 0) AS running
  FROM conveyor.queue q
  FULL JOIN counts c ON c.queue = q.name
 ORDER BY 1;

-- name: queue_make_room
-- Backpressure for queues that drop: move the jobs over max_depth to job_done as cancelled
-- with a 'Dropped' error (the lowest priority first; the oldest or the newest of those, by
-- the queue's policy) and count them on the queue.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), over AS (
    SELECT c.name, c.on_full, c.max_depth, d.depth - c.max_depth AS excess
      FROM conveyor.queue c
     CROSS JOIN LATERAL (
           SELECT count(*) AS depth FROM conveyor.job j
            WHERE j.queue = c.name AND j.state IN ('scheduled', 'available', 'retryable')) d
     WHERE c.name = ANY(%(queues)s::text[]) AND c.on_full IN ('drop_oldest', 'drop_newest')
       AND d.depth > c.max_depth
), victims AS (
    SELECT v.id, o.max_depth FROM over o
     CROSS JOIN LATERAL (
           SELECT j.id FROM conveyor.job j
            WHERE j.queue = o.name AND j.state IN ('scheduled', 'available', 'retryable')
            ORDER BY j.priority, CASE WHEN o.on_full = 'drop_oldest' THEN j.id ELSE -j.id END
            LIMIT o.excess
              FOR UPDATE SKIP LOCKED) v
), gone AS (
    DELETE FROM conveyor.job j USING victims v WHERE j.id = v.id RETURNING j.*, v.max_depth
), moved AS (
    INSERT INTO conveyor.job_done (id, task, queue, state, priority, attempt, max_attempts, args,
                                   errors, unique_key, timeout_seconds, created_at, run_at,
                                   attempted_at, finished_at, result, worker_id, progress,
                                   correlation_id, trace_context)
    SELECT g.id, g.task, g.queue, 'cancelled', g.priority, g.attempt, g.max_attempts, g.args,
           g.errors || jsonb_build_array(jsonb_build_object(
               'type', 'Dropped',
               'message', 'queue ' || g.queue || ' was full (max_depth ' || g.max_depth
                          || '); dropped to make room by its on_full policy',
               'traceback', NULL, 'attempt', g.attempt, 'at', n.t)),
           g.unique_key, g.timeout_seconds, g.created_at, g.run_at, g.attempted_at, n.t, NULL,
           g.worker_id, g.progress, g.correlation_id, g.trace_context
      FROM gone g, n
    RETURNING id, queue
), counted AS (
    UPDATE conveyor.queue c SET dropped = c.dropped + m.k
      FROM (SELECT moved.queue, count(*) AS k FROM moved GROUP BY moved.queue) m
     WHERE c.name = m.queue
    RETURNING c.name
)
SELECT m.id, m.queue, (SELECT count(*) FROM counted) AS queues FROM moved m;

-- ------------------------------------------------------------------------------------------------
-- Read by the gauges and the queue alert rules.

-- name: queue_depths
-- Unfinished jobs per queue and state; for 'available', the age in seconds of the oldest one.
SELECT queue, state, count(*) AS count,
       CASE WHEN state = 'available'
            THEN extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at))::float8
       END AS oldest_seconds
  FROM conveyor.job
 GROUP BY queue, state;

-- ------------------------------------------------------------------------------------------------
-- Read by the Client: status for the CLI and the dashboard.

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
