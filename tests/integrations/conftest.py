"""Fixtures for the integrations' tests: a real HTTP downstream on loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.integrations.downstream import Downstream, serve

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def downstream_server() -> Iterator[Downstream]:
    """One uvicorn downstream for the whole session (see tests/integrations/downstream.py)."""
    with serve(Downstream()) as down:
        yield down


@pytest.fixture
def downstream(downstream_server: Downstream) -> Iterator[Downstream]:
    """The session's downstream, with no script, fault, request or charge left from before."""
    downstream_server.reset()
    yield downstream_server
    downstream_server.reset()
