"""Ctrl-C (SIGINT) while a worker runs jobs and while a client waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import polygear

WORKER = textwrap.dedent(
    """
    import sys, time, polygear
    worker = polygear.Worker([sys.argv[1]], concurrency=2)

    @worker.function(sys.argv[2])
    def slow(job):
        job.send_data(b"started")
        time.sleep(1.0)
        return b"finished " + job.data

    print("ready", flush=True)
    worker.work()
    print("clean exit", flush=True)
    """
)

CLIENT = textwrap.dedent(
    """
    import sys, polygear
    client = polygear.Client([sys.argv[1]])
    print("ready", flush=True)
    try:
        client.submit(sys.argv[2], b"never answered")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


# Ctrl-C as in a terminal, whatever this process inherited: a shell starts
# background jobs with SIGINT ignored, and Python then installs no handler.
SIGINT_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_AS_IN_A_TERMINAL + script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent,  # import the installed package, not ../polygear
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def test_ctrl_c_worker_finishes_running_jobs(server: str, fname: str) -> None:
    proc = spawn(WORKER, server, fname)
    try:
        with polygear.Client([server], timeout=30) as client:
            jobs = [client.submit_job(fname, b"a"), client.submit_job(fname, b"b")]
            for job in jobs:
                first = job.next_event()
                assert first is not None and first.data == b"started"
            proc.send_signal(signal.SIGINT)  # both jobs are running now
            assert [job.result() for job in jobs] == [b"finished a", b"finished b"]
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        assert b"clean exit" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SIGTERM_WORKER = textwrap.dedent(
    """
    import signal, sys, threading, time, polygear
    worker = polygear.Worker([sys.argv[1]], concurrency=2)

    @worker.function(sys.argv[2])
    def slow(job):
        job.send_data(b"started")
        time.sleep(1.0)
        return b"finished " + job.data

    print("ready", flush=True)
    worker.work()
    restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    print("clean exit, handler restored:", restored, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_worker_finishes_running_jobs(server: str, fname: str) -> None:
    proc = spawn(SIGTERM_WORKER, server, fname)
    try:
        with polygear.Client([server], timeout=30) as client:
            jobs = [client.submit_job(fname, b"a"), client.submit_job(fname, b"b")]
            for job in jobs:
                first = job.next_event()
                assert first is not None and first.data == b"started"
            proc.send_signal(signal.SIGTERM)  # both jobs are running now
            assert [job.result() for job in jobs] == [b"finished a", b"finished b"]
            # stopped: it takes no new job
            with pytest.raises(polygear.GearmanTimeoutError):
                client.submit(fname, b"c", timeout=1.5)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        assert b"clean exit, handler restored: True" in out
        assert b"polygear: SIGTERM, finishing running jobs and taking no new ones" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


ASYNC_SIGTERM_WORKER = textwrap.dedent(
    """
    import asyncio, signal, sys, polygear

    async def main():
        worker = polygear.AsyncWorker([sys.argv[1]])

        @worker.function(sys.argv[2])
        async def slow(job):
            job.send_data(b"started")
            await asyncio.sleep(1.0)
            return b"finished " + job.data

        print("ready", flush=True)
        await worker.work()

    asyncio.run(main())
    restored = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    print("clean exit, handler restored:", restored, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_async_worker_finishes_running_job(rust_server: str, fname: str) -> None:
    proc = spawn(ASYNC_SIGTERM_WORKER, rust_server, fname)
    try:
        with polygear.Client([rust_server], timeout=30) as client:
            job = client.submit_job(fname, b"a")
            first = job.next_event()
            assert first is not None and first.data == b"started"
            proc.send_signal(signal.SIGTERM)
            assert job.result() == b"finished a"
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        assert b"clean exit, handler restored: True" in out
        assert b"polygear: SIGTERM, finishing running jobs" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_handler_only_from_the_main_thread(rust_server: str, fname: str) -> None:
    from conftest import running_worker

    before = signal.getsignal(signal.SIGTERM)
    with (
        running_worker(rust_server, {fname: lambda job: b"ok"}),
        polygear.Client([rust_server], timeout=10) as c,
    ):
        assert c.submit(fname, b"") == b"ok"
        assert signal.getsignal(signal.SIGTERM) is before


STUCK_WORKER = textwrap.dedent(
    """
    import sys, time, polygear
    worker = polygear.Worker([sys.argv[1]])

    @worker.function(sys.argv[2])
    def stuck(job):
        job.send_data(b"started")
        time.sleep(60)
        return b"too late"

    print("ready", flush=True)
    try:
        worker.work()
    except KeyboardInterrupt:
        print("aborted", flush=True)
        sys.exit(4)
    """
)


def test_second_ctrl_c_aborts_the_graceful_wait(server: str, fname: str) -> None:
    proc = spawn(STUCK_WORKER, server, fname)
    try:
        with polygear.Client([server], timeout=30) as client:
            job = client.submit_job(fname, b"")
            first = job.next_event()
            assert first is not None and first.data == b"started"
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            assert proc.poll() is None  # still waiting for the stuck job
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 4, err.decode()
            assert b"aborted" in out
            assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_idle_worker_exits_quickly(server: str, fname: str) -> None:
    proc = spawn(WORKER, server, fname)
    try:
        time.sleep(0.2)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_ctrl_c_interrupts_a_waiting_client(server: str, fname: str) -> None:
    proc = spawn(CLIENT, server, fname)
    try:
        time.sleep(0.3)  # the client now waits for a job no worker will take
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 3
        assert b"interrupted" in out
        assert time.monotonic() - start < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
