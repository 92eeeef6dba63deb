"""Bad input and unreachable servers."""

from __future__ import annotations

import errno
import re
import socket
import threading
import time
from collections.abc import Callable

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
    with pytest.raises(ValueError, match=r"timeout must be greater than 0 \(seconds\), not -1"):
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
        worker.register("f", b"not callable")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="function name must be str, not int"):
        worker.register(3, lambda job: None)  # type: ignore[call-overload]


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


def test_out_of_range_integers_are_value_errors(rust_server: str, fname: str) -> None:
    with pytest.raises(ValueError, match=r"^port must be 0\.\.65535, not 99999$"):
        polygear.Server(port=99999)
    with pytest.raises(ValueError, match=r"^port must be 0\.\.65535, not -1$"):
        polygear.Server(port=-1)
    with pytest.raises(TypeError, match="port must be an int, not str"):
        polygear.Server(port="4730")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"concurrency must be at least 1 \(and at most \d+\), not 10{30}"):
        polygear.Worker(rust_server, concurrency=10**30)
    with polygear.Client([rust_server], timeout=5) as c:
        with pytest.raises(ValueError, match=r"^epoch must be 0\.\.9223372036854775807, not -5$"):
            c.submit_background(fname, b"", epoch=-5)
    with polygear.Admin(rust_server) as admin:
        with pytest.raises(ValueError, match=r"^limit must be 0\.\.4294967295, not -1$"):
            admin.maxqueue(fname, -1)
        with pytest.raises(ValueError, match=r"^low limit must be 0\.\.4294967295, not 4294967296$"):
            admin.maxqueue(fname, (1, 2, 2**32))

    errors: list[str] = []

    def status(job: polygear.Job) -> bytes:
        for n, d in ((-1, 5), (1, 2**40)):
            try:
                job.send_status(n, d)
            except ValueError as exc:
                errors.append(str(exc))
        job.send_status(1, 2)
        return b"ok"

    from conftest import running_worker

    with running_worker(rust_server, {fname: status}), polygear.Client([rust_server], timeout=10) as c:
        assert c.submit(fname, b"") == b"ok"
    assert errors == [
        "numerator must be 0..4294967295, not -1",
        "denominator must be 0..4294967295, not 1099511627776",
    ]


def test_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(polygear.GearmanConnectionError) as info:
            polygear.Server(port=port)
    assert f"port {port} on 127.0.0.1 is already in use" in str(info.value)
    assert info.value.code == "EADDRINUSE"
    assert info.value.errno == errno.EADDRINUSE
    # taken between Server() and start()
    port = free_port()
    server = polygear.Server(port=port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(polygear.GearmanConnectionError, match="already in use") as info:
            server.start()
    assert info.value.code == "EADDRINUSE"
    assert not server.running


def test_errors_carry_their_code() -> None:
    port = free_port()
    with pytest.raises(polygear.GearmanConnectionError) as info:
        polygear.Client([f"127.0.0.1:{port}"], connect_timeout=2).submit("f", b"")
    assert info.value.code == "ECONNREFUSED"
    assert info.value.errno == errno.ECONNREFUSED
    assert polygear.GearmanError.code == ""


def test_empty_function_names_are_refused_on_submit(rust_server: str) -> None:
    with polygear.Client([rust_server], timeout=5) as c:
        calls: list[Callable[[], object]] = [
            lambda: c.submit("", b"x"),
            lambda: c.submit_job("", b"x"),
            lambda: c.submit_background("", b"x"),
            lambda: c.submit_json("", 1),
        ]
        for call in calls:
            with pytest.raises(polygear.InvalidArgumentError, match="function"):
                call()


def test_zero_timeouts_are_refused(rust_server: str, fname: str) -> None:
    def zero(name: str = "timeout") -> str:
        return rf"^{name} must be greater than 0 \(seconds\), not 0"

    with pytest.raises(ValueError, match=zero()):
        polygear.Client([rust_server], timeout=0)
    with pytest.raises(ValueError, match=zero("connect_timeout")):
        polygear.Client([rust_server], connect_timeout=0)
    with pytest.raises(ValueError, match=zero()):
        polygear.Admin(rust_server, timeout=0)
    with polygear.Client([rust_server]) as c:
        with pytest.raises(ValueError, match=zero()):
            c.submit(fname, b"", timeout=0)
        with pytest.raises(ValueError, match=zero()):
            c.submit_job(fname, b"", timeout=0)
        with pytest.raises(ValueError, match=zero()):
            c.submit_many(fname, [b""], timeout=0)
        with pytest.raises(ValueError, match=r"^timeout must be greater than 0 \(seconds\), not -1"):
            c.submit(fname, b"", timeout=-1)
    worker = polygear.Worker([rust_server])
    with pytest.raises(ValueError, match=zero()):
        worker.register(fname, lambda job: None, timeout=0)


def test_no_worker_timeout_says_so(rust_server: str, fname: str) -> None:
    with polygear.Client([rust_server]) as c:
        with pytest.raises(polygear.GearmanTimeoutError) as info:
            c.submit(fname, b"", timeout=0.3)
    assert re.fullmatch(
        rf"no worker has taken job \S+ for function '{fname}' in 0\.3 s; "
        r"is a worker registered\? \(timeout is in seconds\)",
        str(info.value),
    ), str(info.value)
    assert info.value.code == "ETIMEDOUT"


def test_slow_job_timeout_names_the_deadline_and_unit(server: str, fname: str) -> None:
    from conftest import running_worker

    def slow(job: polygear.Job) -> bytes:
        time.sleep(1.5)
        return b""

    with running_worker(server, {fname: slow}), polygear.Client([server]) as c:
        with pytest.raises(polygear.GearmanTimeoutError) as info:
            c.submit(fname, b"", timeout=0.5)
    assert re.fullmatch(r"job \S+ did not finish within 0\.5 s \(timeout is in seconds\)", str(info.value)), (
        str(info.value)
    )


def test_a_peer_that_is_not_gearman(fname: str) -> None:
    # what any HTTP server answers to bytes it cannot parse
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(polygear.ProtocolError) as info:
            polygear.Client([address], timeout=5).submit(fname, b"")
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert str(info.value) == f"the server at {address} answered 'HTTP', not Gearman"
    assert info.value.code == "EPROTOCOL"


def test_worker_timeout_reason_reaches_the_client(rust_server: str, fname: str) -> None:
    worker = polygear.Worker([rust_server])

    @worker.function(fname, timeout=1)
    def overrun(job: polygear.Job) -> bytes:
        time.sleep(2)
        return b"too late"

    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        with polygear.Client([rust_server], timeout=20) as c:
            with pytest.raises(polygear.JobFailed) as info:
                c.submit(fname, b"")
    finally:
        worker.stop()
        thread.join(15)
    assert info.value.reason == "the worker exceeded its 1 s timeout"
    assert str(info.value) == f"job {info.value.handle} failed: the worker exceeded its 1 s timeout"


def test_unresolvable_host_is_enotfound(fname: str) -> None:
    with pytest.raises(polygear.GearmanConnectionError) as info:
        polygear.Client(["nosuch.invalid:4730"], connect_timeout=5).submit(fname, b"")
    assert info.value.code == "ENOTFOUND"
    assert "nosuch.invalid" in str(info.value)
