"""ThrottleState (sans-IO): the SRE formula over a bucketed window, against a brute-force model.

The model keeps every event with its time and recomputes the counts from
the events still inside the window. The window is ``buckets`` slices of
``window / buckets`` seconds: at time ``now`` it holds the slices numbered
``floor(now / width) - buckets + 1`` to ``floor(now / width)``, so an event
is forgotten when the clock moves past the last slice that holds it, between
``window - width`` and ``window`` seconds after it.

What is counted (since outcomes are counted when known): a shed request at
:meth:`~ThrottleState.admit`, a request and an accept at
:meth:`~ThrottleState.accepted`, a request at :meth:`~ThrottleState.refused`;
a request that :meth:`~ThrottleState.admit` lets go counts only through its
outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core.throttle import ThrottleConfig, ThrottleState
from seawall.errors import ConfigError

PROPERTIES = settings(deadline=None, derandomize=True, database=None)  # the same examples every run

# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0.5}, "k must be a finite number >= 1, got 0.5"),
        ({"k": 0.999}, "k must be a finite number >= 1"),
        ({"k": math.inf}, "k must be a finite number >= 1, got inf"),
        ({"k": math.nan}, "k must be a finite number >= 1, got nan"),
        ({"k": True}, "k must be a finite number >= 1, got True"),
        ({"k": "2"}, "k must be a finite number >= 1"),
        ({"window": 0}, "window must be a finite number of seconds > 0, got 0"),
        ({"window": -1.0}, "window must be a finite number of seconds > 0"),
        ({"window": math.inf}, "window must be a finite number of seconds > 0, got inf"),
        ({"window": math.nan}, "window must be a finite number of seconds > 0"),
        ({"buckets": 0}, "buckets must be an integer >= 1, got 0"),
        ({"buckets": -3}, "buckets must be an integer >= 1"),
        ({"buckets": 2.5}, "buckets must be an integer >= 1, got 2.5"),
        ({"buckets": True}, "buckets must be an integer >= 1, got True"),
        ({"max_probability": -0.01}, "max_probability must be in [0, 1), got -0.01"),
        ({"max_probability": 1.0}, "max_probability must be in [0, 1), got 1.0"),
        ({"max_probability": 1.5}, "max_probability must be in [0, 1)"),
        ({"max_probability": math.nan}, "max_probability must be in [0, 1), got nan"),
    ],
)
def test_a_bad_field_is_named_in_a_config_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ThrottleConfig(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        ThrottleConfig(k=0, window=0, buckets=0, max_probability=1)
    text = str(caught.value)
    for name in ("k must", "window must", "buckets must", "max_probability must"):
        assert name in text


def test_the_edges_of_the_ranges_are_valid() -> None:
    config = ThrottleConfig(k=1, window=1e-3, buckets=1, max_probability=0.0)
    assert (config.k, config.window, config.buckets, config.max_probability) == (1, 1e-3, 1, 0.0)
    ThrottleConfig(max_probability=0.999999)
    defaults = ThrottleConfig()  # the SRE book's: k = 2 over two minutes
    assert (defaults.k, defaults.window, defaults.buckets) == (2.0, 120.0, 60)
    assert ThrottleState().config == defaults


# -- the model ---------------------------------------------------------------------------


@dataclass
class Model:
    """Every event with its time; the window recomputed from scratch at each question."""

    config: ThrottleConfig
    events: list[tuple[float, bool]] = field(default_factory=list)  # (time, accepted)
    now: float = 0.0

    def _inside(self) -> list[bool]:
        width = self.config.window / self.config.buckets
        current = math.floor(self.now / width)
        oldest = current - self.config.buckets + 1
        return [accepted for t, accepted in self.events if math.floor(t / width) >= oldest]

    def counts(self) -> tuple[int, int]:
        inside = self._inside()
        return len(inside), sum(inside)

    def probability(self) -> float:
        requests, accepts = self.counts()
        if requests < self.config.min_requests:
            return 0.0
        p = max(0.0, (requests - self.config.k * accepts) / (requests + 1))
        return min(p, self.config.max_probability)

    def admit(self, draw: float) -> float:
        p = self.probability()
        if draw < p:
            self.events.append((self.now, False))
            return p
        return 0.0

    def outcome(self, accepted: bool) -> None:
        self.events.append((self.now, accepted))


configs = st.builds(
    ThrottleConfig,
    k=st.floats(1.0, 4.0),
    window=st.floats(0.1, 200.0),
    buckets=st.integers(1, 40),
    max_probability=st.floats(0.0, 0.999),
    min_requests=st.sampled_from([0, 0, 1, 5, 10]),
)

OPERATIONS = ("admit", "accepted", "refused", "probability")


@st.composite
def histories(draw: st.DrawFn, config: ThrottleConfig) -> list[tuple[float, str, float]]:
    """(time, operation, draw) at non-decreasing times, often on slice boundaries."""
    width = config.window / config.buckets
    gaps = st.one_of(
        st.just(0.0),
        st.floats(0.0, width),
        st.floats(0.0, 1.5 * config.window),
        st.integers(0, 2 * config.buckets).map(lambda slices: slices * width),
    )
    steps = draw(
        st.lists(
            st.tuples(gaps, st.sampled_from(OPERATIONS), st.floats(0.0, 1.0, exclude_max=True)),
            max_size=120,
        )
    )
    now, history = draw(st.floats(0.0, 1e6)), []
    for gap, operation, chance in steps:
        now += gap
        history.append((now, operation, chance))
    return history


def play(state: ThrottleState, model: Model, history: list[tuple[float, str, float]]) -> None:
    """Apply ``history`` to both, comparing at every step."""
    for now, operation, chance in history:
        model.now = now
        if operation == "admit":
            assert state.admit(now, chance) == pytest.approx(model.admit(chance), abs=1e-12)
        elif operation == "probability":
            assert state.probability(now) == pytest.approx(model.probability(), abs=1e-12)
        else:
            getattr(state, operation)(now)
            model.outcome(operation == "accepted")
        assert (state.requests, state.accepts) == model.counts()
        assert 0 <= state.accepts <= state.requests


@settings(PROPERTIES, max_examples=300)
@given(data=st.data(), config=configs)
def test_the_probability_and_counts_match_a_brute_force_model(
    data: st.DataObject, config: ThrottleConfig
) -> None:
    state, model = ThrottleState(config), Model(config)
    history = data.draw(histories(config))
    play(state, model, history)
    later = (history[-1][0] if history else 0.0) + data.draw(st.floats(0.0, 2 * config.window))
    model.now = later
    assert state.probability(later) == pytest.approx(model.probability(), abs=1e-12)
    assert (state.requests, state.accepts) == model.counts()


# -- the formula's promises ----------------------------------------------------------------


@settings(PROPERTIES, max_examples=200)
@given(
    k=st.floats(1.0, 4.0),
    outcomes=st.lists(st.booleans(), max_size=200),
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=10),
)
def test_nothing_is_shed_while_k_accepts_cover_the_requests(
    k: float, outcomes: list[bool], draws: list[float]
) -> None:
    """p == 0 whenever accepts x k >= requests; above that p > 0."""
    state = ThrottleState(ThrottleConfig(min_requests=0, k=k, window=10.0, buckets=5))
    for i, accepted in enumerate(outcomes):
        now = i * 0.01  # all within the window
        (state.accepted if accepted else state.refused)(now)
        requests, accepts = state.requests, state.accepts
        p = state.probability(now)
        if accepts * k >= requests:
            assert p == 0.0
            for draw in draws:
                assert state.admit(now, draw) == 0.0  # ...and nothing is shed, or counted
            assert (state.requests, state.accepts) == (requests, accepts)
        else:
            assert p > 0.0


@settings(PROPERTIES, max_examples=200)
@given(
    cap=st.floats(0.0, 0.999),
    k=st.floats(1.0, 4.0),
    refusals=st.integers(0, 3000),
    accepts=st.integers(0, 50),
    draw=st.floats(0.0, 1.0, exclude_max=True),
)
def test_the_probability_never_exceeds_max_probability(
    cap: float, k: float, refusals: int, accepts: int, draw: float
) -> None:
    state = ThrottleState(ThrottleConfig(min_requests=0, k=k, max_probability=cap))
    for _ in range(accepts):
        state.accepted(1.0)
    for _ in range(refusals):
        state.refused(1.0)
    p = state.probability(1.0)
    expected = max(0.0, (refusals + accepts - k * accepts) / (refusals + accepts + 1))
    assert p == pytest.approx(min(cap, expected))
    assert 0.0 <= p <= cap
    shed = state.admit(1.0, draw)
    assert shed == (p if draw < p else 0.0)
    assert shed <= cap


def test_all_refused_rises_towards_one_and_stops_at_the_cap() -> None:
    state = ThrottleState(ThrottleConfig(min_requests=0, max_probability=0.95))
    state.refused(0.0)
    assert state.probability(0.0) == 0.5  # 1 / 2
    for _ in range(8):
        state.refused(0.0)
    assert state.probability(0.0) == pytest.approx(0.9)  # 9 / 10
    for _ in range(100):
        state.refused(0.0)
    assert state.probability(0.0) == 0.95
    assert state.admit(0.0, 0.9499) == 0.95  # shed, and counted as a request
    assert state.requests == 110
    assert state.admit(0.0, 0.95) == 0.0  # some always go through
    assert state.requests == 110  # counted when its outcome is known


def test_a_zero_cap_never_sheds() -> None:
    state = ThrottleState(ThrottleConfig(min_requests=0, max_probability=0.0))
    for _ in range(100):
        state.refused(0.0)
    assert state.probability(0.0) == 0.0
    assert state.admit(0.0, 0.0) == 0.0


# -- the window ----------------------------------------------------------------------------


@settings(PROPERTIES, max_examples=200)
@given(data=st.data(), config=configs, idle=st.floats(0.0, 1e6))
def test_the_window_forgets_everything_after_window_seconds_idle(
    data: st.DataObject, config: ThrottleConfig, idle: float
) -> None:
    state = ThrottleState(config)
    history = data.draw(histories(config))
    play(state, Model(config), history)
    last = history[-1][0] if history else 0.0
    # One float step later: last + window can round to just below the boundary of
    # the slice that last / width rounded up to (e.g. window 0.3, 7 buckets, at
    # t=20827.071428571428 one request is still counted at t + 0.3, for one ulp).
    later = math.nextafter(last + config.window + idle, math.inf)
    assert state.probability(later) == 0.0
    assert (state.requests, state.accepts) == (0, 0)
    assert state.admit(later, 0.0) == 0.0


def test_an_event_is_forgotten_when_the_clock_leaves_its_slice() -> None:
    """10 slices of 1 s: refusals at t=5.5 fill slice 5, in the window until t=15."""
    state = ThrottleState(ThrottleConfig(min_requests=0, window=10.0, buckets=10))
    for _ in range(9):
        state.refused(5.5)
    assert state.probability(5.5) == pytest.approx(0.9)
    assert state.probability(14.999) == pytest.approx(0.9)  # 9.5 s later: slices 5-14
    assert state.probability(15.0) == 0.0  # slice 5 left the window: 9.5 s after the calls
    assert state.requests == 0


def test_slices_are_forgotten_one_by_one() -> None:
    state = ThrottleState(ThrottleConfig(min_requests=0, k=1.0, window=4.0, buckets=4))
    for t in (0.0, 1.0, 2.0, 3.0):
        state.refused(t)  # one refusal a slice
    assert state.requests == 4
    for t, left in ((4.0, 3), (5.0, 2), (6.5, 1), (7.0, 0)):
        state.probability(t)
        assert state.requests == left


def test_a_single_bucket_forgets_all_at_once() -> None:
    state = ThrottleState(ThrottleConfig(min_requests=0, window=3.0, buckets=1))
    state.refused(0.0)
    state.refused(2.9)
    assert state.probability(2.99) == pytest.approx(2 / 3)
    assert state.probability(3.0) == 0.0


@settings(PROPERTIES, max_examples=100)
@given(data=st.data(), config=configs)
def test_counts_never_go_negative_however_long_the_gaps(
    data: st.DataObject, config: ThrottleConfig
) -> None:
    """Long idle gaps clear at most every slice once; the counts stay the window's."""
    state = ThrottleState(config)
    model = Model(config)
    history = data.draw(histories(config))
    spaced = [(now * 1000.0, operation, chance) for now, operation, chance in history]
    play(state, model, spaced)  # asserts 0 <= accepts <= requests at every step
    assert all(count >= 0 for count in state._requests)
    assert all(count >= 0 for count in state._accepts)
    assert sum(state._requests) == state.requests
    assert sum(state._accepts) == state.accepts


# -- reset -------------------------------------------------------------------------------


@settings(PROPERTIES, max_examples=100)
@given(data=st.data(), config=configs)
def test_reset_forgets_the_window_and_behaves_as_new(
    data: st.DataObject, config: ThrottleConfig
) -> None:
    state = ThrottleState(config)
    before = data.draw(histories(config))
    play(state, Model(config), before)
    state.reset()
    assert (state.requests, state.accepts) == (0, 0)
    end = before[-1][0] if before else 0.0
    assert state.probability(end) == 0.0
    after = [
        (end + now, operation, chance) for now, operation, chance in data.draw(histories(config))
    ]
    fresh = ThrottleState(config)
    play(state, Model(config), after)
    play(fresh, Model(config), after)
    assert (state.requests, state.accepts) == (fresh.requests, fresh.accepts)
