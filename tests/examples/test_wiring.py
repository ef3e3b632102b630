"""Which failed halves of an order are undone: what may have happened downstream."""

from __future__ import annotations

import asyncio

import httpx
from examples.orders.wiring import _SENT, _Witness, may_have_happened

from seawall import CircuitOpenError, DependencyUnavailable


def test_success_is_undone_failure_only_if_a_request_went_out() -> None:
    refused = DependencyUnavailable(
        name="payment", cause=CircuitOpenError(name="payment", retry_after=3)
    )
    assert may_have_happened("charge-id", sent=False)
    assert not may_have_happened(refused, sent=False)
    assert may_have_happened(refused, sent=True)  # an earlier attempt may have committed


def test_the_witness_notes_only_requests_that_reach_it() -> None:
    async def main() -> set[str]:
        seen: set[str] = set()
        token = _SENT.set(seen)
        inner = httpx.MockTransport(lambda request: httpx.Response(201))
        async with httpx.AsyncClient(
            transport=_Witness(inner), base_url="http://payment"
        ) as client:
            await client.post("/charges")
        _SENT.reset(token)
        return seen

    assert asyncio.run(main()) == {"/charges"}
