"""The maintenance services a worker runs beside its jobs (each acts on the leader only, or
on every worker when it says so): which ones, and configured from the app and the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor._store.protocol import Store
from conveyor.maintenance.alerter import AlertEvaluator
from conveyor.maintenance.cron import CronEnqueuer
from conveyor.maintenance.flows import FlowAdvancer
from conveyor.maintenance.gauges import QueueGauges
from conveyor.maintenance.pruner import JobPruner
from conveyor.maintenance.rescuer import JobRescuer
from conveyor.maintenance.scheduler import JobScheduler
from conveyor.maintenance.service import PeriodicService
from conveyor.maintenance.vacuumer import TableVacuumer
from conveyor.metrics import WorkerMetrics
from conveyor.worker.config import WorkerConfig

if TYPE_CHECKING:
    from conveyor.app import Conveyor


def maintenance_services(
    app: Conveyor, config: WorkerConfig, store: Store, metrics: WorkerMetrics
) -> list[PeriodicService]:
    """The always-on services, then those the configuration asks for: queue gauges when
    metrics are served (registered with `metrics`), the alert evaluator when the app has
    rules. Cron runs on every worker: the app's schedules and those stored in the database
    for endpoints (`conveyor cron add --endpoint`), which need no app."""
    retention = app.retention
    services: list[PeriodicService] = [
        JobScheduler(store, interval=config.promote_interval, clock=app.clock),
        JobRescuer(store, interval=config.rescue_interval, clock=app.clock),
        TableVacuumer(store),
        FlowAdvancer(store, interval=config.promote_interval, clock=app.clock),
        JobPruner(
            store,
            completed=retention.completed,
            cancelled=retention.cancelled,
            failed=retention.failed,
            idempotency_keys=retention.idempotency_keys,
            cron_slots=retention.cron_slots,
            interval=config.prune_interval,
            clock=app.clock,
        ),
    ]
    if config.metrics_port is not None:
        gauges = QueueGauges(store, interval=config.gauge_interval, clock=app.clock)
        metrics.registry.register(gauges)
        services.append(gauges)
    services.append(
        CronEnqueuer(
            store,
            list(app.schedules.values()),
            interval=config.cron_interval,
            clock=app.clock,
            stored=True,
        )
    )
    if app.alert_rules:
        services.append(AlertEvaluator.for_app(app, store))
    return services
