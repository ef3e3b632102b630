"""The reference service on its embedded defaults (SQLite, in-process cache), with real faults."""

from __future__ import annotations

import concurrent.futures
import statistics
import time

import httpx
from examples.orders.stack import Stack
from examples.orders.wiring import CLOSE_SECONDS

from tests.examples.conftest import POLICIES, arrival_gaps, eventually, order

DEADLINE_HEADER = "Seawall-Deadline-Ms"
PAYMENT_TIMEOUT = POLICIES.timeout("payment")


def test_happy_path(stack: Stack, orders: httpx.Client) -> None:
    r = order(orders, qty=2)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "confirmed"
    assert body["total_cents"] == 2 * orders.get("/products/sku-001").json()["price_cents"]
    product = orders.get("/products/sku-001").json()
    assert product["degraded"] is False
    recs = orders.get("/recommendations", params={"user_id": "u-1"}).json()
    assert len(recs["items"]) == 5
    assert recs["degraded"] is False
    assert orders.get("/healthz").status_code == 200
    assert orders.get("/readyz").json()["status"] == "ok"
    assert "dependency_calls_total" in orders.get("/metrics").text
    eventually(lambda: stack.simulator_state("notification")["events"] == 1, 10)
    eventually(lambda: stack.simulator_state("analytics")["events"] == 1, 10)
    assert stack.simulator_state("payment")["charges"] == 1
    assert stack.service_state()["orders"] >= 1


def test_the_callers_deadline_travels_downstream_and_garbage_is_ignored(
    stack: Stack, orders: httpx.Client
) -> None:
    """Seawall-Deadline-Ms in, what is left of it out to payment; a malformed one is not a 500."""
    item = {"user_id": "u-1", "items": [{"sku": "sku-001", "qty": 1}]}

    def sent_to_payment() -> int:
        return int(stack.simulator_state("payment")["deadlines"]["/charges"][-1])

    r = orders.post("/orders", json=item, headers={"Seawall-Deadline-Ms": "3000"})
    assert r.status_code == 201, r.text
    assert 0 < sent_to_payment() <= 3000  # the caller's budget, less what was spent
    garbage_values: tuple[str | bytes, ...] = ("soon", "-5", "1e3", "0x10", "1" * 40, b"\xb9\xb2")
    for garbage in garbage_values:
        r = orders.post("/orders", json=item, headers={"Seawall-Deadline-Ms": garbage})
        assert r.status_code == 201, (garbage, r.text)
        # The server's default budget (25 s) instead, never the garbage.
        assert 3000 < sent_to_payment() <= POLICIES.service.request_deadline * 1000


def test_bad_input_is_4xx_with_json(orders: httpx.Client) -> None:
    for body in (
        {"user_id": "u"},
        {"user_id": "u", "items": []},
        {"user_id": "u", "items": [{"sku": "x", "qty": 0}]},
    ):
        r = orders.post("/orders", json=body)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == "invalid_request"
    r = orders.post("/orders", content=b"{not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (400, "malformed_body")
    r = orders.post("/orders", json={"user_id": "u", "items": [{"sku": "sku-999", "qty": 1}]})
    assert (r.status_code, r.json()["skus"]) == (422, ["sku-999"])
    assert orders.get("/products/sku-999").status_code == 404
    assert orders.get("/recommendations").status_code == 422


def test_recommendations_down_serve_popular_items_marked_degraded(
    stack: Stack, orders: httpx.Client
) -> None:
    stack.fault("recommendations", error_rate=1, status=503)
    r = orders.get("/recommendations", params={"user_id": "u-7"})
    assert r.status_code == 200
    assert r.json()["degraded"] is True
    assert r.json()["items"][:3] == ["sku-001", "sku-002", "sku-003"]
    assert "recommendations" in r.headers["seawall-degraded"]


def test_database_reads_failing_serve_the_last_good_product(
    stack: Stack, orders: httpx.Client
) -> None:
    fresh = orders.get("/products/sku-004").json()
    assert fresh["degraded"] is False
    assert stack.service is not None
    httpx.put(
        stack.service.url + "/_admin/faults/db_read",
        json={"error_rate": 1, "status": 503},
        timeout=5,
    )
    stale = orders.get("/products/sku-004")
    assert stale.status_code == 200
    body = stale.json()
    assert body["degraded"] is True
    assert body["notice"] == "prices may be slightly out of date"
    assert body["price_cents"] == fresh["price_cents"]
    assert "age" in stale.headers
    assert stale.headers["cache-control"] == f"no-store, max-stale={stale.headers['age']}"
    assert "db_read;kind=stale" in stale.headers["seawall-degraded"]
    assert orders.get("/products/sku-005").status_code == 503  # never read: nothing stale to serve


def test_payment_slow_gets_what_it_can_answer_and_the_excess_fails_fast(
    stack: Stack, orders: httpx.Client
) -> None:
    """Slow, not down: the adaptive limit admits what payment answers; the rest fail fast.

    Payment's limit starts at 20 calls: 30 orders at once while each charge
    takes 2.5 s, and the ten over the limit are refused at once, not queued.
    The breaker does not open on slowness (that is the limit's business), and
    other routes are unaffected.
    """
    stack.fault("payment", latency=2.5)
    product_latencies: list[float] = []

    def browse() -> None:
        for _ in range(20):
            r = orders.get("/products/sku-002")
            assert r.status_code == 200
            product_latencies.append(r.elapsed.total_seconds())
            time.sleep(0.1)

    with concurrent.futures.ThreadPoolExecutor(max_workers=34) as pool:
        browsing = pool.submit(browse)
        # A few ms apart, so that they meet at payment, not at the price read.
        answers = list(pool.map(lambda i: (time.sleep(0.02 * i), order(orders))[1], range(30)))
        browsing.result(timeout=60)
    served = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code == 503]
    assert len(served) + len(refused) == 30
    assert len(served) >= 12  # at least the limit's floor, all of them slow
    assert refused  # over the limit: refused, not queued at payment
    for r in refused:
        assert r.json()["dependency"] == "payment"
        assert int(r.headers["retry-after"]) >= 1
        assert r.elapsed.total_seconds() < 1.0  # at once: no call to payment
    assert stack.service_state()["dependencies"]["payment"]["breaker"] == "closed"
    # Slow payment holds an order no longer than payment's own timeout allows.
    order_latencies = [r.elapsed.total_seconds() for r in served]
    assert max(order_latencies) < PAYMENT_TIMEOUT
    assert statistics.quantiles(product_latencies, n=100)[98] < 0.5  # isolated
    stack.fault("payment")  # payment recovers: orders are served again at once
    assert order(orders).status_code == 201


def test_an_order_cut_off_by_its_deadline_is_undone(stack: Stack, orders: httpx.Client) -> None:
    """The deadline cancels the request while payment works: the reservation and charge are undone."""
    stack.fault("payment", latency=2.0)
    body = {"user_id": "u-late", "items": [{"sku": "sku-001", "qty": 1}]}
    r = orders.post("/orders", json=body, headers={DEADLINE_HEADER: "1000"})
    assert r.status_code == 504, r.text

    def undone() -> bool:
        refunded = stack.simulator_state("payment")["refunded_orders"]
        return (
            len(refunded) == 1 and stack.simulator_state("inventory")["released_orders"] == refunded
        )

    eventually(undone, timeout=10, interval=0.2)
    assert stack.simulator_state("inventory")["reservations"] == 1
    payment = stack.simulator_state("payment")
    assert payment["by_path"]["/charges"] == 1  # the charge went out: it may have been made
    assert set(payment["charged_orders"]) <= set(payment["refunded_orders"])


def test_payment_slower_than_httpx_default_is_waited_for_within_its_timeout(
    stack: Stack, orders: httpx.Client
) -> None:
    """Between httpx's default 5 s and payment's own timeout: one attempt, one charge, confirmed."""
    assert PAYMENT_TIMEOUT > 6.5
    stack.fault("payment", latency=6.5)
    r = order(orders)
    assert r.status_code == 201, r.text
    payment = stack.simulator_state("payment")
    assert payment["by_path"]["/charges"] == 1
    assert payment["charges"] == 1


def test_payment_slower_than_its_timeout_is_cut_off_at_its_timeout(
    stack: Stack, orders: httpx.Client
) -> None:
    """The first attempt gives up at payment's timeout, not httpx's default 5 s."""
    stack.fault("payment", latency=PAYMENT_TIMEOUT + 1)
    body = {"user_id": "u-slow", "items": [{"sku": "sku-001", "qty": 1}]}
    # Room for one whole attempt and the start of the retry, which ends the test.
    budget_ms = int((PAYMENT_TIMEOUT + 1) * 1000)
    r = orders.post("/orders", json=body, headers={DEADLINE_HEADER: str(budget_ms)})
    assert r.status_code in (503, 504), r.text
    assert r.elapsed.total_seconds() < PAYMENT_TIMEOUT + 2
    (gap,) = arrival_gaps(stack, "payment", "/charges")
    assert PAYMENT_TIMEOUT - 0.1 <= gap < PAYMENT_TIMEOUT + 0.5, gap


def test_retry_after_is_waited_for_as_asked(stack: Stack, orders: httpx.Client) -> None:
    """A 429 with Retry-After: 2 is retried after 2 s, not after a lower backoff cap."""
    stack.fault("payment", error_rate=1, status=429, retry_after=2)
    r = order(orders)
    assert r.status_code == 503
    (gap,) = arrival_gaps(stack, "payment", "/charges")
    assert 1.95 <= gap < 2.5, gap


def test_lost_payment_responses_charge_once_per_order(stack: Stack, orders: httpx.Client) -> None:
    """Commit then lose the response: the retry carries the same idempotency key."""
    stack.fault("payment", lose_response_rate=0.5)
    results = [order(orders, user=f"u-{i}") for i in range(8)]
    stack.fault("payment")
    confirmed = {r.json()["order_id"] for r in results if r.status_code == 201}
    assert confirmed  # orders get through on the retry
    assert all(r.status_code in (201, 503) for r in results)
    payment = stack.simulator_state("payment")
    assert payment["orders_charged_twice"] == []
    charged = set(payment["charged_orders"])
    assert confirmed <= charged

    def settled() -> bool:
        refunded = set(stack.simulator_state("payment")["refunded_orders"])
        return charged - confirmed <= refunded

    # Every charge belongs to a confirmed order or is refunded: nobody pays for nothing.
    eventually(settled, timeout=20, interval=0.25)
    refunded = set(stack.simulator_state("payment")["refunded_orders"])
    assert not confirmed & refunded


def test_notification_down_orders_still_confirmed_and_delivered_later(
    stack: Stack, orders: httpx.Client
) -> None:
    stack.fault("notification", error_rate=1, status=503)
    for i in range(10):
        assert order(orders, user=f"u-{i}").status_code == 201
    assert stack.simulator_state("notification")["unique_events"] == 0
    stack.fault("notification")
    eventually(
        lambda: stack.simulator_state("notification")["unique_events"] == 10,
        timeout=20,
        interval=0.25,
    )
    state = stack.simulator_state("notification")
    assert state["unique_events"] == 10  # none lost


def test_service_killed_with_events_in_its_outbox_delivers_them_after_restart(stack: Stack) -> None:
    """SIGKILL, restart on the same data directory: the outbox replays."""
    from tests.examples.conftest import reset

    reset(stack)
    assert stack.service is not None
    stack.fault("notification", hang_rate=1)  # deliveries hang: events stay in the outbox
    with httpx.Client(base_url=stack.service.url, timeout=30) as client:
        for i in range(5):
            assert order(client, user=f"k-{i}").status_code == 201
    import signal

    stack.service.signal(signal.SIGKILL)
    stack.service.popen.wait(10)
    stack.fault("notification")
    stack.start_service()
    eventually(
        lambda: stack.simulator_state("notification")["unique_events"] >= 5,
        timeout=30,
        interval=0.25,
    )


def test_sigterm_turns_readiness_off_first_and_finishes_in_flight_requests(stack: Stack) -> None:
    """Graceful shutdown: 503 on /readyz at once, the in-flight order completes, clean exit.

    Events that cannot be delivered by then stay in their outboxes on disk, and
    the next process delivers them. The outboxes close at once, not in turn, so
    the exit comes within the wiring's CLOSE_SECONDS of the last request.
    """
    import signal
    import threading

    from tests.examples.conftest import reset

    reset(stack)
    assert stack.service is not None
    service = stack.service
    for downstream in ("notification", "analytics"):
        stack.fault(downstream, hang_rate=1)  # deliveries hang: events stay pending
    results: list[httpx.Response] = []
    answered: list[float] = []

    def in_flight_order(client: httpx.Client) -> None:
        results.append(order(client))
        answered.append(time.monotonic())

    with httpx.Client(base_url=service.url, timeout=30) as client:
        for i in range(2):
            assert order(client, user=f"t-{i}").status_code == 201
        stack.fault("payment", latency=1.5)
        in_flight = threading.Thread(target=in_flight_order, args=(client,))
        in_flight.start()
        time.sleep(0.3)  # the order is waiting on payment
        service.signal(signal.SIGTERM)
        time.sleep(0.1)
        assert client.get("/readyz").status_code == 503  # the load balancer is told first
        assert client.get("/healthz").status_code == 200  # still alive: it is draining
        in_flight.join(timeout=30)
    assert results[0].status_code == 201  # finished, not cut off
    # uvicorn re-raises the signal once it has shut down, as a process should.
    assert service.popen.wait(timeout=30) in (0, -signal.SIGTERM)
    # The drain (ORDERS_DRAIN_SECONDS=0.5 in Stack), what is left of the order, then close().
    # After the last request, close(): every outbox waits at the same time as the others.
    assert time.monotonic() - answered[0] < CLOSE_SECONDS + 0.5
    for downstream in ("notification", "analytics"):
        assert stack.simulator_state(downstream)["unique_events"] == 0  # none got through
        stack.fault(downstream)
    stack.fault("payment")
    stack.start_service()  # on the same data directory; also for the tests that follow
    for downstream in ("notification", "analytics"):

        def delivered(downstream: str = downstream) -> bool:
            return bool(stack.simulator_state(downstream)["unique_events"] == 3)

        eventually(delivered, timeout=20, interval=0.25)
