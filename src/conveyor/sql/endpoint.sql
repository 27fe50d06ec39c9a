-- HTTP endpoints: where jobs whose task is an endpoint's name are delivered (conveyor.endpoint).
-- A change notifies 'conveyor_queue' with the endpoint's queue, so its workers re-read at once.

-- name: endpoint_insert
-- Add an endpoint; returns no row when one of that name exists already.
INSERT INTO conveyor.endpoint (name, url, secrets, timeout_seconds, queue, retry_4xx)
VALUES (%(name)s, %(url)s, %(secrets)s::text[], %(timeout_seconds)s, %(queue)s, %(retry_4xx)s)
    ON CONFLICT (name) DO NOTHING
RETURNING name, pg_notify('conveyor_queue', queue) IS NULL AS notified;

-- name: endpoint_upsert
-- Add an endpoint or replace every setting of the one of that name (an app's declarations).
INSERT INTO conveyor.endpoint AS e (name, url, secrets, timeout_seconds, queue, retry_4xx)
VALUES (%(name)s, %(url)s, %(secrets)s::text[], %(timeout_seconds)s, %(queue)s, %(retry_4xx)s)
    ON CONFLICT (name) DO UPDATE SET
       url = excluded.url, secrets = excluded.secrets,
       timeout_seconds = excluded.timeout_seconds, queue = excluded.queue,
       retry_4xx = excluded.retry_4xx, updated_at = now()
 WHERE (e.url, e.secrets, e.timeout_seconds, e.queue, e.retry_4xx)
       IS DISTINCT FROM (excluded.url, excluded.secrets, excluded.timeout_seconds,
                         excluded.queue, excluded.retry_4xx)
RETURNING e.name, pg_notify('conveyor_queue', e.queue) IS NULL AS notified;

-- name: endpoint_update
-- Change the given settings of an endpoint (NULL keeps one); add_secret appends a second
-- secret for rotation, keeping the newest two. Returns no row when there is no such endpoint.
UPDATE conveyor.endpoint e
   SET url = coalesce(%(url)s, e.url),
       secrets = CASE
           WHEN %(secrets)s::text[] IS NOT NULL THEN %(secrets)s::text[]
           WHEN %(add_secret)s::text IS NOT NULL
           THEN (e.secrets || %(add_secret)s::text)[cardinality(e.secrets):]
           ELSE e.secrets END,
       timeout_seconds = coalesce(%(timeout_seconds)s, e.timeout_seconds),
       queue = coalesce(%(queue)s, e.queue),
       retry_4xx = coalesce(%(retry_4xx)s, e.retry_4xx),
       updated_at = now()
 WHERE e.name = %(name)s
RETURNING e.name, pg_notify('conveyor_queue', e.queue) IS NULL AS notified;

-- name: endpoint_remove
-- Remove an endpoint; its waiting jobs stay and fail as unknown tasks if no worker knows them.
DELETE FROM conveyor.endpoint e WHERE e.name = %(name)s
RETURNING e.name;

-- name: endpoint_list
-- Every endpoint, or the one named, by name.
SELECT e.name, e.url, e.secrets, e.timeout_seconds, e.queue, e.retry_4xx, e.created_at,
       e.updated_at
  FROM conveyor.endpoint e
 WHERE %(name)s::text IS NULL OR e.name = %(name)s
 ORDER BY e.name;
