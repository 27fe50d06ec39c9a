"""The app's schedule methods (mixed into Conveyor): add_schedule for tasks and endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from conveyor.codec import encode_args
from conveyor.cron import Schedule
from conveyor.durations import to_timedelta
from conveyor.errors import ConfigError, PayloadError
from conveyor.spec import JobSpec
from conveyor.task import Task


class ScheduleMethods:
    """Cron schedules an app keeps (`app.schedules`), by name."""

    schedules: dict[str, Schedule]

    def get_task(self, name: str) -> Task[Any]:
        raise NotImplementedError  # Conveyor's

    def add_schedule(
        self,
        task: Task[Any] | str | None = None,
        *,
        cron: str,
        endpoint: str | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        catch_up: str = "skip",
        queue: str | None = None,
        priority: int | None = None,
        grace: float | timedelta = 60.0,
    ) -> Schedule:
        """Enqueue one job of `task` (a Task or a registered task's name) at every time of
        `cron` in `timezone`, however many workers run.

        `name` (default: the task's name) identifies the schedule in the database; give one to
        each schedule when a task has several. `args` are the job's keyword arguments.
        `catch_up` is what to do with times missed while no worker ran: "skip" (default)
        drops them, "once" enqueues one job for the latest. A time is missed once it is
        `grace` (default 60 s) old. Raises ConfigError for an invalid cron expression, an
        unknown time zone or arguments the task does not take.

        `endpoint=NAME` instead of a task schedules deliveries to the HTTP endpoint NAME
        (`conveyor endpoint add`): each time POSTs one job with `args` to it, signed.
        """
        if endpoint is not None:
            return self._add_endpoint_schedule(
                endpoint, task, cron, timezone, name, args, catch_up, queue, priority, grace
            )
        if not isinstance(task, Task | str):
            raise ConfigError(
                f"cannot schedule {task!r}: register it with @app.task first and put"
                " @app.periodic above @app.task"
            )
        resolved = self.get_task(task) if isinstance(task, str) else task
        if resolved.app is not self:
            raise ConfigError(f"task {resolved.name!r} belongs to another Conveyor app")
        schedule_name = name or resolved.name
        try:
            spec = resolved.with_options(queue=queue, priority=priority).spec(**dict(args or {}))
        except PayloadError as exc:
            raise ConfigError(f"schedule {schedule_name!r}: {exc}") from None
        schedule = Schedule(
            name=schedule_name,
            cron=cron,
            timezone=timezone,
            catch_up=catch_up,
            grace=to_timedelta(grace, "grace"),
            spec=spec,
        )
        return self._keep_schedule(schedule)

    def _add_endpoint_schedule(
        self,
        endpoint: str,
        task: object,
        cron: str,
        timezone: str,
        name: str | None,
        args: Mapping[str, Any] | None,
        catch_up: str,
        queue: str | None,
        priority: int | None,
        grace: float | timedelta,
    ) -> Schedule:
        if task is not None:
            raise ConfigError("give a task or endpoint= to add_schedule, not both")
        try:
            args_json = encode_args(dict(args or {}))
        except PayloadError as exc:
            raise ConfigError(f"schedule {name or endpoint!r}: {exc}") from None
        spec = JobSpec(task=endpoint, args_json=args_json, queue=queue, priority=priority)
        schedule = Schedule(
            name=name or endpoint,
            cron=cron,
            timezone=timezone,
            catch_up=catch_up,
            grace=to_timedelta(grace, "grace"),
            spec=spec,
        )
        return self._keep_schedule(schedule)

    def _keep_schedule(self, schedule: Schedule) -> Schedule:
        existing = self.schedules.get(schedule.name)
        if existing is not None and existing != schedule:
            raise ConfigError(
                f"a schedule named {schedule.name!r} already exists; give this one its own"
                " name= (each schedule of a task needs a distinct name)"
            )
        self.schedules[schedule.name] = schedule
        return schedule
