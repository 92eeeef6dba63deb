"""The Python worker of tests/lifecycle/run.py: worker.py SERVER DIR.

Appends one line per run to DIR/<function>.runs, so the driver counts runs:
- mixed.flaky raises ("flaky failed on run N") until DIR/fixed exists, then
  returns "fixed: <data>";
- mixed.upper upper-cases its data;
- mixed.slow marks DIR/slow.started and polls job.cancelled() until it is true;
- mixed.tick records each firing of a schedule.
Stops on SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time

import polygear

server, out = sys.argv[1], sys.argv[2]


def record(name: str, line: str) -> None:
    with open(os.path.join(out, f"{name}.runs"), "a") as f:
        f.write(line + "\n")


def runs(name: str) -> int:
    try:
        with open(os.path.join(out, f"{name}.runs")) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


w = polygear.Worker([server], concurrency=4, client_id="lifecycle-py")


@w.function("mixed.flaky")
def flaky(job: polygear.Job) -> bytes:
    if os.path.exists(os.path.join(out, "fixed")):
        record("flaky", "ok")
        return b"fixed: " + job.data
    n = runs("flaky") + 1
    record("flaky", "fail")
    raise RuntimeError(f"flaky failed on run {n}")


@w.function("mixed.upper")
def upper(job: polygear.Job) -> bytes:
    record("upper", job.data.decode())
    return job.data.upper()


@w.function("mixed.slow")
def slow(job: polygear.Job) -> bytes:
    open(os.path.join(out, "slow.started"), "w").close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if job.cancelled():
            record("slow", "cancelled")
            return b""
        time.sleep(0.1)
    record("slow", "never cancelled")
    return b"done"


@w.function("mixed.tick")
def tick(job: polygear.Job) -> None:
    record("tick", job.data.decode())


w.work()
