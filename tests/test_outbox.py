"""Outbox: configuration, durable put, overflow, backoff scheduling and dead letters.

Scheduling is driven by a FakeClock through ``deliver_due()`` (one worker pass
in the test's thread), so nothing here waits for real time.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

from seawall.errors import ConfigError
from seawall.events import (
    Listeners,
    OutboxDelivered,
    OutboxDeliveryFailed,
    OutboxDropped,
)
from seawall.outbox import Outbox, OutboxConfig, OutboxEntry
from seawall.testing import FakeClock, RecordingListener

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


class Downstream:
    """A deliver that records entries and fails while ``failing`` is true."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.calls: list[OutboxEntry] = []

    def __call__(self, entry: OutboxEntry) -> None:
        self.calls.append(entry)
        if self.failing:
            raise ConnectionError("receiver down")

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.calls]


@pytest.fixture
def downstream() -> Downstream:
    return Downstream()


@pytest.fixture
def make(tmp_path: Path, clock: FakeClock, listeners: Listeners) -> Iterator[Callable[..., Outbox]]:
    """Build outboxes on one file with the fake clock; close them all at the end."""
    built: list[Outbox] = []

    def build(**kwargs: Any) -> Outbox:
        kwargs.setdefault("deliver", Downstream())
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("listeners", listeners)
        kwargs.setdefault("random", lambda: 1.0)  # the top of the jitter range: exact delays
        kwargs.setdefault("synchronous", "normal")
        outbox = Outbox(tmp_path / "outbox.db", **kwargs)
        built.append(outbox)
        return outbox

    yield build
    for outbox in built:
        outbox.close()


# -- configuration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "max_entries must be an integer >= 1, got 0"),
        ({"max_entries": 1.5}, "max_entries must be an integer >= 1, got 1.5"),
        ({"overflow": "drop_newest"}, "overflow must be 'reject_new' or 'drop_oldest'"),
        ({"backoff_initial": 0}, "backoff_initial must be a finite number of seconds > 0, got 0"),
        ({"backoff_maximum": -1}, "backoff_maximum must be a finite number of seconds > 0"),
        (
            {"backoff_initial": 2, "backoff_maximum": 1},
            "backoff_maximum must be >= backoff_initial",
        ),
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0"),
        ({"poll_interval": float("inf")}, "poll_interval must be a finite number of seconds"),
        ({"synchronous": "off"}, "synchronous must be 'full' or 'normal', got 'off'"),
    ],
)
def test_bad_config_raises_config_error_naming_field_and_value(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each bad option fails at construction with a message naming it and its value."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OutboxConfig(**kwargs)


def test_config_error_lists_every_bad_field() -> None:
    """Several bad options are reported together."""
    with pytest.raises(ConfigError) as info:
        OutboxConfig(max_entries=0, overflow="nope", max_attempts=-1)  # type: ignore[arg-type]
    assert "max_entries" in str(info.value)
    assert "overflow" in str(info.value)
    assert "max_attempts" in str(info.value)


def test_bad_outbox_arguments_fail_before_the_file_is_touched(tmp_path: Path) -> None:
    """A non-callable deliver or an empty name is a ConfigError, and no file is created."""
    path = tmp_path / "never.db"
    with pytest.raises(ConfigError, match="deliver must be callable"):
        Outbox(path, deliver="http://x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name must be a non-empty string"):
        Outbox(path, deliver=print, name="")
    with pytest.raises(ConfigError, match="backoff_initial"):
        Outbox(path, deliver=print, backoff_initial=-1)
    assert not path.exists()


def test_one_owner_per_file(make: Callable[..., Outbox]) -> None:
    """A second Outbox on a file in use fails at construction: two would deliver twice."""
    make()
    with pytest.raises(ConfigError, match="in use by another Outbox"):
        make()


def test_a_file_that_is_not_an_outbox_is_a_config_error(tmp_path: Path) -> None:
    """Garbage at the path fails at construction with the path in the message."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"junk\.db"):
        Outbox(path, deliver=print)


# -- put ------------------------------------------------------------------------


def test_put_commits_before_returning(make: Callable[..., Outbox], downstream: Downstream) -> None:
    """An entry put and then abandoned (no worker, no flush) is there for the next owner."""
    first = make()
    entry_id = first.put("orders", {"order": 7})
    first.close()

    second = make(deliver=downstream)
    assert second.depth == 1
    assert second.flush() == 0
    assert downstream.ids == [entry_id]
    assert downstream.calls[0].topic == "orders"
    assert downstream.calls[0].payload == {"order": 7}
    assert downstream.calls[0].attempts == 0


@pytest.mark.parametrize(
    ("payload", "delivered"),
    [
        (b"\x00\xffraw", b"\x00\xffraw"),
        (bytearray(b"ba"), b"ba"),
        (
            {"a": [1, 2.5, None, True], "b": {"c": "é"}},
            {"a": [1, 2.5, None, True], "b": {"c": "é"}},
        ),
        ((1, 2), [1, 2]),  # through JSON: a tuple comes back a list
        ({1: "x"}, {"1": "x"}),  # and keys come back strings
        ("text", "text"),
        (None, None),
    ],
)
def test_payload_round_trip(
    make: Callable[..., Outbox], downstream: Downstream, payload: object, delivered: object
) -> None:
    """Bytes are delivered as they are; anything else after a round trip through JSON."""
    outbox = make(deliver=downstream)
    outbox.put("t", payload)
    outbox.flush()
    assert downstream.calls[0].payload == delivered
    assert type(downstream.calls[0].payload) is type(delivered)


def test_unstorable_payload_raises_at_the_call_site(make: Callable[..., Outbox]) -> None:
    """A payload that can never be stored is a bug: put raises rather than drop it silently."""
    outbox = make()
    with pytest.raises(TypeError):
        outbox.put("t", {1, 2})
    with pytest.raises(ValueError, match="JSON"):
        outbox.put("t", {"x": float("nan")})
    with pytest.raises(TypeError, match="topic must be a string"):
        outbox.put(b"t", {})  # type: ignore[arg-type]
    assert outbox.depth == 0
    assert outbox.dropped == 0


def test_put_returns_distinct_uuid_hex_ids(make: Callable[..., Outbox]) -> None:
    """Every put gets a fresh 32-hex-digit id."""
    outbox = make()
    ids = [outbox.put("t", n) for n in range(50)]
    assert len(set(ids)) == 50
    assert all(isinstance(i, str) and len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_put_from_many_threads(make: Callable[..., Outbox], downstream: Downstream) -> None:
    """Concurrent puts are all stored, and each is delivered once."""
    outbox = make(deliver=downstream)
    ids: list[str | None] = []
    lock = threading.Lock()

    def producer() -> None:
        mine = [outbox.put("t", n) for n in range(100)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=producer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outbox.depth == 800
    assert outbox.flush() == 0
    assert sorted(downstream.ids) == sorted(ids)  # type: ignore[type-var]


def test_put_after_close_is_dropped_not_raised(
    make: Callable[..., Outbox], recorder: RecordingListener
) -> None:
    """A put racing shutdown returns None and reports the drop."""
    outbox = make()
    outbox.close()
    assert outbox.put("t", 1) is None
    assert outbox.dropped == 1
    [event] = recorder.of_type(OutboxDropped)
    assert event.policy == "closed"


def test_storage_error_drops_logs_once_and_recovers(
    make: Callable[..., Outbox], recorder: RecordingListener, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk never reaches the caller: the entry is dropped, counted, reported, logged once."""
    outbox = make()
    # A real SQLITE_FULL: forbid the file to grow, then put more than fits.
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count={pages}")
    big = "x" * 50_000
    with caplog.at_level(logging.ERROR, logger="seawall.outbox"):
        assert outbox.put("t", big) is None
        assert outbox.put("t", big) is None
    assert outbox.dropped == 2
    assert outbox.depth == 0
    assert [e.policy for e in recorder.of_type(OutboxDropped)] == ["storage_error"] * 2
    assert len(caplog.records) == 1
    assert "database or disk is full" in caplog.text

    outbox._db.execute("PRAGMA max_page_count=1000000")
    assert outbox.put("t", big) is not None
    assert outbox.depth == 1


# -- overflow ---------------------------------------------------------------------


def test_overflow_reject_new_drops_the_new_entry(
    make: Callable[..., Outbox], downstream: Downstream, recorder: RecordingListener
) -> None:
    """When full, "reject_new" keeps what is stored, drops the new entry and returns None."""
    outbox = make(deliver=downstream, max_entries=3, overflow="reject_new")
    kept = [outbox.put("t", n) for n in range(3)]
    assert outbox.put("t", 3) is None
    assert outbox.depth == 3
    assert outbox.dropped == 1
    [event] = recorder.of_type(OutboxDropped)
    assert event.policy == "reject_new"
    assert event.depth == 3
    assert event.entry_id not in kept
    assert outbox.flush() == 0
    assert downstream.ids == kept


def test_overflow_drop_oldest_makes_room(
    make: Callable[..., Outbox], downstream: Downstream, recorder: RecordingListener
) -> None:
    """When full, "drop_oldest" drops the oldest entry and stores the new one."""
    outbox = make(deliver=downstream, max_entries=3, overflow="drop_oldest")
    ids = [outbox.put("t", n) for n in range(4)]
    assert None not in ids
    assert outbox.depth == 3
    assert outbox.dropped == 1
    [event] = recorder.of_type(OutboxDropped)
    assert (event.policy, event.entry_id, event.depth) == ("drop_oldest", ids[0], 3)
    assert outbox.flush() == 0
    assert downstream.ids == ids[1:]


def test_drop_oldest_skips_entries_claimed_for_delivery(
    make: Callable[..., Outbox], recorder: RecordingListener
) -> None:
    """Entries the worker has claimed are about to be delivered: the oldest unclaimed one goes."""
    delivered: list[Any] = []
    box: list[Outbox] = []

    def deliver(entry: OutboxEntry) -> None:
        if not delivered:  # while the first batch is claimed, overflow the outbox
            box[0].put("t", "late")
        delivered.append(entry.payload)

    outbox = make(deliver=deliver, max_entries=40, overflow="drop_oldest")
    box.append(outbox)
    ids = [outbox.put("t", n) for n in range(40)]
    assert outbox.flush() == 0
    [event] = recorder.of_type(OutboxDropped)
    assert event.entry_id == ids[32]  # the first batch (32) was claimed
    assert delivered == [*range(32), *range(33, 40), "late"]


def test_drop_oldest_drops_the_new_entry_when_everything_is_claimed(
    make: Callable[..., Outbox], recorder: RecordingListener
) -> None:
    """With every pending entry claimed for delivery there is nothing older to drop."""
    late: list[str | None] = []
    box: list[Outbox] = []

    def deliver(entry: OutboxEntry) -> None:
        if not late:
            late.append(box[0].put("t", "late"))

    outbox = make(deliver=deliver, max_entries=2, overflow="drop_oldest")
    box.append(outbox)
    outbox.put("t", 1)
    outbox.put("t", 2)
    assert outbox.flush() == 0
    assert late == [None]
    [event] = recorder.of_type(OutboxDropped)
    assert event.policy == "drop_oldest"
    assert outbox.delivered == 2


# -- backoff scheduling, on a fake clock -------------------------------------------


def test_failed_entry_is_not_retried_before_its_due_time(
    make: Callable[..., Outbox],
    downstream: Downstream,
    clock: FakeClock,
    recorder: RecordingListener,
) -> None:
    """Each failure pushes the entry back by the next delay; it is not tried earlier."""
    downstream.failing = True
    outbox = make(deliver=downstream, backoff_initial=0.5, backoff_maximum=1.5)
    outbox.put("t", "x")
    expected_delays = [0.5, 1.0, 1.5, 1.5]  # doubling from initial, capped at maximum
    for attempt, delay in enumerate(expected_delays, start=1):
        assert outbox.deliver_due() == 0
        assert len(downstream.calls) == attempt
        assert downstream.calls[-1].attempts == attempt - 1
        event = recorder.of_type(OutboxDeliveryFailed)[-1]
        assert (event.attempts, event.next_delay) == (attempt, delay)
        assert isinstance(event.error, ConnectionError)
        clock.advance(delay - 0.01)
        assert outbox.deliver_due() == 0
        assert len(downstream.calls) == attempt  # not yet due: not tried
        clock.advance(0.01)

    downstream.failing = False
    assert outbox.deliver_due() == 1
    assert outbox.depth == 0
    [delivered] = recorder.of_type(OutboxDelivered)
    assert delivered.attempts == 5
    assert delivered.age == pytest.approx(sum(expected_delays))


def test_backoff_uses_full_jitter(
    make: Callable[..., Outbox], downstream: Downstream, recorder: RecordingListener
) -> None:
    """The delay is the capped exponential times the random draw."""
    downstream.failing = True
    outbox = make(deliver=downstream, backoff_initial=2.0, random=lambda: 0.25)
    outbox.put("t", "x")
    outbox.deliver_due()
    assert recorder.of_type(OutboxDeliveryFailed)[0].next_delay == 0.5


def test_a_failing_entry_does_not_hold_back_the_others(
    make: Callable[..., Outbox], clock: FakeClock
) -> None:
    """Entries are taken in due order: one in backoff lets the next ones through."""
    seen: list[Any] = []

    def deliver(entry: OutboxEntry) -> None:
        seen.append(entry.payload)
        if entry.payload == "poison":
            raise ValueError("rejected")

    outbox = make(deliver=deliver, backoff_initial=10, backoff_maximum=10)
    outbox.put("t", "poison")
    outbox.put("t", "a")
    outbox.put("t", "b")
    assert outbox.deliver_due() == 0  # a pass ends at its first failure
    assert outbox.deliver_due() == 2  # the poison entry waits 10 s; the rest go
    assert seen == ["poison", "a", "b"]
    assert outbox.depth == 1
    clock.advance(10)
    assert outbox.deliver_due() == 0
    assert seen[-1] == "poison"


def test_backoff_survives_a_restart(
    make: Callable[..., Outbox], downstream: Downstream, clock: FakeClock
) -> None:
    """Attempts and the due time are in the file: a new owner honours them."""
    failing = Downstream(failing=True)
    first = make(deliver=failing, backoff_initial=5, backoff_maximum=5)
    first.put("t", "x")
    first.deliver_due()
    first.close()

    second = make(deliver=downstream, backoff_initial=5, backoff_maximum=5)
    assert second.deliver_due() == 0
    assert downstream.calls == []
    clock.advance(5)
    assert second.deliver_due() == 1
    assert downstream.calls[0].attempts == 1


def test_due_times_are_capped_on_open(
    make: Callable[..., Outbox], downstream: Downstream, clock: FakeClock
) -> None:
    """An entry due far in the future (a wall clock stepped back) waits at most backoff_maximum."""
    first = make(deliver=Downstream(failing=True), backoff_initial=1000, backoff_maximum=1000)
    first.put("t", "x")
    first.deliver_due()  # next attempt in 1000 s
    first.close()

    second = make(deliver=downstream, backoff_initial=1, backoff_maximum=2)
    clock.advance(2)
    assert second.deliver_due() == 1


def test_max_attempts_dead_letters_the_entry(
    make: Callable[..., Outbox],
    downstream: Downstream,
    clock: FakeClock,
    recorder: RecordingListener,
) -> None:
    """After max_attempts failures the entry moves to the dead-letter table, reported as dropped."""
    downstream.failing = True
    outbox = make(deliver=downstream, max_attempts=3, backoff_initial=1, backoff_maximum=1)
    entry_id = outbox.put("t", "x")
    for _ in range(3):
        outbox.deliver_due()
        clock.advance(1)
    assert len(downstream.calls) == 3
    assert outbox.deliver_due() == 0
    assert len(downstream.calls) == 3  # never tried again
    assert (outbox.depth, outbox.dead, outbox.dropped) == (0, 1, 1)
    assert len(recorder.of_type(OutboxDeliveryFailed)) == 2  # the third is a drop
    [event] = recorder.of_type(OutboxDropped)
    assert (event.policy, event.entry_id) == ("max_attempts", entry_id)

    outbox.close()
    reopened = make(deliver=downstream)
    assert reopened.dead == 1  # kept in the file
    assert reopened.depth == 0


def test_dead_letter_table_is_bounded(make: Callable[..., Outbox], downstream: Downstream) -> None:
    """Dead letters beyond max_entries push out the oldest ones."""
    downstream.failing = True
    outbox = make(deliver=downstream, max_entries=2, max_attempts=1)
    for n in range(5):
        outbox.put("t", n)
        outbox.deliver_due()
    assert outbox.dead == 2
    assert outbox.dropped == 5
    kept = outbox._db.execute("SELECT payload FROM outbox_dead ORDER BY seq").fetchall()
    assert kept == [("3",), ("4",)]


def test_undecodable_row_is_dead_lettered_not_retried_forever(
    make: Callable[..., Outbox], downstream: Downstream, recorder: RecordingListener
) -> None:
    """A row whose payload no longer parses cannot block the queue."""
    outbox = make(deliver=downstream)
    outbox._db.execute(
        "INSERT INTO outbox (id, topic, payload, created_at, next_attempt_at)"
        " VALUES ('bad', 't', 'not json', 0, 0)"
    )
    outbox._depth += 1
    good = outbox.put("t", "fine")
    assert outbox.flush() == 0
    assert downstream.ids == [good]
    assert outbox.dead == 1
    assert [(e.policy, e.entry_id) for e in recorder.of_type(OutboxDropped)] == [
        ("undecodable", "bad")
    ]


# -- introspection and events --------------------------------------------------------


def test_depth_and_oldest_age(make: Callable[..., Outbox], clock: FakeClock) -> None:
    """oldest_age is the age of the oldest pending entry, 0.0 when there is none."""
    outbox = make()
    assert outbox.oldest_age == 0.0
    outbox.put("t", 1)
    clock.advance(5)
    outbox.put("t", 2)
    clock.advance(2)
    assert outbox.depth == 2
    assert outbox.oldest_age == pytest.approx(7.0)
    outbox.flush()
    assert outbox.oldest_age == 0.0
    assert outbox.delivered == 2


def test_a_raising_listener_never_breaks_put_or_delivery(
    make: Callable[..., Outbox], listeners: Listeners, downstream: Downstream
) -> None:
    """Events go through Listeners, which isolates the outbox from a broken listener."""

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    listeners.add(broken)
    outbox = make(deliver=downstream, max_entries=1)
    assert outbox.put("t", 1) is not None
    assert outbox.put("t", 2) is None
    assert outbox.flush() == 0
    assert len(downstream.calls) == 1


def test_no_events_are_built_without_listeners(
    make: Callable[..., Outbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unobserved outbox pays nothing for events."""
    import seawall.outbox as module

    def forbidden(**kwargs: Any) -> None:
        raise AssertionError("an event was built")

    for name in ("OutboxDelivered", "OutboxDeliveryFailed", "OutboxDropped"):
        monkeypatch.setattr(module, name, forbidden)
    calls = [ConnectionError("down"), None]

    def deliver(entry: OutboxEntry) -> None:
        error = calls.pop(0)
        if error is not None:
            raise error

    outbox = make(deliver=deliver, max_entries=1, listeners=Listeners())
    outbox.put("t", 1)
    outbox.put("t", 2)  # dropped
    assert outbox.flush() == 1  # failed
    assert outbox.flush() == 0  # delivered


def test_repr_names_the_outbox(make: Callable[..., Outbox]) -> None:
    """repr shows the name, the file and the depth."""
    outbox = make(name="analytics")
    outbox.put("t", 1)
    assert "'analytics'" in repr(outbox)
    assert "depth=1" in repr(outbox)
