"""The chaos tests use the acceptance tests' app and worker processes."""

from tests.acceptance.conftest import shop, start_worker

__all__ = ["shop", "start_worker"]
