"""Fixtures: a polygear.Server and the C gearmand on free loopback ports, and
helpers that run a polygear worker in a background thread."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest

import polygear

GEARMAND = os.environ.get("GEARMAND", "/usr/sbin/gearmand")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@contextmanager
def gearmand_process() -> Iterator[str]:
    if not os.access(GEARMAND, os.X_OK):
        pytest.skip(f"C gearmand not installed at {GEARMAND} (apt-get install gearman-job-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            GEARMAND,
            "-L",
            "127.0.0.1",
            "-p",
            str(port),
            "-l",
            "stderr",
            "--verbose",
            "ERROR",
            "-P",
            f"/tmp/gearmand-pytest-{port}.pid",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gearmand() -> Iterator[str]:
    """Address of a C gearmand started for this test session."""
    with gearmand_process() as address:
        yield address


@pytest.fixture(scope="session")
def rust_server() -> Iterator[str]:
    """Address of an in-process polygear.Server."""
    with polygear.Server() as server:
        yield server.address


@pytest.fixture(params=["polygear", "gearmand"])
def server(request: pytest.FixtureRequest) -> str:
    """Each test using it runs against both servers."""
    name = "rust_server" if request.param == "polygear" else "gearmand"
    return str(request.getfixturevalue(name))


@pytest.fixture
def fname() -> str:
    """A function name no other test uses."""
    return f"f_{uuid.uuid4().hex[:12]}"


@contextmanager
def running_worker(
    address: str,
    functions: Mapping[str, Callable[[polygear.Job], Any]],
    concurrency: int = 1,
    tls: polygear.TLSSetting = None,
    *,
    json: bool = False,
    on_error: Callable[[polygear.Job, BaseException], object] | None = None,
) -> Iterator[polygear.Worker]:
    """A polygear.Worker serving `functions` in a background thread (all registered
    with `json`)."""
    worker = polygear.Worker([address], concurrency=concurrency, tls=tls, on_error=on_error)
    for name, fn in functions.items():
        if json:
            worker.register(name, fn, json=True)
        else:
            worker.register(name, fn)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "worker did not stop"
        assert not errors, errors


def polygear_cli() -> Path | None:
    """The Rust `polygear` CLI, if built."""
    env = os.environ.get("POLYGEAR_CLI")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        p = target / profile / "polygear"
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def gearman_cli() -> str | None:
    return shutil.which("gearman") or ("/usr/bin/gearman" if os.access("/usr/bin/gearman", os.X_OK) else None)
