-- Idempotency keys: claimed when a job completes, or at once in an atomic task's
-- transaction (once()); pruned with the history.

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

-- name: idempotency_prune
-- Forget idempotency keys older than their retention.
DELETE FROM conveyor.idempotency_key
 WHERE created_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s);
