"""The durable local outbox behind BACKGROUND dependencies: write now, deliver later.

A caller hands an event to :meth:`Outbox.put` (or :meth:`Outbox.put_async`) and
goes on at once: the event is committed to a SQLite file (standard library only)
before ``put`` returns, and a background worker delivers it downstream with
retries and backoff, across process restarts. The caller never waits for the
delivery and never sees it fail.

Guarantees, and what they cost:

* **Durable on return.** ``put`` commits before it returns, in WAL mode. With
  ``synchronous="full"`` (the default) the commit fsyncs the WAL, so an entry
  survives a process crash *and* a power loss or OS crash. ``"normal"`` skips
  that fsync (about ten times cheaper per ``put``): entries survive a process
  crash (SIGKILL), but the last commits before a power loss may be lost.
* **At least once.** An entry is deleted only after ``deliver`` returned
  without raising. A crash between the two delivers it again, with the same
  :attr:`OutboxEntry.id`: receivers deduplicate on it. The worker delivers one
  entry at a time, so a crash duplicates at most the one entry in flight. So
  may a delivery cancelled by :meth:`Outbox.stop_async` or
  :meth:`Outbox.flush_async` running out of time, and (with ``"normal"``) a
  delete lost to a power loss.
* **Ordered by due time**, then by ``put`` order. A failing entry gets its own
  exponential backoff with full jitter (``backoff_initial * 2**(attempts-1)``,
  capped at ``backoff_maximum``, times a uniform random draw), stored in the
  file so it survives restarts; other entries go ahead of it. The worker also
  pauses on the same schedule after consecutive failures, so a receiver that is
  down sees about one attempt per pause, not one per pending entry.
* **Bounded.** At most ``max_entries`` pending entries. When full,
  ``overflow="reject_new"`` (the default) drops the new entry and ``put``
  returns ``None``; ``"drop_oldest"`` drops the oldest pending entry not already
  claimed for delivery (the worker claims up to 32 at a time) and stores the new
  one, or drops the new one if every pending entry is claimed. Either way an
  :class:`~seawall.events.OutboxDropped` event is emitted and :attr:`Outbox.dropped`
  counts it.
* **Dead letters.** With ``max_attempts``, an entry that failed that many times
  moves to a dead-letter table in the same file (kept for inspection, itself
  bounded by ``max_entries``, oldest removed first) and an ``OutboxDropped``
  event with ``policy="max_attempts"`` is emitted. Without it (the default)
  entries are retried until delivered. A delivery refused before it was sent
  (a :class:`~seawall.errors.RejectedError`: the dependency's own open breaker
  or full bulkhead) is not an attempt: it is tried again after the breaker's
  ``retry_after`` (or the backoff) and never counts towards ``max_attempts``.

``OutboxDropped.policy`` says why an entry was dropped: ``"reject_new"`` and
``"drop_oldest"`` (the outbox was full), ``"max_attempts"`` (dead-lettered),
``"undecodable"`` (a row whose payload no longer parses, dead-lettered),
``"storage_error"`` (SQLite failed, e.g. the disk is full: logged once per
episode, never raised) and ``"closed"`` (``put`` after :meth:`Outbox.close`).

Threads and the event loop: ``put`` may be called from any thread; all of them
share one SQLite connection behind a lock, held for one commit and never while
``deliver`` runs. ``put_async`` and the asyncio worker do their SQLite work in
threads (:func:`asyncio.to_thread`), so the event loop never waits on the disk.

One process owns a file at a time: the file is opened in SQLite's exclusive
locking mode, so a second :class:`Outbox` on the same path (in this process or
another) fails at construction with :class:`~seawall.errors.ConfigError`. Give
each worker process of a pre-fork server its own, *stable* path (by worker
index, not by pid: a restarted process must find its predecessor's file).

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import json
import logging
import math
import os
import random as _random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from seawall import _validate
from seawall._clock import MONOTONIC, Clock
from seawall.errors import ConfigError, RejectedError
from seawall.events import (
    LISTENERS,
    Listeners,
    OutboxDelivered,
    OutboxDeliveryFailed,
    OutboxDropped,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import timedelta
    from types import TracebackType

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAXIMUM",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_OVERFLOW",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_SYNCHRONOUS",
    "Outbox",
    "OutboxConfig",
    "OutboxEntry",
]

_log = logging.getLogger("seawall.outbox")

Overflow = Literal["reject_new", "drop_oldest"]
Synchronous = Literal["full", "normal"]

DEFAULT_MAX_ENTRIES = 100_000
"""Pending entries kept at most (dead letters apart), by default."""
DEFAULT_OVERFLOW: Overflow = "reject_new"
"""What a full outbox drops by default: the new entry."""
DEFAULT_BACKOFF_INITIAL = 0.5
"""Upper bound of an entry's first retry delay, in seconds."""
DEFAULT_BACKOFF_MAXIMUM = 60.0
"""Cap on any entry's retry delay, in seconds."""
DEFAULT_POLL_INTERVAL = 1.0
"""Seconds between an idle worker's checks for due entries."""
DEFAULT_SYNCHRONOUS: Synchronous = "full"
"""SQLite synchronous mode by default: "full", durable through power loss."""

_OVERFLOWS = ("reject_new", "drop_oldest")
_SYNCHRONOUS = ("full", "normal")
_SCHEMA_VERSION = 1
# Entries claimed per read: enough to amortise the read (and, for the asyncio
# worker, its hop to a thread), small enough that drop_oldest rarely has to
# skip claimed entries.
_BATCH = 32
# How long put() waits for SQLite's file lock. We hold the file exclusively, so
# this only matters at construction, while a previous owner is still exiting.
_BUSY_TIMEOUT = 1.0
# How often a waiting flush re-checks whether the worker's pass is over.
_LOCK_POLL = 0.005
_MAX_ERROR_TEXT = 1000
# Past this many doublings any sane backoff_maximum has long been reached, and
# 2.0 ** n is still a finite float.
_MAX_DOUBLINGS = 64

_SCHEMA = (
    # No AUTOINCREMENT: seq only orders the rows present, and reusing the seq
    # of a deleted last row is harmless. No index on id: nothing looks it up.
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at, seq)",
    """CREATE TABLE IF NOT EXISTS outbox_dead (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at REAL NOT NULL,
        last_error TEXT
    )""",
)
_INSERT = (
    "INSERT INTO outbox (id, topic, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)"
)
_SELECT = "SELECT seq, id, topic, payload, created_at, attempts FROM outbox"
_TO_DEAD = (
    "INSERT INTO outbox_dead (id, topic, payload, created_at, attempts, failed_at, last_error)"
    " SELECT id, topic, payload, created_at, ?, ?, ? FROM outbox WHERE seq = ?"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxConfig:
    """The validated, immutable configuration of an :class:`Outbox`.

    Every field is documented on :class:`Outbox`. Building one with a bad value
    raises :class:`~seawall.errors.ConfigError` naming each bad field and its value.
    """

    max_entries: int = DEFAULT_MAX_ENTRIES
    overflow: Overflow = DEFAULT_OVERFLOW
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_maximum: float = DEFAULT_BACKOFF_MAXIMUM
    max_attempts: int | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    synchronous: Synchronous = DEFAULT_SYNCHRONOUS

    def __post_init__(self) -> None:
        initial = _validate.duration("backoff_initial", self.backoff_initial, allow_zero=False)
        maximum = _validate.duration("backoff_maximum", self.backoff_maximum, allow_zero=False)
        errors = [
            *_validate.at_least("max_entries", self.max_entries, 1),
            *initial,
            *maximum,
            *_validate.duration("poll_interval", self.poll_interval, allow_zero=False),
        ]
        if self.overflow not in _OVERFLOWS:
            errors.append(f"overflow must be 'reject_new' or 'drop_oldest', got {self.overflow!r}")
        if not initial and not maximum and self.backoff_maximum < self.backoff_initial:
            errors.append(
                f"backoff_maximum must be >= backoff_initial ({self.backoff_initial!r}), "
                f"got {self.backoff_maximum!r}"
            )
        if self.max_attempts is not None:
            errors += _validate.at_least("max_attempts", self.max_attempts, 1)
        if self.synchronous not in _SYNCHRONOUS:
            errors.append(f"synchronous must be 'full' or 'normal', got {self.synchronous!r}")
        _validate.fail_if(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """One event in the outbox, as handed to ``deliver``.

    Attributes:
        id: A uuid4 hex string, fixed at :meth:`Outbox.put`. A redelivery (after
            a crash) carries the same id: it is the idempotency key receivers
            deduplicate on.
        topic: The topic given to ``put``.
        payload: The ``bytes`` given to ``put``, or the JSON value it was given
            after a round trip through JSON (tuples come back as lists, and
            dictionary keys as strings).
        created_at: When ``put`` stored it, in seconds since the Unix epoch
            (wall time, since it must mean something to the next process).
        attempts: How many delivery attempts failed before this one (0 on the
            first). Attempts cut short by a crash are not counted.
    """

    id: str
    topic: str
    payload: Any
    created_at: float
    attempts: int


class Outbox:
    """A durable, bounded outbox in a SQLite file, delivered by a background worker.

    Start a worker to deliver: :meth:`start` (a thread, for sync apps),
    :meth:`start_async` (a task on the running event loop), ``with outbox:`` or
    ``async with outbox:``. Entries left by a previous process are just rows:
    they are delivered as soon as a worker starts.

    Args:
        path: The SQLite file (created if missing; its directory must exist).
        deliver: Sends one :class:`OutboxEntry` downstream and returns when the
            receiver has accepted it; raising means "try again later". It may be
            a plain or an ``async`` function: either worker accepts both (the
            thread worker runs coroutines on an event loop of its own, the
            asyncio worker runs plain functions in a thread). Bound it with a
            timeout of its own: a hung ``deliver`` stalls the outbox.
        max_entries: Most entries kept pending (and, separately, dead-lettered).
            Default 100 000.
        overflow: What a ``put`` into a full outbox drops: ``"reject_new"`` (the
            new entry; the default) or ``"drop_oldest"``.
        backoff_initial: Upper bound of the first retry delay, in seconds
            (> 0). Default 0.5.
        backoff_maximum: Cap on any retry delay, in seconds (>= backoff_initial).
            Default 60.
        max_attempts: Dead-letter an entry after this many failed attempts;
            ``None`` (the default) retries forever.
        poll_interval: Seconds between the idle worker's checks for due entries
            when nothing wakes it (a ``put`` does). Default 1.
        synchronous: ``"full"`` (the default: fsync on every commit, durable
            through power loss) or ``"normal"`` (durable through process crashes
            only; several times cheaper ``put``).
        name: The outbox's name in events, logs and the worker's thread name.
        clock: Time source for due times, ages and timeouts; defaults to the real
            monotonic clock. The workers' idle waits are real time, capped by
            ``poll_interval``.
        random: Returns a float in [0, 1) for the backoff jitter; defaults to
            :func:`random.random`.
        listeners: Where events go; defaults to :data:`seawall.events.LISTENERS`.

    Raises:
        ConfigError: An option is out of range (the message names each one), or
            ``path`` cannot be opened as an outbox (including: another
            ``Outbox`` holds it).
    """

    __slots__ = (
        "__weakref__",
        "_async_stop",
        "_async_wake",
        "_closed",
        "_db",
        "_db_lock",
        "_dead",
        "_deliver",
        "_deliver_is_async",
        "_delivered",
        "_depth",
        "_dropped",
        "_flushers",
        "_in_flight",
        "_listeners",
        "_loop",
        "_now",
        "_pass_lock",
        "_random",
        "_state_lock",
        "_stop",
        "_storage_ok",
        "_task",
        "_thread",
        "_wake",
        "_wall_offset",
        "config",
        "name",
        "path",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        deliver: Callable[[OutboxEntry], object],
        max_entries: int = DEFAULT_MAX_ENTRIES,
        overflow: Overflow = DEFAULT_OVERFLOW,
        backoff_initial: float | timedelta = DEFAULT_BACKOFF_INITIAL,
        backoff_maximum: float | timedelta = DEFAULT_BACKOFF_MAXIMUM,
        max_attempts: int | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        synchronous: Synchronous = DEFAULT_SYNCHRONOUS,
        name: str = "outbox",
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        errors = []
        if not isinstance(name, str) or not name:
            errors.append(f"name must be a non-empty string, got {name!r}")
        deliver_fn: object = deliver  # typed, but callers may not be
        random_fn: object = random
        if not callable(deliver_fn):
            errors.append(f"deliver must be callable, got {deliver_fn!r}")
        if random_fn is not None and not callable(random_fn):
            errors.append(f"random must be callable, got {random_fn!r}")
        _validate.fail_if(errors)
        self.name = name
        self.config = OutboxConfig(
            max_entries=max_entries,
            overflow=overflow,
            backoff_initial=_validate.seconds(backoff_initial),
            backoff_maximum=_validate.seconds(backoff_maximum),
            max_attempts=max_attempts,
            poll_interval=_validate.seconds(poll_interval),
            synchronous=synchronous,
        )
        self.path = os.fspath(path)
        self._deliver = deliver
        # An object whose __call__ is `async def` is an async deliver too.
        call = getattr(deliver, "__call__", None)  # noqa: B004 - not a callable() test
        is_async = inspect.iscoroutinefunction(deliver) or inspect.iscoroutinefunction(call)
        self._deliver_is_async = is_async
        clock = MONOTONIC if clock is None else clock
        self._now = clock.monotonic
        # Stored times must mean something to the next process, so they are wall
        # time; but they are read through the injected clock, anchored once here,
        # so a wall-clock step during the run cannot reorder or stall entries
        # (and a fake clock drives them in tests).
        self._wall_offset = time.time() - self._now()
        self._random = _random.random if random is None else random
        self._listeners = LISTENERS if listeners is None else listeners

        self._db_lock = threading.Lock()  # guards _db and the counters below
        self._closed = False
        self._storage_ok = True
        self._delivered = 0
        self._dropped = 0
        # Only the pass holding _pass_lock changes _in_flight; put() reads it
        # without a lock (single membership tests), at worst stale by one entry.
        self._pass_lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._state_lock = threading.Lock()  # guards workers and _flushers
        self._flushers = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_wake: asyncio.Event | None = None
        self._async_stop: asyncio.Event | None = None
        self._db, self._depth, self._dead = self._open()

    def _open(self) -> tuple[sqlite3.Connection, int, int]:
        try:
            db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"path {self.path!r} cannot be opened as an outbox: {exc}") from exc
        try:
            return db, *self._prepare(db)
        except sqlite3.Error as exc:
            db.close()
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                msg = f"path {self.path!r} is in use by another Outbox (one owner per file)"
            else:
                msg = f"path {self.path!r} cannot be opened as an outbox: {exc}"
            raise ConfigError(msg) from exc
        except BaseException:
            db.close()
            raise

    def _prepare(self, db: sqlite3.Connection) -> tuple[int, int]:
        # Exclusive locking, set before WAL: the file is ours alone until closed
        # (two owners would deliver every entry twice), and WAL needs no shared
        # memory file. The OS drops the lock when the process dies, so a
        # restart after a crash opens the file at once.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            _log.warning("outbox %r: %r does not support WAL; using %s", self.name, self.path, mode)
        db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this seawall")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            # A wall clock stepped back between runs must not hold entries longer
            # than a retry delay can be.
            latest = self._wall() + self.config.backoff_maximum
            db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE next_attempt_at > ?", (latest, latest)
            )
            depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            dead = db.execute("SELECT COUNT(*) FROM outbox_dead").fetchone()[0]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        return depth, dead

    # -- writing --------------------------------------------------------------

    def _guard_delivery(
        self,
        wrap: Callable[[Callable[[OutboxEntry], object], bool], Callable[[OutboxEntry], object]],
    ) -> None:
        """Replace ``deliver`` by ``wrap(deliver, is_async)``, before any worker starts.

        A BACKGROUND :class:`~seawall.Dependency` uses it to send every delivery
        through its breaker, bulkhead and timeout; ``wrap`` must keep the
        function sync or async as it was.
        """
        self._deliver = wrap(self._deliver, self._deliver_is_async)

    def put(self, topic: str, payload: object) -> str | None:
        """Store an event for delivery and return its id, committed to the file.

        Never raises for a delivery or storage problem: when the entry cannot be
        kept (the outbox is full under ``"reject_new"``, SQLite failed, or the
        outbox is closed) it is dropped, counted in :attr:`dropped`, reported in
        an :class:`~seawall.events.OutboxDropped` event, and ``None`` is returned.
        Thread-safe. From a coroutine prefer :meth:`put_async`, which keeps the
        commit's disk write off the event loop.

        Args:
            topic: A string for the receiver to route on.
            payload: ``bytes`` (delivered as they are), or a JSON-serialisable
                value (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
                ``None``, nested; NaN and infinities are not JSON).

        Returns:
            The entry's id (uuid4 hex), or ``None`` if the entry was dropped.

        Raises:
            TypeError: ``topic`` is not a string, or ``payload`` is neither bytes
                nor JSON-serialisable: a bug at the call site, raised every time,
                so it is reported rather than dropped.
            ValueError: ``payload`` holds NaN or infinity, or is circular.
        """
        checked: object = topic  # typed, but callers may not be
        if not isinstance(checked, str):
            msg = f"topic must be a string, got {checked!r}"
            raise TypeError(msg)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            data: str | bytes = bytes(payload)
        else:
            data = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        entry_id = uuid.uuid4().hex
        now = self._wall()
        error: sqlite3.Error | None = None
        victim: str | None
        with self._db_lock:
            if self._closed:
                victim, why = entry_id, "closed"
            else:
                try:
                    victim, why = self._insert_locked(entry_id, topic, data, now)
                except sqlite3.Error as exc:
                    self._rollback_locked()
                    victim, why, error = entry_id, "storage_error", exc
                except BaseException:
                    self._rollback_locked()
                    raise
            if victim is not None:
                self._dropped += 1
            depth = self._depth
        if error is not None:
            self._storage_failed(error, "put")
        if victim is not None and self._listeners:
            self._listeners.emit(
                OutboxDropped(
                    name=self.name, at=self._now(), entry_id=victim, policy=why, depth=depth
                )
            )
        if victim == entry_id:
            return None
        self._wake_workers()
        return entry_id

    async def put_async(self, topic: str, payload: object) -> str | None:
        """Like :meth:`put`, with the commit in a worker thread.

        A commit is a disk write (an fsync with ``synchronous="full"``, and now
        and then a WAL checkpoint either way), so it runs in a thread rather than
        stall the event loop for it. If the awaiting task is cancelled, the entry
        may still be stored.
        """
        return await asyncio.to_thread(self.put, topic, payload)

    def _insert_locked(
        self, entry_id: str, topic: str, data: str | bytes, now: float
    ) -> tuple[str | None, str]:
        db = self._db
        row = (entry_id, topic, data, now, now)
        if self._depth < self.config.max_entries:
            db.execute(_INSERT, row)  # autocommit: one statement, one transaction
            self._depth += 1
            self._storage_ok = True
            return None, ""
        if self.config.overflow == "reject_new":
            return entry_id, "reject_new"
        # The oldest entry not claimed by the delivering pass: a claimed entry is
        # about to be delivered, and would be even if its row were deleted.
        in_flight = self._in_flight
        oldest = db.execute(
            "SELECT seq, id FROM outbox ORDER BY seq LIMIT ?", (len(in_flight) + 1,)
        )
        candidates: list[tuple[int, str]] = oldest.fetchall()
        unclaimed = next((c for c in candidates if c[0] not in in_flight), None)
        if unclaimed is None:  # all claimed (a tiny max_entries): nothing older to drop
            return entry_id, "drop_oldest"
        seq, victim = unclaimed
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        db.execute(_INSERT, row)
        db.execute("COMMIT")
        self._storage_ok = True
        return victim, "drop_oldest"

    def _rollback_locked(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _storage_failed(self, exc: sqlite3.Error, doing: str) -> None:
        # Once per episode: a full disk fails every put, and one log line says it.
        if self._storage_ok:
            self._storage_ok = False
            _log.error(
                "outbox %r: %s failed on %r; entries are dropped or retried until"
                " storage recovers (not logged again until then)",
                self.name,
                doing,
                self.path,
                exc_info=exc,
            )

    def _wake_workers(self) -> None:
        self._wake.set()
        loop, wake = self._loop, self._async_wake
        if loop is not None and wake is not None and not wake.is_set():
            # An asyncio.Event may only be set on its loop's thread; a closed
            # loop has no worker left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    # -- introspection ---------------------------------------------------------

    @property
    def depth(self) -> int:
        """Entries waiting for delivery (in flight included, dead letters not)."""
        return self._depth

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest pending entry was put; 0.0 when none is.

        The signal for an "outbox growing" alert: a receiver that is down or
        too slow shows here long before the outbox is full.
        """
        with self._db_lock:
            if self._closed:
                return 0.0
            row = self._db.execute("SELECT created_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return 0.0 if row is None else max(0.0, self._wall() - row[0])

    @property
    def dead(self) -> int:
        """Entries in the dead-letter table (kept in the file across restarts)."""
        return self._dead

    @property
    def delivered(self) -> int:
        """Deliveries that succeeded since this object was built."""
        return self._delivered

    @property
    def dropped(self) -> int:
        """Entries dropped since this object was built, for any reason."""
        return self._dropped

    @property
    def running(self) -> bool:
        """Whether a worker (thread or asyncio) is running."""
        thread, task = self._thread, self._task
        return (thread is not None and thread.is_alive()) or (task is not None and not task.done())

    # -- the thread worker -----------------------------------------------------

    def start(self) -> None:
        """Start delivering in a background (daemon) thread.

        Raises:
            RuntimeError: A worker is already running, or the outbox is closed.
        """
        with self._state_lock:
            self._check_can_start()
            self._stop = stop = threading.Event()
            self._wake = wake = threading.Event()
            self._thread = threading.Thread(
                target=self._run_thread,
                args=(stop, wake),
                name=f"seawall-outbox-{self.name}",
                # A forgotten stop() must not hang interpreter exit; nothing is
                # lost, the pending entries are in the file.
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the thread worker, waiting up to ``timeout`` seconds for it.

        A delivery in progress is finished first. Pending entries stay in the
        file. Returns whether the worker has stopped (``True`` if none ran).
        """
        with self._state_lock:
            thread = self._thread
            if thread is None:
                return True
            self._stop.set()
            self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            return False
        with self._state_lock:
            if self._thread is thread:
                self._thread = None
        return True

    def _check_can_start(self) -> None:
        if self._closed:
            raise RuntimeError(f"outbox {self.name!r} is closed")
        if self.running:
            raise RuntimeError(f"outbox {self.name!r} already has a running worker")

    def _run_thread(self, stop: threading.Event, wake: threading.Event) -> None:
        runner = _Runner()
        streak = 0  # failed passes in a row
        try:
            while not stop.is_set():
                wake.clear()  # before the pass: a put() during it wakes the wait below
                with self._pass_lock:
                    outcome, delivered = self._pass(
                        due_only=True, deadline=None, stop=stop, runner=runner
                    )
                streak = _next_streak(streak, outcome, delivered)
                if outcome is _Outcome.CLOSED:
                    break
                if outcome is _Outcome.FAILED:
                    stop.wait(self._delay(streak))  # not woken by puts: let it rest
                elif outcome is _Outcome.STORAGE or outcome is _Outcome.YIELDED:
                    wake.wait(self.config.poll_interval)
                else:
                    wake.wait(self._idle_wait())
        except BaseException:
            _log.exception("outbox %r: the delivery thread stopped", self.name)
        finally:
            runner.close()

    def _pass(
        self,
        *,
        due_only: bool,
        deadline: float | None,
        stop: threading.Event | None,
        runner: _Runner,
    ) -> tuple[_Outcome, int]:
        """Deliver entries (due ones, or all) in order until one fails or none is left."""
        delivered = 0
        try:
            while True:
                claims = self._claim(due_only=due_only)
                if claims is None:
                    return _Outcome.CLOSED, delivered
                if not claims:
                    return _Outcome.DONE, delivered
                for seq, entry in claims:
                    if self._should_end(deadline, stop):
                        return _Outcome.YIELDED, delivered
                    try:
                        result = self._deliver(entry)
                        if inspect.isawaitable(result):
                            runner.run(result)
                    except Exception as exc:
                        self._failed(seq, entry, exc)
                        return _Outcome.FAILED, delivered
                    self._succeeded(seq, entry)
                    delivered += 1
        except sqlite3.Error as exc:
            self._storage_failed(exc, "delivery bookkeeping")
            return _Outcome.STORAGE, delivered
        finally:
            self._in_flight.clear()

    def _should_end(
        self, deadline: float | None, stop: threading.Event | asyncio.Event | None
    ) -> bool:
        if stop is not None and (stop.is_set() or self._flushers):
            return True
        return deadline is not None and self._now() >= deadline

    # -- the asyncio worker ----------------------------------------------------

    async def start_async(self) -> None:
        """Start delivering in a task on the running event loop.

        SQLite reads and writes run in worker threads (:func:`asyncio.to_thread`):
        they are quick, but a commit can wait on an fsync or on a ``put`` from
        another thread, and the loop must not.

        Raises:
            RuntimeError: A worker is already running, or the outbox is closed.
        """
        with self._state_lock:
            self._check_can_start()
            self._async_stop = stop = asyncio.Event()
            self._async_wake = wake = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(
                self._run_async(stop, wake), name=f"seawall-outbox-{self.name}"
            )

    async def stop_async(self, timeout: float | None = 5.0) -> bool:  # noqa: ASYNC109 - as stop()
        """Stop the asyncio worker, waiting up to ``timeout`` seconds for it.

        A delivery still running after ``timeout`` is cancelled; its entry stays
        pending and is delivered again later (it may have arrived: at least once).
        Returns whether the worker stopped by itself (``True`` if none ran).
        """
        task, stop, wake = self._task, self._async_stop, self._async_wake
        if task is None or stop is None or wake is None:
            return True
        stop.set()
        wake.set()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
        with self._state_lock:
            if self._task is task:
                self._task = self._loop = self._async_wake = self._async_stop = None
        return bool(done)

    async def _run_async(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        streak = 0
        try:
            while not stop.is_set():
                wake.clear()
                await self._acquire_pass_async(None)
                try:
                    outcome, delivered = await self._pass_async(
                        due_only=True, deadline=None, stop=stop
                    )
                finally:
                    self._pass_lock.release()
                streak = _next_streak(streak, outcome, delivered)
                if outcome is _Outcome.CLOSED:
                    break
                if outcome is _Outcome.FAILED:
                    await _wait(stop, self._delay(streak))
                elif outcome is _Outcome.STORAGE or outcome is _Outcome.YIELDED:
                    await _wait(wake, self.config.poll_interval)
                else:
                    await _wait(wake, await asyncio.to_thread(self._idle_wait))
        except Exception:
            _log.exception("outbox %r: the delivery task stopped", self.name)

    async def _pass_async(
        self, *, due_only: bool, deadline: float | None, stop: asyncio.Event | None
    ) -> tuple[_Outcome, int]:
        """Run :meth:`_pass` on the event loop; here a deadline also cuts a delivery short."""
        delivered = 0
        try:
            while True:
                claims = await asyncio.to_thread(self._claim, due_only=due_only)
                if claims is None:
                    return _Outcome.CLOSED, delivered
                if not claims:
                    return _Outcome.DONE, delivered
                for seq, entry in claims:
                    if self._should_end(deadline, stop):
                        return _Outcome.YIELDED, delivered
                    try:
                        if deadline is None:
                            await self._call_async(entry)
                        else:
                            async with asyncio.timeout(max(0.0, deadline - self._now())):
                                await self._call_async(entry)
                    except Exception as exc:
                        await asyncio.to_thread(self._failed, seq, entry, exc)
                        return _Outcome.FAILED, delivered
                    await asyncio.to_thread(self._succeeded, seq, entry)
                    delivered += 1
        except sqlite3.Error as exc:
            self._storage_failed(exc, "delivery bookkeeping")
            return _Outcome.STORAGE, delivered
        finally:
            self._in_flight.clear()

    async def _call_async(self, entry: OutboxEntry) -> None:
        if self._deliver_is_async:
            result = self._deliver(entry)
        else:
            # A plain deliver blocks (it does network I/O): keep it off the loop.
            result = await asyncio.to_thread(self._deliver, entry)
        if inspect.isawaitable(result):
            await result

    async def _acquire_pass_async(self, deadline: float | None) -> bool:
        # Polled rather than awaited in a thread: a cancelled wait must never
        # leave the lock taken by a thread nobody hears from.
        while not self._pass_lock.acquire(blocking=False):
            if deadline is not None and self._now() >= deadline:
                return False
            await asyncio.sleep(_LOCK_POLL)
        return True

    # -- one-off passes: flush and deliver_due ----------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Try to deliver every pending entry now, ignoring backoff; return how many remain.

        For a graceful shutdown: entries are delivered in order until none is
        left, one fails (the rest are left for the next start rather than spend
        their attempts on a receiver that is evidently not taking them), or
        ``timeout`` seconds pass. The timeout is checked between deliveries: a
        delivery that has started is not interrupted. Safe while a worker runs
        (the worker pauses for it). From a coroutine use :meth:`flush_async`.

        Raises:
            RuntimeError: ``deliver`` is async and this thread runs an event loop.
        """
        self._run_once(due_only=False, timeout=timeout)
        return self._depth

    def deliver_due(self, timeout: float | None = None) -> int:
        """Deliver the entries that are due, in this thread; return how many were delivered.

        One pass of the worker, for an app without a background worker (a cron
        job, a serverless handler) or a test with a fake clock: entries whose
        backoff has not expired are left alone, and the pass ends at the first
        failure or after ``timeout`` seconds.

        Raises:
            RuntimeError: ``deliver`` is async and this thread runs an event loop.
        """
        return self._run_once(due_only=True, timeout=timeout)

    def _run_once(self, *, due_only: bool, timeout: float | None) -> int:
        if self._deliver_is_async and _loop_running():
            msg = f"outbox {self.name!r} has an async deliver: use flush_async / deliver_due_async"
            raise RuntimeError(msg)
        deadline = None if timeout is None else self._now() + timeout
        with self._state_lock:
            self._flushers += 1
        runner = _Runner()
        try:
            if not self._pass_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
                return 0
            try:
                return self._pass(due_only=due_only, deadline=deadline, stop=None, runner=runner)[1]
            finally:
                self._pass_lock.release()
        finally:
            runner.close()
            with self._state_lock:
                self._flushers -= 1
            self._wake_workers()

    async def flush_async(self, timeout: float | None = None) -> int:  # noqa: ASYNC109 - as flush()
        """Try to deliver every pending entry now; return how many remain (see :meth:`flush`).

        Unlike :meth:`flush`, here ``timeout`` also cuts short a delivery in
        progress (its entry stays pending, and may be delivered again: at least
        once).
        """
        await self._run_once_async(due_only=False, budget=timeout)
        return self._depth

    async def deliver_due_async(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Deliver the entries that are due; return how many were (see :meth:`deliver_due`)."""
        return await self._run_once_async(due_only=True, budget=timeout)

    async def _run_once_async(self, *, due_only: bool, budget: float | None) -> int:
        deadline = None if budget is None else self._now() + budget
        with self._state_lock:
            self._flushers += 1
        try:
            if not await self._acquire_pass_async(deadline):
                return 0
            try:
                outcome = await self._pass_async(due_only=due_only, deadline=deadline, stop=None)
                return outcome[1]
            finally:
                self._pass_lock.release()
        finally:
            with self._state_lock:
                self._flushers -= 1
            self._wake_workers()

    # -- bookkeeping shared by every pass ---------------------------------------

    def _claim(self, *, due_only: bool) -> list[tuple[int, OutboxEntry]] | None:
        """Read the next few entries in due order and mark them in flight (None: closed)."""
        broken: list[tuple[int, str, Exception]] = []
        claims: list[tuple[int, OutboxEntry]] = []
        with self._db_lock:
            if self._closed:
                return None
            if due_only:
                query = (
                    _SELECT + " WHERE next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?"
                )
                rows = self._db.execute(query, (self._wall(), _BATCH)).fetchall()
            else:
                query = _SELECT + " ORDER BY next_attempt_at, seq LIMIT ?"
                rows = self._db.execute(query, (_BATCH,)).fetchall()
            for seq, entry_id, topic, data, created_at, attempts in rows:
                try:
                    payload = data if isinstance(data, bytes) else json.loads(data)
                except (TypeError, ValueError) as error:
                    broken.append((seq, entry_id, error))
                    continue
                entry = OutboxEntry(
                    id=entry_id,
                    topic=topic,
                    payload=payload,
                    created_at=created_at,
                    attempts=attempts,
                )
                claims.append((seq, entry))
            self._in_flight.update(seq for seq, _ in claims)
            for seq, _, problem in broken:
                # Retrying a row that cannot be read would fail forever, at the
                # head of the queue.
                self._bury_locked(seq, 0, problem)
        for _, entry_id, _ in broken:
            self._report_drop(entry_id, "undecodable")
        return claims

    def _succeeded(self, seq: int, entry: OutboxEntry) -> None:
        error: sqlite3.Error | None = None
        with self._db_lock:
            self._in_flight.discard(seq)
            self._delivered += 1
            if not self._closed:  # else it stays, and is delivered again: at least once
                try:
                    if self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount:
                        self._depth -= 1
                except sqlite3.Error as exc:
                    error = exc
        if self._listeners:
            self._listeners.emit(
                OutboxDelivered(
                    name=self.name,
                    at=self._now(),
                    entry_id=entry.id,
                    attempts=entry.attempts + 1,
                    age=max(0.0, self._wall() - entry.created_at),
                )
            )
        if error is not None:
            raise error

    def _failed(self, seq: int, entry: OutboxEntry, exc: Exception) -> None:
        # Refused without being sent (the dependency's own open breaker or full
        # bulkhead): not an attempt, so never a step towards the dead letters;
        # tried again when the breaker says, or after the usual backoff.
        refused = isinstance(exc, RejectedError)
        attempts = entry.attempts + (0 if refused else 1)
        max_attempts = self.config.max_attempts
        bury = not refused and max_attempts is not None and attempts >= max_attempts
        delay = 0.0 if bury else self._delay(max(attempts, 1))
        if refused:
            wait = getattr(exc, "retry_after", None)
            if isinstance(wait, (int, float)) and 0 < wait < math.inf:
                delay = min(float(wait), self.config.backoff_maximum)
        with self._db_lock:
            self._in_flight.discard(seq)
            if self._closed:
                return
            if bury:
                self._bury_locked(seq, attempts, exc)
            else:
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?"
                    " WHERE seq = ?",
                    (attempts, self._wall() + delay, _describe(exc), seq),
                )
        if bury:
            self._report_drop(entry.id, "max_attempts")
        elif self._listeners:
            self._listeners.emit(
                OutboxDeliveryFailed(
                    name=self.name,
                    at=self._now(),
                    entry_id=entry.id,
                    attempts=attempts,
                    error=exc,
                    next_delay=delay,
                )
            )

    def _bury_locked(self, seq: int, attempts: int, exc: Exception) -> None:
        """Move one entry to the dead-letter table, keeping that table bounded."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_TO_DEAD, (attempts, self._wall(), _describe(exc), seq))
            moved = db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
            excess = self._dead + moved - self.config.max_entries
            trimmed = 0
            if excess > 0:
                trimmed = db.execute(
                    "DELETE FROM outbox_dead WHERE seq IN"
                    " (SELECT seq FROM outbox_dead ORDER BY seq LIMIT ?)",
                    (excess,),
                ).rowcount
            db.execute("COMMIT")
        except BaseException:
            self._rollback_locked()
            raise
        self._depth -= moved
        self._dead += moved - trimmed
        self._dropped += moved

    def _report_drop(self, entry_id: str, policy: str) -> None:
        if self._listeners:
            self._listeners.emit(
                OutboxDropped(
                    name=self.name,
                    at=self._now(),
                    entry_id=entry_id,
                    policy=policy,
                    depth=self._depth,
                )
            )

    def _idle_wait(self) -> float:
        """Seconds until the next entry is due, capped by the poll interval."""
        poll = self.config.poll_interval
        try:
            with self._db_lock:
                if self._closed:
                    return 0.0
                due = self._db.execute("SELECT MIN(next_attempt_at) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            self._storage_failed(exc, "reading due times")
            return poll
        return poll if due is None else min(max(due - self._wall(), 0.0), poll)

    def _delay(self, attempts: int) -> float:
        """Exponential backoff with full jitter for the ``attempts``-th failure in a row."""
        cfg = self.config
        if attempts > _MAX_DOUBLINGS:
            ceiling = cfg.backoff_maximum
        else:
            ceiling = min(cfg.backoff_maximum, cfg.backoff_initial * 2.0 ** (attempts - 1))
        return ceiling * self._random()

    def _wall(self) -> float:
        return self._wall_offset + self._now()

    # -- closing ----------------------------------------------------------------

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread worker (up to ``timeout`` seconds) and close the file.

        Pending entries stay in the file for the next :class:`Outbox` on it; call
        :meth:`flush` first to try to deliver them now. An asyncio worker is told
        to stop but not awaited: await :meth:`stop_async` first. Idempotent.
        """
        self.stop(timeout)
        loop, stop = self._loop, self._async_stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        with self._db_lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        return f"<Outbox {self.name!r} {self.path!r} depth={self._depth}>"


class _Outcome(enum.Enum):
    """How a pass ended."""

    DONE = "done"  # nothing (due) is left
    FAILED = "failed"  # a delivery failed; the pass stopped there
    STORAGE = "storage"  # SQLite failed
    YIELDED = "yielded"  # stopped, out of time, or a flush wants the pass lock
    CLOSED = "closed"  # the outbox was closed


def _next_streak(streak: int, outcome: _Outcome, delivered: int) -> int:
    """Count failed passes in a row: any delivery resets the count."""
    if delivered:
        streak = 0
    return streak + 1 if outcome is _Outcome.FAILED else streak


class _Runner:
    """An event loop for the thread that meets a coroutine ``deliver``, made on first use."""

    __slots__ = ("_runner",)

    def __init__(self) -> None:
        self._runner: asyncio.Runner | None = None

    def run(self, awaitable: Awaitable[object]) -> None:
        if self._runner is None:
            self._runner = asyncio.Runner()
        self._runner.run(_await(awaitable))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


async def _await(awaitable: Awaitable[object]) -> object:
    return await awaitable


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event``, or ``seconds``, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_TEXT]
