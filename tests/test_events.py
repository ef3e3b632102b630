"""Listener registration and dispatch."""

from __future__ import annotations

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
