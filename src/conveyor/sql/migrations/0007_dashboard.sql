-- Conveyor schema, version 7: indexes for the dashboard's job list at millions of jobs.
--
-- The list is newest first by id, filtered by queue or task. Without these, a filter on a
-- queue or task with few finished jobs reads job_done backwards by id until it has a page,
-- up to every row (about 100 ms at a million rows, and growing). With them the page is a
-- short backward index scan. Only job_done needs them: conveyor.job stays small. Each costs an
-- index insert per finished job (docs/benchmarks.md has the measured cost).
CREATE INDEX job_done_queue_id_idx ON conveyor.job_done (queue, id);
CREATE INDEX job_done_task_id_idx ON conveyor.job_done (task, id);
