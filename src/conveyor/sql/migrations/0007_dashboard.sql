-- Conveyor schema, version 7: indexes for the dashboard's job list at millions of jobs.
--
-- The list is newest first by id, filtered by queue, task and state. Without these, a filter
-- that few finished jobs match (a small queue, failed jobs of a queue) reads job_done backwards
-- by id until it has a page: up to every row, 200 ms at a million. With them each page is a
-- short backward index scan. Only job_done needs them: conveyor.job stays small.
--
-- Every finished job adds an entry to the first two; the partial ones index only failed and
-- cancelled jobs, which are few. docs/benchmarks.md has the measured cost per insert.
CREATE INDEX job_done_queue_id_idx ON conveyor.job_done (queue, id);
CREATE INDEX job_done_task_id_idx ON conveyor.job_done (task, id);
CREATE INDEX job_done_unsuccessful_idx ON conveyor.job_done (state, id)
    WHERE state <> 'completed';
CREATE INDEX job_done_unsuccessful_queue_idx ON conveyor.job_done (queue, state, id)
    WHERE state <> 'completed';
CREATE INDEX job_done_unsuccessful_task_idx ON conveyor.job_done (task, state, id)
    WHERE state <> 'completed';
