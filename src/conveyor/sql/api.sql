-- The REST API: its tokens (conveyor.api_token) and its idempotency records
-- (conveyor.api_idempotency). docs/api.md.

-- name: api_token_insert
-- Store a new token's hash; returns no row when a live token has that name already.
INSERT INTO conveyor.api_token (name, scopes, prefix, hash)
VALUES (%(name)s, %(scopes)s::text[], %(prefix)s, %(hash)s)
    ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING id, name, scopes, prefix, created_at, last_used_at, revoked_at;

-- name: api_token_list
-- Every token, live ones first, newest first.
SELECT id, name, scopes, prefix, created_at, last_used_at, revoked_at
  FROM conveyor.api_token
 ORDER BY revoked_at IS NOT NULL, id DESC;

-- name: api_token_revoke
-- Revoke the live token of this name (or, when the name is a number, with this id).
UPDATE conveyor.api_token
   SET revoked_at = now()
 WHERE revoked_at IS NULL
   AND (name = %(name)s OR id::text = %(name)s)
RETURNING id, name;

-- name: api_token_authenticate
-- The live token with this hash; notes when it was last used (at most once a minute, so a
-- busy caller does not write the row on every request).
WITH token AS (
    SELECT id, name, scopes, hash, last_used_at
      FROM conveyor.api_token
     WHERE hash = %(hash)s AND revoked_at IS NULL
), touched AS (
    UPDATE conveyor.api_token a
       SET last_used_at = now()
      FROM token t
     WHERE a.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
)
SELECT id, name, scopes, hash FROM token;

-- name: api_token_any_live
-- Whether any live token exists (without one, the API answers loopback callers only).
SELECT EXISTS (SELECT FROM conveyor.api_token WHERE revoked_at IS NULL) AS live;

-- name: api_idempotency_claim
-- Claim a key inside the action's transaction: a concurrent request with the same key waits
-- here until the first commits (then gets no row) or rolls back. A record past its 24 hours
-- is taken over.
INSERT INTO conveyor.api_idempotency AS i (token_id, key, fingerprint)
VALUES (%(token_id)s, %(key)s, %(fingerprint)s)
    ON CONFLICT (token_id, key) DO UPDATE
       SET fingerprint = excluded.fingerprint, status = NULL, body = NULL, created_at = now()
     WHERE i.created_at < now() - make_interval(secs => %(ttl_seconds)s)
RETURNING key;

-- name: api_idempotency_get
SELECT fingerprint, status, body
  FROM conveyor.api_idempotency
 WHERE token_id = %(token_id)s AND key = %(key)s;

-- name: api_idempotency_store
-- The response of a claimed key, in the same transaction as the action it answers.
UPDATE conveyor.api_idempotency
   SET status = %(status)s, body = %(body)s::jsonb
 WHERE token_id = %(token_id)s AND key = %(key)s;

-- name: api_idempotency_prune
-- Delete records past their time (the pruner, leader only).
DELETE FROM conveyor.api_idempotency
 WHERE created_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(ttl_seconds)s);
