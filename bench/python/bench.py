#!/usr/bin/env python3
"""Python client + Python worker throughput: polygear vs pygearman 0.2.6.

Same gearmand, same run, 16-byte jobs. Each pair is one client (this process)
and one worker (a child process). Scenarios:

  serial  one job at a time (submit, wait for the result, repeat)
  batch   many jobs in flight: polygear submit_many + Worker(concurrency=8);
          pygearman submit_multiple_jobs (its worker runs one job at a time)

The raw Rust pair (target/release/loadgen pair, polygear Client + Worker) is
the reference when it is built; `loadgen floor` (a hand-written blocking pair,
no library) shows the most any one-at-a-time pair can reach on this server. Prints a table and the ratios.

Usage: python bench/python/bench.py [--n 5000] [--batch 20000] [--gearmand PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PAYLOAD = b"0123456789abcdef"  # 16 bytes

POLYGEAR_WORKER = textwrap.dedent(
    """
    import sys, polygear
    worker = polygear.Worker([sys.argv[1]], concurrency=int(sys.argv[3]))
    worker.register(sys.argv[2], lambda job: job.data)
    print("ready", flush=True)
    worker.work()
    """
)

PYGEARMAN_WORKER = textwrap.dedent(
    """
    import sys, gearman
    worker = gearman.GearmanWorker([sys.argv[1]])
    worker.register_task(sys.argv[2].encode(), lambda worker, job: job.data)
    print("ready", flush=True)
    worker.work()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


class Child:
    """A worker process that prints `ready` once registered."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("worker failed to start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def timed(n: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def polygear_serial(addr: str, n: int) -> float:
    import polygear

    w = Child(POLYGEAR_WORKER, addr, "pg_serial", "1")
    try:
        client = polygear.Client([addr], timeout=60)
        for _ in range(200):  # warm-up
            client.submit("pg_serial", PAYLOAD)

        def run() -> None:
            submit = client.submit
            for _ in range(n):
                if submit("pg_serial", PAYLOAD) != PAYLOAD:
                    raise RuntimeError("wrong result")

        return timed(n, run)
    finally:
        w.stop()


def polygear_batch(addr: str, n: int) -> float:
    import polygear

    w = Child(POLYGEAR_WORKER, addr, "pg_batch", "8")
    try:
        client = polygear.Client([addr], timeout=120)
        client.submit_many("pg_batch", [PAYLOAD] * 200)

        def run() -> None:
            out = client.submit_many("pg_batch", [PAYLOAD] * n)
            if len(out) != n or out[-1] != PAYLOAD:
                raise RuntimeError("wrong result")

        return timed(n, run)
    finally:
        w.stop()


def pygearman_serial(addr: str, n: int) -> float:
    import gearman

    w = Child(PYGEARMAN_WORKER, addr, "py_serial")
    try:
        client = gearman.GearmanClient([addr])
        for _ in range(200):
            client.submit_job(b"py_serial", PAYLOAD, poll_timeout=60)

        def run() -> None:
            for _ in range(n):
                req = client.submit_job(b"py_serial", PAYLOAD, poll_timeout=60)
                if req.result != PAYLOAD:
                    raise RuntimeError("wrong result")

        return timed(n, run)
    finally:
        w.stop()


def pygearman_batch(addr: str, n: int) -> float:
    import gearman

    w = Child(PYGEARMAN_WORKER, addr, "py_batch")
    try:
        client = gearman.GearmanClient([addr])
        jobs = [{"task": b"py_batch", "data": PAYLOAD} for _ in range(n)]

        def run() -> None:
            reqs = client.submit_multiple_jobs(jobs, wait_until_complete=True, poll_timeout=300)
            if len(reqs) != n or reqs[-1].result != PAYLOAD:
                raise RuntimeError("wrong result")

        return timed(n, run)
    finally:
        w.stop()


def rust_pair(addr: str, n: int, window: int, scenario: str = "pair") -> float | None:
    loadgen = TARGET / "release" / "loadgen"
    if not loadgen.is_file():
        return None
    out = subprocess.run(
        [str(loadgen), scenario, "--addr", addr, "--window", str(window), "--n", str(n), "--size", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    rate = [f for f in out.split() if f.startswith("rate=")]
    return float(rate[0].split("=", 1)[1]) if rate else None


def refuse_debug_builds(polygeard: bool) -> None:
    """Measuring a debug build says nothing: exit unless polygear (and polygeard) are release builds."""
    import polygear

    if polygear.BUILD_PROFILE != "release":
        sys.exit(f"bench: polygear in {sys.executable} is a {polygear.BUILD_PROFILE} build; "
                 "run bench/python/run.sh (it installs a release build into target/envs/bench)")
    if polygeard:
        server = TARGET / "release" / "polygeard"
        version = subprocess.run([str(server), "--version"], capture_output=True, text=True).stdout
        if "(release build)" not in version:
            sys.exit(f"bench: {server} is not a release build ({version.strip()!r})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000, help="jobs in the one-at-a-time runs")
    ap.add_argument("--batch", type=int, default=20000, help="jobs in the batch runs")
    ap.add_argument("--gearmand", default=shutil.which("gearmand") or "/usr/sbin/gearmand")
    ap.add_argument(
        "--server",
        choices=["gearmand", "polygeard"],
        default="gearmand",
        help="the server every pair runs against (polygeard: target/release, memory queue)",
    )
    args = ap.parse_args()
    refuse_debug_builds(args.server == "polygeard")

    port = free_port()
    if args.server == "polygeard":
        cmd = [str(TARGET / "release" / "polygeard"), "-L", "127.0.0.1", "-p", str(port), "-q", "builtin", "-l", "none"]
    else:
        cmd = [args.gearmand, "-L", "127.0.0.1", "-p", str(port), "-l", "stderr", "--verbose", "ERROR",
               "-P", f"/tmp/gearmand-bench-{port}.pid"]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    addr = f"127.0.0.1:{port}"
    try:
        wait_port(port)
        r: dict[str, float | None] = {}
        r["pygearman serial"] = pygearman_serial(addr, args.n)
        r["polygear serial"] = polygear_serial(addr, args.n)
        r["rust pair serial"] = rust_pair(addr, args.n, 1)
        r["floor: blocking raw pair"] = rust_pair(addr, args.n, 1, "floor")
        r["pygearman batch"] = pygearman_batch(addr, args.batch)
        r["polygear batch (concurrency=8)"] = polygear_batch(addr, args.batch)
        r["rust pair window=8"] = rust_pair(addr, args.batch, 8)
    finally:
        server.kill()
        server.wait()

    print(f"\nPython client + worker on {args.server} {addr}, 16-byte jobs")
    print(f"{'scenario':34} {'jobs/s':>10}")
    for name, rate in r.items():
        print(f"{name:34} {rate:>10.0f}" if rate else f"{name:34} {'(not built)':>10}")

    def ratio(a: str, b: str) -> str:
        x, y = r.get(a), r.get(b)
        return f"{x / y:.2f}x" if x and y else "n/a"

    print()
    print(f"polygear serial / pygearman serial : {ratio('polygear serial', 'pygearman serial')}  (target >= 3x)")
    print(f"rust pair serial / polygear serial : {ratio('rust pair serial', 'polygear serial')}  (target <= 1.3x)")
    print(
        f"floor / pygearman serial           : {ratio('floor: blocking raw pair', 'pygearman serial')}"
        "  (the most any pair can reach here)"
    )
    print(
        f"polygear batch / pygearman serial  : {ratio('polygear batch (concurrency=8)', 'pygearman serial')}"
        "  (target >= 10x)"
    )
    print(f"polygear batch / pygearman batch   : {ratio('polygear batch (concurrency=8)', 'pygearman batch')}")


if __name__ == "__main__":
    main()
