"""The Kubernetes manifests agree with the timeout hierarchy of the service.

Every number on the service's side is read where the service reads it: the
policies through the service's own loader, the shutdown steps from serve.py and
wiring.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.orders.serve import graceful_shutdown_timeout
from examples.orders.wiring import CLOSE_SECONDS, OUTBOXES

from seawall import Fallback, Outbox, OutboxEntry, Registry
from tests.examples.conftest import POLICIES

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = (ROOT / "deploy/k8s/orders.yaml").read_text()
REQUEST_DEADLINE = POLICIES.service.request_deadline


def probe(name: str) -> dict[str, int]:
    block = MANIFEST.split(f"{name}:", 1)[1].split("Probe:", 1)[0]
    return {k: int(v) for k, v in re.findall(r"(\w+Seconds|failureThreshold):\s*(\d+)", block)}


def number(pattern: str) -> float:
    match = re.search(pattern, MANIFEST)
    assert match, pattern
    return float(match.group(1))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """The service's Registry, built from its policies as the service builds it."""

    async def deliver(entry: OutboxEntry) -> None:
        return None

    outboxes = {
        name: Outbox(tmp_path / f"{name}.db", deliver=deliver)
        for name in (*OUTBOXES, "compensations")
    }
    fallbacks = {"recommendations": Fallback.value([])}  # set in code by the wiring
    try:
        yield Registry.from_mapping(POLICIES.registry, outboxes=outboxes, fallbacks=fallbacks)
    finally:
        for outbox in outboxes.values():
            outbox.close()


def test_every_probe_is_configured() -> None:
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert {"periodSeconds", "timeoutSeconds", "failureThreshold"} <= set(probe(name))


def test_readiness_probe_outlasts_each_check() -> None:
    assert probe("readinessProbe")["timeoutSeconds"] > max(POLICIES.service.readiness.values())


def test_liveness_checks_no_dependency() -> None:
    assert "path: /healthz" in MANIFEST.split("livenessProbe:", 1)[1].split("readinessProbe:", 1)[0]


def test_the_client_waits_longer_than_the_service() -> None:
    ingress = number(r'proxy-read-timeout: "(\d+)"')
    assert ingress > REQUEST_DEADLINE


def test_grace_period_covers_drain_requests_and_close() -> None:
    """SIGTERM to exit, at worst: the drain, uvicorn's wait for requests, then the wiring's close()."""
    grace = number(r"terminationGracePeriodSeconds: (\d+)")
    drain = number(r'ORDERS_DRAIN_SECONDS, value: "(\d+)"')
    worst = drain + graceful_shutdown_timeout(REQUEST_DEADLINE) + CLOSE_SECONDS
    assert grace >= worst + 1  # and a second for the process to start and end its exit
    assert f"{drain:g} + {graceful_shutdown_timeout(REQUEST_DEADLINE)} + {CLOSE_SECONDS:g}" in (
        MANIFEST
    )  # the comment's arithmetic is these numbers


def test_dependency_timeouts_nest_inside_the_request_deadline() -> None:
    assert (
        30
        > REQUEST_DEADLINE
        > POLICIES.timeout("db_write")
        > POLICIES.timeout("payment")
        > POLICIES.timeout("db_read")
        > POLICIES.service.cache_timeout
    )
    assert POLICIES.timeout("db_prices") == POLICIES.timeout("db_read")


def test_waiting_as_a_server_asks_still_fits_the_request_deadline(registry: Registry) -> None:
    """Retry-After is honoured up to the backoff maximum: even at that, every retry fits."""
    assert registry.request_deadline == REQUEST_DEADLINE
    assert registry.problems == []
    for dependency in registry:
        retry, timeout = dependency.config.retry, dependency.config.timeout
        if retry is None or timeout is None:
            continue
        attempts, backoff = retry.config.attempts, retry.config.backoff
        worst = attempts * timeout + (attempts - 1) * backoff.maximum
        assert worst <= REQUEST_DEADLINE, (dependency.name, worst)
    # A rate limiter's "Retry-After: 2" is waited for in full.
    assert registry["payment"].config.retry.config.backoff.maximum >= 2  # type: ignore[union-attr]
