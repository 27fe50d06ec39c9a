-- Cron schedules: register them, read their progress, enqueue one job per time slot.
-- Every time-dependent query takes %(now)s; NULL means the database's clock.

-- name: cron_schedule_register
-- Record the app's schedules. A new one starts at its given next_slot; a known one keeps its
-- progress unless its cron expression or time zone changed. Rows go in name order, so workers
-- registering at once lock them in the same order.
INSERT INTO conveyor.cron_schedule AS c (name, task, cron, timezone, catch_up, next_slot,
                                         created_at, updated_at)
SELECT s.name, s.task, s.cron, s.timezone, s.catch_up, s.next_slot, n.t, n.t
  FROM jsonb_to_recordset(%(schedules)s::jsonb) AS s(
       name text, task text, cron text, timezone text, catch_up text, next_slot timestamptz),
       (SELECT coalesce(%(now)s::timestamptz, now()) AS t) n
 ORDER BY s.name
    ON CONFLICT (name) DO UPDATE
   SET task = excluded.task,
       cron = excluded.cron,
       timezone = excluded.timezone,
       catch_up = excluded.catch_up,
       next_slot = CASE WHEN c.cron = excluded.cron AND c.timezone = excluded.timezone
                        THEN c.next_slot ELSE excluded.next_slot END,
       updated_at = excluded.updated_at
 WHERE c.endpoint IS NULL
   AND (c.task, c.cron, c.timezone, c.catch_up)
       IS DISTINCT FROM (excluded.task, excluded.cron, excluded.timezone, excluded.catch_up);

-- name: cron_schedule_state
-- The progress of the named schedules, and the instant to use as now (one row even when none
-- is registered yet).
SELECT n.t AS now, c.name, c.next_slot, c.last_slot
  FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS t) n
  LEFT JOIN conveyor.cron_schedule c ON c.name = ANY(%(names)s::text[]);

-- name: cron_slot_enqueue
-- Claim one time slot of a schedule and, only if this statement claimed it, insert its job,
-- advance the schedule and wake workers. Any number of workers may race for the same slot;
-- the primary key of cron_slot lets exactly one through. A slot at or before the schedule's
-- last enqueued one is refused, so a worker that stalled mid-pass cannot enqueue an old time.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), claimed AS (
    INSERT INTO conveyor.cron_slot (schedule, slot, job_id, created_at)
    SELECT %(schedule)s::text, %(slot)s::timestamptz, nextval('conveyor.job_id_seq'), n.t
      FROM n
     WHERE NOT EXISTS (
           SELECT 1 FROM conveyor.cron_schedule c
            WHERE c.name = %(schedule)s::text AND c.last_slot >= %(slot)s::timestamptz)
        ON CONFLICT (schedule, slot) DO NOTHING
    RETURNING job_id
), ins AS (
    INSERT INTO conveyor.job (id, task, queue, args, priority, max_attempts, run_at, state,
                              unique_key, timeout_seconds, created_at)
    SELECT claimed.job_id, %(task)s::text,
           coalesce(%(queue)s::text,
                    (SELECT e.queue FROM conveyor.endpoint e WHERE e.name = %(task)s::text),
                    'default'),
           %(args)s::jsonb, %(priority)s::int,
           %(max_attempts)s::int, n.t, 'available', %(unique_key)s::text,
           %(timeout_seconds)s::float8, n.t
      FROM claimed, n
    RETURNING id, queue
), advanced AS (
    UPDATE conveyor.cron_schedule c
       SET last_slot = greatest(c.last_slot, %(slot)s::timestamptz),
           next_slot = greatest(c.next_slot, %(next_slot)s::timestamptz),
           updated_at = n.t
      FROM ins, n
     WHERE c.name = %(schedule)s::text
    RETURNING c.name
), notified AS (
    SELECT count(pg_notify('conveyor_jobs', ins.queue)) AS n FROM ins
)
SELECT ins.id, (SELECT notified.n FROM notified) AS notified,
       (SELECT count(*) FROM advanced) AS advanced
  FROM ins;

-- name: cron_schedule_skip
-- Move a schedule past times it missed (catch_up = 'skip'); never moves it back.
UPDATE conveyor.cron_schedule
   SET next_slot = %(next_slot)s::timestamptz, updated_at = coalesce(%(now)s::timestamptz, now())
 WHERE name = %(schedule)s::text AND next_slot < %(next_slot)s::timestamptz
RETURNING name;

-- name: cron_slot_prune
-- Forget enqueued slots older than their retention, except each schedule's latest one.
WITH gone AS (
    DELETE FROM conveyor.cron_slot s
     WHERE s.created_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s)
       AND NOT EXISTS (
           SELECT 1 FROM conveyor.cron_schedule c WHERE c.name = s.schedule AND c.last_slot = s.slot)
    RETURNING 1
)
SELECT count(*) AS count FROM gone;

-- name: cron_schedule_list
-- Every schedule with the job of its latest enqueued slot (`conveyor cron list`).
SELECT c.name, c.task, c.cron, c.timezone, c.catch_up, c.last_slot, c.next_slot,
       c.created_at, c.updated_at, s.job_id AS last_job_id, j.state AS last_job_state
  FROM conveyor.cron_schedule c
  LEFT JOIN conveyor.cron_slot s ON s.schedule = c.name AND s.slot = c.last_slot
  LEFT JOIN conveyor.jobs j ON j.id = s.job_id
 ORDER BY c.name;

-- name: database_now
-- The instant to use as now: the one given, or the database's clock when it is NULL.
SELECT coalesce(%(now)s::timestamptz, now()) AS now;

-- name: cron_schedule_add
-- Store a schedule for an endpoint (`conveyor cron add --endpoint`). One row always: whether
-- the endpoint exists, and the name when this statement inserted the schedule.
WITH e AS (
    SELECT name FROM conveyor.endpoint WHERE name = %(endpoint)s::text
), ins AS (
    INSERT INTO conveyor.cron_schedule (name, task, cron, timezone, catch_up, next_slot,
                                        endpoint, created_at, updated_at)
    SELECT %(name)s::text, e.name, %(cron)s::text, %(timezone)s::text, %(catch_up)s::text,
           %(next_slot)s::timestamptz, e.name, n.t, n.t
      FROM e, (SELECT coalesce(%(now)s::timestamptz, now()) AS t) n
        ON CONFLICT (name) DO NOTHING
    RETURNING name
)
SELECT EXISTS (SELECT 1 FROM e) AS endpoint_found, (SELECT name FROM ins) AS inserted;

-- name: cron_schedule_remove
-- Forget a schedule (any: stored, or recorded by an app's workers, which record it again when
-- they start).
DELETE FROM conveyor.cron_schedule WHERE name = %(name)s::text RETURNING name;

-- name: cron_schedule_stored
-- The schedules stored in the database (those for an endpoint), which every worker runs.
SELECT name, cron, timezone, catch_up, endpoint
  FROM conveyor.cron_schedule
 WHERE endpoint IS NOT NULL
 ORDER BY name;
