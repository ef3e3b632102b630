"""The downstream simulators: real HTTP services whose faults are real."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from examples.orders.simulators import create_app

from tests.servers import serve_asgi


@pytest.fixture
def payment() -> Iterator[httpx.Client]:
    with serve_asgi(create_app("payment")) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client


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
    with pytest.raises(httpx.RemoteProtocolError):
        charge(payment, "o-1", key="k")
    payment.delete("/_control/fault")
    assert payment.get("/_control").json()["charges"] == 0


def test_lose_response_commits_then_cuts_the_line(payment: httpx.Client) -> None:
    payment.put("/_control/fault", json={"lose_response_rate": 1})
    with pytest.raises(httpx.RemoteProtocolError):
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
