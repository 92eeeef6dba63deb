"""Python side of the cross-language test matrix (see tests/matrix/README.md).

matrix.py worker <server> <gate-dir> <lang>
matrix.py client <server> <gate-dir> <lang> main <w1,w2,..>
matrix.py client <server> <gate-dir> <lang> coal <unique:worker,..>
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import polygear

TEXT = "héllo wörld — 日本語 🎉 ∑ Ω"
# The json check's value (the same in every language's script and run.py).
JSON_VALUE = {
    "text": TEXT,
    "n": 42,
    "f": 1.5,
    "neg": -7,
    "list": [1, "two", None, True, False],
    "nested": {"empty": [], "obj": {}},
}
GATE_WAIT = 30.0
JOB_TIMEOUT = 60.0


def wait_file(path: str) -> bool:
    deadline = time.monotonic() + GATE_WAIT
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def is_token(s: str) -> bool:
    return bool(s) and all(c.isascii() and (c.isalnum() or c in "-_") for c in s)


class MatrixError(Exception):
    """The Python exception a worker function raises for the `raise` check."""


def worker(server: str, gate: str, lang: str) -> None:
    w = polygear.Worker([server], concurrency=6, client_id=f"matrix-{lang}")
    counter = itertools.count()

    @w.function(f"{lang}.echo")
    def echo(job: polygear.Job) -> bytes:
        return job.data

    @w.function(f"{lang}.text")
    def text(job: polygear.Job) -> str:
        return job.data.decode("utf-8")[::-1]

    @w.function(f"{lang}.stream")
    def stream(job: polygear.Job) -> bytes:
        n = int(job.data)
        for i in range(n):
            job.send_data(f"chunk-{i}")
            job.send_status(i + 1, n)
        return b"done"

    @w.function(f"{lang}.raise")
    def raise_(job: polygear.Job) -> bytes:
        raise MatrixError(job.data.decode("utf-8"))

    @w.function(f"{lang}.bg")
    def bg(job: polygear.Job) -> bytes:
        token = job.data.decode("ascii")
        job.send_status(1, 2)
        if not is_token(token) or not wait_file(os.path.join(gate, token)):
            raise MatrixError(f"gate file {token!r} never appeared")
        return b"bg-done"

    @w.function(f"{lang}.json", json=True)
    def json_fn(value: object) -> object:
        return {"worker": lang, "echo": value, "map": isinstance(value, dict)}

    @w.function(f"{lang}.slow")
    def slow(job: polygear.Job) -> bytes:
        if not wait_file(os.path.join(gate, "release")):
            raise MatrixError("release file never appeared")
        nonce = f"|{lang}-{os.getpid()}-{next(counter)}-{time.time_ns()}"
        return job.data + nonce.encode()

    signal.signal(signal.SIGTERM, lambda *_: w.stop())
    w.work()


def binary_payload() -> bytes:
    return (
        bytes(range(256))
        + b"\x00\x00mid\x00"
        + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1"
        + b"\x00"
    )


def big_payload() -> bytes:
    n = 16 * 1024 * 1024
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def report(client: str, worker: str, check: str, fn: Callable[[], None]) -> None:
    try:
        fn()
        status, detail = "pass", ""
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        status, detail = "fail", f"{type(e).__name__}: {e}"
    detail = detail.replace("\t", " ").replace("\n", " ")[:300]
    print(f"R\t{client}\t{worker}\t{check}\t{status}\t{detail}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def client_main(c: polygear.Client, lang: str, gate: str, workers: list[str]) -> None:
    def echo(w: str, payload: bytes) -> None:
        got = c.submit(f"{w}.echo", payload)
        if got != payload:
            at = next((i for i, (a, b) in enumerate(zip(got, payload)) if a != b), None)
            raise AssertionError(
                f"sent {len(payload)} bytes, got {len(got)} (first diff at {at})"
            )

    def unicode(w: str) -> None:
        got = c.submit(f"{w}.text", TEXT).decode("utf-8")
        check(got == TEXT[::-1], f"got {got!r}, want {TEXT[::-1]!r}")

    def stream(w: str) -> None:
        n = 4
        events = []
        for ev in c.submit_job(f"{w}.stream", str(n)):
            if ev.kind == "status":
                events.append(("status", ev.numerator, ev.denominator))
            else:
                events.append((ev.kind, ev.data))
            if ev.is_final:
                break
        want: list[tuple[object, ...]] = []
        for i in range(n):
            if w == "c":
                # gearman -w -N: each line as WORK_DATA holding all output so far (documented
                # libgearman quirk); it cannot send WORK_STATUS.
                want.append(
                    ("data", "\n".join(f"chunk-{j}" for j in range(i + 1)).encode())
                )
            else:
                want.append(("data", f"chunk-{i}".encode()))
                want.append(("status", i + 1, n))
        if w != "c":
            want.append(("complete", b"done"))
            check(events == want, f"events {events}, want {want}")
        else:
            check(
                events[:-1] == want and events[-1][0] == "complete",
                f"events {events}, want {want}",
            )

    def exception(w: str) -> None:
        msg = f"matrix boom {lang}->{w} ✗ ünï"
        try:
            got = c.submit(f"{w}.raise", msg)
        except polygear.JobException as e:
            check(msg in e.message, f"JobException.message {e.message!r} lacks {msg!r}")
            return
        raise AssertionError(f"no error, result {got!r}")

    def background(w: str) -> None:
        token = f"bg-{lang}-{w}-{os.getpid()}-{time.time_ns()}"
        handle = c.submit_background(f"{w}.bg", token)
        deadline = time.monotonic() + 20
        while True:
            st = c.status(handle)
            reported = w == "c" or (st.numerator, st.denominator) == (1, 2)
            if st.known and st.running and reported:
                break
            check(
                time.monotonic() < deadline,
                f"never running 1/2: last {st.known} {st.running} {st.numerator}/{st.denominator}",
            )
            time.sleep(0.03)
        open(os.path.join(gate, token), "wb").close()
        while c.status(handle).known:
            check(time.monotonic() < deadline, "job never finished")
            time.sleep(0.03)

    def json_check(w: str) -> None:
        got = c.submit_json(f"{w}.json", JSON_VALUE)
        want = {"worker": w, "echo": JSON_VALUE, "map": True}
        check(got == want, f"got {got!r}, want {want!r}")

    binary, big = binary_payload(), big_payload()
    for w in workers:
        report(lang, w, "binary", lambda w=w: echo(w, binary))
        if w != "c":  # `gearman -w` cannot take 16 MiB in reasonable time (see run.py)
            report(lang, w, "big", lambda w=w: echo(w, big))
        report(lang, w, "unicode", lambda w=w: unicode(w))
        report(lang, w, "stream", lambda w=w: stream(w))
        if w != "c":
            report(lang, w, "exception", lambda w=w: exception(w))
        report(lang, w, "background", lambda w=w: background(w))
        if w != "c":
            report(lang, w, "json", lambda w=w: json_check(w))


def client_coal(c: polygear.Client, lang: str, items: list[str]) -> None:
    lock = threading.Lock()

    def one(unique: str, w: str) -> None:
        try:
            line = f"C\t{lang}\t{unique}\tok\t{c.submit(f'{w}.slow', 'coal', unique=unique).hex()}"
        except Exception as e:  # noqa: BLE001
            line = f"C\t{lang}\t{unique}\terr\t{type(e).__name__}: {e}".replace(
                "\n", " "
            )
        with lock:
            print(line, flush=True)

    threads = [threading.Thread(target=one, args=item.split(":", 1)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "worker":
        worker(argv[2], argv[3], argv[4])
        return 0
    if len(argv) == 7 and argv[1] == "client":
        _, _, server, gate, lang, mode, items = argv
        with polygear.Client(
            [server], timeout=JOB_TIMEOUT, client_id=f"matrix-client-{lang}"
        ) as c:
            parts = [x for x in items.split(",") if x]
            if mode == "main":
                client_main(c, lang, gate, parts)
            else:
                client_coal(c, lang, parts)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
