"""The parts of delivery that need no server: signatures (checked with the Standard Webhooks
reference library), Retry-After, the SSRF allow-list, and the connect-time address check of
both clients."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import httpcore2
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

import conveyor
from conveyor.endpoints import Endpoint, address_kind, generate_secret, key_bytes
from conveyor.worker.delivery.answer import MAX_RETRY_AFTER, retry_after
from conveyor.worker.delivery.deliverer import _failure, delivery_ssl_context
from conveyor.worker.delivery.negotiated import GuardedBackend
from conveyor.worker.delivery.network import AllowList, GuardedResolver, guarded_socket
from conveyor.worker.delivery.signing import signature_header, verify


def test_signatures_verify_with_the_reference_library_for_each_secret() -> None:
    first, second = generate_secret(), "plain text secret"
    body, ts = b'{"id":1,"task":"t"}', int(datetime.now(UTC).timestamp())
    header = signature_header([key_bytes(first), key_bytes(second)], "job_1", ts, body)
    headers = {"webhook-id": "job_1", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert header.count("v1,") == 2
    Webhook(first).verify(body, headers)
    Webhook(second.encode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(first).verify(body + b" ", headers)
    assert verify(header, [key_bytes(second)], "job_1", ts, body)
    assert not verify(header, [key_bytes(second)], "job_2", ts, body)


def test_retry_after_reads_seconds_and_http_dates_and_caps_them() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert retry_after("30") == 30
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0
    assert retry_after("99999999") == MAX_RETRY_AFTER
    assert retry_after("soon") is None and retry_after(None) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_the_allow_list_takes_cidrs_and_the_environment() -> None:
    allow = AllowList.parse(["127.0.0.0/8"], environ={"CONVEYOR_ALLOW_NETWORKS": "10.0.0.0/8, "})
    assert allow.refusal(ipaddress.ip_address("127.0.0.5")) is None
    assert allow.refusal(ipaddress.ip_address("10.9.9.9")) is None
    refusal = allow.refusal(ipaddress.ip_address("192.168.1.1"))
    assert refusal and "--allow-network 192.168.1.1/32" in refusal
    assert AllowList().refusal(ipaddress.ip_address("93.184.216.34")) is None
    with pytest.raises(conveyor.ConfigError, match="not a network"):
        AllowList.parse(["nonsense"], environ={})
    with pytest.raises(conveyor.ConfigError, match="not a network"):
        conveyor.WorkerConfig(allow_networks=("10.0.0.0/33",))


async def test_the_resolver_keeps_only_allowed_addresses_of_a_name() -> None:
    resolver = GuardedResolver(AllowList())
    with pytest.raises(conveyor.RefusedAddressError, match="localhost: refused to connect"):
        await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    allowed = GuardedResolver(AllowList.parse(["127.0.0.0/8"], environ={}))
    found = await allowed.resolve("localhost", 80, socket.AF_UNSPEC)
    assert found and {r["host"] for r in found} <= {"127.0.0.1"}  # ::1 is not allowed


def test_the_socket_factory_refuses_every_private_address_it_is_asked_for() -> None:
    make = guarded_socket(AllowList.parse(["127.0.0.0/8"], environ={}))
    tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    with pytest.raises(conveyor.RefusedAddressError, match=r"169\.254\.169\.254"):
        make((socket.AF_INET, *tcp, ("169.254.169.254", 80)))
    with pytest.raises(conveyor.RefusedAddressError, match="loopback"):
        make((socket.AF_INET6, *tcp, ("::1", 80, 0, 0)))
    with make((socket.AF_INET, *tcp, ("127.0.0.1", 80))) as sock:
        assert sock.family == socket.AF_INET


async def test_the_http2_backend_refuses_with_the_messages_of_the_aiohttp_hooks() -> None:
    backend = GuardedBackend(AllowList())
    with pytest.raises(conveyor.RefusedAddressError) as by_name:
        await backend.connect_tcp("localhost", 443)
    with pytest.raises(conveyor.RefusedAddressError) as by_resolver:
        await GuardedResolver(AllowList()).resolve("localhost", 443, socket.AF_UNSPEC)
    assert str(by_name.value) == str(by_resolver.value)
    assert str(by_name.value).startswith("localhost: refused to connect")
    with pytest.raises(conveyor.RefusedAddressError) as by_ip:
        await backend.connect_tcp("169.254.169.254", 80)
    with pytest.raises(conveyor.RefusedAddressError) as by_socket:
        guarded_socket(AllowList())((socket.AF_INET, 0, 0, "", ("169.254.169.254", 80)))
    assert str(by_ip.value) == str(by_socket.value)
    assert "cloud metadata" in str(by_ip.value)


async def test_the_http2_backend_connects_to_an_allowed_address_of_a_name() -> None:
    listening = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        # localhost may resolve to ::1 first: only 127.0.0.1 is allowed, and is connected to
        backend = GuardedBackend(AllowList.parse(["127.0.0.1/32"], environ={}))
        stream = await backend.connect_tcp("localhost", port)
        assert stream.get_extra_info("server_addr")[0] == "127.0.0.1"
        await stream.aclose()
    finally:
        listening.close()


def test_a_ca_file_is_trusted_besides_the_system_store(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    assert delivery_ssl_context(None, environ={}) is None
    context = delivery_ssl_context(None, environ={"CONVEYOR_DELIVERY_CA_FILE": str(ca_file)})
    assert context is not None and context.cert_store_stats()["x509_ca"] >= 1
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(conveyor.ConfigError, match="cannot load CA certificates"):
        delivery_ssl_context(str(tmp_path / "bad.pem"), environ={})
    with pytest.raises(conveyor.ConfigError, match="is not a file"):
        conveyor.WorkerConfig(ca_file=str(tmp_path / "missing.pem"))


async def test_a_job_of_an_endpoint_removed_since_its_claim_fails_saying_so() -> None:
    from conveyor.job import Job, JobState
    from conveyor.worker.delivery import Deliverer
    from conveyor.worker.outcome import Failed

    now = datetime.now(UTC)
    job = Job(
        id=1, task="gone", queue="default", state=JobState("running"), priority=0, attempt=1,
        max_attempts=10, args={}, errors=[], unique_key=None, timeout_seconds=None,
        created_at=now, run_at=now, attempted_at=now, finished_at=None, result=None,
        worker_id=None,
    )  # fmt: skip
    deliverer = Deliverer()
    try:
        outcome = await deliverer.deliver(job)
    finally:
        await deliverer.aclose()
    assert isinstance(outcome, Failed) and outcome.retry_in is None
    assert "endpoint 'gone' was removed" in outcome.error["message"]


@pytest.mark.parametrize(
    ("error", "kind", "final"),
    [
        (aiohttp.ServerDisconnectedError(), "ConnectionError", False),
        (httpcore2.RemoteProtocolError("closed"), "ConnectionError", False),
        (httpcore2.ConnectError("refused"), "ConnectionError", False),
        (httpcore2.ReadError("reset"), "ConnectionError", False),
        (httpcore2.WriteError("reset"), "ConnectionError", False),
        (TimeoutError(), "Timeout", False),
        (httpcore2.ConnectTimeout(), "Timeout", False),
        (httpcore2.ReadTimeout(), "Timeout", False),
        (httpcore2.UnsupportedProtocol("ftp"), "BadURL", True),
        (aiohttp.InvalidURL("x"), "BadURL", True),
        (conveyor.RefusedAddressError("refused to connect to 10.0.0.1"), "RefusedAddress", True),
    ],
)
def test_both_clients_failures_map_to_the_same_kinds(
    error: Exception, kind: str, final: bool
) -> None:
    endpoint = Endpoint("e", "https://example.com/hook", ("s",), timeout=2)
    found, message, is_final = _failure(error, endpoint)
    assert (found, is_final) == (kind, final) and message
