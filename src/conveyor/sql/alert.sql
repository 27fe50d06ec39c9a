-- Alerts: failed jobs for JobFailed rules (the queue rules read queue_depths), episodes of
-- each rule and subject, and the notification outbox. Every time-dependent query takes
-- %(now)s; NULL means the database's clock.

-- name: alert_failed_arrivals
-- Failed jobs that finished after the rule's watermark and at least settle_seconds ago,
-- grouped by queue and task, with the first job ids and a count per error type; moves the
-- watermark up. The first call for a rule only sets the watermark. The old value is read
-- with FOR UPDATE inside the UPDATE, so two evaluators at once split the time between them.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(settle_seconds)s) AS upto
), started AS (
    INSERT INTO conveyor.alert_watermark (rule, seen_until)
    SELECT %(rule)s::text, n.upto FROM n
     WHERE NOT EXISTS (SELECT 1 FROM conveyor.alert_watermark WHERE rule = %(rule)s::text)
        ON CONFLICT (rule) DO NOTHING
), moved AS (
    UPDATE conveyor.alert_watermark w
       SET seen_until = greatest(old.seen_until, n.upto)
      FROM (SELECT rule, seen_until FROM conveyor.alert_watermark
             WHERE rule = %(rule)s::text FOR UPDATE) old, n
     WHERE w.rule = old.rule
    RETURNING old.seen_until AS since, w.seen_until AS upto
), arrived AS (
    SELECT d.queue, d.task, d.id, coalesce(d.errors -> -1 ->> 'type', 'unknown') AS error_type
      FROM conveyor.job_done d, moved m
     WHERE d.state = 'failed'
       AND d.finished_at > m.since AND d.finished_at <= m.upto
       AND (%(queue)s::text IS NULL OR d.queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR d.task = %(task)s::text)
)
SELECT a.queue, a.task, count(*) AS count, (array_agg(a.id ORDER BY a.id))[1:%(sample)s::int] AS job_ids,
       (SELECT jsonb_object_agg(t.error_type, t.n)
          FROM (SELECT b.error_type, count(*) AS n FROM arrived b
                 WHERE b.queue = a.queue AND b.task = a.task GROUP BY b.error_type) t) AS errors
  FROM arrived a
 GROUP BY a.queue, a.task
 ORDER BY a.queue, a.task;

-- name: alert_failed_remaining
-- Failed jobs still kept, per queue and task (retried and deleted ones are gone).
SELECT queue, task, count(*) AS count
  FROM conveyor.job_done
 WHERE state = 'failed'
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(task)s::text IS NULL OR task = %(task)s::text)
 GROUP BY queue, task;

-- name: alert_episode_observe
-- Apply one rule's observations: a subject observed 'fire' opens an episode (pending) or
-- fires it once it has been open for `hold` (again on every observation when refire);
-- 'hold' keeps an open episode as it is; an open episode whose subject is neither resolves
-- when it had fired and is forgotten when it was still pending. Each fire and resolve queues
-- one notification per channel in the same statement. Conditions on the episode's own columns
-- are rechecked on the latest row version, so a second evaluator racing this one fires and
-- resolves nothing twice. Returns the episodes this statement fired or resolved.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), obs AS (
    SELECT o.subject, o.value, o.details, o.state
      FROM unnest(%(subjects)s::text[], %(values)s::float8[], %(details)s::jsonb[],
                  %(states)s::text[]) AS o(subject, value, details, state)
), opened AS (
    INSERT INTO conveyor.alert_episode AS e (rule, subject, pending_since, fired_at, fired_pass,
                                             fire_count, last_value, details, updated_at)
    SELECT %(rule)s::text, o.subject, n.t,
           CASE WHEN %(hold)s::interval <= interval '0' THEN n.t END,
           CASE WHEN %(hold)s::interval <= interval '0' THEN %(pass)s::uuid END,
           CASE WHEN %(hold)s::interval <= interval '0' THEN 1 ELSE 0 END,
           o.value, o.details, n.t
      FROM obs o, n
     WHERE o.state = 'fire'
        ON CONFLICT (rule, subject) WHERE resolved_at IS NULL DO UPDATE
       SET last_value = excluded.last_value,
           details = excluded.details,
           updated_at = excluded.updated_at,
           fired_at = CASE WHEN %(refire)s::boolean OR (e.fired_at IS NULL
                                AND e.pending_since <= excluded.updated_at - %(hold)s::interval)
                           THEN excluded.updated_at ELSE e.fired_at END,
           fired_pass = CASE WHEN %(refire)s::boolean OR (e.fired_at IS NULL
                                AND e.pending_since <= excluded.updated_at - %(hold)s::interval)
                             THEN %(pass)s::uuid ELSE e.fired_pass END,
           fire_count = e.fire_count + CASE WHEN %(refire)s::boolean OR (e.fired_at IS NULL
                                AND e.pending_since <= excluded.updated_at - %(hold)s::interval)
                                THEN 1 ELSE 0 END
    RETURNING e.id, e.subject, e.pending_since, e.fired_at, e.fired_pass, e.fire_count,
              e.last_value, e.details
), resolved AS (
    UPDATE conveyor.alert_episode e
       SET resolved_at = n.t,
           updated_at = n.t,
           last_value = coalesce((SELECT o.value FROM obs o WHERE o.subject = e.subject), 0)
      FROM n
     WHERE e.rule = %(rule)s::text AND e.resolved_at IS NULL AND e.fired_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM obs o
                        WHERE o.subject = e.subject AND o.state IN ('fire', 'hold'))
    RETURNING e.id, e.subject, e.pending_since, e.resolved_at, e.fire_count, e.last_value,
              e.details
), forgotten AS (
    DELETE FROM conveyor.alert_episode e
     WHERE e.rule = %(rule)s::text AND e.resolved_at IS NULL AND e.fired_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM obs o
                        WHERE o.subject = e.subject AND o.state IN ('fire', 'hold'))
    RETURNING e.id
), events AS (
    SELECT id, subject, 'firing' AS status, pending_since, fired_at AS at, fire_count,
           last_value, details
      FROM opened WHERE fired_pass = %(pass)s::uuid
    UNION ALL
    SELECT id, subject, 'resolved', pending_since, resolved_at, fire_count, last_value, details
      FROM resolved
), queued AS (
    INSERT INTO conveyor.alert_notification (episode_id, status, channel, value, details,
                                             created_at)
    SELECT ev.id, ev.status, c.channel, ev.last_value, ev.details, ev.at
      FROM events ev, unnest(%(channels)s::text[]) AS c(channel)
    RETURNING id
)
SELECT ev.id, ev.subject, ev.status, ev.pending_since, ev.at, ev.fire_count, ev.last_value,
       ev.details, (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM forgotten)
       AS forgotten
  FROM events ev
 ORDER BY ev.id, ev.status;

-- name: alert_notification_claim
-- Claim the oldest undelivered notifications of the given channels for lease_seconds, so that
-- one evaluator delivers each; a claim whose holder died expires and the row is claimed again.
UPDATE conveyor.alert_notification a
   SET claimed_until = n.t + make_interval(secs => %(lease_seconds)s)
  FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS t) n, conveyor.alert_episode e
 WHERE a.id IN (
           SELECT p.id FROM conveyor.alert_notification p
            WHERE p.delivered_at IS NULL AND p.abandoned_at IS NULL
              AND p.channel = ANY(%(channels)s::text[])
              AND (p.claimed_until IS NULL
                   OR p.claimed_until <= coalesce(%(now)s::timestamptz, now()))
            ORDER BY p.id
            LIMIT %(limit)s
              FOR UPDATE SKIP LOCKED)
   AND e.id = a.episode_id
RETURNING a.id, a.episode_id, a.status, a.channel, a.value, a.details, a.created_at,
          a.attempts, e.rule, e.subject, e.pending_since, e.fire_count;

-- name: alert_notification_finish
-- Record what delivery did: delivered, failed (an attempt counted; abandoned once attempts
-- reach max_attempts) or skipped (released untried, its channel was down this pass).
-- Returns the rows abandoned just now.
WITH n AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS t
), r AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(outcomes)s::text[], %(errors)s::text[])
                  AS r(id, outcome, error)
)
UPDATE conveyor.alert_notification a
   SET claimed_until = NULL,
       delivered_at = CASE WHEN r.outcome = 'delivered' THEN n.t END,
       attempts = a.attempts + CASE WHEN r.outcome = 'skipped' THEN 0 ELSE 1 END,
       last_error = CASE WHEN r.outcome = 'failed' THEN r.error ELSE a.last_error END,
       abandoned_at = CASE WHEN r.outcome = 'failed' AND a.attempts + 1 >= %(max_attempts)s
                           THEN n.t END
  FROM r, n
 WHERE a.id = r.id AND a.delivered_at IS NULL
RETURNING a.id, a.channel, a.attempts, a.abandoned_at IS NOT NULL AS abandoned;

-- name: alert_episode_prune
-- Delete episodes resolved longer ago than `seconds` (their notifications go with them).
WITH gone AS (
    DELETE FROM conveyor.alert_episode
     WHERE resolved_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(seconds)s)
    RETURNING 1
)
SELECT count(*) AS count FROM gone;

-- name: alert_episode_list
-- Alert episodes for people (CLI, dashboard): open ones first, then the latest resolved.
SELECT id, rule, subject, pending_since, fired_at, fire_count, resolved_at, last_value, details
  FROM conveyor.alert_episode
 WHERE (%(open_only)s::boolean IS NOT TRUE OR resolved_at IS NULL)
 ORDER BY resolved_at IS NOT NULL, coalesce(resolved_at, fired_at, pending_since) DESC, id DESC
 LIMIT %(limit)s;
