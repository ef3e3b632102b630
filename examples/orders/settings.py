"""The reference service's settings, from the environment (12-factor style).

Embedded defaults need nothing installed: SQLite in a file and an in-process
cache. Set ``DATABASE_URL`` (``postgresql+psycopg://...``) and ``REDIS_URL`` to
run on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
DOWNSTREAMS = ("payment", "inventory", "notification", "recommendations", "analytics")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    #: "seawall": the policies of policies.toml; "naive": the anti-pattern the
    #: scenario runner compares against (plain httpx, 10 s timeout, 5 immediate
    #: retries, no breaker, one shared pool, no fallback).
    mode: Literal["seawall", "naive"] = "seawall"
    database_url: str = "sqlite+aiosqlite:///var/orders.db"
    redis_url: str | None = None
    urls: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path = Path("var")
    policies: Path = HERE / "policies.toml"
    #: Seconds between SIGTERM (readiness turns 503) and the server closing its socket.
    drain_seconds: float = 2.0
    #: Serve /_admin (fault knobs on the database, breaker reset): demos and tests only.
    admin: bool = False
    #: With REDIS_URL: share breaker state with the other replicas through Redis.
    share_state: bool = False
    #: The service's own capacity (capacity.Capacity fields, from ORDERS_CAPACITY as
    #: JSON): workers for its own work on each request. Unlimited by default.
    capacity: Mapping[str, object] = field(default_factory=lambda: {"workers": None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``ORDERS_*`` variables (and ``DATABASE_URL``, ``REDIS_URL``)."""
        env = os.environ if env is None else env
        urls = {}
        for name in DOWNSTREAMS:
            url = env.get(f"ORDERS_{name.upper()}_URL")
            if url:
                urls[name] = url.rstrip("/")
        mode = env.get("ORDERS_MODE", "seawall")
        if mode not in ("seawall", "naive"):
            msg = f"ORDERS_MODE must be 'seawall' or 'naive', got {mode!r}"
            raise ValueError(msg)
        return cls(
            mode=mode,  # type: ignore[arg-type]
            database_url=env.get("DATABASE_URL", cls.database_url),
            redis_url=env.get("REDIS_URL") or None,
            urls=urls,
            data_dir=Path(env.get("ORDERS_DATA_DIR", "var")),
            policies=Path(env.get("ORDERS_POLICIES", str(HERE / "policies.toml"))),
            drain_seconds=float(env.get("ORDERS_DRAIN_SECONDS", "2.0")),
            admin=env.get("ORDERS_ADMIN", "") == "1",
            share_state=env.get("ORDERS_SHARE_STATE", "") == "1",
            capacity=_capacity(env.get("ORDERS_CAPACITY")),
        )

    def url(self, name: str) -> str:
        """Return the base URL of a downstream (it must be configured)."""
        try:
            return self.urls[name]
        except KeyError:
            msg = f"ORDERS_{name.upper()}_URL is not set"
            raise RuntimeError(msg) from None


def _capacity(text: str | None) -> Mapping[str, object]:
    if not text:
        return {"workers": None}
    value = json.loads(text)
    if not isinstance(value, dict):
        msg = f"ORDERS_CAPACITY must be a JSON object, got {text!r}"
        raise ValueError(msg)  # noqa: TRY004 - a bad setting, reported as such
    return {"workers": None} | value
