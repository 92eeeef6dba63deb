"""What a worker does when its function fails: the log line with traceback, the
on_error hook, the rule for results, and the names it refuses."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import running_worker

import polygear

BAD_RESULT = "worker function returned {}; return bytes, str or None (or register with json=True)"


def boom(job: polygear.Job) -> bytes:
    raise RuntimeError("boom " + job.data.decode())


def test_failure_is_logged_with_traceback(
    rust_server: str, fname: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="polygear")
    with running_worker(rust_server, {fname: boom}), polygear.Client([rust_server], timeout=10) as c:
        with pytest.raises(polygear.JobException) as info:
            c.submit(fname, b"x")
    assert info.value.message == "boom x"
    [record] = [r for r in caplog.records if r.name == "polygear" and r.exc_info]
    assert record.levelno == logging.ERROR
    assert fname in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "Traceback" in caplog.text and "boom x" in caplog.text


def test_on_error_hook_replaces_the_log_line(
    rust_server: str, fname: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, BaseException]] = []
    with (
        running_worker(
            rust_server, {fname: boom}, on_error=lambda job, exc: seen.append((job.function, exc))
        ),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        with pytest.raises(polygear.JobException, match="boom y"):
            c.submit(fname, b"y")
    [(function, exc)] = seen
    assert function == fname and isinstance(exc, RuntimeError) and str(exc) == "boom y"
    assert not [r for r in caplog.records if r.name == "polygear" and r.exc_info]


def test_on_error_is_an_attribute_and_a_failing_hook_is_logged(
    rust_server: str, fname: str, caplog: pytest.LogCaptureFixture
) -> None:
    def bad_hook(job: polygear.Job, exc: BaseException) -> None:
        raise ValueError("hook broke")

    with (
        running_worker(rust_server, {fname: boom}) as worker,
        polygear.Client([rust_server], timeout=10) as c,
    ):
        assert worker.on_error is None
        worker.on_error = bad_hook
        assert worker.on_error is bad_hook
        with pytest.raises(polygear.JobException, match="boom z"):
            c.submit(fname, b"z")
        with pytest.raises(TypeError, match="on_error must be callable or None, not int"):
            worker.on_error = 3  # type: ignore[assignment]
    errors = [r.exc_info[1] for r in caplog.records if r.name == "polygear" and r.exc_info]
    assert [type(e) for e in errors] == [ValueError, RuntimeError]
    with pytest.raises(TypeError, match="on_error must be callable or None, not str"):
        polygear.Worker(rust_server, on_error="log")  # type: ignore[arg-type]


def test_without_logging_configured_the_traceback_reaches_stderr() -> None:
    # No handler anywhere: Python's logging.lastResort prints warnings and errors.
    script = textwrap.dedent(
        """
        import threading, polygear
        with polygear.Server() as server:
            worker = polygear.Worker([server.address])

            @worker.function("explode")
            def explode(job):
                raise KeyError("no such thing")

            t = threading.Thread(target=worker.work)
            t.start()
            try:
                polygear.Client([server.address], timeout=10).submit("explode", b"")
            except polygear.JobException as exc:
                print("client saw:", exc.message, flush=True)
            worker.stop()
            t.join()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, cwd=Path(__file__).parent, check=True
    )
    err = done.stderr.decode()
    assert "client saw: 'no such thing'" in done.stdout.decode()
    assert "polygear: function 'explode' failed on job" in err
    assert "Traceback (most recent call last)" in err and "KeyError: 'no such thing'" in err


def test_result_rule(rust_server: str, fname: str) -> None:
    results: dict[bytes, object] = {
        b"bytes": b"b",
        b"bytearray": bytearray(b"ba"),
        b"memoryview": memoryview(b"mv"),
        b"str": "stré",
        b"none": None,
        b"dict": {"w": 1},
        b"int": 7,
        b"list": [b"x"],
    }
    hooked: list[BaseException] = []
    with (
        running_worker(
            rust_server, {fname: lambda job: results[job.data]}, on_error=lambda j, e: hooked.append(e)
        ),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        assert c.submit(fname, b"bytes") == b"b"
        assert c.submit(fname, b"bytearray") == b"ba"
        assert c.submit(fname, b"memoryview") == b"mv"
        assert c.submit(fname, b"str") == "stré".encode()
        assert c.submit(fname, b"none") == b""
        for bad in ("dict", "int", "list"):
            with pytest.raises(polygear.JobException) as info:
                c.submit(fname, bad.encode())
            assert info.value.message == BAD_RESULT.format(bad)
    assert [str(e) for e in hooked] == [BAD_RESULT.format(t) for t in ("dict", "int", "list")]
    assert all(isinstance(e, TypeError) for e in hooked)


def test_async_worker_result_rule_and_hook(rust_server: str, fname: str) -> None:
    hooked: list[BaseException] = []

    async def hook(job: polygear.Job, exc: BaseException) -> None:
        await asyncio.sleep(0)
        hooked.append(exc)

    async def main() -> None:
        worker = polygear.AsyncWorker([rust_server], on_error=hook)

        @worker.function(fname)
        async def returns_a_set(job: polygear.Job) -> Any:
            return {1, 2} if job.data == b"set" else None

        task = asyncio.ensure_future(worker.work())
        async with polygear.AsyncClient([rust_server], timeout=10) as c:
            assert await c.submit(fname, b"none") == b""
            with pytest.raises(polygear.JobException) as info:
                await c.submit(fname, b"set")
        worker.stop()
        await asyncio.wait_for(task, 15)
        assert info.value.message == BAD_RESULT.format("set")

    asyncio.run(asyncio.wait_for(main(), 60))
    assert [type(e) for e in hooked] == [TypeError]


def test_empty_function_names_are_refused(rust_server: str) -> None:
    for worker in (polygear.Worker(rust_server), polygear.AsyncWorker(rust_server)):
        with pytest.raises(polygear.InvalidArgumentError, match="function name must not be empty"):
            worker.register("", lambda job: None)
        with pytest.raises(ValueError, match="function name must not be empty"):
            worker.function("")(lambda job: None)
        assert worker.functions == []


def test_register_task_alias(rust_server: str, fname: str) -> None:
    seen: list[tuple[object, str, str]] = []
    worker = polygear.Worker([rust_server])

    def callback(gearman_worker: polygear.Worker, job: polygear.Job) -> bytes:
        seen.append((gearman_worker, job.task, job.function))
        return job.data.upper()

    worker.register_task(fname, callback)
    assert worker.functions == [fname]
    t = threading.Thread(target=worker.work, daemon=True)
    t.start()
    try:
        with polygear.Client([rust_server], timeout=10) as c:
            assert c.submit(fname, b"abc") == b"ABC"
    finally:
        worker.stop()
        t.join(15)
    assert seen == [(worker, fname, fname)]
