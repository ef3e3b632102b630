"""The default classifier: which errors are worth another try."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from seawall.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    RejectedError,
    RetryError,
)
from seawall.retry import TRANSIENT_STATUSES, Transient, status_of, transient


class StatusError(Exception):
    """An error with the status on itself (aiohttp's ``status``, or a ``status_code``)."""

    def __init__(self, status: object, attr: str = "status_code") -> None:
        super().__init__(status)
        setattr(self, attr, status)


class ResponseError(Exception):
    """httpx's / requests' shape: the status is on ``exc.response``."""

    def __init__(self, status: object) -> None:
        super().__init__(status)
        self.response = SimpleNamespace(status_code=status, headers={})


def foreign(module: str, *names: str) -> type[Exception]:
    """Build an exception class hierarchy that looks like a client library's."""
    base: type[Exception] = Exception
    for name in names:
        base = type(name, (base,), {"__module__": module})
    return base


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError(),
        ConnectionResetError(),
        ConnectionRefusedError(),
        BrokenPipeError(),
        TimeoutError(),
        DeadlineExceeded(name="payment", timeout=1.0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_and_timeouts_are_transient(exc: BaseException) -> None:
    assert transient(exc)


@pytest.mark.parametrize("status", sorted(TRANSIENT_STATUSES))
def test_transient_statuses(status: int) -> None:
    assert transient(StatusError(status))
    assert transient(StatusError(status, attr="status"))
    assert transient(ResponseError(status))


@pytest.mark.parametrize(
    "status", [400, 401, 403, 404, 409, 410, 422, 451, 499, 501, 505, 200, 302]
)
def test_other_statuses_are_not(status: int) -> None:
    assert not transient(StatusError(status))
    assert not transient(ResponseError(status))


def test_a_status_decides_even_for_a_connection_error() -> None:
    """A ConnectionError that carries 400 is a client error that happens to subclass it."""
    assert not transient(carrying_status(ConnectionError, 400))
    assert transient(carrying_status(ValueError, 503))


def carrying_status(base: type[Exception], status: int) -> Exception:
    exc = base()
    exc.response = SimpleNamespace(status_code=status)  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(),
        KeyError(),
        RuntimeError(),
        OSError(),
        RetryError(last_exception=None, attempts=1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_not_transient(exc: BaseException) -> None:
    assert not transient(exc)


@pytest.mark.parametrize(
    "exc",
    [CircuitOpenError(name="d", retry_after=1.0), BulkheadFullError(name="d"), RejectedError()],
    ids=lambda e: type(e).__name__,
)
def test_rejections_are_never_transient_even_when_added(exc: RejectedError) -> None:
    assert not transient(exc)
    assert not transient.with_(type(exc), lambda e: True)(exc)


def test_statuses_that_are_not_http_codes_are_ignored() -> None:
    assert status_of(StatusError(True)) is None
    assert status_of(StatusError("503")) is None
    assert status_of(StatusError(1234)) is None
    assert not transient(StatusError("503"))
    # ... and the type decides instead
    exc = ConnectionError()
    exc.status = "weird"  # type: ignore[attr-defined]
    assert transient(exc)


def test_status_of_reads_the_usual_places() -> None:
    assert status_of(StatusError(503)) == 503
    assert status_of(StatusError(429, attr="status")) == 429
    assert status_of(ResponseError(502)) == 502
    requests_like = Exception()
    requests_like.response = None  # type: ignore[attr-defined]
    assert status_of(requests_like) is None

    class Hostile(Exception):
        @property
        def status_code(self) -> int:
            raise RuntimeError

    assert status_of(Hostile()) is None


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("httpx._exceptions", ("HTTPError", "TransportError", "TimeoutException", "ReadTimeout")),
        ("httpx._exceptions", ("HTTPError", "TransportError", "NetworkError", "ConnectError")),
        (
            "httpx._exceptions",
            ("HTTPError", "TransportError", "ProtocolError", "RemoteProtocolError"),
        ),
        ("httpcore", ("NetworkError", "ReadError")),
        ("requests.exceptions", ("RequestException", "ConnectionError")),
        ("requests.exceptions", ("RequestException", "Timeout", "ReadTimeout")),
        ("urllib3.exceptions", ("HTTPError", "ProtocolError")),
        (
            "aiohttp.client_exceptions",
            ("ClientError", "ClientConnectionError", "ServerDisconnectedError"),
        ),
    ],
)
def test_client_library_errors_are_recognised_by_name(module: str, names: tuple[str, ...]) -> None:
    assert transient(foreign(module, *names)())


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "httpx._exceptions",
            ("HTTPError", "TransportError", "ProtocolError", "LocalProtocolError"),
        ),
        ("httpx._exceptions", ("HTTPError", "DecodingError")),
        ("requests.exceptions", ("RequestException", "InvalidURL")),
        ("myapp.errors", ("NetworkError",)),  # same name, another library: not recognised
    ],
)
def test_other_client_library_errors_are_not(module: str, names: tuple[str, ...]) -> None:
    assert not transient(foreign(module, *names)())


def test_without_removes_statuses_and_types() -> None:
    narrow = transient.without(500, TimeoutError)
    assert not narrow(StatusError(500))
    assert narrow(StatusError(503))
    assert not narrow(TimeoutError())
    assert not narrow(DeadlineExceeded())  # a subclass of a removed type
    assert narrow(ConnectionError())
    # the original is unchanged
    assert transient(StatusError(500))
    assert transient(TimeoutError())


def test_with_adds_statuses_types_and_predicates() -> None:
    wide = transient.with_(409, KeyError, lambda e: "flaky" in str(e))
    assert wide(StatusError(409))
    assert wide(KeyError())
    assert wide(ValueError("flaky thing"))
    assert not wide(ValueError("solid"))
    assert not transient(StatusError(409))


def test_an_added_type_wins_over_its_status() -> None:
    class Conflict(Exception):
        status_code = 409

    assert not transient(Conflict())
    assert transient.with_(Conflict)(Conflict())


def test_with_undoes_without_for_a_type() -> None:
    again = transient.without(TimeoutError).with_(TimeoutError)
    assert again(TimeoutError())


def test_bad_statuses_and_items_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="600"):
        transient.with_(600)
    with pytest.raises(ConfigError, match="'x'"):
        transient.without("x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="99"):
        Transient(statuses={99})


def test_repr_names_the_statuses() -> None:
    assert "503" in repr(transient)
    assert "500" not in repr(transient.without(500))


def test_database_and_cache_errors_by_name() -> None:
    """Operational errors of SQLAlchemy, psycopg and redis-py, without importing them here."""
    import psycopg
    import redis
    import sqlalchemy.exc

    assert transient(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection lost")))
    assert transient(sqlalchemy.exc.TimeoutError("pool exhausted"))
    assert transient(psycopg.OperationalError("server closed the connection"))
    assert transient(redis.ConnectionError("refused"))
    assert transient(redis.TimeoutError("read timed out"))
    assert not transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not transient(psycopg.ProgrammingError("syntax"))
    assert not transient(redis.ResponseError("WRONGTYPE"))


def test_removed_statuses_are_remembered_until_added_again() -> None:
    """So that code widening a classifier (the httpx integration) can leave them out."""
    narrowed = transient.without(500, 507)
    assert narrowed.excluded_statuses == {500, 507}
    assert 500 not in narrowed.statuses
    again = narrowed.with_(507)
    assert again.excluded_statuses == {500}
    assert 507 in again.statuses
    assert transient.excluded_statuses == frozenset()
