"""JSON mode: submit_json, functions registered with json=True, Job.json()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import running_worker

import polygear

OBJ = {"a": [1, 2.5, None, True], "name": "Zoë ✓", "nested": {"k": "v"}}


def test_submit_json_roundtrip_through_a_json_function(rust_server: str, fname: str) -> None:
    def add(value: Any) -> Any:
        return {"sum": value["x"] + value["y"], "echo": value}

    with (
        running_worker(rust_server, {fname: add}, json=True),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        got = c.submit_json(fname, {"x": 2, "y": 3, "s": "é"})
        assert got == {"sum": 5, "echo": {"x": 2, "y": 3, "s": "é"}}
        # the result on the wire: compact UTF-8 JSON
        assert c.submit(fname, b'{"x":1,"y":1}') == b'{"sum":2,"echo":{"x":1,"y":1}}'


def test_the_payload_is_compact_utf8_json(rust_server: str, fname: str) -> None:
    received: list[bytes] = []
    decoded: list[Any] = []

    def echo(job: polygear.Job) -> bytes:
        received.append(job.data)
        decoded.append(job.json())
        return job.data

    with running_worker(rust_server, {fname: echo}), polygear.Client([rust_server], timeout=10) as c:
        assert c.submit_json(fname, OBJ) == OBJ
        assert c.submit_json(fname, None) is None
    assert received == [
        '{"a":[1,2.5,null,true],"name":"Zoë ✓","nested":{"k":"v"}}'.encode(),
        b"null",
    ]
    assert decoded == [OBJ, None]


def test_none_result_is_json_null(rust_server: str, fname: str) -> None:
    with (
        running_worker(rust_server, {fname: lambda value: None}, json=True),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        assert c.submit(fname, b"1") == b"null"
        assert c.submit_json(fname, 1) is None


def test_bad_json_to_a_json_function_is_a_job_exception(rust_server: str, fname: str) -> None:
    with (
        running_worker(rust_server, {fname: lambda value: value}, json=True),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        for bad in (b"not json", b"", b"\xff"):
            with pytest.raises(polygear.JobException) as info:
                c.submit(fname, bad)
            assert info.value.message.startswith(f"function {fname!r} got a payload that is not JSON: ")


def test_result_json_cannot_hold_is_a_job_exception(rust_server: str, fname: str) -> None:
    with (
        running_worker(rust_server, {fname: lambda value: {1, 2}}, json=True),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        with pytest.raises(polygear.JobException) as info:
            c.submit_json(fname, {})
    assert info.value.message == (
        f"the result of function {fname!r} cannot be encoded as JSON: "
        "Object of type set is not JSON serializable"
    )


def test_result_that_is_not_json_raises_protocol_error(rust_server: str, fname: str) -> None:
    def plain(job: polygear.Job) -> bytes:
        job.send_data(b"partial")
        return b"hello"

    chunks: list[bytes] = []
    with running_worker(rust_server, {fname: plain}), polygear.Client([rust_server], timeout=10) as c:
        with pytest.raises(polygear.ProtocolError) as info:
            c.submit_json(fname, 1)
        assert str(info.value).startswith(f"the result of function '{fname}' is not JSON (\"hello\"): ")
        assert info.value.code == "EPROTOCOL"
        assert isinstance(info.value.__cause__, ValueError)
        with pytest.raises(polygear.ProtocolError):
            c.submit_json(fname, 1, on_data=chunks.append)  # the callbacks path
    assert chunks == [b"partial"]


def test_client_side_encoding_errors(rust_server: str, fname: str) -> None:
    with polygear.Client([rust_server], timeout=10) as c:
        with pytest.raises(TypeError, match="obj cannot be encoded as JSON: Object of type bytes"):
            c.submit_json(fname, b"raw")
        with pytest.raises(ValueError, match="obj cannot be encoded as JSON: Out of range float"):
            c.submit_json(fname, float("nan"))


def test_job_json_of_a_bad_payload_raises_value_error(rust_server: str, fname: str) -> None:
    errors: list[BaseException] = []

    def parse(job: polygear.Job) -> bytes:
        try:
            job.json()
        except ValueError as exc:
            errors.append(exc)
        return b""

    with running_worker(rust_server, {fname: parse}), polygear.Client([rust_server], timeout=10) as c:
        c.submit(fname, b"{")
    assert len(errors) == 1


def test_async_json(rust_server: str, fname: str) -> None:
    async def main() -> Any:
        worker = polygear.AsyncWorker([rust_server])

        @worker.function(fname, json=True)
        async def double(value: Any) -> Any:
            await asyncio.sleep(0)
            return [v * 2 for v in value]

        task = asyncio.ensure_future(worker.work())
        try:
            async with polygear.AsyncClient([rust_server], timeout=10) as c:
                return await c.submit_json(fname, [1, "ab"])
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [2, "abab"]


def test_decorator_json(rust_server: str, fname: str) -> None:
    worker = polygear.Worker([rust_server])

    @worker.function(fname, json=True)
    def keys(value: Any) -> Any:
        return sorted(value)

    assert worker.functions == [fname]
    with pytest.raises(TypeError, match="json must be a bool, not str"):
        worker.register(fname, keys, json="yes")  # type: ignore[call-overload]
