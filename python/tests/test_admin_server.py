"""polygear.Admin and polygear.Server."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import free_port, running_worker

import polygear


def echo(job: polygear.Job) -> bytes:
    return job.data


def test_admin_status_workers_version(server: str, fname: str) -> None:
    with running_worker(server, {fname: echo}):
        with polygear.Admin(server) as admin:
            deadline = time.monotonic() + 10
            status = [s for s in admin.status() if s.function == fname]
            while (not status or status[0].workers < 1) and time.monotonic() < deadline:
                time.sleep(0.05)
                status = [s for s in admin.status() if s.function == fname]
            assert status and status[0].workers >= 1 and status[0].total == 0
            workers = admin.workers()
            assert any(fname in w.functions for w in workers)
            assert admin.version()
            assert isinstance(admin.show_jobs(), list)
            prio = [p for p in admin.priority_status() if p.function == fname]
            assert prio and (prio[0].high, prio[0].normal, prio[0].low) == (0, 0, 0)
            assert admin.raw("version").strip()


def test_admin_counts_queued_jobs(server: str, fname: str) -> None:
    with polygear.Client([server]) as client, polygear.Admin(server) as admin:
        client.submit_background(fname, b"1", priority="high")
        client.submit_background(fname, b"2")
        client.submit_background(fname, b"3", priority="low")
        (status,) = [s for s in admin.status() if s.function == fname]
        assert (status.total, status.running, status.workers) == (3, 0, 0)
        (prio,) = [p for p in admin.priority_status() if p.function == fname]
        assert (prio.high, prio.normal, prio.low) == (1, 1, 1)
        # drain them so other tests don't see them
        got: list[bytes] = []
        with running_worker(server, {fname: lambda job: got.append(job.data)}):
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert got == [b"1", b"2", b"3"]  # by priority


def test_admin_getpid_on_gearmand(gearmand: str) -> None:
    with polygear.Admin(gearmand) as admin:
        assert admin.getpid() > 0


def test_admin_bad_arguments(rust_server: str) -> None:
    with polygear.Admin(rust_server) as admin:
        with pytest.raises(TypeError, match="limit must be an int"):
            admin.maxqueue("f", "ten")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="handle must be str"):
            admin.cancel_job(5)  # type: ignore[arg-type]


def test_server_context_manager() -> None:
    with polygear.Server() as s:
        assert s.running and s.port > 0
        assert s.address == f"127.0.0.1:{s.port}"
        fname = "srv_reverse"
        with running_worker(s.address, {fname: lambda job: job.data[::-1]}):
            with polygear.Client(s.address, timeout=10) as client:
                assert client.submit(fname, b"abc") == b"cba"
    assert not s.running
    with pytest.raises(polygear.GearmanConnectionError):
        polygear.Client(s.address, timeout=5, connect_timeout=1).submit("f", b"x")


def test_server_start_stop_explicit() -> None:
    s = polygear.Server()
    s.start()
    s.start()  # idempotent
    try:
        with polygear.Client(s.address) as c:
            assert c.echo(b"hi") == b"hi"
    finally:
        s.stop()
        s.stop()


def test_worker_survives_its_server_dying_mid_job() -> None:
    """A job that ends after its server died cannot deliver its result (the
    server hands it out again); the worker goes on with the restarted server."""
    port = free_port()
    started = threading.Event()
    release = threading.Event()

    def slow(job: polygear.Job) -> bytes:
        started.set()
        assert release.wait(10)
        return b"r" + job.data

    s = polygear.Server(port)
    s.start()
    try:
        with running_worker(s.address, {"die_mid_job": slow}, concurrency=2):
            with polygear.Client(s.address, timeout=10) as c:
                c.submit_background("die_mid_job", b"1")
            assert started.wait(10)
            s.stop()
            s = polygear.Server(port)
            s.start()
            release.set()
            with polygear.Client(s.address, timeout=10) as c:
                assert c.submit("die_mid_job", b"2") == b"r2"
    finally:
        s.stop()


def test_build_profile_says_how_the_extension_was_compiled() -> None:
    # scripts/test-python.sh installs a dev build unless POLYGEAR_PY_PROFILE says otherwise;
    # benchmarks refuse anything but "release".
    assert polygear.BUILD_PROFILE in ("release", "debug")
    assert polygear.BUILD_PROFILE == polygear._polygear.BUILD_PROFILE
