-- Worker registry and idempotency keys.

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

-- name: idempotency_get
-- The stored result of an idempotency key, if it was claimed.
SELECT key, result FROM conveyor.idempotency_key WHERE key = %(key)s;

-- name: idempotency_claim
-- Claim a key inside the caller's transaction; a concurrent claimer waits for it to commit.
INSERT INTO conveyor.idempotency_key (key, result, job_id, created_at)
VALUES (%(key)s, %(result)s::jsonb, %(job_id)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (key) DO NOTHING
RETURNING key;

-- name: idempotency_set_result
UPDATE conveyor.idempotency_key SET result = %(result)s::jsonb WHERE key = %(key)s;

-- name: idempotency_claim_many
-- Record keys of jobs completed in this transaction (keys already present are kept).
INSERT INTO conveyor.idempotency_key (key, result, job_id, created_at)
SELECT k.key, k.result::jsonb, k.job_id, coalesce(%(now)s::timestamptz, now())
  FROM unnest(%(keys)s::text[], %(results)s::text[], %(job_ids)s::bigint[]) AS k(key, result, job_id)
ON CONFLICT (key) DO NOTHING;
