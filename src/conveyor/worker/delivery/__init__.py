"""Delivery: POST jobs whose task is an endpoint to its URL, signed (Standard Webhooks 1.0).

Loaded by workers only (`import conveyor` does not load it, nor the HTTP client):
`signing.py` signs, `network.py` refuses private addresses at connect time (SSRF),
`answer.py` turns an HTTP answer into an attempt's outcome, `deliverer.py` holds the pooled
client and the endpoint registry and delivers one job.
"""

from conveyor.worker.delivery.deliverer import Deliverer
from conveyor.worker.delivery.network import AllowList

__all__ = ["AllowList", "Deliverer"]
