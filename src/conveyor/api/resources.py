"""The queue and endpoint routes: list, pause and resume queues; list, add, read and remove
HTTP endpoints."""

from __future__ import annotations

from conveyor._store import admin
from conveyor._store import endpoints as endpoint_ops
from conveyor._store.runner import arun
from conveyor.api.models import (
    EndpointIn,
    EndpointList,
    EndpointOut,
    QueueList,
    QueueOut,
    QueuePaused,
)
from conveyor.api.problems import ApiProblem
from conveyor.api.routing import Call, Operation, ParamType, Reply
from conveyor.endpoints import Endpoint
from conveyor.errors import ConfigError


def endpoint_out(endpoint: Endpoint) -> EndpointOut:
    """An endpoint as the API shows it: secrets masked."""
    return EndpointOut(
        name=endpoint.name,
        url=endpoint.url,
        secrets=list(endpoint.masked()),
        timeout=endpoint.timeout,
        queue=endpoint.queue,
        retry_4xx=endpoint.retry_4xx,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        problem=endpoint.problem,
    )


async def list_queues(call: Call) -> Reply:
    queues = await arun(call.conn, admin.queues())
    return Reply(200, QueueList(queues=[QueueOut(**q.to_dict()) for q in queues]))


async def pause_queue(call: Call) -> Reply:
    await arun(call.conn, admin.pause_queue(call.path["name"]))
    return Reply(200, QueuePaused(name=call.path["name"], paused=True))


async def resume_queue(call: Call) -> Reply:
    await arun(call.conn, admin.resume_queue(call.path["name"]))
    return Reply(200, QueuePaused(name=call.path["name"], paused=False))


async def list_endpoints(call: Call) -> Reply:
    found = await arun(call.conn, endpoint_ops.list_all())
    return Reply(200, EndpointList(endpoints=[endpoint_out(e) for e in found]))


async def get_endpoint(call: Call) -> Reply:
    return Reply(200, endpoint_out(await arun(call.conn, endpoint_ops.get(call.path["name"]))))


async def add_endpoint(call: Call) -> Reply:
    body: EndpointIn = call.body
    secrets = (body.secret,) if isinstance(body.secret, str) else tuple(body.secret)
    endpoint = Endpoint(body.name, body.url, secrets, body.timeout, body.queue, body.retry_4xx)
    try:
        await arun(call.conn, endpoint_ops.insert(endpoint))
    except ConfigError as exc:  # the name is taken
        raise ApiProblem("conflict", f"{exc}; or DELETE /v1/endpoints/{body.name} first") from None
    return Reply(201, endpoint_out(await arun(call.conn, endpoint_ops.get(body.name))))


async def remove_endpoint(call: Call) -> Reply:
    await arun(call.conn, endpoint_ops.remove(call.path["name"]))
    return Reply(204)


_NAME: dict[str, ParamType] = {"name": "string"}

OPERATIONS = (
    Operation(
        "GET", "/v1/queues", "listQueues", "List queues with their controls and counts", "read",
        list_queues, {200: QueueList}, tag="queues",
    ),
    Operation(
        "POST", "/v1/queues/{name}/pause", "pauseQueue",
        "Stop new jobs of a queue from starting (running ones finish)", "admin", pause_queue,
        {200: QueuePaused}, params=_NAME, tag="queues",
    ),
    Operation(
        "POST", "/v1/queues/{name}/resume", "resumeQueue", "Let a paused queue's jobs start",
        "admin", resume_queue, {200: QueuePaused}, params=_NAME, tag="queues",
    ),
    Operation(
        "GET", "/v1/endpoints", "listEndpoints", "List HTTP endpoints (secrets masked)", "read",
        list_endpoints, {200: EndpointList}, tag="endpoints",
    ),
    Operation(
        "POST", "/v1/endpoints", "addEndpoint", "Add an HTTP endpoint", "admin", add_endpoint,
        {201: EndpointOut}, body=EndpointIn, errors=(409,), tag="endpoints",
    ),
    Operation(
        "GET", "/v1/endpoints/{name}", "getEndpoint", "Get an HTTP endpoint", "read",
        get_endpoint, {200: EndpointOut}, params=_NAME, errors=(404,), tag="endpoints",
    ),
    Operation(
        "DELETE", "/v1/endpoints/{name}", "removeEndpoint", "Remove an HTTP endpoint", "admin",
        remove_endpoint, {204: None}, params=_NAME, errors=(404,), tag="endpoints",
    ),
)  # fmt: skip
