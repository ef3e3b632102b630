"""Three replicas of the service sharing breaker state through Redis."""

from __future__ import annotations

import math
import threading
import time
import tomllib
from collections.abc import Iterator

import httpx
import pytest
from examples.orders.settings import HERE
from examples.orders.stack import Stack, _request

from tests.examples.conftest import eventually, order
from tests.servers import RedisServer

# Payment's breaker as policies.toml sets it: its own table over the defaults.
_POLICIES = tomllib.loads((HERE / "policies.toml").read_text())
_BREAKER = _POLICIES["defaults"]["breaker"] | _POLICIES["dependencies"]["payment"]["breaker"]
OPEN_DURATION = float(_BREAKER["open_duration"])
HALF_OPEN_CALLS = int(_BREAKER["half_open_calls"])


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer) -> Iterator[Stack]:
    env = {"REDIS_URL": redis_server.url, "ORDERS_SHARE_STATE": "1"}
    with Stack(env=env, replicas=3) as running:
        yield running


def charges_received(stack: Stack) -> int:
    # Charges only: refunds of the failed orders reach the payment service too.
    return int(stack.simulator_state("payment")["by_path"].get("/charges", 0))


def payment_breaker(url: str) -> str:
    return str(_request("GET", url + "/_admin/state", None)["dependencies"]["payment"]["breaker"])


def test_failures_at_one_replica_open_the_circuit_at_all(fleet: Stack) -> None:
    fleet.fault("payment", error_rate=1, status=503)
    first, *others = fleet.services
    with httpx.Client(base_url=first.url, timeout=30) as client:
        eventually(
            lambda: order(client).status_code == 503 and payment_breaker(first.url) == "open", 20
        )
    opened = time.monotonic()
    for replica in others:  # they sent nothing to payment, yet learn it is down
        eventually(lambda r=replica: payment_breaker(r.url) in ("open", "half_open"), timeout=3)
    assert time.monotonic() - opened < 3

    # Traffic on every replica while payment stays down: the fleet probes, not each replica.
    before = charges_received(fleet)
    stop = threading.Event()

    def drive(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                order(client)
                time.sleep(0.05)

    threads = [threading.Thread(target=drive, args=(r.url,)) for r in fleet.services]
    for t in threads:
        t.start()
    watched = 2 * OPEN_DURATION + 1
    time.sleep(watched)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    probes = charges_received(fleet) - before
    periods = math.ceil(watched / OPEN_DURATION) + 1
    # Each replica on its own would send up to 3 x 2 per period.
    assert probes <= HALF_OPEN_CALLS * periods, probes
    fleet.fault("payment")


def test_an_idempotency_key_holds_across_replicas(fleet: Stack) -> None:
    """The key lives in the database they share: a retry sent to another replica is a replay."""
    first, second, _ = fleet.services
    body = {"user_id": "u-fleet", "items": [{"sku": "sku-004", "qty": 1}]}
    key = {"Idempotency-Key": "fleet-order-1"}
    before = fleet.service_state()["orders"]
    with httpx.Client(timeout=30) as client:

        def place() -> httpx.Response | None:
            answer = client.post(first.url + "/orders", json=body, headers=key)
            return answer if answer.status_code == 201 else None

        # An earlier test's breaker may still be open: each 503 releases the key,
        # so the client's retries with it are served afresh until one is placed.
        placed = eventually(place, timeout=20, interval=0.5)
        again = client.post(second.url + "/orders", json=body, headers=key)
    assert again.status_code == 201  # a replay: payment is not asked again
    assert again.json() == placed.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert fleet.service_state()["orders"] == before + 1
