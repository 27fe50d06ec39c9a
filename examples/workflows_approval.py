"""Durable workflows, a person in the loop: an expense waits (days, holding no worker) for a
manager to click a signed link; the link's small Starlette route checks the signature and sends
the event that resumes the run.

    python examples/workflows_approval.py

Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
Needs the dashboard extra for Starlette (`pip install 'conveyor[dashboard]'`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import conveyor

app = conveyor.Conveyor()
#: Signs approval links; in real life a secret from the environment, never in the code.
LINK_SECRET = b"example-approval-link-secret"
LINK_LIFETIME = 3 * 24 * 3600  # a link is good for as long as the run waits
outbox: list[str] = []


def sign(expense_id: str, decision: str, expires: int) -> str:
    message = f"{expense_id}.{decision}.{expires}".encode()
    return hmac.new(LINK_SECRET, message, hashlib.sha256).hexdigest()


def approval_links(expense_id: str, amount: int) -> str:
    """The e-mail to the manager: one signed link per decision (a step: sent once)."""
    expires = int(time.time()) + LINK_LIFETIME
    links = {
        decision: "/expenses/decide?"
        + urlencode(
            {
                "expense": expense_id,
                "decision": decision,
                "expires": expires,
                "sig": sign(expense_id, decision, expires),
            }
        )
        for decision in ("approve", "reject")
    }
    outbox.append(links["approve"])
    return f"asked for approval of expense {expense_id} ({amount} EUR)"


def pay(expense_id: str, amount: int) -> str:
    return f"paid {amount} EUR for expense {expense_id}"


@app.workflow(name="expense.approval")
async def approval(ctx: conveyor.WorkflowContext, expense_id: str, amount: int) -> dict[str, Any]:
    await ctx.step("ask", approval_links, expense_id, amount)
    decision = await ctx.wait_for_event(
        "expense.decided", key=expense_id, timeout=timedelta(days=3)
    )
    if decision is None:
        return {"expense": expense_id, "outcome": "expired"}
    if decision["decision"] != "approve":
        return {"expense": expense_id, "outcome": "rejected", "by": decision["by"]}
    paid = await ctx.step("pay", pay, expense_id, amount)
    return {"expense": expense_id, "outcome": "approved", "by": decision["by"], "paid": paid}


# -- the link's route -----------------------------------------------------------------------


def _checked(params: Any) -> tuple[str, str] | None:
    """The (expense, decision) of a link whose signature holds and has not expired."""
    try:
        expense, decision = params["expense"], params["decision"]
        expires, signature = int(params["expires"]), params["sig"]
    except (KeyError, ValueError):
        return None
    if expires < time.time():
        return None
    # constant-time compare: the time taken says nothing about how much of a forgery matched
    if not hmac.compare_digest(sign(expense, decision, expires), signature):
        return None
    return expense, decision


async def show(request: Request) -> Response:
    # GET only shows a button: mail scanners that open every link must not decide anything
    if _checked(request.query_params) is None:
        return PlainTextResponse("this link is not valid (or has expired)", status_code=403)
    return HTMLResponse('<form method="post"><button>Confirm</button></form>')


async def decide(request: Request) -> Response:
    checked = _checked(request.query_params)
    if checked is None:
        return PlainTextResponse("this link is not valid (or has expired)", status_code=403)
    expense, decision = checked
    payload = {"decision": decision, "by": "manager@example.com"}
    await app.asend_event("expense.decided", key=expense, payload=payload)
    return PlainTextResponse(f"expense {expense}: {decision} recorded")


web = Starlette(
    routes=[
        Route("/expenses/decide", show, methods=["GET"]),
        Route("/expenses/decide", decide, methods=["POST"]),
    ]
)


async def until(run_id: str, state: str) -> Any:
    client = app.async_client()
    async with asyncio.timeout(30):
        while (run := await client.get_workflow(run_id)).state != state:
            await asyncio.sleep(0.05)
    return run


async def main() -> None:
    await asyncio.to_thread(app.migrate)
    # a run id of your own makes the start idempotent (a retried request starts no second run)
    run_id = await approval.astart(expense_id="E-17", amount=420, run_id=f"expense-{uuid4()}")
    worker = conveyor.Worker(app, conveyor.WorkerConfig(promote_interval=0.1))
    running = asyncio.create_task(worker.run())
    await until(run_id, "waiting")
    link = outbox[0]
    print(f"expense E-17 waits for a manager; the e-mail links to {link.split('?')[0]}")

    with TestClient(web) as browser:
        forged = link.replace("decision=approve", "decision=reject")  # signed for approve only
        refused = await asyncio.to_thread(browser.post, forged)
        print(f"a tampered link: {refused.status_code} {refused.text}")
        shown = await asyncio.to_thread(browser.get, link)
        assert "Confirm" in shown.text
        clicked = await asyncio.to_thread(browser.post, link)
        print(f"the manager confirms: {clicked.status_code} {clicked.text}")

    run = await until(run_id, "completed")
    worker.stop()
    await running
    print(f"expense E-17: {run.result['outcome']} by {run.result['by']}, {run.result['paid']}")
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
