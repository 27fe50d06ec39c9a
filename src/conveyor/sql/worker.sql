-- Worker registry, and the leader lease one worker holds to run the periodic services.

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

-- name: database_ping
-- The health check's question: does the database answer (through the pooler, if any)?
SELECT 1 AS ok;

-- name: worker_deregister
DELETE FROM conveyor.worker WHERE id = %(id)s;

-- name: worker_prune_stale
-- Forget workers not seen for %(seconds)s seconds.
DELETE FROM conveyor.worker
 WHERE last_seen < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s);

-- ------------------------------------------------------------------------------------------------
-- Leader lease (the periodic services run on one worker): a row renewed by the database clock,
-- which works through a transaction-mode pooler as a session advisory lock cannot.

-- name: leader_attempt_elect
-- Take the lease when it is free or expired, or renew it when it is ours; a row back means this
-- holder leads until its expires_at.
INSERT INTO conveyor.leader AS l (name, holder, elected_at, expires_at)
VALUES (%(name)s, %(holder)s, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(ttl_seconds)s))
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder,
       expires_at = excluded.expires_at,
       elected_at = CASE WHEN l.holder = excluded.holder THEN l.elected_at
                         ELSE excluded.elected_at END
 WHERE l.holder = excluded.holder OR l.expires_at <= excluded.elected_at
RETURNING l.holder, l.expires_at;

-- name: leader_resign
-- Give the lease up (a clean shutdown), so another worker takes it on its next attempt.
DELETE FROM conveyor.leader WHERE name = %(name)s AND holder = %(holder)s;

-- ------------------------------------------------------------------------------------------------
-- Read by the Client: the live workers in status.

-- name: worker_list_live
SELECT id, hostname, pid, queues, tasks, started_at, last_seen
  FROM conveyor.worker
 WHERE last_seen > coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(live_seconds)s)
 ORDER BY started_at;
