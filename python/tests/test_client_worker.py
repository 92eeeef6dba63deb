"""Client + Worker against both the Rust server and the C gearmand."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import running_worker

import polygear


def reverse(job: polygear.Job) -> bytes:
    return job.data[::-1]


def test_submit_roundtrip_all_payload_types(server: str, fname: str) -> None:
    with running_worker(server, {fname: reverse}), polygear.Client([server], timeout=20) as client:
        assert client.submit(fname, b"hello") == b"olleh"
        assert client.submit(fname, bytearray(b"abc")) == b"cba"
        assert client.submit(fname, memoryview(b"xyz12")[1:4]) == b"1zy"
        assert client.submit(fname, "héllo") == "héllo".encode()[::-1]
        assert client.submit(fname, b"") == b""
        big = bytes(range(256)) * 4096
        assert client.submit(fname, big) == big[::-1]


def test_decorator_return_types_and_job_fields(server: str, fname: str) -> None:
    worker = polygear.Worker([server])
    seen: list[tuple[str, str, str]] = []

    @worker.function(fname)
    def describe(job: polygear.Job) -> str | None:
        seen.append((job.function, job.unique, job.handle))
        if job.data == b"none":
            return None
        return f"{job.function}:{job.data.decode()}"

    @worker.function(fname + "_ba")
    def as_bytearray(job: polygear.Job) -> bytearray:
        return bytearray(job.data * 2)

    assert describe.__name__ == "describe"  # the decorator returns the function
    assert sorted(worker.functions) == sorted([fname, fname + "_ba"])
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        with polygear.Client(server, timeout=20) as client:
            assert client.submit(fname, b"x", unique="u-1") == f"{fname}:x".encode()
            assert client.submit(fname, b"none") == b""
            assert client.submit(fname + "_ba", b"ab", priority="high") == b"abab"
            assert client.submit(fname + "_ba", b"c", priority="low") == b"cc"
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive()
    assert seen[0][0] == fname and seen[0][1] == "u-1" and seen[0][2]


def test_exception_becomes_job_exception(server: str, fname: str) -> None:
    def boom(job: polygear.Job) -> bytes:
        raise ValueError("boom: " + job.data.decode())

    with running_worker(server, {fname: boom}):
        with polygear.Client([server], timeout=20) as client:
            with pytest.raises(polygear.JobException) as info:
                client.submit(fname, b"42")
            assert info.value.message == "boom: 42"
            assert isinstance(info.value, polygear.JobFailed)
            assert isinstance(info.value, polygear.GearmanError)
            assert info.value.handle
        # a client that does not ask for exceptions only sees WORK_FAIL
        with polygear.Client([server], timeout=20, exceptions=False) as plain:
            with pytest.raises(polygear.JobFailed) as failed:
                plain.submit(fname, b"1")
            assert not isinstance(failed.value, polygear.JobException)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def test_exception_without_a_message_is_reported_by_type(server: str, fname: str) -> None:
    def boom(job: polygear.Job) -> bytes:
        raise _Unprintable()

    with running_worker(server, {fname: boom}, concurrency=2):
        with polygear.Client([server], timeout=20) as client:
            for _ in range(3):
                with pytest.raises(polygear.JobException) as info:
                    client.submit(fname, b"x")
                assert info.value.message == "_Unprintable"


def test_bad_return_value_is_reported(server: str, fname: str) -> None:
    with running_worker(server, {fname: lambda job: 12345}), polygear.Client([server], timeout=20) as client:
        with pytest.raises(polygear.JobException) as info:
            client.submit(fname, b"x")
        assert "int" in info.value.message


def test_explicit_fail(server: str, fname: str) -> None:
    def fail(job: polygear.Job) -> None:
        job.fail()

    with running_worker(server, {fname: fail}), polygear.Client([server], timeout=20) as client:
        with pytest.raises(polygear.JobFailed):
            client.submit(fname, b"x")


def test_events_iterator(server: str, fname: str) -> None:
    def chatty(job: polygear.Job) -> bytes:
        job.send_data(b"part-1")
        job.send_warning("careful")
        job.send_status(1, 2)
        job.send_data(bytearray(b"part-2"))
        job.send_status(2, 2)
        return b"done"

    with running_worker(server, {fname: chatty}), polygear.Client([server], timeout=20) as client:
        job = client.submit_job(fname, b"go")
        assert job.handle
        events = list(job)
        kinds = [e.kind for e in events]
        assert kinds == ["data", "warning", "status", "data", "status", "complete"]
        assert events[0].data == b"part-1"
        assert events[1].data == b"careful"
        assert (events[2].numerator, events[2].denominator) == (1, 2)
        assert events[3].data == b"part-2"
        assert events[-1].is_final and events[-1].data == b"done"
        assert job.result() == b"done"  # still available after iterating
        assert job.next_event() is None

        # result() skips the intermediate events
        assert client.submit_job(fname, b"again").result() == b"done"


def test_event_callbacks(server: str, fname: str) -> None:
    def chatty(job: polygear.Job) -> bytes:
        job.send_data(b"a")
        job.send_status(1, 3)
        job.send_warning(b"w")
        job.send_data(b"b")
        return b"result"

    seen: list[object] = []
    with running_worker(server, {fname: chatty}), polygear.Client([server], timeout=20) as client:
        out = client.submit(
            fname,
            b"",
            on_data=lambda d: seen.append(("data", d)),
            on_warning=lambda w: seen.append(("warning", w)),
            on_status=lambda n, d: seen.append(("status", n, d)),
        )
        assert out == b"result"
        assert seen == [("data", b"a"), ("status", 1, 3), ("warning", b"w"), ("data", b"b")]
        # only some callbacks
        data: list[bytes] = []
        assert client.submit(fname, b"", on_data=data.append) == b"result"
        assert data == [b"a", b"b"]
        with pytest.raises(TypeError, match="on_status must be callable or None, not int"):
            client.submit(fname, b"", on_status=5)  # type: ignore[arg-type]


def test_failed_job_events(server: str, fname: str) -> None:
    def boom(job: polygear.Job) -> None:
        job.send_data(b"before")
        raise RuntimeError("late failure")

    with running_worker(server, {fname: boom}), polygear.Client([server], timeout=20) as client:
        job = client.submit_job(fname, b"x")
        events = list(job)
        assert [e.kind for e in events] == ["data", "exception"]
        assert events[-1].data == b"late failure"
        with pytest.raises(polygear.JobException):
            job.result()


def test_submit_many_is_ordered(server: str, fname: str) -> None:
    with running_worker(server, {fname: reverse}, concurrency=4), polygear.Client([server], timeout=30) as c:
        payloads = [f"job-{i:03d}".encode() for i in range(200)]
        assert c.submit_many(fname, payloads) == [p[::-1] for p in payloads]
        assert c.submit_many(fname, (s for s in ["ab", "cd"])) == [b"ba", b"dc"]
        assert c.submit_many(fname, []) == []


def test_submit_many_return_exceptions(server: str, fname: str) -> None:
    def maybe(job: polygear.Job) -> bytes:
        if job.data == b"bad":
            raise KeyError("bad")
        return job.data

    with running_worker(server, {fname: maybe}), polygear.Client([server], timeout=30) as c:
        out = c.submit_many(fname, [b"a", b"bad", b"c"], return_exceptions=True)
        assert out[0] == b"a" and out[2] == b"c"
        assert isinstance(out[1], polygear.JobException)
        with pytest.raises(polygear.JobException):
            c.submit_many(fname, [b"a", b"bad"])


def test_background_and_status(server: str, fname: str) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(job: polygear.Job) -> bytes:
        job.send_status(1, 4)
        started.set()
        assert release.wait(15)
        return b"ok"

    with polygear.Client([server], timeout=20) as client:
        handle = client.submit_background(fname, b"bg")
        assert isinstance(handle, str) and handle
        queued = client.status(handle)
        assert queued.known and not queued.running and queued.handle == handle
        with running_worker(server, {fname: slow}):
            assert started.wait(15)
            deadline = time.monotonic() + 10
            st = client.status(handle)
            while st.numerator != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
                st = client.status(handle)
            assert st.known and st.running
            assert (st.numerator, st.denominator) == (1, 4)
            release.set()
            deadline = time.monotonic() + 10
            while client.status(handle).known and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not client.status(handle).known
        unknown = client.status("H:nowhere:1")
        assert not unknown.known and not unknown.running


def test_status_unique(server: str, fname: str) -> None:
    with polygear.Client([server], timeout=20) as client:
        unique = f"u-{fname}"
        client.submit_background(fname, b"bg", unique=unique)
        st = client.status_unique(unique)
        assert st.known and not st.running
        assert not client.status_unique(f"missing-{fname}").known
        got: list[bytes] = []
        with running_worker(server, {fname: lambda job: got.append(job.data)}):
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
        assert got == [b"bg"]


def test_echo(server: str) -> None:
    with polygear.Client([server]) as client:
        assert client.echo(b"ping") == b"ping"
        assert client.echo("pong") == b"pong"


def test_concurrency_runs_functions_in_parallel(server: str, fname: str) -> None:
    barrier = threading.Barrier(4, timeout=15)
    threads: set[str] = set()

    def meet(job: polygear.Job) -> bytes:
        threads.add(threading.current_thread().name)
        barrier.wait()  # only passes if 4 functions run at the same time
        return job.data

    with running_worker(server, {fname: meet}, concurrency=4), polygear.Client([server], timeout=30) as c:
        assert c.submit_many(fname, [b"1", b"2", b"3", b"4"]) == [b"1", b"2", b"3", b"4"]
    assert len(threads) == 4


def test_client_threads_share_one_client(server: str, fname: str) -> None:
    """The GIL is released while waiting: 4 threads wait on slow jobs at once."""
    barrier = threading.Barrier(4, timeout=15)

    def meet(job: polygear.Job) -> bytes:
        barrier.wait()
        return job.data

    results: list[bytes] = []
    with running_worker(server, {fname: meet}, concurrency=4), polygear.Client([server], timeout=30) as c:
        threads = [
            threading.Thread(target=lambda i=i: results.append(c.submit(fname, str(i)))) for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sorted(results) == [b"0", b"1", b"2", b"3"]


def test_stop_while_jobs_run_lets_them_finish(server: str, fname: str) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(job: polygear.Job) -> bytes:
        started.set()
        assert release.wait(15)
        return b"finished"

    worker = polygear.Worker([server])
    worker.register(fname, slow)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    with polygear.Client([server], timeout=20) as client:
        job = client.submit_job(fname, b"x")
        assert started.wait(15)
        worker.stop()
        assert worker.stopped
        time.sleep(0.2)
        assert thread.is_alive()  # still waiting for the running job
        release.set()
        assert job.result() == b"finished"
    thread.join(15)
    assert not thread.is_alive()


def test_unregister_and_context_manager(server: str, fname: str) -> None:
    with polygear.Worker(server) as worker:
        worker.register(fname, reverse)
        worker.register(fname + "_x", reverse)
        worker.unregister(fname + "_x")
        assert worker.functions == [fname]
    with pytest.raises(RuntimeError):
        polygear.Worker(server).work()  # nothing registered
