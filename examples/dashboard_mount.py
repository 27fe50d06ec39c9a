"""The dashboard mounted inside your own Starlette (or FastAPI) app, behind a token.

    python examples/dashboard_mount.py           # checks itself and exits
    python examples/dashboard_mount.py --serve   # then open http://127.0.0.1:8000/admin/jobs/

Needs the extra (in a Conveyor checkout: pip install -e '.[dashboard]'; `.[dev]` has it too).
Uses CONVEYOR_DATABASE_URL, or the embedded Postgres under ./.conveyor/ when it is unset.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import urllib.request

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import conveyor
from conveyor.dashboard import create_app

jobs = conveyor.Conveyor()
TOKEN = os.environ.get("DASHBOARD_TOKEN", "change-me")


@jobs.task(name="shop.send_receipt", queue="emails")
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id} sent"


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the shop")


# FastAPI is the same: app.mount("/admin/jobs", create_app(jobs, token=TOKEN))
web = Starlette(
    routes=[
        Route("/", home),
        Mount("/admin/jobs", create_app(jobs, token=TOKEN, secret_key=TOKEN + ":csrf")),
    ]
)


def check_itself() -> None:
    """Serve on a free port, read the mounted job list with the token, then stop."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sys.exit("uvicorn did not start")
        time.sleep(0.05)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/jobs/jobs?queue=emails",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        html = response.read().decode()
    listed = html.count('href="/admin/jobs/jobs/')
    print(f"dashboard mounted at /admin/jobs: {listed} job(s) listed in queue emails")
    server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    jobs.migrate()
    send_receipt.enqueue(order_id=42)
    if "--serve" in sys.argv:
        print(f"http://127.0.0.1:8000/admin/jobs/  (token: {TOKEN})")
        uvicorn.run(web, host="127.0.0.1", port=8000)
    else:
        check_itself()
    jobs.close()
