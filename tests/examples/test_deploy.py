"""The Kubernetes manifests agree with the timeout hierarchy of the service."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = (ROOT / "deploy/k8s/orders.yaml").read_text()
POLICIES = tomllib.loads((ROOT / "examples/orders/policies.toml").read_text())

READINESS_CHECK_TIMEOUT = 1.0  # examples/orders/wiring.py: Check(..., timeout=...)
OUTBOX_FLUSH = 2.0  # wiring.SeawallWiring.close()


def probe(name: str) -> dict[str, int]:
    block = MANIFEST.split(f"{name}:", 1)[1].split("Probe:", 1)[0]
    return {k: int(v) for k, v in re.findall(r"(\w+Seconds|failureThreshold):\s*(\d+)", block)}


def number(pattern: str) -> float:
    match = re.search(pattern, MANIFEST)
    assert match, pattern
    return float(match.group(1))


def test_every_probe_is_configured() -> None:
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert {"periodSeconds", "timeoutSeconds", "failureThreshold"} <= set(probe(name))


def test_readiness_probe_outlasts_each_check() -> None:
    assert probe("readinessProbe")["timeoutSeconds"] > READINESS_CHECK_TIMEOUT


def test_liveness_checks_no_dependency() -> None:
    assert "path: /healthz" in MANIFEST.split("livenessProbe:", 1)[1].split("readinessProbe:", 1)[0]


def test_the_client_waits_longer_than_the_service() -> None:
    ingress = number(r'proxy-read-timeout: "(\d+)"')
    assert ingress > POLICIES["request_deadline"]


def test_grace_period_covers_drain_requests_and_flush() -> None:
    grace = number(r"terminationGracePeriodSeconds: (\d+)")
    drain = number(r'ORDERS_DRAIN_SECONDS, value: "(\d+)"')
    assert grace > drain + POLICIES["request_deadline"] + OUTBOX_FLUSH


def test_dependency_timeouts_nest_inside_the_request_deadline() -> None:
    deps = POLICIES["dependencies"]
    external = POLICIES["configs"]["external"]["timeout"]
    assert (
        POLICIES["request_deadline"]
        > deps["db_write"]["timeout"]
        > external
        > deps["db_read"]["timeout"]
    )
