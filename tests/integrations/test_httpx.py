"""The resilient httpx transports, against a real uvicorn downstream on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from seawall import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    ConfigError,
    CountWindow,
    Criticality,
    DeadlineExceeded,
    Dependency,
    DependencyUnavailable,
    Fallback,
    Retry,
    State,
    ThreadBulkhead,
    deadline,
    remaining,
    transient,
)
from seawall.chaos import Fault
from seawall.events import Listeners
from seawall.integrations._headers import MAX_DEADLINE, format_deadline, parse_deadline
from seawall.integrations.httpx import (
    DEADLINE_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    ResilientSyncTransport,
    ResilientTransport,
    UpstreamStatusError,
    resilient_client,
    resilient_sync_client,
)
from seawall.outbox import Outbox
from seawall.testing import FakeClock
from tests.integrations.downstream import drop, hang, lose_response, ok, respond

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integrations.downstream import Downstream

# A backoff that never caps a server's Retry-After below what the tests send.
BACKOFF = Backoff.exponential(initial=0.01, maximum=30.0, jitter=None)


def dependency(clock: FakeClock, *, attempts: int = 3, name: str = "down", **kw: Any) -> Dependency:
    """A dependency whose retry sleeps on ``clock``, with private listeners."""
    retry = Retry(attempts=attempts, backoff=BACKOFF, clock=clock, listeners=Listeners())
    return Dependency(name, retry=retry, listeners=Listeners(), **kw)


class Caller:
    """Sends one request through a resilient client, sync or async, and returns it read."""

    def __init__(self, mode: str, downstream: Downstream) -> None:
        self.mode = mode
        self.url = downstream.url

    def __call__(
        self,
        routes: Any,
        method: str,
        path: str,
        *,
        within: float | None = None,
        client: dict[str, Any] | None = None,
        **request: Any,
    ) -> httpx.Response:
        options = {"base_url": self.url, **(client or {})}
        # The deadline is set, not enforced, by the caller: what enforces it
        # (the dependency's attempt, the clipped httpx timeouts) is under test.
        scope = contextlib.nullcontext() if within is None else deadline(within)
        if self.mode == "sync":
            with resilient_sync_client(routes, **options) as c, scope:
                return c.request(method, path, **request)

        async def main() -> httpx.Response:
            async with resilient_client(routes, **options) as c:
                with scope:
                    return await c.request(method, path, **request)

        return asyncio.run(main())


@pytest.fixture(params=["async", "sync"])
def call(request: pytest.FixtureRequest, downstream: Downstream) -> Caller:
    """Each scenario runs through both transports."""
    return Caller(request.param, downstream)


# -- classification and Retry-After ---------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
def test_retry_after_sets_the_delay(
    call: Caller, downstream: Downstream, clock: FakeClock, status: int, as_date: bool
) -> None:
    """A 429 or 503 is retried after its Retry-After, in seconds or as an HTTP date."""
    downstream.script("/x", respond(status, retry_after=2, as_date=as_date), ok())
    response = call(dependency(clock), "GET", "/x")
    assert response.status_code == 200
    seen = downstream.requests("/x")
    assert len(seen) == 2
    assert seen[0].client == seen[1].client  # the 503 was read: its connection was reused
    [slept] = clock.sleeps
    if as_date:  # an HTTP date has whole seconds: up to one less than asked
        assert 0.9 <= slept <= 2.0
    else:
        assert slept == 2.0


def test_a_400_is_an_answer_not_a_failure(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """A 400 comes back as a normal response after one attempt: no exception, no retry."""
    downstream.script("/x", respond(400, retry_after=1))
    response = call(dependency(clock), "GET", "/x")
    assert response.status_code == 400
    assert len(downstream.requests("/x")) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "attempts"),
    [
        *[(s, 2) for s in (500, 502, 504, 506, 507, 508, 510, 511, 599, 408)],
        *[(s, 1) for s in (501, 505, 404, 409, 422)],
    ],
)
def test_5xx_are_retried_but_501_and_505_and_4xx_never(
    call: Caller, downstream: Downstream, clock: FakeClock, status: int, attempts: int
) -> None:
    """Every 5xx and 408 is retried (without Retry-After: the backoff); 501, 505, 4xx are answers."""
    downstream.script("/x", respond(status), ok())
    response = call(dependency(clock), "GET", "/x")
    assert response.status_code == (200 if attempts == 2 else status)
    assert len(downstream.requests("/x")) == attempts
    assert clock.sleeps == [0.01] * (attempts - 1)


def test_a_507_is_a_failure_of_the_dependency(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """A 5xx that seawall.transient does not list is retried, counted and ends unavailable."""
    breaker = CircuitBreaker(
        "down", window=CountWindow(2), minimum_calls=2, clock=clock, listeners=Listeners()
    )
    dep = dependency(clock, attempts=2, breaker=breaker)
    downstream.script("/x", respond(507, retry_after=4))
    with pytest.raises(DependencyUnavailable) as info:
        call(dep, "GET", "/x")
    assert len(downstream.requests("/x")) == 2
    assert clock.sleeps == [4.0]  # its Retry-After, honoured
    assert breaker.state is State.OPEN  # both attempts counted as failures
    cause = info.value.cause
    assert isinstance(cause, UpstreamStatusError)
    assert (cause.status_code, info.value.retry_after) == (507, 4.0)
    # The transport widened a twin, not the dependency, nor seawall.transient.
    assert dep.retry is not None
    assert dep.retry.config.on is transient
    assert transient.statuses == {408, 429, 500, 502, 503, 504}
    assert not transient(cause)


def test_a_degradable_dependency_falls_back_on_a_507(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """Any 5xx failure is "unavailable": the fallback answers, after the retries."""
    fallback = Fallback.call(lambda exc: httpx.Response(200, json={"status": exc.status_code}))
    dep = dependency(clock, criticality=Criticality.DEGRADABLE, fallback=fallback)
    downstream.script("/x", respond(511))
    response = call(dep, "GET", "/x")
    assert response.json() == {"status": 511}
    assert len(downstream.requests("/x")) == 3


def test_the_callers_own_classifiers_decide(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """A Transient narrowed with without() stays narrowed; a predicate of one's own decides alone."""
    narrowed = Retry(
        attempts=3, backoff=BACKOFF, on=transient.without(503), clock=clock, listeners=Listeners()
    )
    downstream.script("/x", respond(503), ok())
    with pytest.raises(DependencyUnavailable):
        call(Dependency("down", retry=narrowed, listeners=Listeners()), "GET", "/x")
    assert len(downstream.requests("/x")) == 1
    downstream.reset()
    # A status the integration adds (507) stays out when the caller removed it.
    no_507 = Retry(
        attempts=3, backoff=BACKOFF, on=transient.without(507), clock=clock, listeners=Listeners()
    )
    downstream.script("/x", respond(507), ok())
    with pytest.raises(DependencyUnavailable):
        call(Dependency("down", retry=no_507, listeners=Listeners()), "GET", "/x")
    assert len(downstream.requests("/x")) == 1
    downstream.reset()
    own = Retry(
        attempts=3,
        backoff=BACKOFF,
        on=lambda exc: isinstance(exc, httpx.TransportError),
        clock=clock,
        listeners=Listeners(),
    )
    downstream.script("/x", respond(507), ok())
    with pytest.raises(DependencyUnavailable):
        call(Dependency("down", retry=own, listeners=Listeners()), "GET", "/x")
    assert len(downstream.requests("/x")) == 1
    downstream.reset()
    downstream.script("/x", respond(507), ok())
    answer_only = Dependency(
        "down", retry=own, unavailable_on=lambda exc: False, listeners=Listeners()
    )
    with pytest.raises(UpstreamStatusError):  # not "unavailable" by its own predicate
        call(answer_only, "GET", "/x")


def test_when_retries_run_out_a_critical_dependency_is_unavailable(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """The caller gets DependencyUnavailable; its cause holds the status, Retry-After and body."""
    downstream.script("/x", respond(503, retry_after=1))
    with pytest.raises(DependencyUnavailable) as info:
        call(dependency(clock), "GET", "/x?token=secret")
    assert len(downstream.requests("/x")) == 3
    assert clock.sleeps == [1.0, 1.0]
    assert info.value.retry_after == 1.0
    cause = info.value.cause
    assert isinstance(cause, UpstreamStatusError)
    assert isinstance(cause, httpx.HTTPStatusError)
    assert cause.status_code == 503
    assert cause.retry_after == 1.0
    assert cause.response.status_code == 503
    assert cause.response.is_closed
    assert cause.response.json() == {"error": 503}
    assert "secret" not in str(cause)
    assert "'down' answered 503 Service Unavailable to GET" in str(cause)


def test_return_last_response_gives_back_the_last_failure(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """With return_last_response, the caller gets the last 503 as a normal response."""
    downstream.script("/x", respond(503, retry_after=1))
    response = call(dependency(clock), "GET", "/x", client={"return_last_response": True})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"error": 503}
    assert response.is_closed
    assert len(downstream.requests("/x")) == 3


def test_a_degradable_dependency_answers_with_its_fallback(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """Fallback.call builds the response when the dependency is unavailable."""
    fallback = Fallback.call(lambda exc: httpx.Response(200, json={"status": exc.status_code}))
    dep = dependency(clock, criticality=Criticality.DEGRADABLE, fallback=fallback)
    downstream.script("/x", respond(503))
    response = call(dep, "GET", "/x")
    assert response.status_code == 200
    assert response.json() == {"status": 503}


# -- timeouts, slowness and dropped connections ----------------------------------------


def test_a_slow_response_times_out_and_is_retried(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """A response slower than the read timeout fails the attempt; the next one answers."""
    downstream.script("/x", ok(delay=2.0), ok())
    response = call(
        dependency(clock), "GET", "/x", client={"timeouts": httpx.Timeout(5.0, read=0.2)}
    )
    assert response.status_code == 200
    assert len(downstream.requests("/x")) == 2


def test_always_slow_ends_unavailable(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """Every attempt times out: the cause is httpx's ReadTimeout, after each attempt's 0.2 s."""
    downstream.script("/x", ok(delay=2.0))
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as info:
        call(
            dependency(clock, attempts=2),
            "GET",
            "/x",
            client={"timeouts": {"down": httpx.Timeout(5.0, read=0.2)}},
        )
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value.cause, httpx.ReadTimeout)
    assert len(downstream.requests("/x")) == 2


def test_a_dropped_connection_is_retried_for_a_get(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """The server closes the connection without answering; GET is sent again."""
    downstream.script("/x", drop(), ok())
    response = call(dependency(clock), "GET", "/x")
    assert response.status_code == 200
    assert len(downstream.requests("/x")) == 2


def test_always_dropped_surfaces_the_protocol_error(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """Connections dropped every time: unavailable, caused by httpx's RemoteProtocolError."""
    downstream.script("/x", drop())
    with pytest.raises(DependencyUnavailable) as info:
        call(dependency(clock), "GET", "/x")
    assert isinstance(info.value.cause, httpx.RemoteProtocolError)
    assert len(downstream.requests("/x")) == 3


# -- idempotency ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_request_without_a_key_is_sent_once(
    call: Caller, downstream: Downstream, clock: FakeClock, method: str
) -> None:
    """POST and PATCH without Idempotency-Key: one attempt, whatever the failure."""
    downstream.script("/x", respond(503, retry_after=1), ok())
    with pytest.raises(DependencyUnavailable) as info:
        call(dependency(clock), method, "/x", json={"n": 1})
    assert isinstance(info.value.cause, UpstreamStatusError)
    assert len(downstream.requests("/x")) == 1
    assert IDEMPOTENCY_KEY_HEADER.lower() not in downstream.requests("/x")[0].headers
    assert clock.sleeps == []


def test_a_lost_response_to_a_post_without_a_key_is_not_resent(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """The server committed, the response was lost: resending would have charged twice."""
    downstream.script("/charges", lose_response(), ok())
    with pytest.raises(DependencyUnavailable) as info:
        call(dependency(clock), "POST", "/charges", json={"amount": 100})
    assert isinstance(info.value.cause, httpx.RemoteProtocolError)
    assert len(downstream.requests("/charges")) == 1
    assert len(downstream.charges) == 1


def test_a_post_with_a_generated_key_is_charged_once(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """Commit, then lose the response: the retry sends the same key and the charge is replayed."""
    downstream.script("/charges", lose_response(), ok())
    response = call(
        dependency(clock),
        "POST",
        "/charges",
        client={"idempotency_keys": True},
        json={"amount": 100},
    )
    assert response.status_code == 201
    assert response.json()["replayed"] is True
    seen = downstream.requests("/charges")
    keys = {s.headers[IDEMPOTENCY_KEY_HEADER.lower()] for s in seen}
    assert len(seen) == 2
    assert len(keys) == 1
    [key] = keys
    assert uuid.UUID(key).version == 4
    assert [c.key for c in downstream.charges] == [key]
    assert response.request.headers[IDEMPOTENCY_KEY_HEADER] == key


def test_a_post_with_the_callers_key_is_retried(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """An Idempotency-Key set by the caller makes a POST retryable, and is kept."""
    downstream.script("/charges", respond(503), lose_response(), ok())
    response = call(
        dependency(clock),
        "POST",
        "/charges",
        headers={IDEMPOTENCY_KEY_HEADER: "order-42"},
        json={"amount": 100},
    )
    assert response.status_code == 201
    seen = downstream.requests("/charges")
    assert [s.headers["idempotency-key"] for s in seen] == ["order-42"] * 3
    assert [c.key for c in downstream.charges] == ["order-42"]


def test_a_streamed_body_is_sent_once(downstream: Downstream, clock: FakeClock) -> None:
    """A body that cannot be replayed is not retried, even with a key."""

    async def body() -> Any:
        yield b"amount=100"

    async def main() -> None:
        async with resilient_client(dependency(clock), base_url=downstream.url) as client:
            with pytest.raises(DependencyUnavailable):
                await client.put("/x", content=body())

    downstream.script("/x", drop(), ok())
    asyncio.run(main())
    assert len(downstream.requests("/x")) == 1


def test_requests_sent_once_still_count_in_the_breaker(
    downstream: Downstream, clock: FakeClock
) -> None:
    """A POST sent once goes through the same breaker as retried requests."""
    breaker = CircuitBreaker(
        "down", window=CountWindow(2), minimum_calls=2, clock=clock, listeners=Listeners()
    )
    dep = dependency(clock, breaker=breaker)
    downstream.script("/x", respond(503))
    with resilient_sync_client(dep, base_url=downstream.url) as client:
        for _ in range(2):
            with pytest.raises(DependencyUnavailable):
                client.post("/x", json={})
        assert breaker.state is State.OPEN
        with pytest.raises(DependencyUnavailable):
            client.get("/x")
    assert len(downstream.requests("/x")) == 2


# -- deadlines -----------------------------------------------------------------------


def test_the_deadline_is_sent_downstream(downstream: Downstream, clock: FakeClock) -> None:
    """The header carries whole milliseconds left, never more than the ambient deadline's."""

    async def main() -> float | None:
        async with resilient_client(dependency(clock), base_url=downstream.url) as client:
            await client.get("/no-deadline")
            async with deadline(5.0):
                left = remaining()
                await client.get("/x")
            return left

    left = asyncio.run(main())
    assert left is not None
    sent = int(downstream.requests("/x")[0].headers[DEADLINE_HEADER.lower()])
    assert (left - 1.0) * 1000 < sent <= left * 1000
    assert DEADLINE_HEADER.lower() not in downstream.requests("/no-deadline")[0].headers


def test_the_dependency_timeout_tightens_the_deadline_header(
    downstream: Downstream, clock: FakeClock
) -> None:
    """The per-attempt timeout of the dependency is part of the budget sent downstream."""
    dep = dependency(clock, timeout=0.5)
    with resilient_sync_client(dep, base_url=downstream.url) as client, deadline(5.0):
        client.get("/x")
    sent = int(downstream.requests("/x")[0].headers[DEADLINE_HEADER.lower()])
    assert 0 < sent <= 500


def test_timeouts_are_clipped_by_the_deadline(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """With 0.2 s left, a 2 s response fails in about 0.2 s, not the 5 s read timeout."""
    downstream.script("/x", ok(delay=2.0))
    started = time.monotonic()
    # The caller's deadline ran out, not the dependency: DeadlineExceeded, not unavailable.
    with pytest.raises(DeadlineExceeded):
        call(dependency(clock), "GET", "/x", within=0.2, client={"timeouts": 5.0})
    assert time.monotonic() - started < 1.0
    assert len(downstream.requests("/x")) == 1  # no time left for another attempt


def test_an_enforcing_caller_scope_reports_its_own_expiry(
    downstream: Downstream, clock: FakeClock
) -> None:
    """``async with deadline()`` around the request ends it on time, as its own expiry."""
    downstream.script("/x", ok(delay=2.0))

    async def main() -> None:
        async with resilient_client(dependency(clock), base_url=downstream.url) as client:
            with pytest.raises(DeadlineExceeded) as info:
                async with deadline(0.2, name="request"):
                    await client.get("/x")
            assert info.value.name == "request"

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 1.0


def test_a_hung_downstream_is_cut_off_by_the_deadline(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """A downstream that never answers costs the deadline, not the client's own timeout."""
    downstream.script("/x", hang())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call(dependency(clock), "GET", "/x", within=0.2)
    assert time.monotonic() - started < 1.0


def test_nothing_is_sent_once_the_deadline_has_passed(
    call: Caller, downstream: Downstream, clock: FakeClock
) -> None:
    """An attempt with no time left is not started."""
    with pytest.raises(DeadlineExceeded):
        call(dependency(clock), "GET", "/x", within=0.0)
    assert downstream.requests() == []


# -- routing -------------------------------------------------------------------------


def test_unrouted_requests_pass_through_untouched(downstream: Downstream, clock: FakeClock) -> None:
    """No retry, no header, no key for a request the router does not claim."""
    dep = dependency(clock)

    def router(request: httpx.Request) -> Dependency | None:
        return None if request.url.path.startswith("/raw") else dep

    downstream.script("/raw", respond(503))
    with (
        resilient_sync_client(router, base_url=downstream.url, idempotency_keys=True) as client,
        deadline(5.0),
    ):
        assert client.post("/raw", json={}).status_code == 503
        assert client.post("/routed", json={}).status_code == 200
    [raw] = downstream.requests("/raw")
    assert DEADLINE_HEADER.lower() not in raw.headers
    assert IDEMPOTENCY_KEY_HEADER.lower() not in raw.headers
    [routed] = downstream.requests("/routed")
    assert DEADLINE_HEADER.lower() in routed.headers
    assert IDEMPOTENCY_KEY_HEADER.lower() in routed.headers


def test_hosts_route_to_their_dependency(downstream: Downstream, clock: FakeClock) -> None:
    """A mapping routes by host (or host:port); other hosts pass through."""
    port = httpx.URL(downstream.url).port
    downstream.script("/x", respond(503), ok())
    with resilient_sync_client({"other.invalid": dependency(clock)}) as client:
        assert client.get(f"{downstream.url}/x").status_code == 503
    downstream.script("/x", respond(503), ok())
    with resilient_sync_client({f"127.0.0.1:{port}": dependency(clock)}) as client:
        assert client.get(f"{downstream.url}/x").status_code == 200
    assert len(downstream.requests("/x")) == 3


def test_a_successful_response_still_streams(downstream: Downstream, clock: FakeClock) -> None:
    """A 2xx is returned as the inner transport gave it: its body streams to the caller."""

    async def main() -> list[str]:
        async with (
            resilient_client(dependency(clock), base_url=downstream.url) as client,
            client.stream("GET", "/stream", params={"chunks": 3}) as response,
        ):
            assert not response.is_stream_consumed
            return [line async for line in response.aiter_lines()]

    assert asyncio.run(main()) == ["chunk 0", "chunk 1", "chunk 2"]


def test_faults_can_be_drawn_from_a_chaos_fault(downstream: Downstream, clock: FakeClock) -> None:
    """The downstream also plays a seawall.chaos Fault, for scenario-style tests."""
    downstream.fault("/x", Fault(error_rate=1.0, status=503, retry_after=3))
    with resilient_sync_client(dependency(clock, attempts=2), base_url=downstream.url) as client:
        with pytest.raises(DependencyUnavailable) as info:
            client.get("/x")
        assert info.value.retry_after == 3.0
        downstream.fault("/x", None)
        assert client.get("/x").status_code == 200


# -- configuration and the error type -------------------------------------------------


def test_bad_configuration_is_refused_naming_each_problem(tmp_path: Path, clock: FakeClock) -> None:
    """ConfigError at construction, naming every bad option and dependency."""
    outbox = Outbox(tmp_path / "outbox.db", deliver=lambda entry: None)
    background = Dependency("events", criticality=Criticality.BACKGROUND, outbox=outbox)
    valued = Dependency(
        "recs", criticality=Criticality.DEGRADABLE, fallback=Fallback.value(httpx.Response(200))
    )
    threaded = Dependency("pay", bulkhead=ThreadBulkhead("pay", max_concurrent=1))
    with contextlib.closing(outbox), pytest.raises(ConfigError) as info:
        ResilientTransport(
            {"a": background, "b": valued, "c": threaded, "http://d": dependency(clock)},
            timeouts={"nobody": 1.0, "pay": -1},
            idempotency_keys="yes",  # type: ignore[arg-type]
            failure_statuses=[503, 999],
        )
    message = str(info.value)
    for part in (
        "'events' is BACKGROUND",
        "'recs' has a 'value' fallback",
        "'pay' needs a Bulkhead",
        "'http://d'",
        "timeouts names 'nobody'",
        "timeouts['pay']",
        "idempotency_keys must be True or False",
        "999",
    ):
        assert part in message
    with pytest.raises(ConfigError, match="needs a ThreadBulkhead"):
        ResilientSyncTransport(Dependency("pay", bulkhead=Bulkhead("pay", max_concurrent=1)))
    with pytest.raises(TypeError, match="mounts"):
        resilient_client(dependency(clock), mounts={})


def test_a_router_must_return_a_dependency(downstream: Downstream) -> None:
    """A router's bad answer is a TypeError at the request, naming what it returned."""

    def router(request: httpx.Request) -> Any:
        return "payment"

    with resilient_sync_client(router, base_url=downstream.url) as client:
        with pytest.raises(TypeError, match="'payment'"):
            client.get("/x")


def test_a_huge_failure_body_is_dropped_not_read() -> None:
    """Past 256 KiB a failure body is not read: the error keeps the status, not the body."""
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, content=b"x" * (300 * 1024), headers={"Retry-After": "0"})

    dep = Dependency("big", listeners=Listeners())
    with resilient_sync_client(dep, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DependencyUnavailable) as info:
            client.get("http://big.internal/x")
    cause = info.value.cause
    assert isinstance(cause, UpstreamStatusError)
    assert cause.retry_after == 0.0
    assert cause.response.content == b""
    assert "content-length" not in cause.response.headers
    assert len(sent) == 1


def test_the_status_error_pickles() -> None:
    """UpstreamStatusError crosses processes with its status, Retry-After and body."""
    request = httpx.Request("GET", "http://pay.internal/x")
    response = httpx.Response(503, headers={"Retry-After": "7"}, content=b"busy", request=request)
    error = UpstreamStatusError(name="pay", request=request, response=response)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.status_code, copy.retry_after) == ("pay", 503, 7.0)
    assert copy.response.content == b"busy"
    assert str(copy) == str(error)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1834", 1.834),
        (b" 250 ", 0.25),
        ("0", 0.0),
        ("1500.5", 1.5005),
        ("999999999999", MAX_DEADLINE),
        ("-5", None),
        ("", None),
        ("abc", None),
        ("1e3", None),
        ("inf", None),
        ("12.", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits
        ("1" * 40, None),
        (None, None),
        (12, None),
    ],
)
def test_parse_deadline(value: object, seconds: float | None) -> None:
    """Milliseconds in, seconds out; garbage gives None and huge values are clipped."""
    assert parse_deadline(value) == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("seconds", "value"),
    [(1.8349, "1834"), (0.0004, "0"), (-3.0, "0"), (float("nan"), "0"), (float("inf"), "86400000")],
)
def test_format_deadline(seconds: float, value: str) -> None:
    """Whole milliseconds, rounded down; never negative; clipped to a day."""
    assert format_deadline(seconds) == value
