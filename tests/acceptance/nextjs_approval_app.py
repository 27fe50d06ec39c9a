"""The Python side of the Next.js example's approval: the workflow that the checkout route
starts with `startWorkflow` for a large order. It e-mails (here: records) a signed link, then
waits for the event that the example's /api/approvals route sends when the manager clicks."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import conveyor

app = conveyor.Conveyor()  # CONVEYOR_DATABASE_URL, read on first use


def approval_link(order_id: int) -> str:
    """The link the manager gets, signed as examples/nextjs/lib/approval.ts checks it."""
    expires = int(time.time()) + 3 * 24 * 3600
    message = f"{order_id}.approve.{expires}".encode()
    secret = os.environ["APPROVAL_SECRET"].encode()
    sig = hmac.new(secret, message, hashlib.sha256).hexdigest()
    query = {"order": order_id, "decision": "approve", "expires": expires, "sig": sig}
    return "/api/approvals?" + urlencode(query)


@app.workflow(name="order.approval")
async def approval(ctx: conveyor.WorkflowContext, orderId: int) -> dict[str, Any]:  # noqa: N803 - the JSON args of a Node caller
    link = await ctx.step("ask", approval_link, orderId)
    decided = await ctx.wait_for_event(
        "order.approval", key=str(orderId), timeout=timedelta(days=3)
    )
    return {
        "orderId": orderId,
        "link": link,
        "decision": None if decided is None else decided["decision"],
    }
