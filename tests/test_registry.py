"""Registry: configuration with defaults, bases and overrides; the timeout hierarchy check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from seawall import (
    AdaptiveLimit,
    Bulkhead,
    ConfigError,
    Criticality,
    Dependency,
    DependencyUnavailable,
    Outbox,
    Registry,
    Retry,
    ThreadBulkhead,
    Throttle,
    TimeWindow,
)
from seawall.events import Listeners
from seawall.fallback import Fallback
from seawall.testing import FakeClock

CONFIG: dict[str, Any] = {
    "request_deadline": 25.0,
    "defaults": {
        "timeout": 5.0,
        "retry": {
            "attempts": 3,
            "backoff": {"kind": "exponential", "initial": 0.1, "maximum": 2.0},
        },
        "breaker": {"failure_rate_threshold": 0.5, "window": {"kind": "count", "size": 50}},
    },
    "configs": {"external": {"timeout": 7.0, "bulkhead": {"max_concurrent": 20}}},
    "dependencies": {
        "payment": {"base": "external", "retry": {"attempts": 2}},
        "inventory": {"bulkhead": {"max_concurrent": 5, "kind": "thread"}},
        "recommendations": {
            "criticality": "degradable",
            "fallback": {"kind": "value", "value": ["popular"]},
            "retry": False,
            "breaker": {"window": {"kind": "time", "seconds": 30}},
        },
    },
}


def load(config: dict[str, Any], **kw: Any) -> Registry:
    return Registry.from_mapping(config, listeners=Listeners(), **kw)


def test_defaults_bases_and_overrides_merge_key_by_key() -> None:
    reg = load(CONFIG)
    assert set(reg.dependencies) == {"payment", "inventory", "recommendations"}
    payment = reg["payment"]
    assert payment.config.timeout == 7.0  # from the "external" base
    assert payment.config.retry is not None
    assert payment.config.retry.config.attempts == 2  # own override
    assert payment.config.retry.config.backoff.maximum == 2.0  # from defaults, kept
    assert isinstance(payment.bulkhead, Bulkhead)
    assert payment.bulkhead.max_concurrent == 20
    assert payment.breaker is not None
    assert payment.breaker.config.window.size == 50  # type: ignore[union-attr]
    inventory = reg["inventory"]
    assert inventory.config.timeout == 5.0
    assert isinstance(inventory.bulkhead, ThreadBulkhead)
    recs = reg["recommendations"]
    assert recs.criticality is Criticality.DEGRADABLE
    assert recs.config.retry is None  # switched off with `false`
    assert recs.breaker is not None
    assert recs.breaker.config.window == TimeWindow(30)
    assert recs.breaker.config.failure_rate_threshold == 0.5


def test_each_value_fallback_gets_its_own_copy() -> None:
    config = {
        "dependencies": {
            name: {"criticality": "degradable", "fallback": {"kind": "value", "value": [1]}}
            for name in ("a", "b")
        }
    }
    reg = load(config)
    a, b = reg["a"].config.fallback, reg["b"].config.fallback
    assert a is not None
    assert b is not None
    assert a.default == b.default
    assert a.default is not b.default


def test_fallbacks_and_outboxes_given_in_code(tmp_path: Path) -> None:
    from seawall.outbox import Outbox

    outbox = Outbox(tmp_path / "o.db", deliver=lambda e: None, listeners=Listeners())
    reg = load(
        {
            "dependencies": {
                "recs": {"criticality": "degradable"},
                "notify": {"criticality": "background"},
            }
        },
        fallbacks={"recs": Fallback.call(lambda exc: [])},
        outboxes={"notify": outbox},
    )
    assert reg["recs"].config.fallback is not None
    assert reg["recs"].config.fallback.kind == "call"
    assert reg["notify"].outbox is outbox
    outbox.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dependencies": {"p": {"timout": 3}}}, "dependencies.p.timout: unknown key"),
        (
            {"dependencies": {"p": {"retry": {"attemps": 3}}}},
            "dependencies.p.retry.attemps: unknown key",
        ),
        (
            {"defaults": {"breaker": {"window": {"kind": "ring"}}}, "dependencies": {"p": {}}},
            "window.kind must be 'count' or 'time'",
        ),
        (
            {"dependencies": {"p": {"breaker": {"failure_rate_threshold": 2}}}},
            "dependencies.p.breaker: failure_rate_threshold must be in (0, 1], got 2",
        ),
        (
            {"dependencies": {"p": {"retry": {"attempts": 0}}}},
            "dependencies.p.retry: attempts must be an integer >= 1, got 0",
        ),
        (
            {"dependencies": {"p": {"timeout": -1}}},
            "dependencies.p: timeout must be a finite number of seconds > 0, got -1",
        ),
        (
            {"dependencies": {"p": {"criticality": "vital"}}},
            "dependencies.p.criticality: must be one of critical, degradable, background",
        ),
        (
            {"dependencies": {"p": {"criticality": "degradable"}}},
            "dependencies.p: fallback is required for a DEGRADABLE",
        ),
        ({"dependencies": {"p": {"base": "nope"}}}, "dependencies.p.base: no config named 'nope'"),
        (
            {"dependencies": {"p": {"bulkhead": {"max_concurrent": 0}}}},
            "dependencies.p.bulkhead: max_concurrent must be an integer >= 1, got 0",
        ),
        (
            {"dependencies": {"p": {"retry": 3}}},
            "dependencies.p.retry: must be a table or false, got 3",
        ),
        ({"dependncies": {}}, "dependncies: unknown key"),
        (
            {"dependencies": {"p": {"limit": {"algorithm": "aimd", "queue_size": 2}}}},
            "dependencies.p.limit: queue_size: Gradient2's options, not AIMD's",
        ),
        (
            {"dependencies": {"p": {"limit": {"initial": 0}}}},
            "dependencies.p.limit: initial must be an integer >= 1, got 0",
        ),
        (
            {"dependencies": {"p": {"limit": {"windw": {}}}}},
            "dependencies.p.limit.windw: unknown key",
        ),
        (
            {"dependencies": {"p": {"limit": {"window": {"min_samples": 0}}}}},
            "dependencies.p.limit: window: min_samples must be an integer >= 1, got 0",
        ),
        (
            {"dependencies": {"p": {"limit": {"window": {"min_tme": 1}}}}},
            "dependencies.p.limit.window.min_tme: unknown key",
        ),
        (
            {"dependencies": {"p": {"limit": {}, "bulkhead": {"max_concurrent": 3}}}},
            "dependencies.p: bulkhead and limit both set",
        ),
        (
            {
                "dependencies": {
                    "p": {"timeout": 2.0, "limit": {"algorithm": "aimd", "timeout": 2.0}}
                }
            },
            "dependencies.p: bulkhead: the adaptive limit's timeout (2s) must be shorter",
        ),
        (
            {"dependencies": {"p": {"throttle": {"k": 0.5}}}},
            "dependencies.p.throttle: k must be a finite number >= 1, got 0.5",
        ),
        (
            {"dependencies": {"p": {"throttle": {"windows": 3}}}},
            "dependencies.p.throttle.windows: unknown key",
        ),
    ],
)
def test_bad_configuration_names_the_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(config)
    assert message in str(info.value)


def test_an_adaptive_limit_and_a_throttle_from_tables() -> None:
    registry = load(
        {
            "defaults": {"bulkhead": {"max_concurrent": 20}},
            "dependencies": {
                "payment": {
                    "timeout": 8.0,
                    "bulkhead": False,
                    "limit": {
                        "algorithm": "aimd",
                        "initial": 12,
                        "min": 2,
                        "max": 40,
                        "timeout": 5.0,
                        "window": {"min_time": 0.5, "max_time": 2.0, "min_samples": 5},
                    },
                    "throttle": {"k": 1.5, "window": 10, "buckets": 10},
                },
                "search": {"bulkhead": False, "limit": {}},
            },
        }
    )
    payment = registry["payment"]
    limit = payment.limit
    assert isinstance(limit, AdaptiveLimit)
    assert payment.bulkhead is limit
    assert (limit.limit, limit.name) == (12, "payment")
    assert limit.algorithm.config.timeout == 5.0  # type: ignore[attr-defined]
    assert limit._window.config.min_samples == 5
    throttle = payment.throttle
    assert isinstance(throttle, Throttle)
    assert (throttle.config.k, throttle.config.window, throttle.config.buckets) == (1.5, 10, 10)
    search = registry["search"].limit
    assert search is not None
    assert type(search.algorithm).__name__ == "Gradient2"


def test_every_problem_is_reported_at_once() -> None:
    config = {"dependencies": {"a": {"timeout": -1}, "b": {"retry": {"attempts": 0}}}}
    with pytest.raises(ConfigError) as info:
        load(config)
    assert "dependencies.a" in str(info.value)
    assert "dependencies.b.retry" in str(info.value)


def test_a_dependency_that_cannot_fit_the_request_deadline_is_reported() -> None:
    """3 attempts x 8 s + up to 3 s of backoff = 27 s > 25 s: both numbers named."""
    config = {
        "request_deadline": 25,
        "dependencies": {
            "payment": {
                "timeout": 8,
                "retry": {"attempts": 3, "backoff": {"kind": "constant", "delay": 1.5}},
            },
            "db": {"timeout": 5, "retry": {"attempts": 3}},
        },
    }
    with pytest.raises(ConfigError) as info:
        load(config)
    text = str(info.value)
    assert "'payment' needs up to 27s" in text
    assert "3 attempt(s) x 8s timeout + 3s backoff" in text
    assert "request deadline of 25s" in text
    assert "'db'" not in text


def test_max_elapsed_bounds_the_worst_case() -> None:
    """5 attempts x 8 s would be 40 s; retries stop at 10 s, so 10 + 8 = 18 s fits 25 s."""
    retry = {"attempts": 5, "max_elapsed": 10, "backoff": {"kind": "constant", "delay": 1}}
    config = {"request_deadline": 25, "dependencies": {"payment": {"timeout": 8, "retry": retry}}}
    assert load(config).problems == []
    config["request_deadline"] = 15
    with pytest.raises(ConfigError) as info:
        load(config)
    assert "'payment' needs up to 18s" in str(info.value)
    assert "max_elapsed 10s, then one more 8s attempt" in str(info.value)


def test_background_dependencies_are_not_held_to_the_request_deadline(tmp_path: Path) -> None:
    """Their deliveries run in the outbox's worker, never inside a request."""
    outbox = Outbox(tmp_path / "outbox.db", deliver=lambda entry: None, listeners=Listeners())
    try:
        notify = Dependency(
            "notify",
            criticality=Criticality.BACKGROUND,
            timeout=8.0,
            retry=Retry(attempts=3, listeners=Listeners()),
            outbox=outbox,
            listeners=Listeners(),
        )
        registry = Registry([notify], request_deadline=5.0)
        assert registry.check_budgets() == []
    finally:
        outbox.close()


def test_budget_problems_can_be_warnings(caplog: pytest.LogCaptureFixture) -> None:
    config = {
        "request_deadline": 10,
        "dependencies": {"slow": {"timeout": 6, "retry": {"attempts": 2}}},
    }
    with caplog.at_level(logging.WARNING, logger="seawall.registry"):
        reg = load(config, strict=False)
    assert [p.dependency for p in reg.problems] == ["slow"]
    assert reg.problems[0].worst_case > 12
    assert "more than the request deadline of 10s" in caplog.text


def test_exponential_backoff_worst_case_is_its_capped_schedule() -> None:
    """Full jitter never exceeds the cap: 0.1 + 0.2 + 0.3 (capped) for three retries."""
    config = {
        "request_deadline": 20.75,
        "dependencies": {
            "p": {
                "timeout": 5,
                "retry": {"attempts": 4, "backoff": {"initial": 0.1, "maximum": 0.3}},
            }
        },
    }
    with pytest.raises(ConfigError, match=r"needs up to 20.6s"):
        load(config | {"request_deadline": 20.5})
    assert load(config).problems == []  # 4 x 5 + 0.1 + 0.2 + 0.3 = 20.6


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "deps.toml"
    path.write_text(
        """
request_deadline = 25.0
[defaults]
timeout = 2.0
[dependencies.payment]
criticality = "critical"
retry = { attempts = 2, backoff = { kind = "constant", delay = 0.2 } }
[dependencies.recs]
criticality = "degradable"
fallback = { kind = "stale", max_stale = 300 }
"""
    )
    reg = Registry.from_toml(path, listeners=Listeners())
    assert reg.request_deadline == 25.0
    assert reg["payment"].config.timeout == 2.0
    assert reg["recs"].config.fallback is not None
    assert reg["recs"].config.fallback.max_stale == 300
    assert "payment" in reg
    assert len(reg) == 2
    assert [d.name for d in reg] == ["payment", "recs"]


def test_duplicate_names_in_code() -> None:
    from seawall import Dependency

    with pytest.raises(ConfigError, match="registered twice"):
        Registry([Dependency("a", listeners=Listeners()), Dependency("a", listeners=Listeners())])


def test_a_stale_fallback_from_config_ages_on_the_registry_clock() -> None:
    clock = FakeClock()
    config = {
        "dependencies": {
            "prices": {
                "criticality": "degradable",
                "fallback": {"kind": "stale", "max_stale": 60},
            }
        }
    }
    prices = load(config, clock=clock)["prices"]
    answers = iter([9.5])

    def read() -> float:
        try:
            return next(answers)
        except StopIteration:
            raise ConnectionError("db down") from None

    assert prices.call_sync(read) == 9.5
    clock.advance(30)
    result = prices.call_sync_result(read)
    assert result.value == 9.5
    assert result.degraded is not None
    assert result.degraded.age == 30
    clock.advance(31)  # 61 s old on the registry's clock: too old to serve
    with pytest.raises(DependencyUnavailable):
        prices.call_sync(read)


# -- the outsider's configuration holes (issue 19): each a ConfigError naming its path --------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"dependencies": {"p": {"bulkhead": {}}}},
            "dependencies.p.bulkhead.max_concurrent: required",
        ),
        (
            {"dependencies": {"p": {"retry": {"backoff": {"initial": 0.1}}}}},
            "dependencies.p.retry.backoff.maximum: required for kind 'exponential' (the default)",
        ),
        (
            {"dependencies": {"p": {"retry": {"backoff": {"kind": "linear", "initial": 0.1}}}}},
            "dependencies.p.retry.backoff.step: required for kind 'linear'",
        ),
        (
            {"dependencies": {"p": {"retry": {"backoff": {"kind": "constant"}}}}},
            "dependencies.p.retry.backoff.delay: required for kind 'constant'",
        ),
        (
            {
                "dependencies": {
                    "p": {"retry": {"backoff": {"kind": "constant", "delay": 1, "multiplier": 2}}}
                }
            },
            "dependencies.p.retry.backoff.multiplier: not a setting of kind 'constant'",
        ),
        (
            {"dependencies": {"p": {"breaker": {"shadow": "yes"}}}},
            "dependencies.p.breaker: shadow must be true or false, got 'yes'",
        ),
        (
            {"configs": {"unused": {"retry": {"attemps": 3}}}, "dependencies": {}},
            "configs.unused.retry.attemps: unknown key",
        ),
        (
            {"configs": {"unused": {"timout": 3}}},
            "configs.unused.timout: unknown key",
        ),
        (
            {"configs": {"unused": {"base": "other"}}},
            "configs.unused.base: unknown key",
        ),
        (
            {"configs": {"unused": {"breaker": {"window": {"sise": 3}}}}},
            "configs.unused.breaker.window.sise: unknown key",
        ),
        (
            {"configs": {"unused": 3}},
            "configs.unused: must be a table, got 3",
        ),
        ({"defaults": {"timout": 3}}, "defaults.timout: unknown key"),
        ({"defaults": {"base": "x"}}, "defaults.base: unknown key"),
        (
            {"defaults": {"bulkhead": {"max_concurent": 3}}},
            "defaults.bulkhead.max_concurent: unknown key",
        ),
        ({"defaults": {"retry": 3}}, "defaults.retry: must be a table or false, got 3"),
        (
            {"dependencies": {"p": {"criticality": "degradable", "fallback": {"kind": "value"}}}},
            "dependencies.p.fallback.value: required for kind 'value'",
        ),
        (
            {"dependencies": {"p": {"criticality": "degradable", "fallback": {"kind": "stale"}}}},
            "dependencies.p.fallback.max_stale: required for kind 'stale'",
        ),
        (
            {
                "dependencies": {
                    "p": {
                        "criticality": "degradable",
                        "fallback": {"kind": "value", "value": 1, "max_stale": 3},
                    }
                }
            },
            "dependencies.p.fallback.max_stale: not a setting of kind 'value'",
        ),
        (
            {
                "request_deadline": 25,
                "dependencies": {
                    "p": {"timeout": 5, "bulkhead": {"max_concurrent": 5, "max_wait": 1e6}}
                },
            },
            "dependencies.p.bulkhead.max_wait: 1e+06s is longer than the request deadline of 25s",
        ),
        (
            {
                "request_deadline": 25,
                "dependencies": {"p": {"timeout": 5, "retry": {"attempts": 3, "max_elapsed": 1e9}}},
            },
            "dependencies.p.retry.max_elapsed: 1e+09s is longer than the request deadline of 25s",
        ),
        (
            {"dependencies": {"p": {"breaker": {"open_duration": 0}}}},
            "dependencies.p.breaker: open_duration must be a finite number of seconds > 0, got 0",
        ),
        (
            {"dependencies": {"p": {"breaker": {"slow_call_duration": 0}}}},
            "dependencies.p.breaker: slow_call_duration must be a finite number of seconds > 0",
        ),
        (
            {"dependencies": {"p": {"breaker": {"minimum_calls": 10**30}}}},
            "dependencies.p.breaker: minimum_calls must be an integer in [1, 1000000]",
        ),
        (
            {"dependencies": {"p": {"breaker": {"window": {"size": 10**30}}}}},
            "window.size must be an integer in [1, 1000000]",
        ),
    ],
)
def test_every_hole_an_outsider_found_is_a_config_error(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(config)
    assert message in str(info.value)


def test_a_registry_of_things_that_are_not_dependencies_names_them() -> None:
    with pytest.raises(ConfigError, match=r"dependencies\[1\]: must be a Dependency, got 5"):
        Registry([Dependency("a", listeners=Listeners()), 5])  # type: ignore[list-item]


def test_settings_that_can_never_act_within_the_deadline_are_reported_in_code_too() -> None:
    """Built in code, the same check: a max_elapsed no request lives to see."""
    dep = Dependency(
        "p",
        timeout=1.0,
        retry=Retry(attempts=2, max_elapsed=60.0, listeners=Listeners()),
        listeners=Listeners(),
    )
    registry = Registry([dep], request_deadline=25.0, strict=False)
    assert [(p.dependency, p.setting) for p in registry.problems] == [("p", "retry.max_elapsed")]
    with pytest.raises(ConfigError, match=r"dependencies.p.retry.max_elapsed: 60s is longer"):
        Registry([dep], request_deadline=25.0)
    # Within the deadline it acts (or could): no problem.
    assert Registry([dep], request_deadline=61.0).problems == []
