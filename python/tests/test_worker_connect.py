"""A worker's connections: failed connects logged, fail_fast, and stop(timeout)
handing unfinished jobs back to the server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from conftest import free_port, running_worker

import polygear


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def polygear_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "polygear"]


def test_failed_connects_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="polygear")
    dead = f"127.0.0.1:{free_port()}"
    worker = polygear.Worker([dead])
    worker.register("x", lambda job: b"")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: any("cannot connect" in r.getMessage() for r in polygear_records(caplog)))
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive()
    [first, *_] = [r for r in polygear_records(caplog) if "cannot connect" in r.getMessage()]
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith(f"polygear: worker cannot connect to {dead}: ")
    assert "attempt 1" in first.getMessage()


def test_connects_are_logged_at_info(rust_server: str, fname: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polygear")
    with (
        running_worker(rust_server, {fname: lambda job: b"ok"}),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        assert c.submit(fname, b"") == b"ok"
        wait_for(lambda: any("connected to" in r.getMessage() for r in polygear_records(caplog)))
    [connected] = [r for r in polygear_records(caplog) if "connected to" in r.getMessage()]
    assert connected.levelno == logging.INFO
    assert connected.getMessage() == f"polygear: worker connected to {rust_server}"


def test_fail_fast_raises_when_no_server_can_be_reached() -> None:
    dead = f"127.0.0.1:{free_port()}"
    worker = polygear.Worker([dead], fail_fast=True)
    worker.register("x", lambda job: b"")
    start = time.monotonic()
    with pytest.raises(polygear.GearmanConnectionError) as info:
        worker.work()
    assert time.monotonic() - start < 10
    assert info.value.code == "ECONNREFUSED"
    assert dead in str(info.value)
    with pytest.raises(TypeError, match="fail_fast must be a bool, not int"):
        polygear.Worker([dead], fail_fast=1)  # type: ignore[arg-type]

    async def async_worker() -> None:
        w = polygear.AsyncWorker([dead], fail_fast=True)
        w.register("x", lambda job: b"")
        await w.work()

    with pytest.raises(polygear.GearmanConnectionError):
        asyncio.run(asyncio.wait_for(async_worker(), 30))


def test_fail_fast_works_when_a_server_is_up(rust_server: str, fname: str) -> None:
    worker = polygear.Worker([rust_server], fail_fast=True)
    worker.register(fname, lambda job: b"up")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        with polygear.Client([rust_server], timeout=10) as c:
            assert c.submit(fname, b"") == b"up"
    finally:
        worker.stop()
        thread.join(15)


def test_stop_timeout_hands_unfinished_jobs_back(
    server: str, fname: str, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def stuck(job: polygear.Job) -> bytes:
        job.send_data(b"started")
        release.wait(30)
        return b"from the stuck worker"

    first = polygear.Worker([server])
    first.register(fname, stuck)
    thread = threading.Thread(target=first.work, daemon=True)
    thread.start()
    try:
        with polygear.Client([server], timeout=30) as client:
            job = client.submit_job(fname, b"")
            event = job.next_event()
            assert event is not None and event.data == b"started"
            start = time.monotonic()
            first.stop(timeout=0.3)
            thread.join(10)
            assert not thread.is_alive() and time.monotonic() - start < 5
            assert any("handed back to the server" in r.getMessage() for r in polygear_records(caplog))
            # the server gives the job to another worker
            with running_worker(server, {fname: lambda job: b"from the second worker"}):
                assert job.result() == b"from the second worker"
    finally:
        release.set()
    with pytest.raises(ValueError, match=r"timeout must be greater than 0 \(seconds\), not 0"):
        first.stop(timeout=0)


def test_lost_connection_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polygear")
    server = polygear.Server()
    server.start()
    address = server.address
    worker = polygear.Worker([address])
    worker.register("x", lambda job: b"")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: any("connected to" in r.getMessage() for r in polygear_records(caplog)))
        server.stop()
        wait_for(lambda: any("lost its connection" in r.getMessage() for r in polygear_records(caplog)))
    finally:
        worker.stop()
        thread.join(15)
        server.stop()
    [lost, *_] = [r for r in polygear_records(caplog) if "lost its connection" in r.getMessage()]
    assert lost.levelno == logging.WARNING
    assert lost.getMessage().startswith(f"polygear: worker lost its connection to {address}: ")
