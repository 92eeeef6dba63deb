"""Python side of the cross-language failure table (see tests/failures/run.py).

failures.py worker <server>        serves py.* until SIGTERM
failures.py client <config-json>   runs every scenario, one JSON line each
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import polygear

LANG = "py"
# Timeouts in the language's unit: seconds.
SHORT = 0.3


def worker(server: str) -> None:
    w = polygear.Worker([server], concurrency=4, client_id="failures-py")

    @w.function(f"{LANG}.sleep")
    def sleep(job: polygear.Job) -> bytes:
        time.sleep(float(job.data))
        return b"slept"

    @w.function(f"{LANG}.raise")
    def raise_(job: polygear.Job) -> bytes:
        raise RuntimeError(f"boom from {LANG}")

    @w.function(f"{LANG}.badresult")
    def badresult(job: polygear.Job) -> object:
        return {"w": 1}

    @w.function(f"{LANG}.timeout", timeout=1)
    def timeout(job: polygear.Job) -> bytes:
        time.sleep(3)
        return b"too late"

    w.work()  # SIGTERM stops it gracefully


def category(exc: BaseException) -> str:
    """The row of the shared error table `exc` belongs to."""
    order: list[tuple[type[BaseException], str]] = [
        (polygear.JobException, "jobexception"),
        (polygear.JobFailed, "jobfailed"),
        (polygear.GearmanConnectionError, "connection"),
        (polygear.GearmanTimeoutError, "timeout"),
        (polygear.ProtocolError, "protocol"),
        (polygear.ServerError, "server"),
        (polygear.ClosedError, "closed"),
        (ValueError, "invalid"),  # InvalidArgumentError is a ValueError
        (TypeError, "type"),
    ]
    for cls, name in order:
        if isinstance(exc, cls):
            return name
    return "other"


def run(scenario: str, fn: Callable[[], object]) -> None:
    row: dict[str, str | None] = {"scenario": scenario}
    try:
        fn()
    except Exception as exc:  # every failure is the result
        row.update(
            category=category(exc),
            **{"class": type(exc).__name__},
            code=getattr(exc, "code", None) or None,
            message=str(exc),
        )
    else:
        row.update(category="none", **{"class": "-"}, code=None, message="no error raised")
    print(json.dumps(row), flush=True)


def client(config: dict[str, object]) -> None:
    server, http, dead = str(config["server"]), str(config["http"]), str(config["dead"])
    c = polygear.Client([server])

    def fail_fast_worker() -> None:
        w = polygear.Worker([dead], fail_fast=True)
        w.register("x", lambda job: b"")
        w.work()

    def busy_port() -> None:
        polygear.Server(port=int(str(config["busy_port"])))

    def bad_port() -> None:
        polygear.Server(port=99999)

    run("connect_refused", lambda: polygear.Client([dead]).submit("x", b""))
    run("host_not_found", lambda: polygear.Client(["nosuch.invalid:4730"]).submit("x", b""))
    run("not_gearman", lambda: polygear.Client([http]).submit("x", b""))
    run("worker_fail_fast", fail_fast_worker)
    run("empty_function", lambda: c.submit("", b"x"))
    run("zero_timeout", lambda: c.submit(f"{LANG}.sleep", b"0", timeout=0))
    run("no_worker", lambda: c.submit(f"{LANG}.nobody", b"", timeout=SHORT))
    run("slow_job", lambda: c.submit(f"{LANG}.sleep", b"1", timeout=SHORT))
    run("job_exception", lambda: c.submit(f"{LANG}.raise", b""))
    run("bad_result", lambda: c.submit(f"{LANG}.badresult", b""))
    run("worker_timeout", lambda: c.submit(f"{LANG}.timeout", b""))
    run("busy_port", busy_port)
    run("bad_port", bad_port)


def main() -> None:
    if sys.argv[1] == "worker":
        worker(sys.argv[2])
    else:
        client(json.loads(sys.argv[2]))


if __name__ == "__main__":
    main()
