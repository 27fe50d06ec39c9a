"""The web dashboard: queues, jobs and actions, as an ASGI app (extra `dashboard`)."""

from conveyor.dashboard.app import create_app

__all__ = ["create_app"]
