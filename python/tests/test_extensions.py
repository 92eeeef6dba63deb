"""polygeard's extensions (issue #19) through the Python API: retries and the
dead set, retained results, unique windows, cancellation, pause and drain,
periodic jobs; and what a C gearmand says to them.

Each polygeard test runs its own in-process server, so the counts it asserts
(dead jobs, paused functions, schedules) are its own."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from conftest import running_worker

import polygear

T = TypeVar("T")


@pytest.fixture
def own_server() -> Iterator[str]:
    """Address of a polygear.Server of this test only."""
    with polygear.Server() as server:
        yield server.address


def wait_for(what: str, check: Callable[[], T], timeout: float = 10.0) -> T:
    """Polls `check` until it returns something truthy; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def stays_false(check: Callable[[], object], duration: float = 0.3) -> bool:
    """True if `check` stays falsy for `duration` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if check():
            return False
        time.sleep(0.02)
    return True


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def assert_utc(t: object) -> datetime:
    """`t` is a timezone-aware datetime in UTC."""
    assert isinstance(t, datetime)
    assert t.tzinfo is timezone.utc
    return t


# --- retries and the dead set ---------------------------------------------------------------


def test_retry_policy_retries_until_success(own_server: str, fname: str) -> None:
    runs: list[bytes] = []

    def flaky(job: polygear.Job) -> bytes:
        runs.append(job.data)
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")
        return b"ok:" + job.data

    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        admin.set_retry_policy(fname, 3, 0.05, max_delay=0.2)
        (policy,) = [p for p in admin.retry_policies() if p.function == fname]
        assert (policy.max_attempts, policy.backoff, policy.max_delay) == (3, 0.05, 0.2)
        assert "RetryPolicy(function=" in repr(policy)
        with running_worker(own_server, {fname: flaky}):
            handle = client.submit_background(fname, b"x", retain=30)
            assert wait_for("the third run", lambda: client.result(handle)) == b"ok:x"
        assert runs == [b"x", b"x", b"x"]
        assert admin.dead_jobs(fname) == []
        # max_attempts 0 removes the policy; max_delay defaults to one hour
        admin.set_retry_policy(fname, 2, 1)
        (policy,) = [p for p in admin.retry_policies() if p.function == fname]
        assert (policy.max_attempts, policy.backoff, policy.max_delay) == (2, 1.0, 3600.0)
        admin.set_retry_policy(fname, 0, 0)
        assert [p for p in admin.retry_policies() if p.function == fname] == []


def test_exhausted_attempts_go_to_the_dead_set(own_server: str, fname: str) -> None:
    fail = True
    done: list[bytes] = []

    def job_fn(job: polygear.Job) -> bytes:
        if fail:
            raise ValueError(f"cannot handle {job.data.decode()}")
        done.append(job.data)
        return b"fine"

    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        admin.set_retry_policy(fname, 2, 0.05)
        before = utc_now().replace(microsecond=0)  # the server's times are whole seconds
        with running_worker(own_server, {fname: job_fn}):
            handle = client.submit_background(fname, b"item-1", unique="u-1")
            (dead,) = wait_for("the dead job", lambda: admin.dead_jobs(fname))
            assert isinstance(dead, polygear.DeadJob)
            assert (dead.handle, dead.function, dead.unique, dead.data) == (handle, fname, b"u-1", b"item-1")
            assert dead.attempts == 2
            assert dead.error == "cannot handle item-1"
            assert before <= assert_utc(dead.submitted) <= assert_utc(dead.failed_at) <= utc_now()
            assert f"failed_at={dead.failed_at!r})" in repr(dead)
            assert [d.handle for d in admin.dead_jobs()] == [handle]
            assert admin.dead_jobs("other") == []

            # retry_dead queues it again: this time it completes
            fail = False
            assert admin.retry_dead(fname) == 1
            wait_for("the retried job", lambda: done == [b"item-1"])
            assert admin.dead_jobs(fname) == []

            # delete_dead drops it
            fail = True
            client.submit_background(fname, b"item-2")
            wait_for("the second dead job", lambda: admin.dead_jobs(fname))
            assert admin.delete_dead(fname) == 1
            assert admin.dead_jobs() == []

            # one by handle, and all at once
            h3 = client.submit_background(fname, b"item-3")
            h4 = client.submit_background(fname, b"item-4")
            wait_for("two dead jobs", lambda: len(admin.dead_jobs(fname)) == 2)
            assert admin.delete_dead_job(h3) is True
            assert admin.delete_dead_job(h3) is False
            assert admin.retry_dead_job("H:nowhere:1") is False
            fail = False
            assert admin.retry_dead_job(h4) is True
            wait_for("item-4 done", lambda: b"item-4" in done)
            fail = True
            client.submit_background(fname, b"item-5")
            wait_for("item-5 dead", lambda: admin.dead_jobs(fname))
            assert admin.retry_all_dead() == 1
            wait_for("item-5 dead again", lambda: admin.dead_jobs(fname))
            assert admin.delete_all_dead() == 1
            assert admin.dead_jobs() == []


def test_retry_policy_arguments(rust_server: str) -> None:
    with polygear.Admin(rust_server) as admin:
        with pytest.raises(ValueError, match="backoff"):
            admin.set_retry_policy("f", 3, -1)
        with pytest.raises(TypeError, match="backoff must be a number of seconds"):
            admin.set_retry_policy("f", 3, "1s")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_attempts"):
            admin.set_retry_policy("f", -1, 1)
        with pytest.raises(TypeError, match="id must be"):
            admin.drain_worker(1.5)  # type: ignore[arg-type]


# --- retained results and unique windows ----------------------------------------------------


def test_retained_result(own_server: str, fname: str) -> None:
    def job_fn(job: polygear.Job) -> bytes | None:
        if job.data == b"raise":
            raise RuntimeError("it broke")
        if job.data == b"fail":
            job.fail()
            return None
        return job.data.upper()

    with polygear.Client(own_server) as client:
        handle = client.submit_background(fname, b"abc", retain=30)
        assert client.result(handle) is None  # queued
        assert client.result("H:nowhere:99") is None  # unknown
        with running_worker(own_server, {fname: job_fn}):
            assert wait_for("the result", lambda: client.result(handle)) == b"ABC"
            raised = client.submit_background(fname, b"raise", retain=30.5)
            failed = client.submit_background(fname, b"fail", retain=30)

            def ended(h: str) -> BaseException | None:
                try:
                    client.result(h)
                except polygear.JobFailed as exc:
                    return exc
                return None

            exc = wait_for("the exception", lambda: ended(raised))
            assert isinstance(exc, polygear.JobException) and exc.message == "it broke"
            exc = wait_for("the failure", lambda: ended(failed))
            assert type(exc) is polygear.JobFailed and exc.handle == failed
        assert client.result(handle) == b"ABC"  # kept, read again
        with pytest.raises(ValueError, match="retain"):
            client.submit_background(fname, b"x", retain=0)


def test_result_state(own_server: str, fname: str) -> None:
    release = threading.Event()

    def job_fn(job: polygear.Job) -> bytes | None:
        if job.data == b"raise":
            raise RuntimeError("it broke")
        if job.data == b"fail":
            job.fail()
            return None
        if job.data == b"block":
            release.wait(10)
        return job.data.upper()

    def ended(h: str) -> tuple[str, bytes | None] | None:
        state = client.result_state(h)
        return None if state[0] in ("queued", "running") else state

    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        admin.pause(fname)
        with running_worker(own_server, {fname: job_fn}, on_error=lambda job, exc: None):
            handle = client.submit_background(fname, b"abc", retain=30)
            assert client.result_state(handle) == ("queued", None)  # paused: not handed out
            assert client.result_state("H:nowhere:99") == ("unknown", None)
            admin.resume(fname)
            assert wait_for("the result", lambda: ended(handle)) == ("complete", b"ABC")
            assert client.result_state(handle) == ("complete", b"ABC")  # kept, read again
            raised = client.submit_background(fname, b"raise", retain=30)
            assert wait_for("the exception", lambda: ended(raised)) == ("exception", b"it broke")
            failed = client.submit_background(fname, b"fail", retain=30)
            assert wait_for("the failure", lambda: ended(failed)) == ("failed", None)
            blocked = client.submit_background(fname, b"block", retain=30)
            wait_for("the running job", lambda: client.result_state(blocked)[0] == "running")
            assert client.result_state(blocked) == ("running", None)
            release.set()
            assert wait_for("the blocked job", lambda: ended(blocked)) == ("complete", b"BLOCK")

    async def main() -> None:
        async with polygear.AsyncClient([own_server]) as client:
            assert await client.result_state(handle) == ("complete", b"ABC")
            assert await client.result_state("H:nowhere:1") == ("unknown", None)

    asyncio.run(main())


def test_retention_and_unique_window_via_admin(own_server: str, fname: str) -> None:
    runs: list[bytes] = []

    def job_fn(job: polygear.Job) -> bytes:
        runs.append(job.data)
        return b"r" + job.data

    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        admin.set_retention(fname, 60)
        admin.set_unique_window(fname, 30)
        assert admin.retention() == {fname: 60.0}
        assert admin.unique_windows() == {fname: 30.0}
        with running_worker(own_server, {fname: job_fn}):
            handle = client.submit_background(fname, b"1")  # retained by the function's setting
            assert wait_for("the retained result", lambda: client.result(handle)) == b"r1"
            assert client.submit(fname, b"a", unique="key") == b"ra"
            # within the window, the same key gets the finished job: nothing runs
            assert client.submit(fname, b"b", unique="key") == b"ra"
        assert runs == [b"1", b"a"]
        admin.set_unique_window(fname, 0)
        admin.set_retention(fname, 0)
        assert admin.unique_windows() == {}
        assert admin.retention() == {}


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_queued_job(own_server: str, fname: str) -> None:
    with polygear.Client(own_server) as client:
        job = client.submit_job(fname, b"never runs")
        assert client.cancel(job.handle) is True
        with pytest.raises(polygear.JobCancelled) as info:
            job.result()
        assert isinstance(info.value, polygear.JobFailed)
        assert info.value.code == "ECANCELED"
        assert info.value.handle == job.handle
        assert info.value.reason and info.value.reason.startswith("cancelled")
        assert client.cancel(job.handle) is False  # gone
        assert client.cancel("H:nowhere:12345") is False
        background = client.submit_background(fname, b"bg")
        assert client.cancel(background) is True
        # a worker gets neither cancelled job, only the one queued after them
        got: list[bytes] = []
        with running_worker(own_server, {fname: lambda job: got.append(job.data)}):
            client.submit_background(fname, b"after")
            wait_for("the job after", lambda: got)
        assert got == [b"after"]


def test_running_job_sees_cancelled(own_server: str, fname: str) -> None:
    started = threading.Event()
    seen: list[bool] = []

    def long_job(job: polygear.Job) -> bytes:
        seen.append(job.cancelled())
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if job.cancelled():
                seen.append(True)
                return b"stopped"
            time.sleep(0.05)
        return b"not cancelled"

    with running_worker(own_server, {fname: long_job}):
        with polygear.Client(own_server, timeout=20) as client:
            job = client.submit_job(fname, b"work")
            assert started.wait(10)
            assert client.cancel(job.handle) is True
            with pytest.raises(polygear.JobCancelled):
                job.result()
            wait_for("the worker to see the cancel", lambda: len(seen) == 2)
    assert seen == [False, True]


def test_async_cancel_result_and_cancelled_async(own_server: str, fname: str) -> None:
    async def main() -> None:
        started = asyncio.Event()
        seen: list[bool] = []
        worker = polygear.AsyncWorker([own_server])

        @worker.function(fname)
        async def long_job(job: polygear.Job) -> bytes:
            seen.append(await job.cancelled_async())
            started.set()
            for _ in range(200):
                if await job.cancelled_async():
                    seen.append(True)
                    return b"stopped"
                await asyncio.sleep(0.05)
            return b"not cancelled"

        serving = asyncio.create_task(worker.work())
        try:
            async with polygear.AsyncClient([own_server], timeout=20) as client:
                job = await client.submit_job(fname, b"x")
                await asyncio.wait_for(started.wait(), 10)
                assert await client.cancel(job.handle) is True
                with pytest.raises(polygear.JobCancelled):
                    await job.result()
                for _ in range(200):
                    if len(seen) == 2:
                        break
                    await asyncio.sleep(0.02)
                assert seen == [False, True]
                assert await client.result("H:nowhere:1") is None
        finally:
            worker.stop()
            await asyncio.wait_for(serving, 15)

    asyncio.run(main())


# --- pause and drain ------------------------------------------------------------------------


def test_pause_and_resume(own_server: str, fname: str) -> None:
    got: list[bytes] = []
    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        admin.pause(fname)
        assert admin.paused() == [fname]
        with running_worker(own_server, {fname: lambda job: got.append(job.data)}):
            client.submit_background(fname, b"held")
            assert stays_false(lambda: got)
            (status,) = [s for s in admin.status() if s.function == fname]
            assert (status.total, status.running) == (1, 0)
            admin.resume(fname)
            wait_for("the resumed job", lambda: got == [b"held"])
        assert admin.paused() == []


def test_drain_worker(own_server: str, fname: str) -> None:
    first: list[bytes] = []
    second: list[bytes] = []
    with polygear.Admin(own_server) as admin, polygear.Client(own_server) as client:
        with running_worker(own_server, {fname: lambda job: first.append(job.data)}):
            (fd,) = wait_for("the worker", lambda: [w.fd for w in admin.workers() if fname in w.functions])
            assert admin.drain_worker(fd) == 1
            assert [d.fd for d in admin.draining()] == [fd]
            client.submit_background(fname, b"job")
            assert stays_false(lambda: first)
            with running_worker(own_server, {fname: lambda job: second.append(job.data)}):
                wait_for("the other worker's job", lambda: second == [b"job"])
        assert first == []
        with pytest.raises(polygear.ServerError) as info:
            admin.drain_worker("no-such-worker")
        assert info.value.code == "UNKNOWN_WORKER"


# --- periodic jobs --------------------------------------------------------------------------


def test_schedule_fires_into_a_worker(own_server: str, fname: str) -> None:
    name = f"every_second_{fname}"
    got: list[tuple[bytes, str]] = []
    with polygear.Admin(own_server) as admin:
        admin.schedule_add(name, "* * * * * *", fname, "tick")
        (sched,) = admin.schedules()
        assert (sched.name, sched.function, sched.cron, sched.data) == (name, fname, "* * * * * *", "tick")
        assert sched.last_fired is None
        now = utc_now()
        assert now - timedelta(seconds=1) < assert_utc(sched.next) <= now + timedelta(seconds=2)
        assert "last_fired=None, next=datetime.datetime(" in repr(sched)
        with running_worker(own_server, {fname: lambda job: got.append((job.data, job.unique))}):
            wait_for("a firing", lambda: got, timeout=5)
        (sched,) = admin.schedules()
        last_fired = assert_utc(sched.last_fired)
        assert abs(last_fired - utc_now()) < timedelta(seconds=5)
        assert assert_utc(sched.next) > last_fired
        admin.schedule_delete(name)
        assert admin.schedules() == []
        with pytest.raises(polygear.ServerError) as info:
            admin.schedule_delete(name)
        assert info.value.code == "UNKNOWN_SCHEDULE"
    data, unique = got[0]
    assert data == b"tick" and unique.startswith(f"{name}@")


# --- against the C gearmand -----------------------------------------------------------------


def test_extensions_against_gearmand(gearmand: str, fname: str) -> None:
    with polygear.Client(gearmand) as client:
        with pytest.raises(polygear.ServerError, match="does not support"):
            client.submit_background(fname, b"x", retain=5)
        handle = client.submit_background(fname, b"x")
        with pytest.raises(polygear.ServerError, match="does not support"):
            client.result(handle)
        with pytest.raises(polygear.ServerError, match="does not support"):
            client.result_state(handle)
        assert client.cancel(handle) is True  # gearmand cancels queued jobs
    with polygear.Admin(gearmand) as admin:
        with pytest.raises(polygear.ServerError) as info:
            admin.set_retry_policy(fname, 3, 1)
        assert info.value.code == "UNKNOWN_COMMAND"
        with pytest.raises(polygear.ServerError):
            admin.dead_jobs()
        assert admin.version()  # the connection is still usable


# --- the embedded server's options ----------------------------------------------------------


def test_server_extension_options(fname: str) -> None:
    runs: list[bytes] = []

    def flaky(job: polygear.Job) -> bytes:
        runs.append(job.data)
        if len(runs) < 2:
            raise RuntimeError("once")
        return b"done"

    name = f"s_{fname}"
    with polygear.Server(
        retry={fname: (2, 0.05, 1), "other": 4},
        retain={fname: 60},
        unique_window={fname: 30},
        schedules=[(name, "0 3 * * *", fname, "nightly")],
    ) as server:
        with polygear.Admin(server.address) as admin, polygear.Client(server.address) as client:
            policies = {p.function: (p.max_attempts, p.backoff, p.max_delay) for p in admin.retry_policies()}
            assert policies == {fname: (2, 0.05, 1.0), "other": (4, 1.0, 3600.0)}
            assert admin.retention() == {fname: 60.0}
            assert admin.unique_windows() == {fname: 30.0}
            assert [(s.name, s.cron, s.function, s.data) for s in admin.schedules()] == [
                (name, "0 3 * * *", fname, "nightly")
            ]
            with running_worker(server.address, {fname: flaky}):
                handle = client.submit_background(fname, b"x")  # retained by the server's setting
                assert wait_for("the retried job", lambda: client.result(handle)) == b"done"
            assert runs == [b"x", b"x"]


def test_server_extension_option_errors() -> None:
    with pytest.raises(TypeError, match="retry must be a dict"):
        polygear.Server(retry=[("f", 3)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry values"):
        polygear.Server(retry={"f": "3"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="backoff"):
        polygear.Server(retry={"f": (3, -1)})
    with pytest.raises(ValueError, match="retain seconds"):
        polygear.Server(retain={"f": -5})
    with pytest.raises(ValueError, match="cron expression"):
        polygear.Server(schedules=[("s", "not a cron", "f")])
    with pytest.raises(TypeError, match=r"\(name, cron, function\[, data\]\)"):
        polygear.Server(schedules=[("s", "* * * * *")])  # type: ignore[list-item]
