"""Adapters from seawall's events and policies to third-party observability stacks.

Each module imports one third-party package at its top and is imported only by
the application that wants it; ``import seawall`` imports none of them.

* :mod:`seawall.integrations.prometheus` -- metrics for ``prometheus_client``,
  and an ASGI ``/metrics`` app.
* :mod:`seawall.integrations.otel` -- OpenTelemetry span events, span
  attributes and metrics through the OpenTelemetry API.
* :mod:`seawall.integrations.logging` -- standard :mod:`logging` records with
  structured fields (standard library only).
* :mod:`seawall.integrations.httpx`, :mod:`seawall.integrations.asgi`:
  resilience at the HTTP client and server edges.

Exporters are listeners (see :mod:`seawall.events`): counters come from
events; current values (breaker state, bulkhead permits, outbox depth) are read
from the tracked policies when the metrics are collected, through weak
references, so tracking never keeps a policy alive.
"""
