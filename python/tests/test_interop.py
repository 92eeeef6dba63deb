"""A Python worker serving the C `gearman` client, and a Python client with a
Rust (`polygear -w`) worker."""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import gearman_cli, polygear_cli, running_worker

import polygear


def upper(job: polygear.Job) -> bytes:
    return job.data.upper()


def test_c_gearman_client_with_python_worker(server: str, fname: str) -> None:
    cli = gearman_cli()
    if cli is None:
        pytest.skip("the C `gearman` client is not installed (apt-get install gearman-tools)")
    host, port = server.rsplit(":", 1)
    with running_worker(server, {fname: upper}):
        out = subprocess.run(
            [cli, "-h", host, "-p", port, "-f", fname, "hello from c"],
            capture_output=True,
            timeout=30,
            check=True,
        )
    assert out.stdout.strip() == b"HELLO FROM C"


def test_c_gearman_background_job_with_python_worker(server: str, fname: str) -> None:
    cli = gearman_cli()
    if cli is None:
        pytest.skip("the C `gearman` client is not installed (apt-get install gearman-tools)")
    host, port = server.rsplit(":", 1)
    got: list[bytes] = []

    def record(job: polygear.Job) -> None:
        got.append(job.data)

    with running_worker(server, {fname: record}):
        subprocess.run([cli, "-h", host, "-p", port, "-b", "-f", fname, "bg-data"], timeout=30, check=True)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    assert got == [b"bg-data"]


def test_python_client_with_rust_worker(server: str, fname: str) -> None:
    cli = polygear_cli()
    if cli is None:
        pytest.skip("the Rust CLI target/debug/polygear is not built (cargo build -p polygear-cli)")
    host, port = server.rsplit(":", 1)
    proc = subprocess.Popen(
        [str(cli), "-h", host, "-p", port, "-w", "-f", fname, "--", "rev"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with polygear.Client([server], timeout=30) as client:
            assert client.submit(fname, b"hello\n") == b"olleh\n"
            assert client.submit_many(fname, [b"ab\n", b"xyz\n"]) == [b"ba\n", b"zyx\n"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
