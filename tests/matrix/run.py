#!/usr/bin/env python3
"""Driver of the cross-language test matrix (stdlib only; see tests/matrix/README.md).

For each server (polygeard, the C gearmand) it starts one long-running worker
process per language (Rust, Python, Node, Ruby; the C `gearman -w` as one
process per function), runs the coalescing phase with every client language at
once, then one client process per language that checks every worker namespace,
and prints the client x worker matrix. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER_LANGS = ["rs", "py", "node", "rb", "c"]
# "http": polygeard's HTTP front end (--http-port) as a client, driven by this script
# with Python's http.client; a client only, and on polygeard only.
LANGS = [*WORKER_LANGS, "http"]
NAMES = {
    "rs": "Rust",
    "py": "Python",
    "node": "Node",
    "rb": "Ruby",
    "c": "C CLI",
    "http": "HTTP",
}
TEXT = "héllo wörld — 日本語 🎉 ∑ Ω"
CHECKS = ["binary", "big", "unicode", "stream", "exception", "background", "json", "coalesce"]
FUNCS = ["echo", "text", "stream", "raise", "bg", "json", "slow"]
# The value every client sends with the json check; the worker answers
# {"worker": <its lang>, "echo": <the value it decoded>, "map": <it decoded a map>}.
JSON_VALUE: dict[str, Any] = {
    "text": TEXT,
    "n": 42,
    "f": 1.5,
    "neg": -7,
    "list": [1, "two", None, True, False],
    "nested": {"empty": [], "obj": {}},
}
MIB16 = 16 * 1024 * 1024

# Checks a peer cannot take part in, with the reason. Keys: (client, worker, check, server);
# None matches anything.
NA_RULES: list[tuple[str | None, str | None, str, str | None, str]] = [
    (
        "c",
        None,
        "big",
        None,
        (
            "the `gearman` CLI (libgearman 1.1.20) buffers payloads quadratically: 1 MiB takes 0.5 s, "
            "4 MiB 6.4 s, 16 MiB more than 60 s"
        ),
    ),
    (
        None,
        "c",
        "big",
        None,
        (
            "`gearman -w` (libgearman 1.1.20) buffers the command's input/output quadratically: "
            "1 MiB takes 0.35 s, 16 MiB more than 40 s"
        ),
    ),
    (
        None,
        "c",
        "exception",
        None,
        "`gearman -w` cannot raise: a failing command only sends WORK_FAIL",
    ),
    (
        "c",
        None,
        "background",
        None,
        "the `gearman` CLI cannot ask GET_STATUS for a handle (no status command)",
    ),
    (
        "c",
        None,
        "json",
        None,
        "the `gearman` CLI sends bytes; JSON mode is a feature of the Python, Node and Ruby packages",
    ),
    (
        None,
        "c",
        "json",
        None,
        "`gearman -w` runs a shell command; JSON mode is a feature of the Python, Node and Ruby packages",
    ),
    (
        "rs",
        None,
        "json",
        None,
        "the Rust core moves bytes (serde_json is the Rust program's choice); its worker takes part",
    ),
    (
        "c",
        None,
        "exception",
        "gearmand",
        (
            "gearmand 1.1.20 turns WORK_EXCEPTION into WORK_FAIL with a trailing NUL for clients "
            "without the exceptions option (protocol.md 3.10); libgearman does not match that "
            "handle and the `gearman` CLI waits forever"
        ),
    ),
]

NOTES = [
    (
        "C worker stream: `gearman -w -N` sends each output line as WORK_DATA holding all "
        "output so far (libgearman quirk, protocol.md) and no WORK_STATUS; checked as such."
    ),
    "C worker background: no WORK_STATUS, so only queued -> running -> finished is checked.",
    (
        "HTTP client (polygeard only): POST /<worker>.<function> to polygeard's --http-port; "
        "stream checks the chunked body (WORK_DATA chunks, then the WORK_COMPLETE payload; "
        "WORK_STATUS does not reach HTTP), exception the 500 JSON error, background "
        "GET /status/<handle>."
    ),
    (
        "C CLI client exception (polygeard): the CLI never asks for exceptions, so the typed "
        "error is 'Job failed' + exit status 1 (the message cannot reach it)."
    ),
    (
        "C CLI client stream: the CLI prints WORK_DATA raw and WORK_STATUS as 'N% Complete' "
        "lines through separate buffers, so both sequences are checked in order but not "
        "their interleaving."
    ),
]


def na_reason(client: str, worker: str, check: str, server: str) -> str | None:
    for c, w, k, s, reason in NA_RULES:
        if (
            k == check
            and c in (None, client)
            and w in (None, worker)
            and s in (None, server)
        ):
            return reason
    return None


@dataclass
class Outcome:
    status: str  # pass | fail | na
    detail: str = ""


@dataclass
class Run:
    server: str
    results: dict[tuple[str, str, str], Outcome] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(
        self, client: str, worker: str, check: str, status: str, detail: str = ""
    ) -> None:
        with self.lock:
            self.results[(client, worker, check)] = Outcome(status, detail)


def log(msg: str) -> None:
    print(f"[matrix {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}")


def admin(port: int, command: str, timeout: float = 5) -> str:
    """One text admin command; returns the reply up to the closing '.' line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(b".\n") and not buf.startswith(b"ERR"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode("utf-8", "replace")


def status_unique_counts(
    port: int, uniques: list[str], timeout: float = 5
) -> dict[str, int]:
    """GET_STATUS_UNIQUE for each unique over one connection: unique -> attached clients."""
    out: dict[str, int] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        for u in uniques:
            body = u.encode()
            s.sendall(b"\0REQ" + struct.pack(">II", 41, len(body)) + body)
            head = f.read(12)
            if len(head) < 12:
                raise RuntimeError("connection closed")
            _, ptype, size = struct.unpack(">4sII", head)
            fields = f.read(size).split(b"\0")
            if ptype != 42 or len(fields) < 6:
                raise RuntimeError(f"unexpected reply type {ptype}")
            out[u] = int(fields[5] or b"0")
    return out


class Procs:
    """Every process the driver started; all are stopped on exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.lock = threading.Lock()
        self.closed = False

    def spawn(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Popen in a new session, recorded before a SIGTERM/SIGINT can interrupt us."""
        with signals_blocked(), self.lock:
            if self.closed:
                raise RuntimeError("stopping: no new processes")
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw
            )
            self.procs.append((name, p))
        return p

    def start(
        self, name: str, argv: list[str], log_path: str, **kw: Any
    ) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:
            return self.spawn(name, argv, stdout=out, stderr=subprocess.STDOUT, **kw)

    def stop_all(self) -> None:
        with signals_blocked():
            with self.lock:
                self.closed = True
                procs = list(self.procs)
            for _, p in procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 5
            for _, p in procs:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()


class _Signals:
    """SIGTERM/SIGINT raise KeyboardInterrupt, deferred while a process is being recorded."""

    depth = 0
    pending: int | None = None

    @classmethod
    def handler(cls, signum: int, _frame: object) -> None:
        if cls.depth:
            cls.pending = signum
        else:
            raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Defers the KeyboardInterrupt of SIGTERM/SIGINT until the block ends (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers only ever run on the main thread
        return
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
        if not _Signals.depth and _Signals.pending is not None:
            signum, _Signals.pending = _Signals.pending, None
            raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Env:
    polygeard: str
    gearmand: str
    rust_bin: str
    python: str
    node: str
    ruby: str | None
    ruby_reason: str
    node_module: str
    workdir: str


def lang_cmd(env: Env, lang: str) -> list[str]:
    if lang == "rs":
        return [env.rust_bin]
    if lang == "py":
        return [env.python, os.path.join(HERE, "python", "matrix.py")]
    if lang == "node":
        return [env.node, os.path.join(HERE, "node", "matrix.js")]
    if lang == "rb":
        assert env.ruby
        return [env.ruby, os.path.join(HERE, "ruby", "matrix.rb")]
    raise ValueError(lang)


def c_worker_cmds(gate: str) -> dict[str, list[str]]:
    """The C `gearman -w` worker: one shell command per function (run with GATE set)."""
    wait = (
        'i=0; while [ ! -e "$GATE/$t" ]; do i=$((i+1)); [ $i -gt 1500 ] && exit 1; '
        "sleep 0.02; done"
    )
    return {
        "echo": ["cat"],
        "text": ["env", "LC_ALL=C.UTF-8", "rev"],
        "stream": [
            "sh",
            "-c",
            'n=$(cat); i=0; while [ $i -lt "$n" ]; do echo chunk-$i; i=$((i+1)); done',
        ],
        "bg": [
            "sh",
            "-c",
            't=$(cat); case "$t" in ""|*[!A-Za-z0-9_-]*) exit 1;; esac; '
            + wait
            + "; printf bg-done",
        ],
        "slow": [
            "sh",
            "-c",
            "d=$(cat); t=release; "
            + wait
            + '; printf "%s|c-%s-%s" "$d" "$$" "$(date +%s%N)"',
        ],
    }


def start_workers(
    env: Env, procs: Procs, port: int, gate: str, langs: list[str], logdir: str
) -> list[str]:
    """Starts the workers; returns the function names they must register."""
    server = f"127.0.0.1:{port}"
    expected = []
    for lang in langs:
        if lang == "c":
            for fn, cmd in c_worker_cmds(gate).items():
                copies = 2 if fn == "echo" else 1
                flags = ["-N"] if fn == "stream" else []
                for k in range(copies):
                    procs.start(
                        f"c.{fn}#{k}",
                        [
                            "gearman",
                            "-w",
                            *flags,
                            "-h",
                            "127.0.0.1",
                            "-p",
                            str(port),
                            "-f",
                            f"c.{fn}",
                            "--",
                            *cmd,
                        ],
                        os.path.join(logdir, f"worker-c-{fn}-{k}.log"),
                        env={**os.environ, "GATE": gate},
                    )
                expected.append(f"c.{fn}")
        else:
            procs.start(
                f"{lang} worker",
                [*lang_cmd(env, lang), "worker", server, gate, lang],
                os.path.join(logdir, f"worker-{lang}.log"),
                env={**os.environ, "POLYGEAR_NODE": env.node_module},
            )
            expected += [f"{lang}.{f}" for f in FUNCS]
    return expected


def wait_registered(port: int, expected: list[str], timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    missing = expected
    while time.monotonic() < deadline:
        reply = admin(port, "status")
        have = {}
        for line in reply.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[3].isdigit():
                have[parts[0]] = int(parts[3])
        missing = [f for f in expected if have.get(f, 0) < 1]
        if not missing:
            return []
        time.sleep(0.1)
    return missing


def run_client(
    env: Env, lang: str, args: list[str], timeout: float, log_path: str, procs: Procs
) -> tuple[str, str]:
    """Runs one client process to completion; returns (stdout, error text)."""
    with open(log_path, "ab") as err:
        p = procs.spawn(
            f"{lang} client",
            [*lang_cmd(env, lang), "client", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "POLYGEAR_NODE": env.node_module},
        )
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            return out.decode(
                "utf-8", "replace"
            ), f"client timed out after {timeout:.0f}s"
    problem = "" if p.returncode == 0 else f"client exited with {p.returncode}"
    return out.decode("utf-8", "replace"), problem


def tail(path: str, n: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()[-n:]
        return data.decode("utf-8", "replace").replace("\n", " | ")
    except OSError:
        return ""


# ------------------------------------------------------------------ C CLI client


def gearman_cli(
    port: int, args: list[str], stdin: bytes | None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gearman", "-h", "127.0.0.1", "-p", str(port), *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def c_client_checks(run: Run, port: int, workers: list[str]) -> None:
    binary = (
        bytes(range(256))
        + b"\x00\x00mid\x00"
        + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\x00"
    )
    big = (bytes(range(251)) * (MIB16 // 251 + 1))[:MIB16]

    def attempt(w: str, check: str, fn: Callable[[], str | None]) -> None:
        reason = na_reason("c", w, check, run.server)
        if reason:
            run.put("c", w, check, "na", reason)
            return
        try:
            problem = fn()
        except subprocess.TimeoutExpired:
            problem = "gearman CLI timed out"
        except Exception as e:  # noqa: BLE001 - reported as the cell's failure
            problem = f"{type(e).__name__}: {e}"
        run.put("c", w, check, "fail" if problem else "pass", problem or "")

    def echo(w: str, payload: bytes) -> str | None:
        r = gearman_cli(port, ["-f", f"{w}.echo"], payload, 120)
        if r.returncode != 0 or r.stdout != payload:
            return f"rc {r.returncode}, sent {len(payload)} bytes, got {len(r.stdout)}; {r.stderr[-200:]!r}"
        return None

    def unicode(w: str) -> str | None:
        r = gearman_cli(port, ["-f", f"{w}.text"], TEXT.encode(), 30)
        got = r.stdout.decode("utf-8", "replace")
        return (
            None
            if r.returncode == 0 and got == TEXT[::-1]
            else f"rc {r.returncode}, got {got!r}"
        )

    def stream(w: str) -> str | None:
        n = 4
        r = gearman_cli(port, ["-f", f"{w}.stream", str(n)], None, 30)
        out = r.stdout.decode("utf-8", "replace")
        percents = [int(x) for x in re.findall(r"(\d+)% Complete\n", out)]
        data = re.sub(r"\d+% Complete\n", "", out)
        if w == "c":
            want_data = "".join(
                "\n".join(f"chunk-{j}" for j in range(i + 1)) for i in range(n)
            )
            want_pct: list[int] = []
        else:
            want_data = "".join(f"chunk-{i}" for i in range(n)) + "done"
            want_pct = [(i + 1) * 100 // n for i in range(n)]
        if r.returncode != 0 or data != want_data or percents != want_pct:
            return f"rc {r.returncode}, data {data!r}, status {percents}; want {want_data!r}, {want_pct}"
        return None

    def exception(w: str) -> str | None:
        msg = f"matrix boom c->{w}"
        r = gearman_cli(port, ["-f", f"{w}.raise", msg], None, 20)
        if r.returncode == 1 and b"Job failed" in r.stderr:
            return None
        return (
            f"rc {r.returncode}, stdout {r.stdout[:100]!r}, stderr {r.stderr[:200]!r}"
        )

    for w in workers:
        attempt(w, "binary", lambda w=w: echo(w, binary))
        attempt(w, "big", lambda w=w: echo(w, big))
        attempt(w, "unicode", lambda w=w: unicode(w))
        attempt(w, "stream", lambda w=w: stream(w))
        attempt(w, "exception", lambda w=w: exception(w))
        attempt(w, "background", lambda: "no GET_STATUS in the gearman CLI")
        attempt(w, "json", lambda: "no JSON mode in the gearman CLI")


# ------------------------------------------------------------------ HTTP client


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One request to polygeard's HTTP port: (status, lowercased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def http_path(function: str) -> str:
    return "/" + urllib.parse.quote(function)


def http_client_checks(run: Run, http_port: int, gate: str, workers: list[str]) -> None:
    binary = (
        bytes(range(256))
        + b"\x00\x00mid\x00"
        + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\x00"
    )
    big = (bytes(range(251)) * (MIB16 // 251 + 1))[:MIB16]

    def attempt(w: str, check: str, fn: Callable[[], str | None]) -> None:
        reason = na_reason("http", w, check, run.server)
        if reason:
            run.put("http", w, check, "na", reason)
            return
        try:
            problem = fn()
        except Exception as e:  # noqa: BLE001 - reported as the cell's failure
            problem = f"{type(e).__name__}: {e}"
        run.put("http", w, check, "fail" if problem else "pass", problem or "")

    def echo(w: str, payload: bytes) -> str | None:
        st, _, got = http_request(http_port, "POST", http_path(f"{w}.echo"), payload, timeout=120)
        if st != 200 or got != payload:
            return f"HTTP {st}, sent {len(payload)} bytes, got {len(got)}: {got[:200]!r}"
        return None

    def unicode(w: str) -> str | None:
        st, _, got = http_request(http_port, "POST", http_path(f"{w}.text"), TEXT.encode())
        text = got.decode("utf-8", "replace")
        return None if st == 200 and text == TEXT[::-1] else f"HTTP {st}, got {text!r}"

    def stream(w: str) -> str | None:
        n = 4
        st, headers, got = http_request(
            http_port, "POST", http_path(f"{w}.stream"), str(n).encode()
        )
        data = got.decode("utf-8", "replace")
        if w == "c":
            want = "".join("\n".join(f"chunk-{j}" for j in range(i + 1)) for i in range(n))
        else:
            want = "".join(f"chunk-{i}" for i in range(n)) + "done"
        chunked = headers.get("transfer-encoding") == "chunked"
        if st != 200 or data != want or not chunked:
            return f"HTTP {st}, chunked {chunked}, body {data!r}; want {want!r}"
        return None

    def exception(w: str) -> str | None:
        msg = f"matrix boom http->{w} ✗ ünï"
        st, headers, got = http_request(http_port, "POST", http_path(f"{w}.raise"), msg.encode())
        try:
            error = json.loads(got)["error"]
        except (ValueError, KeyError, TypeError):
            return f"HTTP {st}, body not a JSON error: {got[:200]!r}"
        command = headers.get("x-gearman-command")
        if st != 500 or command != "WORK_EXCEPTION" or msg not in error:
            return f"HTTP {st}, {command}, error {error!r} lacks {msg!r}"
        return None

    def background(w: str) -> str | None:
        token = f"bg-http-{w}-{os.getpid()}-{time.time_ns()}"
        st, headers, handle = http_request(
            http_port,
            "POST",
            http_path(f"{w}.bg"),
            token.encode(),
            {"X-Gearman-Background": "true"},
        )
        if st != 200 or headers.get("x-gearman-job-handle", "").encode() != handle:
            return f"HTTP {st}, handle header/body mismatch: {headers} {handle!r}"
        status_path = "/status/" + urllib.parse.quote(handle.decode())

        def status() -> dict[str, Any]:
            st, _, body = http_request(http_port, "GET", status_path)
            if st != 200:
                raise RuntimeError(f"GET {status_path}: HTTP {st} {body[:200]!r}")
            return dict(json.loads(body))

        deadline = time.monotonic() + 20
        while True:
            s = status()
            reported = w == "c" or (s["numerator"], s["denominator"]) == (1, 2)
            if s["known"] and s["running"] and reported:
                break
            if time.monotonic() > deadline:
                return f"never running 1/2: last {s}"
            time.sleep(0.03)
        open(os.path.join(gate, token), "wb").close()
        while status()["known"]:
            if time.monotonic() > deadline:
                return "job never finished"
            time.sleep(0.03)
        return None

    def json_check(w: str) -> str | None:
        body = json.dumps(JSON_VALUE, ensure_ascii=False).encode()
        st, _, got = http_request(http_port, "POST", http_path(f"{w}.json"), body)
        want = {"worker": w, "echo": JSON_VALUE, "map": True}
        try:
            value = json.loads(got)
        except ValueError:
            return f"HTTP {st}, not JSON: {got[:200]!r}"
        return None if st == 200 and value == want else f"HTTP {st}, got {value!r}"

    for w in workers:
        attempt(w, "binary", lambda w=w: echo(w, binary))
        attempt(w, "big", lambda w=w: echo(w, big))
        attempt(w, "unicode", lambda w=w: unicode(w))
        attempt(w, "stream", lambda w=w: stream(w))
        attempt(w, "exception", lambda w=w: exception(w))
        attempt(w, "background", lambda w=w: background(w))
        attempt(w, "json", lambda w=w: json_check(w))


# ------------------------------------------------------------------ phases


def parse_results(
    run: Run, lang: str, out: str, workers: list[str], problem: str, log_path: str
) -> None:
    seen = set()
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] == "R" and parts[1] == lang:
            _, _, w, check, status = parts[:5]
            detail = parts[5] if len(parts) > 5 else ""
            if status in ("pass", "fail"):
                run.put(lang, w, check, status, detail)
                seen.add((w, check))
    for w in workers:
        for check in CHECKS[:-1]:
            if (w, check) in seen:
                continue
            reason = na_reason(lang, w, check, run.server)
            if reason:
                run.put(lang, w, check, "na", reason)
            else:
                run.put(
                    lang,
                    w,
                    check,
                    "fail",
                    f"no result from the {NAMES[lang]} client ({problem or 'missing line'}): {tail(log_path)}",
                )


def coalesce_phase(
    env: Env,
    run: Run,
    procs: Procs,
    port: int,
    http_port: int,
    gate: str,
    clients: list[str],
    workers: list[str],
    logdir: str,
) -> None:
    """Two clients in different languages submit one unique job per cell; it must run once."""
    server = f"127.0.0.1:{port}"
    partner = {c: clients[(i + 1) % len(clients)] for i, c in enumerate(clients)}
    duties: dict[str, list[tuple[str, str]]] = {c: [] for c in clients}
    cells: dict[str, tuple[str, str, str]] = {}
    for c in clients:
        for w in workers:
            u = f"co-{run.server[:2]}-{c}-{w}-{os.getpid()}"
            cells[u] = (c, partner[c], w)
            duties[c].append((u, w))
            duties[partner[c]].append((u, w))
    if len(clients) < 2:
        for u, (c, _, w) in cells.items():
            run.put(c, w, "coalesce", "na", "needs two client languages")
        return
    results: dict[tuple[str, str], tuple[str, str]] = {}
    rlock = threading.Lock()
    threads = []

    def lang_client(lang: str) -> None:
        items = ",".join(f"{u}:{w}" for u, w in duties[lang])
        out, problem = run_client(
            env,
            lang,
            [server, gate, lang, "coal", items],
            90,
            os.path.join(logdir, f"client-{lang}-coal.log"),
            procs,
        )
        with rlock:
            for line in out.splitlines():
                parts = line.split("\t")
                if len(parts) == 5 and parts[0] == "C":
                    results[(parts[1], parts[2])] = (parts[3], parts[4])
            for u, _ in duties[lang]:
                results.setdefault((lang, u), ("err", problem or "no result line"))

    def cli_job(u: str, w: str) -> None:
        try:
            r = gearman_cli(port, ["-f", f"{w}.slow", "-u", u, "coal"], None, 60)
            res = (
                ("ok", r.stdout.hex())
                if r.returncode == 0
                else ("err", f"rc {r.returncode} {r.stderr[:200]!r}")
            )
        except subprocess.TimeoutExpired:
            res = ("err", "gearman CLI timed out")
        with rlock:
            results[("c", u)] = res

    def http_job(u: str, w: str) -> None:
        try:
            st, _, body = http_request(
                http_port, "POST", http_path(f"{w}.slow"), b"coal", {"X-Gearman-Unique": u}
            )
            res = ("ok", body.hex()) if st == 200 else ("err", f"HTTP {st} {body[:200]!r}")
        except OSError as e:
            res = ("err", f"{type(e).__name__}: {e}")
        with rlock:
            results[("http", u)] = res

    for lang in clients:
        if lang == "c":
            for u, w in duties["c"]:
                threads.append(threading.Thread(target=cli_job, args=(u, w)))
        elif lang == "http":
            for u, w in duties["http"]:
                threads.append(threading.Thread(target=http_job, args=(u, w)))
        else:
            threads.append(threading.Thread(target=lang_client, args=(lang,)))
    for t in threads:
        t.start()
    # Release the gated jobs once every unique has both of its clients attached (well
    # before the workers give up waiting for the release file, after 30 s).
    deadline = time.monotonic() + 20
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = status_unique_counts(port, list(cells))
        except (OSError, RuntimeError) as e:
            log(f"GET_STATUS_UNIQUE failed: {e}")
        if counts and all(n >= 2 for n in counts.values()):
            break
        time.sleep(0.1)
    else:
        short = sorted(u for u in cells if counts.get(u, 0) < 2)
        log(
            f"gate: {len(short)} unique job(s) never had two clients attached; releasing anyway"
        )
    open(os.path.join(gate, "release"), "wb").close()
    for t in threads:
        t.join(timeout=120)
    for u, (c, p, w) in cells.items():
        a = results.get((c, u), ("err", "no result"))
        b = results.get((p, u), ("err", "no result"))
        who = f"{NAMES[c]} + {NAMES[p]}"
        if a[0] != "ok" or b[0] != "ok":
            run.put(c, w, "coalesce", "fail", f"{who}: {a} / {b}")
            continue
        ra, rb = bytes.fromhex(a[1]), bytes.fromhex(b[1])
        if ra != rb:
            run.put(
                c, w, "coalesce", "fail", f"{who}: two executions: {ra!r} vs {rb!r}"
            )
        elif not ra.startswith(b"coal|" + w.encode() + b"-"):
            run.put(c, w, "coalesce", "fail", f"{who}: unexpected result {ra!r}")
        else:
            run.put(c, w, "coalesce", "pass", who)


def run_server(env: Env, kind: str, clients: list[str], workers: list[str]) -> Run:
    run = Run(kind)
    procs = Procs()
    logdir = os.path.join(env.workdir, kind)
    gate = os.path.join(logdir, "gate")
    os.makedirs(gate, exist_ok=True)
    port = free_port()
    http_port = free_port()
    try:
        if kind == "polygeard":
            argv = [
                env.polygeard,
                "-p",
                str(port),
                "-L",
                "127.0.0.1",
                "-q",
                "builtin",
                "-l",
                "none",
                "-r",
                "http",
                "--http-port",
                str(http_port),
            ]
        else:
            argv = [
                env.gearmand,
                "-p",
                str(port),
                "-L",
                "127.0.0.1",
                "-l",
                "none",
                "--verbose",
                "ERROR",
                "-t",
                "2",
            ]
        srv = procs.start(kind, argv, os.path.join(logdir, "server.log"))
        wait_port(port, srv)
        log(f"{kind} on 127.0.0.1:{port}; starting workers {', '.join(workers)}")
        expected = start_workers(env, procs, port, gate, workers, logdir)
        missing = wait_registered(port, expected)
        if missing:
            log(f"functions without a worker after 60s: {missing}")
        log(f"{kind}: coalescing phase")
        coalesce_phase(env, run, procs, port, http_port, gate, clients, workers, logdir)
        log(f"{kind}: main phase (clients {', '.join(clients)} in parallel)")
        threads = []
        server = f"127.0.0.1:{port}"

        def lang_main(lang: str) -> None:
            log_path = os.path.join(logdir, f"client-{lang}-main.log")
            out, problem = run_client(
                env,
                lang,
                [server, gate, lang, "main", ",".join(workers)],
                300,
                log_path,
                procs,
            )
            parse_results(run, lang, out, workers, problem, log_path)

        for lang in clients:
            if lang == "c":
                threads.append(
                    threading.Thread(target=c_client_checks, args=(run, port, workers))
                )
            elif lang == "http":
                threads.append(
                    threading.Thread(
                        target=http_client_checks, args=(run, http_port, gate, workers)
                    )
                )
            else:
                threads.append(threading.Thread(target=lang_main, args=(lang,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except Exception as e:  # noqa: BLE001 - the whole server run fails, cells say why
        log(f"{kind}: {type(e).__name__}: {e}")
        for c in clients:
            for w in workers:
                for check in CHECKS:
                    if (c, w, check) not in run.results:
                        run.put(c, w, check, "fail", f"{kind} run aborted: {e}")
    finally:
        procs.stop_all()
    return run


# ------------------------------------------------------------------ report


def print_matrix(
    run: Run, langs: list[str], missing_lang: dict[str, str]
) -> None:
    clients = [c for c in langs if c != "http" or run.server == "polygeard"]
    workers = [w for w in langs if w in WORKER_LANGS]
    width = 22
    print()
    print(
        f"== {run.server}: client (rows) x worker (columns); "
        f"cell = checks passed/run, failed checks named, N/A counted apart =="
    )
    print(
        "client \\ worker".ljust(width)
        + "".join(NAMES[w].ljust(width) for w in workers)
    )
    for c in clients:
        row = NAMES[c].ljust(width)
        for w in workers:
            if c in missing_lang or w in missing_lang:
                row += "SKIP".ljust(width)
                continue
            outs = [run.results.get((c, w, k)) for k in CHECKS]
            passed = sum(1 for o in outs if o and o.status == "pass")
            failed = [
                k for k, o in zip(CHECKS, outs) if o is None or o.status == "fail"
            ]
            na = sum(1 for o in outs if o and o.status == "na")
            cell = (
                f"PASS {passed}/{passed + len(failed)}"
                if not failed
                else "FAIL " + ",".join(f[:4] for f in failed)
            )
            if na:
                cell += f" na{na}"
            row += cell.ljust(width)
        print(row)
    print()
    print(
        f"   per check ({run.server}):  "
        + "  ".join(
            f"{k}: {sum(1 for (c, w, kk), o in run.results.items() if kk == k and o.status == 'pass')}P/"
            f"{sum(1 for (c, w, kk), o in run.results.items() if kk == k and o.status == 'fail')}F/"
            f"{sum(1 for (c, w, kk), o in run.results.items() if kk == k and o.status == 'na')}NA"
            for k in CHECKS
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--polygeard", default=os.path.join(ROOT, "target", "debug", "polygeard")
    )
    ap.add_argument("--gearmand", default="/usr/sbin/gearmand")
    ap.add_argument(
        "--rust-bin", default=os.path.join(ROOT, "target", "debug", "polygear-matrix")
    )
    ap.add_argument("--python", default=os.path.join(ROOT, "target", "envs", "test", "venv", "bin", "python"))
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--node-module", default=os.path.join(ROOT, "node"))
    ap.add_argument("--ruby", default=shutil.which("ruby") or "")
    ap.add_argument("--servers", default="polygeard,gearmand")
    ap.add_argument("--langs", default=",".join(LANGS))
    ap.add_argument("--keep-logs", action="store_true")
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, _Signals.handler)
    signal.signal(signal.SIGINT, _Signals.handler)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="polygear-matrix-")
    missing_lang: dict[str, str] = {}
    langs = [x for x in a.langs.split(",") if x]
    ruby: str | None = a.ruby or None
    ruby_reason = ""
    if "rb" in langs:
        probe = (
            subprocess.run(
                [a.ruby or "ruby", "-e", 'require "polygear"'],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if a.ruby
            else None
        )
        if probe is None or probe.returncode != 0:
            ruby_reason = (
                "ruby gem not installed (`ruby -e 'require \"polygear\"'` failed)"
            )
            missing_lang["rb"] = ruby_reason
            ruby = None
    env = Env(
        a.polygeard,
        a.gearmand,
        a.rust_bin,
        a.python,
        a.node,
        ruby,
        ruby_reason,
        a.node_module,
        workdir,
    )
    active = [x for x in langs if x not in missing_lang]
    runs = []
    for kind in [s for s in a.servers.split(",") if s]:
        t0 = time.monotonic()
        clients = [c for c in active if c != "http" or kind == "polygeard"]
        workers = [w for w in active if w in WORKER_LANGS]
        runs.append(run_server(env, kind, clients, workers))
        log(f"{kind} done in {time.monotonic() - t0:.1f}s")

    passed = failed = na = 0
    for run in runs:
        print_matrix(run, langs, missing_lang)
        for o in run.results.values():
            passed += o.status == "pass"
            failed += o.status == "fail"
            na += o.status == "na"
    print()
    print("N/A (impossible for that peer):")
    seen = set()
    for run in runs:
        for (c, w, k), o in sorted(run.results.items()):
            if o.status == "na" and o.detail not in seen:
                seen.add(o.detail)
                print(f"  - {k}: {o.detail}")
    for lang, reason in missing_lang.items():
        print(f"  - every {NAMES[lang]} cell: {reason}")
    print("Notes:")
    for n in NOTES:
        print(f"  - {n}")
    fails = [
        (run.server, key, o)
        for run in runs
        for key, o in sorted(run.results.items())
        if o.status == "fail"
    ]
    if fails:
        print("Failures:")
        for server, (c, w, k), o in fails:
            print(
                f"  - [{server}] {NAMES[c]} client x {NAMES[w]} worker, {k}: {o.detail}"
            )
    if missing_lang:
        failed_langs = ", ".join(NAMES[x] for x in missing_lang)
        print(f"NOT RUN: {failed_langs} cells ({'; '.join(missing_lang.values())})")
    print(
        f"matrix logs: {workdir}" if (fails or a.keep_logs) else "",
        end="\n" if (fails or a.keep_logs) else "",
    )
    if not fails and not a.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {time.monotonic() - started:.1f}s, {na} N/A")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or missing_lang else 0


if __name__ == "__main__":
    sys.exit(main())
