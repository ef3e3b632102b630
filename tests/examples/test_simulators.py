"""The downstream simulators: real HTTP services whose faults are real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from examples.orders import simulators
from examples.orders.capacity import Capacity
from examples.orders.simulators import SIZING, create_app

from tests.servers import serve_asgi


@pytest.fixture
def payment() -> Iterator[httpx.Client]:
    with serve_asgi(create_app("payment")) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client


#: A connection closed with no answer: seen as a protocol error, or as a reset
#: when the close races the request's last bytes.
CUT_OFF = (httpx.RemoteProtocolError, httpx.ReadError)


def charge(client: httpx.Client, order: str, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/charges", json={"order_id": order, "amount_cents": 500}, headers=headers)


def test_payment_charges_once_per_idempotency_key(payment: httpx.Client) -> None:
    first = charge(payment, "o-1", key="k-1")
    again = charge(payment, "o-1", key="k-1")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["charge_id"] == first.json()["charge_id"]
    charge(payment, "o-2")
    charge(payment, "o-2")  # no key: a second, double charge
    state = payment.get("/_control").json()
    assert state["charges"] == 3
    assert state["orders_charged_twice"] == ["o-2"]


def test_bad_input_is_a_4xx_with_a_json_body(payment: httpx.Client) -> None:
    r = payment.post("/charges", content=b"not json")
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"
    r = payment.put("/_control/fault", json={"error_rate": 2})
    assert r.status_code == 422
    assert "error_rate" in r.json()["detail"]
    r = payment.put("/_control/fault", json=[1, 2])
    assert r.status_code == 422


def test_error_status_with_retry_after(payment: httpx.Client) -> None:
    payment.put("/_control/fault", json={"error_rate": 1, "status": 503, "retry_after": 4})
    r = charge(payment, "o-1")
    assert (r.status_code, r.headers["retry-after"]) == (503, "4")
    payment.delete("/_control/fault")
    assert charge(payment, "o-1").status_code == 201
    state = payment.get("/_control").json()
    assert state["received"] == 2
    assert state["actions"] == {"pass": 1, "fail": 1, "hang": 0, "drop": 0, "lose_response": 0}


def test_drop_closes_the_connection_without_doing_anything(payment: httpx.Client) -> None:
    payment.put("/_control/fault", json={"drop_rate": 1})
    with pytest.raises(CUT_OFF):
        charge(payment, "o-1", key="k")
    payment.delete("/_control/fault")
    assert payment.get("/_control").json()["charges"] == 0


def test_lose_response_commits_then_cuts_the_line(payment: httpx.Client) -> None:
    payment.put("/_control/fault", json={"lose_response_rate": 1})
    with pytest.raises(CUT_OFF):
        charge(payment, "o-1", key="k")
    payment.delete("/_control/fault")
    assert payment.get("/_control").json()["charges"] == 1  # the charge happened
    assert charge(payment, "o-1", key="k").json()["replayed"] is True


def test_hang_never_answers_and_latency_delays(payment: httpx.Client) -> None:
    payment.put("/_control/fault", json={"hang_rate": 1})
    with pytest.raises(httpx.ReadTimeout):
        payment.post("/charges", json={"order_id": "o", "amount_cents": 1}, timeout=0.2)
    payment.put("/_control/fault", json={"latency": 0.15})
    r = charge(payment, "o-2")
    assert r.status_code == 201
    assert r.elapsed.total_seconds() >= 0.15


@pytest.mark.parametrize("service", ["inventory", "notification", "analytics", "recommendations"])
def test_each_service_answers(service: str) -> None:
    with serve_asgi(create_app(service)) as url, httpx.Client(base_url=url, timeout=5) as client:
        if service == "inventory":
            r = client.post("/reservations", json={"order_id": "o-1", "items": []})
            assert r.status_code == 201
        elif service == "recommendations":
            r = client.get("/recommendations", params={"user_id": "u-1"})
            assert len(r.json()["items"]) == 5
        else:
            path = "/notifications" if service == "notification" else "/events"
            for _ in range(2):
                assert client.post(path, json={"event_id": "e-1"}).status_code == 202
            state = client.get("/_control").json()
            assert (state["events"], state["unique_events"], state["duplicate_events"]) == (2, 1, 1)


# -- finite capacity, over real HTTP ------------------------------------------


def load_total(state: dict, name: str) -> float:
    return sum(v for _, v in state["load"][name])


def served(capacity: Capacity) -> Any:
    return serve_asgi(create_app("payment", capacity=capacity))


def test_requests_beyond_the_workers_queue_and_the_simulator_says_so() -> None:
    with served(Capacity(workers=1, service_time=0.2)) as url:

        async def three() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                rs = await asyncio.gather(
                    *(
                        client.post("/charges", json={"order_id": f"o-{n}", "amount_cents": 1})
                        for n in range(3)
                    )
                )
                return [r.status_code for r in rs]

        started = time.monotonic()
        assert asyncio.run(three()) == [201, 201, 201]
        assert time.monotonic() - started >= 0.6  # one at a time, 0.2 s each
        state = httpx.get(url + "/_control").json()
    assert load_total(state, "completed") == 3
    assert load_total(state, "wasted") == 0
    assert max(v for _, v in state["load"]["queue_peak"]) == 2
    assert max(v for _, v in state["load"]["busy_peak"]) == 1
    assert state["load"]["capacity"]["throughput"] == 5.0


@pytest.mark.parametrize("notice", [False, True])
def test_a_caller_that_gives_up_leaves_its_work_behind_unless_noticed(notice: bool) -> None:
    capacity = Capacity(workers=1, service_time=0.4, notice_disconnect=notice)
    with served(capacity) as url, httpx.Client(base_url=url, timeout=5) as client:
        with pytest.raises(httpx.ReadTimeout):
            charge_body = {"order_id": "o-1", "amount_cents": 1}
            client.post("/charges", json=charge_body, timeout=0.1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            state = client.get("/_control").json()
            if state["load"]["busy_now"] == 0:
                break
            time.sleep(0.05)
    if notice:
        # Dropped as soon as the caller left: no charge, the worker free at once.
        assert state["charges"] == 0
        assert load_total(state, "abandoned") == 1
        assert load_total(state, "wasted") == 0
    else:
        # Done for nobody: the charge is made, and its worker was held for all of it.
        assert state["charges"] == 1
        assert load_total(state, "wasted") == 1
        assert load_total(state, "wasted_seconds") >= 0.4


def test_a_5xx_takes_a_worker_and_a_429_is_answered_at_the_door(payment: httpx.Client) -> None:
    payment.put("/_control/capacity", json={"workers": 1, "service_time": 0.3})
    payment.put("/_control/fault", json={"error_rate": 1, "status": 429})
    assert charge(payment, "o-1").elapsed.total_seconds() < 0.25
    payment.put("/_control/fault", json={"error_rate": 1, "status": 503})
    r = charge(payment, "o-2")
    assert r.status_code == 503
    assert r.elapsed.total_seconds() >= 0.3  # it tried, then failed
    state = payment.get("/_control").json()
    assert load_total(state, "admitted") == 1


def test_capacity_through_the_control_api(payment: httpx.Client) -> None:
    default = payment.get("/_control/capacity").json()["capacity"]
    assert default["workers"] == SIZING["payment"].workers
    r = payment.put("/_control/capacity", json={"workers": 3, "scale": 2.0})
    assert r.status_code == 200
    assert (r.json()["capacity"]["workers"], r.json()["capacity"]["scale"]) == (3, 2.0)
    for body, field in (({"workers": -1}, "workers"), ({"speed": 1}, "speed"), ([1], "object")):
        r = payment.put("/_control/capacity", json=body)
        assert r.status_code == 422
        assert field in r.json()["detail"]
    payment.post("/_control/reset")
    assert payment.get("/_control/capacity").json()["capacity"] == default


def test_a_reset_answers_the_queued_with_503() -> None:
    with served(Capacity(workers=0)) as url:

        async def stalled() -> tuple[int, dict]:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                waiting = asyncio.create_task(
                    client.post("/charges", json={"order_id": "o", "amount_cents": 1})
                )
                await asyncio.sleep(0.3)
                reset = (await client.post("/_control/reset")).json()
                return (await waiting).status_code, reset

        status, reset = asyncio.run(stalled())
    assert (status, reset["flushed"]) == (503, 1)


def test_the_command_line_takes_capacity_changes(capsys: pytest.CaptureFixture[str]) -> None:
    changed = simulators.capacity_of("payment", '{"workers": 3, "scale": 2}')
    assert (changed.workers, changed.scale) == (3, 2)
    assert changed.service_time == SIZING["payment"].service_time  # the rest as sized
    assert simulators.capacity_of("payment", "{}", unlimited=True).workers is None
    for bad, field in (('{"workers": -1}', "workers"), ("[1]", "object"), ("{", "")):
        with pytest.raises(SystemExit) as exit_:
            simulators.main(["payment", "--port", "1", "--capacity", bad])
        assert exit_.value.code == 2  # a usage error, before any server starts
        assert field in capsys.readouterr().err


def test_a_slowdown_that_ends_does_not_slow_the_requests_queued_during_it() -> None:
    with served(Capacity(workers=1, service_time=0.05)) as url:

        async def two() -> float:
            async with httpx.AsyncClient(base_url=url, timeout=5) as client:
                await client.put("/_control/fault", json={"latency": 0.6})
                body = {"order_id": "o", "amount_cents": 1}
                started = time.monotonic()
                first = asyncio.create_task(client.post("/charges", json=body))
                second = asyncio.create_task(client.post("/charges", json=body))
                await asyncio.sleep(0.2)
                await client.delete("/_control/fault")  # while the second waits in the queue
                await asyncio.gather(first, second)
                return time.monotonic() - started

        elapsed = asyncio.run(two())
    # The first holds the worker 0.65 s; the second, started after the fault was
    # cleared, 0.05 s: not the 1.3 s of two slow requests.
    assert 0.65 <= elapsed < 1.1
