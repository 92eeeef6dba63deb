"""Bad input and unreachable servers."""

from __future__ import annotations

import time

import pytest
from conftest import free_port

import polygear


@pytest.fixture
def client(rust_server: str) -> polygear.Client:
    return polygear.Client([rust_server], timeout=5)


@pytest.mark.parametrize("bad", [123, 1.5, None, ["x"], {"a": 1}, object()])
def test_bad_payload_type(client: polygear.Client, bad: object) -> None:
    with pytest.raises(TypeError, match=r"data must be bytes, bytearray, memoryview or str, not "):
        client.submit("f", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"data must be bytes"):
        client.submit_background("f", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"data must be bytes"):
        client.submit_job("f", bad)  # type: ignore[arg-type]


def test_bad_argument_types(client: polygear.Client) -> None:
    with pytest.raises(TypeError, match="func must be str, not int"):
        client.submit(42, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="priority must be 'high', 'normal' or 'low'"):
        client.submit("f", b"x", priority=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority must be 'high', 'normal' or 'low'"):
        client.submit("f", b"x", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None, not str"):
        client.submit("f", b"x", timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a finite, non-negative"):
        client.submit("f", b"x", timeout=-1)
    with pytest.raises(TypeError, match="unique must be str, bytes or None, not int"):
        client.submit("f", b"x", unique=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="each item must be bytes"):
        client.submit_many("f", [b"ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="submit_many needs an iterable of payloads, not int"):
        client.submit_many("f", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handle must be str, not bytes"):
        client.status(b"H:x")  # type: ignore[arg-type]


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TypeError, match="servers must be a str or a list"):
        polygear.Client(4730)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="servers must contain 'host:port' str, not int"):
        polygear.Client(["127.0.0.1:4730", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        polygear.Client([])
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        polygear.Client("127.0.0.1:4730", timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        polygear.Worker("127.0.0.1:4730", concurrency=0)
    with pytest.raises(TypeError, match="concurrency must be an int, not str"):
        polygear.Worker("127.0.0.1:4730", concurrency="2")  # type: ignore[arg-type]
    worker = polygear.Worker("127.0.0.1:4730")
    with pytest.raises(TypeError, match="fn must be callable, not bytes"):
        worker.register("f", b"not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function name must be str, not int"):
        worker.register(3, lambda job: None)  # type: ignore[arg-type]


def test_job_payload_type_checks(rust_server: str, fname: str) -> None:
    errors: list[str] = []

    def bad_calls(job: polygear.Job) -> bytes:
        try:
            job.send_data(1)  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(str(exc))
        try:
            job.send_warning(None)  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(str(exc))
        return b"ok"

    from conftest import running_worker

    with running_worker(rust_server, {fname: bad_calls}), polygear.Client([rust_server], timeout=10) as c:
        assert c.submit(fname, b"") == b"ok"
    assert errors == [
        "data must be bytes, bytearray, memoryview or str, not int",
        "data must be bytes, bytearray, memoryview or str, not NoneType",
    ]


def test_dead_server_raises_connection_error_quickly() -> None:
    port = free_port()  # nothing listens there
    client = polygear.Client([f"127.0.0.1:{port}"], timeout=30, connect_timeout=2)
    start = time.monotonic()
    with pytest.raises(polygear.GearmanConnectionError) as info:
        client.submit("f", b"x")
    assert time.monotonic() - start < 5
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, polygear.GearmanError)
    with pytest.raises(polygear.GearmanConnectionError):
        client.submit_background("f", b"x")
    with pytest.raises(polygear.GearmanConnectionError):
        polygear.Admin(f"127.0.0.1:{port}", timeout=2)


def test_timeout_raises_timeout_error(server: str, fname: str) -> None:
    # no worker for fname: the job never finishes
    with polygear.Client([server]) as client:
        start = time.monotonic()
        with pytest.raises(polygear.GearmanTimeoutError) as info:
            client.submit(fname, b"x", timeout=0.3)
        assert time.monotonic() - start < 5
        assert isinstance(info.value, TimeoutError)
    with polygear.Client([server], timeout=0.3) as client:
        with pytest.raises(TimeoutError):
            client.submit(fname, b"x")


def test_exception_hierarchy() -> None:
    assert issubclass(polygear.GearmanConnectionError, ConnectionError)
    assert issubclass(polygear.GearmanTimeoutError, TimeoutError)
    for cls in (
        polygear.GearmanConnectionError,
        polygear.GearmanTimeoutError,
        polygear.JobFailed,
        polygear.JobException,
        polygear.ProtocolError,
        polygear.ServerError,
        polygear.ClosedError,
        polygear.InvalidArgumentError,
    ):
        assert issubclass(cls, polygear.GearmanError)
    exc = polygear.JobException("job H:1 raised: boom", "H:1", "boom")
    assert exc.message == "boom" and exc.handle == "H:1"


def test_job_finished_twice(rust_server: str, fname: str) -> None:
    seen: list[BaseException] = []

    def twice(job: polygear.Job) -> None:
        job.complete(b"first")
        try:
            job.send_data(b"late")
        except polygear.ClosedError as exc:
            seen.append(exc)

    from conftest import running_worker

    with running_worker(rust_server, {fname: twice}), polygear.Client([rust_server], timeout=10) as c:
        assert c.submit(fname, b"") == b"first"
    assert len(seen) == 1
