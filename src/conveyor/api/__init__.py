"""The REST API: enqueue, inspect and steer jobs and workflows over HTTP, with API tokens and
an OpenAPI 3.1 document (extra `api`; docs/api.md).

It is a face of the store seam beside the Client: each POST runs its action and its
Idempotency-Key record in one transaction, so it runs the seam's operations itself.
"""

from conveyor.api.app import OPERATIONS, create_app
from conveyor.api.observe import ApiMetrics

__all__ = ["OPERATIONS", "ApiMetrics", "create_app"]
