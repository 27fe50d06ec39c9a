"""The worker runtime: producer → executor → completer, with heartbeat and maintenance."""

from conveyor.worker.config import WorkerConfig
from conveyor.worker.worker import Worker

__all__ = ["Worker", "WorkerConfig"]
