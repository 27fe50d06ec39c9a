-- Worker registry, and the leader lock one worker holds to run the periodic services.

-- name: worker_register
-- Announce a live worker and the queues and tasks it serves.
INSERT INTO conveyor.worker (id, hostname, pid, queues, tasks, started_at, last_seen)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(tasks)s::text[],
        coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (id) DO UPDATE
   SET queues = excluded.queues, tasks = excluded.tasks, last_seen = excluded.last_seen;

-- name: worker_heartbeat
-- Mark a worker alive now.
UPDATE conveyor.worker SET last_seen = coalesce(%(now)s::timestamptz, now()) WHERE id = %(id)s
RETURNING id;

-- name: worker_deregister
DELETE FROM conveyor.worker WHERE id = %(id)s;

-- name: worker_prune_stale
-- Forget workers not seen for %(seconds)s seconds.
DELETE FROM conveyor.worker
 WHERE last_seen < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s);

-- ------------------------------------------------------------------------------------------------
-- Leader lock (the periodic services run on one worker).

-- name: leader_try_lock
-- Become the maintenance leader while this session lives (session-level advisory lock).
SELECT pg_try_advisory_lock(hashtextextended('conveyor.leader', 0)) AS leader;

-- name: leader_unlock
SELECT pg_advisory_unlock(hashtextextended('conveyor.leader', 0)) AS released;

-- ------------------------------------------------------------------------------------------------
-- Read by the Client: the live workers in status.

-- name: worker_list_live
SELECT id, hostname, pid, queues, tasks, started_at, last_seen
  FROM conveyor.worker
 WHERE last_seen > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(live_seconds)s)
 ORDER BY started_at;
