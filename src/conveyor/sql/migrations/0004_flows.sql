-- Conveyor schema, version 4: flows (a parent job that waits for its children) and progress.
--
-- A parent waits in the hot table in state 'waiting', which no claim reads; its children are
-- ordinary jobs linked to it by conveyor.flow_child. FlowAdvancer, on every worker, makes a
-- parent available once none of its children is unfinished, or fails it at once when a child
-- failed and its policy says so. Nothing on the hot path changes for jobs outside flows.

ALTER TABLE conveyor.job DROP CONSTRAINT job_state_check;
ALTER TABLE conveyor.job ADD CONSTRAINT job_state_check
    CHECK (state IN ('scheduled', 'available', 'running', 'retryable', 'waiting'));

ALTER TABLE conveyor.job
    ADD COLUMN on_child_failure text CHECK (on_child_failure IN ('fail', 'continue')),
    -- {"value": 40, "message": "resized 4 of 10", "at": ...}, written by the running handler
    ADD COLUMN progress jsonb;
ALTER TABLE conveyor.job_done ADD COLUMN progress jsonb;

CREATE TABLE conveyor.flow_child (
    parent_id  bigint  NOT NULL,
    child_id   bigint  NOT NULL,
    position   integer NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX flow_child_child_idx ON conveyor.flow_child (child_id);

-- Parents waiting for children: found by FlowAdvancer.
CREATE INDEX job_waiting_idx ON conveyor.job (id) WHERE state = 'waiting';

-- The contract view gains the progress column (at the end, as CREATE OR REPLACE requires).
CREATE OR REPLACE VIEW conveyor.jobs AS
    SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
           timeout_seconds, created_at, run_at, attempted_at, NULL::timestamptz AS finished_at,
           NULL::jsonb AS result, worker_id, lease_expires_at, progress
      FROM conveyor.job
    UNION ALL
    SELECT id, task, queue, state, priority, attempt, max_attempts, args, errors, unique_key,
           timeout_seconds, created_at, run_at, attempted_at, finished_at,
           result, worker_id, NULL::timestamptz AS lease_expires_at, progress
      FROM conveyor.job_done;
