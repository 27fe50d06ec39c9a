-- Conveyor schema, version 10: cron schedules stored in the database, for HTTP endpoints.
--
-- `conveyor cron add NAME CRON --endpoint E` writes a row of conveyor.cron_schedule whose
-- `endpoint` is E (and whose task is E). Every worker, `conveyor deliver` included, runs the
-- schedules with an endpoint: they need no application module. Rows an app's workers record
-- keep endpoint NULL and never overwrite a stored one.
ALTER TABLE conveyor.cron_schedule ADD COLUMN endpoint text;
