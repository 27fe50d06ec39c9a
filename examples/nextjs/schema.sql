-- The example shop's own tables (Conveyor's live in the `conveyor` schema: `conveyor migrate`).
-- Safe to run again.
CREATE SCHEMA IF NOT EXISTS shop;

CREATE TABLE IF NOT EXISTS shop.orders (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    amount     integer NOT NULL CHECK (amount > 0),      -- in cents
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per receipt sent. A delivery can arrive twice with the same webhook-id (when the
-- delivering worker died between our answer and recording it): the unique key makes the
-- second one a no-op.
CREATE TABLE IF NOT EXISTS shop.receipts (
    webhook_id text PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES shop.orders (id),
    job_id     bigint NOT NULL,
    attempt    integer NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per firing of the cron route, with the schedule's time it was for.
CREATE TABLE IF NOT EXISTS shop.cron_runs (
    webhook_id text PRIMARY KEY,
    job_id     bigint NOT NULL,
    schedule   text,
    slot       timestamptz,
    ran_at     timestamptz NOT NULL DEFAULT now()
);
