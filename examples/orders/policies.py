"""policies.toml, read once: the dependencies' policies and the service's own budgets.

:class:`seawall.Registry` builds the dependencies from the file's top level --
``request_deadline``, ``[defaults]``, ``[configs]``, ``[dependencies]`` -- and
checks the timeout hierarchy against ``request_deadline``. The budgets that no
Dependency holds (the Redis client's timeout, the readiness checks') are in
the ``[service]`` table, taken out before the rest goes to the Registry, which
refuses keys it does not know.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServiceBudgets:
    """The ``[service]`` table and ``request_deadline``: budgets the service applies itself."""

    #: Seconds per request without a caller's deadline (DeadlineMiddleware), and the cap on one.
    request_deadline: float
    #: The Redis client's socket and connect timeouts: the cache tier of the hierarchy.
    cache_timeout: float
    #: /readyz check name -> its timeout.
    readiness: Mapping[str, float]
    #: How long a readiness result is reused, so a probe storm does not hammer the database.
    readiness_ttl: float
    #: The service's own load shedding: ``limit`` (AdaptiveLimit options), ``routes``
    #: (route -> criticality name or priority), ``retry_after``; empty: none.
    shedding: Mapping[str, Any] = field(default_factory=dict)
    #: The largest request body the service reads, in bytes (413 above it).
    max_body: int = 65_536
    #: How long an Idempotency-Key's answer is kept and replayed, in seconds.
    idempotency_retention: float = 86_400.0


@dataclass(frozen=True)
class Policies:
    """The parsed file: what the Registry takes, and what the service takes."""

    #: For ``seawall.Registry.from_mapping``: the file without its ``[service]`` table.
    registry: Mapping[str, Any]
    service: ServiceBudgets

    @classmethod
    def load(cls, path: Path) -> Policies:
        config = tomllib.loads(path.read_text())
        own = config.pop("service")
        readiness = dict(own["readiness"])
        service = ServiceBudgets(
            request_deadline=float(config["request_deadline"]),
            cache_timeout=float(own["cache_timeout"]),
            readiness_ttl=float(readiness.pop("ttl")),
            readiness={name: float(seconds) for name, seconds in readiness.items()},
            shedding=dict(own.get("shedding", {})),
            max_body=int(own.get("max_body", ServiceBudgets.max_body)),
            idempotency_retention=float(
                own.get("idempotency_retention", ServiceBudgets.idempotency_retention)
            ),
        )
        return cls(config, service)

    def timeout(self, dependency: str) -> float:
        """A dependency's ``timeout``, merged as the Registry merges it (own, base, defaults).

        For the code that builds no Registry (the naive wiring, the deployment
        tests); the seawall wiring reads ``registry[name].config.timeout``.

        Raises:
            LookupError: The dependency, or a timeout for it, is not in the file.
        """
        own = self.registry["dependencies"][dependency]
        base = self.registry.get("configs", {}).get(own.get("base"), {})
        for table in (own, base, self.registry.get("defaults", {})):
            if "timeout" in table:
                return float(table["timeout"])
        msg = f"policies.toml gives {dependency!r} no timeout"
        raise LookupError(msg)
