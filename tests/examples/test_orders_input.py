"""The reference service against bad input, tried from outside as an outsider did (issue 19).

Every reproducer of the report, through the real service: each request ends in
an answer that is JSON and serialises, repeats little of what it was sent, and
says whose fault it was.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
from examples.orders.serve import KEEP_ALIVE
from examples.orders.stack import ROOT, Stack

from seawall.integrations._headers import DEADLINE_HEADER

from .conftest import POLICIES, eventually

VALID = {"user_id": "u-1", "items": [{"sku": "sku-001", "qty": 1}]}


def strict_json(response: httpx.Response) -> Any:
    """Parse as a strict JSON reader would: no NaN or Infinity, valid UTF-8."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    return json.loads(response.content.decode("utf-8"), parse_constant=refuse)


def raw(client: httpx.Client, body: bytes, **headers: str) -> httpx.Response:
    return client.post(
        "/orders", content=body, headers={"content-type": "application/json", **headers}
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id":"u","items":[{"sku":"sku-001","qty":NaN}]}',
        b'{"user_id":"u","items":[{"sku":"sku-001","qty":Infinity}]}',
        b'{"user_id":"u","items":[{"sku":"sku-001","qty":-Infinity}]}',
        b'{"user_id":NaN,"items":[{"sku":"sku-001","qty":1}]}',
        b'{"user_id":"\\ud800","items":[{"sku":"sku-001","qty":1}]}',
        b'{"user_id":"u","items":[{"sku":"\\ud800","qty":1}]}',
    ],
    ids=["nan", "infinity", "-infinity", "nan-user", "surrogate-user", "surrogate-sku"],
)
def test_numbers_and_strings_json_cannot_carry_are_a_422_and_the_connection_lives(
    orders: httpx.Client, body: bytes
) -> None:
    """They were a 500, and the next request on the same connection was reset."""
    answer = raw(orders, body)
    assert answer.status_code == 422
    assert strict_json(answer)["error"] == "invalid_request"
    assert orders.get("/products/sku-001").status_code == 200  # same connection, still open


def test_a_large_body_is_413_and_an_error_repeats_little_of_its_input(
    orders: httpx.Client,
) -> None:
    huge = raw(orders, b"x" * 20_000_000)
    assert huge.status_code == 413
    assert strict_json(huge) == {"error": "body_too_large", "max_bytes": 65536}
    long_user = {"user_id": "a" * 60_000, "items": [{"sku": "sku-001", "qty": 1}]}
    invalid = orders.post("/orders", json=long_user)
    assert invalid.status_code == 422
    assert len(invalid.content) < 500  # was the 60 kB back, and 1 MB for 1 MB


@pytest.mark.parametrize("ms", ["0.1", "0.01", "0"])
def test_a_deadline_the_caller_spent_is_504_not_a_dependency_being_unavailable(
    orders: httpx.Client, ms: str
) -> None:
    for answer in (
        orders.post("/orders", json=VALID, headers={DEADLINE_HEADER: ms}),
        orders.get("/products/sku-002", headers={DEADLINE_HEADER: ms}),
    ):
        assert answer.status_code == 504, answer.text
        assert strict_json(answer)["error"] == "deadline_exceeded"
        assert "retry-after" not in answer.headers


def test_reads_failing_serve_the_product_after_a_flood_of_made_up_ids_and_readiness_says_so(
    stack: Stack, orders: httpx.Client
) -> None:
    """The outsider's knob, ``{"error_rate": 1.0}``, after the fuzzer's thousands of made-up ids.

    A "not found" was remembered like a product: the ids nobody will ask for
    again evicted the products a failing database needs. And /readyz read the
    database around the knob, so it stayed 200 while every read failed.
    """
    assert stack.service is not None
    fresh = orders.get("/products/sku-003").json()
    for n in range(30):
        assert orders.get(f"/products/made-up-{n}").status_code == 404
    knob = stack.service.url + "/_admin/faults/db_read"
    assert httpx.put(knob, json={"error_rate": 1.0}, timeout=5).status_code == 200
    stale = orders.get("/products/sku-003")
    assert stale.status_code == 200
    assert (stale.json()["degraded"], stale.json()["price_cents"]) == (True, fresh["price_cents"])
    # A made-up id was never stored: with reads failing there is nothing to say about it.
    assert orders.get("/products/made-up-1").status_code == 503
    eventually(lambda: orders.get("/readyz").status_code == 503, 5)
    httpx.delete(knob, timeout=5)
    eventually(lambda: orders.get("/readyz").status_code == 200, 5)


# -- Idempotency-Key ------------------------------------------------------------------------


def test_the_same_key_and_order_get_the_first_answer_and_one_order(
    stack: Stack, orders: httpx.Client
) -> None:
    before = stack.service_state()["orders"]
    key = {"Idempotency-Key": "order-7f3a"}
    first = orders.post("/orders", json=VALID, headers=key)
    # The same order spelt differently (key order, spacing) is the same order.
    again = raw(orders, b'{"items": [{"qty": 1, "sku": "sku-001"}], "user_id": "u-1"}', **key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert stack.service_state()["orders"] == before + 1
    assert stack.simulator_state("payment")["charges"] == 1
    other = orders.post(
        "/orders", json={**VALID, "items": [{"sku": "sku-002", "qty": 1}]}, headers=key
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert stack.service_state()["orders"] == before + 1


def test_concurrent_requests_with_one_key_make_one_order(
    stack: Stack, orders: httpx.Client
) -> None:
    """One is served; the others get its answer, or 409 while it is still being served."""
    assert stack.service is not None
    before = stack.service_state()["orders"]
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=stack.service.url, timeout=30) as client:  # type: ignore[union-attr]
            answer = client.post("/orders", json=VALID, headers={"Idempotency-Key": "race-1"})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 8
    created = {a.json()["order_id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    busy = [a for a in answers if a.status_code != 201]
    assert all(a.status_code == 409 and a.headers["retry-after"] == "1" for a in busy)
    assert stack.service_state()["orders"] == before + 1
    assert stack.simulator_state("payment")["charges"] == 1


def test_a_key_whose_order_failed_can_be_used_again(stack: Stack, orders: httpx.Client) -> None:
    """No order, no answer kept: the client's retry with the same key is served afresh."""
    key = {"Idempotency-Key": "retry-after-outage"}
    stack.fault("payment", error_rate=1.0, status=503)
    failed = orders.post("/orders", json=VALID, headers=key)
    assert failed.status_code == 503
    stack.fault("payment")
    retried = orders.post("/orders", json=VALID, headers=key)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_a_malformed_key_is_refused(orders: httpx.Client, key: str) -> None:
    answer = orders.post("/orders", json=VALID, headers={"Idempotency-Key": key.encode()})  # type: ignore[dict-item]
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


# -- the spec says what the service answers ---------------------------------------------------


def test_the_spec_documents_every_answer(orders: httpx.Client) -> None:
    paths = orders.get("/openapi.json").json()["paths"]
    documented = {
        (path, method): set(operation["responses"])
        for path, methods in paths.items()
        for method, operation in methods.items()
    }
    assert documented[("/orders", "post")] >= {"201", "400", "409", "413", "422", "503", "504"}
    assert documented[("/products/{product_id}", "get")] >= {"200", "404", "503", "504"}
    assert documented[("/recommendations", "get")] >= {"200", "422", "503", "504"}
    key = next(p for p in paths["/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"


def test_a_method_a_path_does_not_take_lists_every_one_it_does(orders: httpx.Client) -> None:
    answer = orders.options("/_admin/faults/db_read")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"PUT", "DELETE"}
    assert strict_json(answer)["error"] == "method_not_allowed"


# -- every request ends in an answer ------------------------------------------------------------


def test_a_connection_reused_after_waiting_out_a_retry_after_is_answered(stack: Stack) -> None:
    """The outsider's resets: a client honours ``Retry-After: 5`` and reuses its connection.

    uvicorn closed idle connections after 5 s, the very moment such a client
    sends again: under 1,000 clients, a few requests met a closed connection,
    unanswered and unlogged. (Measured before the fix, 1,000 raw-socket
    clients honouring Retry-After for 20 s: 472 resets; after: none.) Here, one
    connection, idle for a little longer than uvicorn's default, then reused.
    """
    assert stack.service is not None
    port = int(stack.service.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/products/sku-001")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        used = conn.sock
        time.sleep(5.5)  # a Retry-After of 5 s, waited out
        # On the same socket: a reset here is what the outsider's clients met.
        conn.request("GET", "/products/sku-001")
        assert conn.sock is used
        again = conn.getresponse()
        again.read()
        assert again.status == 200
    finally:
        conn.close()


def test_the_server_outlasts_its_clients_and_balancers_on_idle_connections() -> None:
    """Longer than any Retry-After the service sends and than a 60 s balancer's idle timeout."""
    shedding = POLICIES.service.shedding
    for longest_wait in (60, POLICIES.service.request_deadline, shedding.get("retry_after", 1)):
        assert float(longest_wait) < KEEP_ALIVE


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    """At a soft limit of 1,024, a thousand clients leave new connections unaccepted."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    script = "from examples.orders.serve import raise_open_files_limit as r; print(r())"
    done = subprocess.run(
        ["/bin/sh", "-c", 'ulimit -S -n 256 && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
    )
    assert int(done.stdout) == (hard if hard != resource.RLIM_INFINITY else 65_536)


def test_the_naive_wiring_honours_the_key_too() -> None:
    """Idempotency is the service's, not seawall's: the comparison keeps it in both modes."""
    with Stack(mode="naive") as naive:
        assert naive.service is not None
        with httpx.Client(base_url=naive.service.url, timeout=30) as client:
            key = {"Idempotency-Key": "naive-1"}
            first = client.post("/orders", json=VALID, headers=key)
            again = client.post("/orders", json=VALID, headers=key)
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json() == first.json()
        assert naive.simulator_state("payment")["charges"] == 1
