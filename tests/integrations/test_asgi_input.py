"""Bad input at the HTTP edge: validation errors that always serialise, and a body size limit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from seawall import ConfigError
from seawall.integrations.asgi import (
    BodyLimitMiddleware,
    install_exception_handlers,
    validation_answer,
)


class Item(BaseModel):
    sku: str = Field(min_length=1, max_length=32)
    qty: int = Field(ge=1, le=100)


class Order(BaseModel):
    user_id: str = Field(min_length=1, max_length=100)
    items: list[Item] = Field(min_length=1, max_length=50)


def make_app(max_bytes: int | None = None) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    if max_bytes is not None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)

    @app.post("/orders")
    async def create(order: Order) -> dict[str, Any]:
        return {"user_id": order.user_id, "lines": len(order.items)}

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        try:
            body = await request.body()
        except Exception as exc:
            return JSONResponse({"read": type(exc).__name__}, status_code=400)
        return JSONResponse({"bytes": len(body)})

    return app


def post(app: Any, path: str, body: bytes, **headers: str) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                path, content=body, headers={"content-type": "application/json", **headers}
            )

    return asyncio.run(main())


def strict_json(response: httpx.Response) -> Any:
    """Parse as a strict JSON reader would: no NaN, no Infinity, valid UTF-8."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    return json.loads(response.content.decode("utf-8"), parse_constant=refuse)


VALID_ITEMS = '[{"sku":"sku-001","qty":1}]'


@pytest.mark.parametrize(
    "body",
    [
        '{"user_id":"u","items":[{"sku":"sku-001","qty":NaN}]}',
        '{"user_id":"u","items":[{"sku":"sku-001","qty":Infinity}]}',
        '{"user_id":"u","items":[{"sku":"sku-001","qty":-Infinity}]}',
        f'{{"user_id":NaN,"items":{VALID_ITEMS}}}',
        f'{{"user_id":"\\ud800","items":{VALID_ITEMS}}}',
        '{"user_id":"u","items":[{"sku":"\\udfff","qty":1}]}',
        '{"user_id":"u","items":[{"sku":"sku-001","qty":1,"\\ud800":NaN}],"\\ud801":1}',
        f'{{"\\ud800":NaN,"user_id":{{"\\ud800":NaN}},"items":{VALID_ITEMS}}}',
    ],
    ids=["nan", "inf", "-inf", "nan-user", "surrogate-user", "surrogate-sku", "keys", "nested"],
)
def test_non_finite_numbers_and_lone_surrogates_get_a_4xx_that_serialises(body: str) -> None:
    """FastAPI's own handler repeats the input and fails to write it: a 500, then a reset."""
    response = post(make_app(), "/orders", body.encode())
    if response.status_code == 200:  # e.g. a surrogate in a field that accepts it
        strict_json(response)
        return
    assert response.status_code == 422, response.text
    answer = strict_json(response)
    assert answer["error"] == "invalid_request"
    assert answer["detail"]
    assert all(set(d) == {"loc", "type", "msg"} for d in answer["detail"])


def test_an_error_answer_repeats_little_of_a_large_input() -> None:
    """A 1 MB user_id gets a short answer, not the megabyte back."""
    body = json.dumps({"user_id": "a" * 1_000_000, "items": [{"sku": "s", "qty": 1}]})
    response = post(make_app(), "/orders", body.encode())
    assert response.status_code == 422
    assert len(response.content) < 500
    [detail] = strict_json(response)["detail"]
    assert detail["loc"] == ["body", "user_id"]
    assert detail["type"] == "string_too_long"


def test_many_errors_are_listed_up_to_a_bound() -> None:
    items = [{"sku": "", "qty": 0} for _ in range(50)]  # two errors per item
    response = post(make_app(), "/orders", json.dumps({"user_id": "u", "items": items}).encode())
    answer = strict_json(response)
    assert len(answer["detail"]) == 20
    assert answer["more"] == 80


def test_a_body_that_is_not_json_is_a_400() -> None:
    response = post(make_app(), "/orders", b'{"user_id":')
    assert response.status_code == 400
    assert strict_json(response)["error"] == "malformed_body"


def test_validation_answer_makes_any_location_and_message_safe() -> None:
    answer = validation_answer(
        [{"loc": ("body", "\ud800" * 500, 3, True), "type": "x", "msg": "m" * 10_000, "input": 1}]
    )
    [detail] = answer.body["detail"]
    assert detail["loc"][0] == "body"
    assert len(detail["loc"][1]) <= 100
    assert detail["loc"][2] == 3
    assert detail["loc"][3] == "True"
    assert len(detail["msg"]) == 100
    assert detail["msg"].endswith("...")
    assert "input" not in detail
    answer.encode().decode("utf-8")  # valid UTF-8 throughout


# -- the body size limit -------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_before_the_application_reads_it() -> None:
    response = post(make_app(max_bytes=1000), "/orders", b"x" * 20_000_000)
    assert response.status_code == 413
    assert strict_json(response) == {"error": "body_too_large", "max_bytes": 1000}
    assert response.headers["connection"] == "close"


def test_a_body_within_the_limit_passes_untouched() -> None:
    body = json.dumps({"user_id": "u", "items": [{"sku": "s", "qty": 1}]}).encode()
    response = post(make_app(max_bytes=len(body)), "/orders", body)
    assert response.status_code == 200
    assert response.json() == {"user_id": "u", "lines": 1}


async def chunked(app: Any, chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Send a body in chunks with no Content-Length; return (status, body, chunks read)."""
    sent: list[dict[str, Any]] = []
    pending = list(chunks)
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not pending:
            await asyncio.Event().wait()  # a client that sends nothing more
        read += 1
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
    }
    async with asyncio.timeout(5):
        await app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


def test_a_chunked_body_is_counted_and_stopped_at_the_limit() -> None:
    """The application's answer to the failed read is replaced by the 413; reading stops."""
    status, body, read = asyncio.run(chunked(make_app(max_bytes=100), [b"x" * 60] * 10))
    assert status == 413
    assert json.loads(body) == {"error": "body_too_large", "max_bytes": 100}
    assert read == 2  # the chunk that passed the limit was the last one read


def test_a_chunked_body_within_the_limit_is_read_whole() -> None:
    status, body, read = asyncio.run(chunked(make_app(max_bytes=100), [b"x" * 50, b"y" * 50]))
    assert status == 200
    assert json.loads(body) == {"bytes": 100}
    assert read == 2


@pytest.mark.parametrize("value", [-1, 1.5, "10", True])
def test_a_bad_limit_is_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="max_bytes must be an integer >= 0"):
        BodyLimitMiddleware(make_app(), max_bytes=value)
