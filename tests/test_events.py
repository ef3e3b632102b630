"""Listener registration and dispatch."""

from __future__ import annotations

import logging
import threading

import pytest

from seawall.events import CallRejected, Event, Listeners, StateChanged, TimedOut
from seawall.testing import RecordingListener


def test_listener_for_one_type_gets_only_that_type() -> None:
    listeners = Listeners()
    all_events = RecordingListener()
    timeouts = RecordingListener()
    listeners.add(all_events)
    listeners.add(timeouts, TimedOut)
    listeners.emit(TimedOut(name="a", at=0.0, timeout=1.0))
    listeners.emit(CallRejected(name="a", at=0.0, state=None, retry_after=None))  # type: ignore[arg-type]
    assert len(all_events.events) == 2
    assert [type(e) for e in timeouts.events] == [TimedOut]


def test_remove_and_wants() -> None:
    listeners = Listeners()
    assert not listeners
    remove = listeners.add(print, StateChanged)
    assert listeners
    assert listeners.wants(StateChanged)
    assert not listeners.wants(TimedOut)
    remove()
    assert not listeners
    assert not listeners.wants(StateChanged)


def test_subclass_registration_covers_all_events() -> None:
    listeners = Listeners()
    rec = RecordingListener()
    listeners.add(rec, Event)
    listeners.emit(TimedOut(name="a", at=0.0, timeout=1.0))
    assert len(rec.events) == 1


def test_recording_listener_as_context_manager() -> None:
    listeners = Listeners()
    with RecordingListener(listeners) as rec:
        listeners.emit(TimedOut(name="a", at=0.0, timeout=1.0))
    listeners.emit(TimedOut(name="b", at=0.0, timeout=1.0))
    assert [e.name for e in rec.events] == ["a"]
    assert not listeners


def test_a_listener_added_while_a_type_is_being_resolved_is_not_lost() -> None:
    """An add() racing the first emit of a type must not be cached over."""
    listeners = Listeners()
    late = RecordingListener()
    adders: list[threading.Thread] = []

    class Racing(type):
        def __subclasscheck__(cls, subclass: type) -> bool:
            if not adders:  # mid-resolve: another thread registers a listener
                adder = threading.Thread(target=listeners.add, args=(late,))
                adders.append(adder)
                adder.start()
                adder.join(0.2)  # done by now unless resolving holds it off
            return False

    class Unrelated(metaclass=Racing):
        pass

    listeners.add(lambda event: None, Unrelated)  # type: ignore[arg-type]
    first = TimedOut(name="a", at=0.0, timeout=1.0)
    second = TimedOut(name="b", at=1.0, timeout=1.0)
    listeners.emit(first)
    adders[0].join(5)
    listeners.emit(second)
    assert second in late.events


def test_a_failing_listener_is_reported_once_even_from_many_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listeners = Listeners()

    def broken(event: Event) -> None:
        raise RuntimeError("exporter bug")

    listeners.add(broken)
    event = TimedOut(name="a", at=0.0, timeout=1.0)
    with caplog.at_level(logging.ERROR, logger="seawall.events"):
        threads = [
            threading.Thread(target=lambda: [listeners.emit(event) for _ in range(200)])
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(caplog.records) == 1
