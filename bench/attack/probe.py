#!/usr/bin/env python3
"""Attack probe: how polygeard and gearmand cope with hostile or careless peers.

Usage:
  python3 bench/attack/probe.py --polygeard PATH [--gearmand PATH] [--only NAME[,NAME]]
                                [--scale small|full] [--json FILE] [--timeout S]

Every attack gets a fresh server on a free loopback port (polygeard with
`-q builtin`, gearmand with its default memory queue, `-t 1` and `-t 2`). A
bystander process keeps an ECHO_REQ going every 50 ms on a connection opened
before the attack, and a foreground job through its own worker every 50 ms;
both are open-loop (sent on schedule whether or not the previous one was
answered), so a stall shows up in every request it delays. For each attack and
server the probe reports the bystander's ECHO latency during the attack and
in the 2 s after it, the job latency, the server's peak RSS, the CPU seconds
it used from the attack's start to the end of those 2 s (/proc/PID/stat),
whether it still answers a fresh connection, and what the attacker saw.

Standard library only; raw sockets. Run with --list for the attack names.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REQ = b"\0REQ"
CAN_DO, PRE_SLEEP, NOOP, SUBMIT_JOB, JOB_CREATED, GRAB_JOB, NO_JOB, JOB_ASSIGN = 1, 4, 6, 7, 8, 9, 10, 11
WORK_COMPLETE, WORK_FAIL, ECHO_REQ, ECHO_RES, SUBMIT_JOB_BG, ERROR = 13, 14, 16, 17, 18, 19
PING_INTERVAL = 0.05
AFTER_WINDOW = 2.0
BYSTANDER_FN = b"probe_bystander"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT"}


def pkt(kind: int, payload: bytes = b"") -> bytes:
    return REQ + struct.pack(">II", kind, len(payload)) + payload


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class Conn:
    """A raw Gearman connection with a receive buffer (binary packets and admin lines)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data: bytes, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(type(e).__name__) from e

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError as e:
            raise Closed("reset") from e
        if not data:
            raise Closed("EOF")
        self.buf += data

    def packet(self, timeout: float) -> tuple[int, bytes]:
        """The next binary packet: (type, payload)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 12:
            self._fill(deadline)
        kind, size = struct.unpack(">II", self.buf[4:12])
        while len(self.buf) < 12 + size:
            self._fill(deadline)
        payload = bytes(self.buf[12 : 12 + size])
        del self.buf[: 12 + size]
        return kind, payload

    def line(self, timeout: float) -> bytes:
        """The next admin reply line, without its line end."""
        deadline = time.monotonic() + timeout
        while (i := self.buf.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self.buf[:i]).rstrip(b"\r")
        del self.buf[: i + 1]
        return line

    def listing(self, timeout: float) -> int:
        """Reads an admin listing up to its `.` line; returns its size in bytes."""
        deadline = time.monotonic() + timeout
        n = 0
        while (line := self.line(deadline - time.monotonic())) != b".":
            n += len(line) + 1
        return n

    def echo(self, timeout: float, data: bytes = b"sync") -> float:
        """Sends ECHO_REQ and waits for its ECHO_RES (other packets are skipped); returns seconds."""
        t = time.monotonic()
        self.send(pkt(ECHO_REQ, data), timeout)
        while True:
            kind, payload = self.packet(t + timeout - time.monotonic())
            if kind == ECHO_RES and payload == data:
                return time.monotonic() - t
            if kind == ERROR:
                raise RuntimeError(f"ERROR {describe_error(payload)}")

    def tcp_state(self) -> str:
        try:
            state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            return "gone"
        return TCP_STATES.get(state, str(state))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def describe_error(payload: bytes) -> str:
    code, _, text = payload.partition(b"\0")
    return f"{code.decode(errors='replace')} {text[:80].decode(errors='replace')}".strip()


def outcome(conn: Conn, timeout: float) -> str:
    """What the peer sees next: a packet, a close, or nothing."""
    try:
        kind, payload = conn.packet(timeout)
    except Closed:
        return "closed by the server"
    except TimeoutError:
        return f"no reply in {timeout:g} s"
    if kind == ERROR:
        return f"ERROR {describe_error(payload)}"
    names = {ECHO_RES: "ECHO_RES", JOB_CREATED: "JOB_CREATED", NOOP: "NOOP", NO_JOB: "NO_JOB"}
    return names.get(kind, f"packet type {kind}")


# ---------------------------------------------------------------------------
# Servers


LIVE: set[subprocess.Popen] = set()


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, **kw)
    LIVE.add(p)
    return p


def reap(p: subprocess.Popen | None) -> None:
    if p is None:
        return
    if p.poll() is None:
        p.kill()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    LIVE.discard(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class ServerSpec:
    kind: str  # "polygeard" or "gearmand"
    path: str
    threads: int = 0
    args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        if self.kind == "gearmand":
            return f"gearmand -t {self.threads}"
        return " ".join(("polygeard", *self.args))


class Server:
    """One server process on a free loopback port, with an RSS/CPU sampler."""

    def __init__(self, spec: ServerSpec, rss_limit_mb: int):
        self.spec = spec
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="pgattack-")
        self.log = open(f"{self.tmp}/stderr", "wb")
        if spec.kind == "gearmand":
            cmd = [spec.path, "-L", HOST, "-p", str(self.port), "-t", str(spec.threads), "-l", "none"]
        else:
            cmd = [spec.path, "-L", HOST, "-p", str(self.port), "-q", "builtin", "-l", "none", *spec.args]
        self.proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.rss_limit_kib = rss_limit_mb * 1024
        self.max_rss_kib = 0
        self.hwm_kib = 0
        self.cpu = 0.0
        self.killed_for_rss: int | None = None
        self._stop = threading.Event()
        deadline = time.monotonic() + 15
        while True:
            try:
                Conn(self.port, timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{spec.name} did not start") from None
                time.sleep(0.02)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.poll()
            if self.rss_limit_kib and self.max_rss_kib > self.rss_limit_kib and self.proc.poll() is None:
                self.killed_for_rss = self.max_rss_kib // 1024
                self.proc.kill()

    def poll(self) -> None:
        """Reads VmRSS / VmHWM and CPU seconds while the process exists."""
        pid = self.proc.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.max_rss_kib = max(self.max_rss_kib, int(line.split()[1]))
            elif line.startswith("VmHWM:"):
                self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
        fields = stat.rsplit(")", 1)[1].split()
        self.cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def exit_desc(self) -> str:
        rc = self.proc.returncode
        if self.killed_for_rss is not None:
            return f"killed by the probe at {self.killed_for_rss} MB RSS"
        if rc is not None and rc < 0:
            return signal.Signals(-rc).name
        if "Begin stack trace" in self.stderr_tail():
            # gearmand's SIGSEGV handler prints a stack trace and exits 1
            return f"crashed: fault handler printed a stack trace, exit {rc}"
        return f"exit {rc}"

    def stop(self) -> None:
        self._stop.set()
        reap(self.proc)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stderr_tail(self) -> str:
        try:
            return Path(f"{self.tmp}/stderr").read_bytes()[-2000:].decode(errors="replace")
        except OSError:
            return ""


def answers(port: int, timeout: float = 5.0) -> bool:
    try:
        c = Conn(port, timeout=timeout)
        try:
            c.echo(timeout)
            return True
        finally:
            c.close()
    except (OSError, Closed, RuntimeError):
        return False


# ---------------------------------------------------------------------------
# Bystander (a separate process, so the attacker's Python work cannot delay it)


def bystander_main(port: int) -> int:
    """ECHO every 50 ms on one connection, a foreground job every 50 ms through
    a worker of our own; prints `ready`, runs until stdin closes, then prints
    the samples as JSON."""
    stop = threading.Event()
    conns = {name: Conn(port) for name in ("echo", "client", "worker")}
    for c in conns.values():
        c.sock.settimeout(0.2)
    sent: dict[str, dict[int, float]] = {"echo": {}, "job": {}}
    got: dict[str, dict[int, float]] = {"echo": {}, "job": {}}
    closed: dict[str, float] = {}

    def read_loop(name: str, on_packet: Callable[[int, bytes], None]) -> None:
        c = conns[name]
        while not stop.is_set():
            try:
                kind, payload = c.packet(0.2)
            except TimeoutError:
                continue
            except (Closed, OSError):
                closed.setdefault(name, time.monotonic())
                return
            on_packet(kind, payload)

    def on_echo(kind: int, payload: bytes) -> None:
        if kind == ECHO_RES:
            got["echo"][int(payload)] = time.monotonic()

    def on_client(kind: int, payload: bytes) -> None:
        if kind == WORK_COMPLETE:
            got["job"][int(payload.split(b"\0", 1)[1])] = time.monotonic()

    def on_worker(kind: int, payload: bytes) -> None:
        c = conns["worker"]
        try:
            if kind == NO_JOB:
                c.send(pkt(PRE_SLEEP), 1.0)
            elif kind == NOOP:
                c.send(pkt(GRAB_JOB), 1.0)
            elif kind == JOB_ASSIGN:
                handle, _fn, data = payload.split(b"\0", 2)
                c.send(pkt(WORK_COMPLETE, handle + b"\0" + data) + pkt(GRAB_JOB), 1.0)
        except (Closed, OSError):
            closed.setdefault("worker", time.monotonic())

    def send_loop(name: str, conn: str, make: Callable[[bytes], bytes]) -> None:
        c = conns[conn]
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            delay = t0 + k * PING_INTERVAL - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            sent[name][k] = time.monotonic()
            try:
                c.send(make(b"%d" % k), 1.0)
            except (Closed, OSError):
                closed.setdefault(conn, time.monotonic())
                return
            k += 1

    conns["worker"].send(pkt(CAN_DO, BYSTANDER_FN) + pkt(GRAB_JOB), 5.0)
    threads = [
        threading.Thread(target=read_loop, args=("echo", on_echo)),
        threading.Thread(target=read_loop, args=("client", on_client)),
        threading.Thread(target=read_loop, args=("worker", on_worker)),
        threading.Thread(target=send_loop, args=("echo", "echo", lambda d: pkt(ECHO_REQ, d))),
        threading.Thread(
            target=send_loop,
            args=("job", "client", lambda d: pkt(SUBMIT_JOB, BYSTANDER_FN + b"\0\0" + d)),
        ),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    deadline = time.monotonic() + 10
    while not (got["echo"] and got["job"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready" if got["echo"] and got["job"] else "not ready", flush=True)
    sys.stdin.read()  # until the probe closes our stdin
    t_stop = time.monotonic()
    stop.set()
    for t in threads:
        t.join(1.0)
    out = {
        "t_stop": t_stop,
        "closed": closed,
        **{k: [[t, got[k].get(seq)] for seq, t in sorted(sent[k].items())] for k in ("echo", "job")},
    }
    print(json.dumps(out), flush=True)
    return 0


class Bystander:
    def __init__(self, port: int):
        self.proc = spawn(
            [sys.executable, __file__, "--bystander", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            reap(self.proc)
            raise RuntimeError(f"bystander did not start ({line!r})")

    def finish(self) -> dict:
        try:
            out, _ = self.proc.communicate(input="", timeout=10)
            return json.loads(out)
        except (subprocess.TimeoutExpired, json.JSONDecodeError, ValueError):
            return {}
        finally:
            reap(self.proc)


@dataclass
class Window:
    """Latency of the bystander requests in a time window, in ms."""

    n: int = 0
    max: float | None = None
    p99: float | None = None
    censored: bool = False  # the max is a lower bound: still unanswered at the end
    lost: int = 0  # requests whose connection died before an answer

    def cell(self) -> str:
        if self.lost:
            return f"lost ({self.lost})"
        if self.n == 0:
            return "-"
        ge = "≥" if self.censored else ""
        return f"{ge}{fmt_ms(self.max)} / {fmt_ms(self.p99)}"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def window(samples: list, t_stop: float, dead: float | None, lo: float, hi: float, overlap: bool) -> Window:
    """Samples sent in [lo, hi) or (overlap) in flight at any time in [lo, hi)."""
    vals: list[tuple[float, bool]] = []
    lost = 0
    for t_send, t_got in samples:
        if t_got is not None:
            lat, cens = t_got - t_send, False
        elif dead is not None:
            if t_send < hi and (overlap or t_send >= lo):
                lost += 1
            continue
        else:
            lat, cens = t_stop - t_send, True
        inside = (t_send < hi and t_send + lat > lo) if overlap else (lo <= t_send < hi)
        if inside:
            vals.append((lat * 1000, cens))
    w = Window(n=len(vals), lost=lost)
    if vals:
        vals.sort()
        w.max, w.censored = vals[-1]
        w.p99 = vals[max(0, math.ceil(0.99 * len(vals)) - 1)][0]
    return w


# ---------------------------------------------------------------------------
# Attacks


class Ctx:
    """What an attack gets: the server, the scale, a deadline, and marks."""

    def __init__(self, server: Server, scale: dict, timeout: float):
        self.srv = server
        self.port = server.port
        self.s = scale
        self.deadline = time.monotonic() + timeout
        self.t_start: float | None = None
        self.t_end: float | None = None
        self.cpu_start = 0.0
        self.rss_start_kib = 0
        self.notes: list[str] = []
        self.extra: dict = {}
        self.conns: list[Conn] = []

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("attack deadline")
        return left

    def conn(self) -> Conn:
        c = Conn(self.port, timeout=min(10.0, self.left()))
        self.conns.append(c)
        return c

    def begin(self) -> None:
        self.srv.poll()
        self.cpu_start = self.srv.cpu
        self.rss_start_kib = self.srv.rss_kib()
        self.t_start = time.monotonic()

    def end(self) -> None:
        if self.t_end is None:
            self.t_end = time.monotonic()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close_all(self) -> None:
        for c in self.conns:
            c.close()
        self.conns.clear()


def register(ctx: Ctx, names: list[bytes]) -> Conn:
    """A worker connection that has sent CAN_DO for every name (processed: synced with an ECHO)."""
    w = ctx.conn()
    w.send(b"".join(pkt(CAN_DO, n) for n in names), ctx.left())
    w.echo(ctx.left())
    return w


def bump(tally: dict[str, int], key: str) -> None:
    tally[key] = tally.get(key, 0) + 1


def secs(t0: float) -> str:
    """Time since t0, in ms below a second."""
    d = time.monotonic() - t0
    return f"{d * 1000:.1f} ms" if d < 1 else f"{d:.2f} s"


def mb(kib: int) -> str:
    return f"{kib / 1024:.0f} MB"


def attack_dup_cando(ctx: Ctx) -> None:
    """The attack ends with the close: the "2 s after" column is what the close costs."""
    n = ctx.s["dup_n"]
    a = ctx.conn()
    w = register(ctx, [b"dupfn"])  # a real worker for the dupfn job below
    c = ctx.conn()
    ctx.begin()
    t = time.monotonic()
    a.send(pkt(CAN_DO, b"dupfn") * n, ctx.left())
    ctx.note(f"{n} x CAN_DO dupfn sent in {secs(t)}")
    try:
        a.echo(ctx.left())
        ctx.note(f"processed (ECHO on that conn) after {secs(t)}")
    except (Closed, RuntimeError) as e:
        ctx.note(f"attacker conn: {e}")
    # A dupfn job while the duplicates are registered, run by the real worker.
    t = time.monotonic()
    c.send(pkt(SUBMIT_JOB, b"dupfn\0\0x"), ctx.left())
    created = ""
    while True:
        kind, _ = c.packet(ctx.left())
        if kind == JOB_CREATED:
            created = secs(t)
            w.send(pkt(GRAB_JOB), ctx.left())
            while True:
                k, p = w.packet(ctx.left())
                if k == JOB_ASSIGN:
                    w.send(pkt(WORK_COMPLETE, p.split(b"\0", 1)[0] + b"\0ok"), ctx.left())
                    break
                if k == NO_JOB:
                    w.send(pkt(GRAB_JOB), ctx.left())
        elif kind in (WORK_COMPLETE, WORK_FAIL, ERROR):
            break
    ctx.note(f"dupfn job: JOB_CREATED after {created}, WORK_COMPLETE after {secs(t)}")
    a.close()
    ctx.end()


def attack_status_readers(ctx: Ctx) -> None:
    nf, nconn, rep = ctx.s["status_funcs"], ctx.s["status_conns"], ctx.s["status_repeat"]
    names = [b"%06d" % i + b"s" * 394 for i in range(nf)]
    register(ctx, names)
    readers = [ctx.conn() for _ in range(nconn)]
    ctx.begin()
    for r in readers:
        r.send(b"status\n" * rep, ctx.left())
    ctx.note(f"{nconn} conns x {rep} status sent, {nf} functions of 400 B")
    time.sleep(min(ctx.s["status_hold"], ctx.left()))
    ctx.srv.poll()
    states = [r.tcp_state() for r in readers]
    ctx.note(f"after {ctx.s['status_hold']:g} s: RSS {mb(ctx.srv.rss_kib())}")
    gone = sum(s != "ESTABLISHED" for s in states)
    ctx.note(f"{gone}/{nconn} reader conns closed by the server" if gone else "reader conns open")
    for r in readers:
        r.close()
    ctx.end()


def attack_grab_pipeline(ctx: Ctx, jobs: bool = False) -> None:
    nf, ngrab = ctx.s["grab_funcs"], ctx.s["grabs"]
    names = [b"g%07d" % i for i in range(nf)]
    w = register(ctx, names)
    if jobs:
        # jobs spread over 100 of the functions
        nj = ctx.s["grab_jobs"]
        cl = ctx.conn()
        cl.send(
            b"".join(pkt(SUBMIT_JOB_BG, names[(i % 100) * (nf // 100)] + b"\0\0x") for i in range(nj)),
            ctx.left(),
        )
        for _ in range(nj):
            kind, payload = cl.packet(ctx.left())
            if kind != JOB_CREATED:
                raise RuntimeError(f"setup submit: packet {kind} {payload[:60]!r}")
    ctx.begin()
    t = time.monotonic()
    w.send(pkt(GRAB_JOB) * ngrab, ctx.left())
    counts = {NO_JOB: 0, JOB_ASSIGN: 0}
    while counts[NO_JOB] + counts[JOB_ASSIGN] < ngrab:
        kind, _ = w.packet(ctx.left())
        if kind in counts:
            counts[kind] += 1
    ctx.note(
        f"{ngrab} GRAB_JOB ({nf} functions) answered in {time.monotonic() - t:.2f} s: "
        f"{counts[JOB_ASSIGN]} JOB_ASSIGN, {counts[NO_JOB]} NO_JOB"
    )
    ctx.end()


def admin_ok(lines: list[bytes]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        bump(out, "OK" if line == b"OK" else line.decode(errors="replace")[:60])
    return out


def attack_drop_function(ctx: Ctx) -> None:
    nf, nd = ctx.s["drop_known"], ctx.s["drops"]
    adm = ctx.conn()
    adm.send(b"".join(b"create function d%07d\r\n" % i for i in range(nf)), ctx.left())
    for _ in range(nf):
        adm.line(ctx.left())
    ctx.begin()
    t = time.monotonic()
    step = nf // nd
    adm.send(b"".join(b"drop function d%07d\r\n" % (i * step) for i in range(nd)), ctx.left())
    replies = admin_ok([adm.line(ctx.left()) for _ in range(nd)])
    ctx.note(f"{nd} drop function ({nf} known) in {time.monotonic() - t:.2f} s: {replies}")
    t = time.monotonic()
    adm.send(b"status\n", ctx.left())
    size = adm.listing(ctx.left())
    ctx.note(f"status then: {size / 1e6:.1f} MB in {secs(t)}")
    ctx.end()


def attack_create_drop(ctx: Ctx) -> None:
    """Each cycle: a connection sends CAN_DO NAME (and an ECHO, answered before
    the close, so the CAN_DO has been applied), closes; then `drop function NAME`
    on an admin connection. Batches of 25 connections stay within gearmand's
    listen backlog (32); a name still registered (close not processed yet) is
    dropped again later."""
    n, batch = ctx.s["cycles"], 25
    adm = ctx.conn()
    ctx.begin()
    t = time.monotonic()
    tally: dict[str, int] = {}
    pending: list[bytes] = []
    for start in range(0, n, batch):
        names = [b"cd%07d" % i for i in range(start, min(n, start + batch))]
        conns = []
        for name in names:
            c = Conn(ctx.port, timeout=min(10.0, ctx.left()))
            c.send(pkt(CAN_DO, name) + pkt(ECHO_REQ, b"x"), ctx.left())
            conns.append(c)
        for c in conns:
            c.packet(ctx.left())
            c.close()
        # Drop the previous batch's names (their connections have had time to be torn down).
        pending = drop_names(ctx, adm, pending, tally) + names
    for _ in range(100):
        if not pending:
            break
        time.sleep(0.05)
        pending = drop_names(ctx, adm, pending, tally)
    ctx.note(
        f"{n} CAN_DO/close/drop cycles in {time.monotonic() - t:.1f} s: {tally}"
        + (f", {len(pending)} never droppable" if pending else "")
    )
    ctx.note(f"RSS {mb(ctx.rss_start_kib)} before, {mb(ctx.srv.rss_kib())} after")
    t = time.monotonic()
    adm.send(b"status\n", ctx.left())
    size = adm.listing(ctx.left())
    ctx.note(f"status then: {size} B in {secs(t)}")
    ctx.end()


def drop_names(ctx: Ctx, adm: Conn, names: list[bytes], tally: dict[str, int]) -> list[bytes]:
    """Sends `drop function` for each name; returns the names still in use (to retry)."""
    if not names:
        return []
    adm.send(b"".join(b"drop function %s\r\n" % n for n in names), ctx.left())
    retry = []
    for name in names:
        line = adm.line(ctx.left())
        if b"still connected" in line:
            retry.append(name)
            continue
        bump(tally, "OK" if line == b"OK" else line.decode(errors="replace")[:40])
    return retry


def attack_bigname(ctx: Ctx, submit: bool) -> None:
    count = ctx.s["big_count"]
    ctx.begin()
    seen: dict[str, int] = {}
    conns = []
    for i in range(count):
        name = b"%04d" % i + b"b" * ((1 << 20) - 4)
        c = ctx.conn()
        conns.append(c)
        try:
            if submit:
                c.send(pkt(SUBMIT_JOB, name + b"\0\0x"), ctx.left())
                what = outcome(c, 5.0)
            else:
                c.send(pkt(CAN_DO, name), ctx.left())
                c.echo(5.0)
                what = "accepted (an ECHO after it is answered)"
        except Closed:
            what = "closed by the server"
        except TimeoutError:
            what = "no reply in 5 s"
        except RuntimeError as e:
            what = str(e)
        bump(seen, what)
    ctx.srv.poll()
    kind = "SUBMIT_JOB" if submit else "CAN_DO"
    ctx.note(
        f"{count} x {kind} with a 1 MiB function name: " + "; ".join(f"{k} x{v}" for k, v in seen.items())
    )
    adm = ctx.conn()
    t = time.monotonic()
    adm.send(b"status\n", ctx.left())
    size = adm.listing(ctx.left())
    ctx.note(f"status then: {size / 1e6:.1f} MB in {secs(t)}; RSS {mb(ctx.srv.rss_kib())}")
    ctx.end()


def attack_slowloris(ctx: Ctx) -> None:
    n, interval, duration = ctx.s["slowloris_conns"], ctx.s["slowloris_interval"], ctx.s["slowloris_secs"]
    header = pkt(ECHO_REQ)[:8] + struct.pack(">I", 1 << 20)  # never completes: 1 byte per interval
    socks: list[socket.socket | None] = []
    refused = 0
    ctx.begin()
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, ctx.port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            refused += 1
    ctx.note(f"{len(socks)} conns open" + (f", {refused} refused" if refused else ""))
    t0 = time.monotonic()
    k = 0
    dropped = 0
    while time.monotonic() - t0 < duration:
        for i, s in enumerate(socks):
            if s is None:
                continue
            try:
                s.send(header[k % len(header) : k % len(header) + 1])
            except OSError:
                dropped += 1
                s.close()
                socks[i] = None
        k += 1
        time.sleep(min(interval, max(0.0, duration - (time.monotonic() - t0))))
    for s in socks:
        if s is None:
            continue
        try:
            if s.recv(1) == b"":
                dropped += 1
        except BlockingIOError:
            pass
        except OSError:
            dropped += 1
    ctx.note(f"{k} bytes each over {duration:g} s; {dropped} conns closed by the server")
    for s in socks:
        if s is not None:
            s.close()
    ctx.end()


def attack_conn_flood(ctx: Ctx) -> None:
    """Non-blocking connects, up to 64 in flight, each closed as soon as it is established."""
    duration, window = ctx.s["flood_secs"], 64
    ok = slow = 0
    worst = 0.0
    errors: dict[str, int] = {}
    sel = selectors.DefaultSelector()
    ctx.begin()
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        while len(sel.get_map()) < window:
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex((HOST, ctx.port))
            if err in (errno.EINPROGRESS, 0):
                sel.register(s, selectors.EVENT_WRITE, time.monotonic())
            else:
                bump(errors, errno.errorcode.get(err, str(err)))
                s.close()
        for key, _ in sel.select(0.1):
            s = key.fileobj
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            lat = time.monotonic() - key.data
            sel.unregister(s)
            s.close()
            if err:
                bump(errors, errno.errorcode.get(err, str(err)))
                continue
            ok += 1
            worst = max(worst, lat)
            slow += lat > 0.5
    pending = len(sel.get_map())
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    ctx.note(
        f"{ok} connect/close in {duration:g} s ({ok / duration:.0f}/s, {window} in flight);"
        f" slowest connect {worst:.2f} s"
        + (f", {slow} took > 0.5 s (SYN dropped, retried)" if slow else "")
        + (f", {pending} still connecting at the end" if pending else "")
        + (f", errors {errors}" if errors else "")
    )
    ctx.end()


def attack_garbage_header(ctx: Ctx) -> None:
    c = ctx.conn()
    ctx.begin()
    c.send(bytes.fromhex("00524551ffffffff00000000"), ctx.left())
    ctx.note(outcome(c, 2.0))
    ctx.end()


ATTACKS: dict[str, tuple[str, Callable[[Ctx], None]]] = {
    "dup-cando": ("1. duplicate CAN_DO x N on one conn, then close", attack_dup_cando),
    "status-readers": ("2. `status` x30 on 16 conns that never read", attack_status_readers),
    "grab-pipeline": ("3. 5,000 pipelined GRAB_JOB, 100k functions", attack_grab_pipeline),
    "grab-pipeline-jobs": (
        "3b. same, 1,000 jobs queued on 100 of them",
        lambda ctx: attack_grab_pipeline(ctx, jobs=True),
    ),
    "drop-function": ("4. `drop function` x2,000, 100k functions", attack_drop_function),
    "create-drop": ("4b. CAN_DO / close / `drop function` cycles", attack_create_drop),
    "bigname-cando": ("5. CAN_DO with a 1 MiB name", lambda ctx: attack_bigname(ctx, submit=False)),
    "bigname-submit": ("5b. SUBMIT_JOB with a 1 MiB name", lambda ctx: attack_bigname(ctx, submit=True)),
    "slowloris": ("6. slowloris: 1,000 conns, 1 header byte each per interval", attack_slowloris),
    "conn-flood": ("6b. connect/close flood", attack_conn_flood),
    "garbage-header": ("6c. header 00524551 ffffffff 00000000", attack_garbage_header),
}

SCALES = {
    "full": {
        "dup_n": 600_000,
        "status_funcs": 10_000,
        "status_conns": 16,
        "status_repeat": 30,
        "status_hold": 5.0,
        "grab_funcs": 100_000,
        "grabs": 5_000,
        "grab_jobs": 1_000,
        "drop_known": 100_000,
        "drops": 2_000,
        "cycles": 200_000,
        "big_count": 16,
        "slowloris_conns": 1_000,
        "slowloris_interval": 3.0,
        "slowloris_secs": 20.0,
        "flood_secs": 10.0,
        "revive_secs": 60.0,
    },
    "small": {
        "dup_n": 100_000,
        "status_funcs": 2_500,
        "status_conns": 16,
        "status_repeat": 30,
        "status_hold": 2.0,
        "grab_funcs": 20_000,
        "grabs": 1_000,
        "grab_jobs": 200,
        "drop_known": 20_000,
        "drops": 500,
        "cycles": 20_000,
        "big_count": 4,
        "slowloris_conns": 1_000,
        "slowloris_interval": 1.0,
        "slowloris_secs": 4.0,
        "flood_secs": 3.0,
        "revive_secs": 10.0,
    },
}


# ---------------------------------------------------------------------------
# Running


@dataclass
class Result:
    attack: str
    server: str
    echo_during: Window = field(default_factory=Window)
    echo_after: Window = field(default_factory=Window)
    job: Window = field(default_factory=Window)
    peak_rss_mb: float = 0.0
    rss_before_mb: float = 0.0
    rss_end_mb: float | None = None  # at the end of the 2 s after the attack (None: server gone)
    cpu_s: float = 0.0
    attack_s: float = 0.0
    survived: str = ""
    saw: str = ""
    stderr: str = ""


def survival(srv: Server, wait: float) -> str:
    """Whether the server still answers an ECHO on a fresh connection (waiting up to `wait` s)."""
    t0 = time.monotonic()
    while srv.proc.poll() is None:
        left = wait - (time.monotonic() - t0)
        if answers(srv.port, timeout=max(0.1, min(5.0, left))):
            took = time.monotonic() - t0
            return "yes" if took < 1 else f"yes, after {took:.0f} s"
        if left <= 0:
            return f"no answer in {wait:g} s (process alive)"
        time.sleep(0.1)
    return f"no ({srv.exit_desc()})"


def run_one(name: str, spec: ServerSpec, scale: dict, timeout: float, rss_limit_mb: int) -> Result:
    res = Result(name, spec.name)
    srv = Server(spec, rss_limit_mb)
    bys: Bystander | None = None
    ctx = Ctx(srv, scale, timeout)
    errors: list[str] = []
    try:
        bys = Bystander(srv.port)
        fn = ATTACKS[name][1]

        def body() -> None:
            try:
                fn(ctx)
            except TimeoutError:
                errors.append("timeout")
            except Closed as e:
                errors.append(f"conn closed ({e})")
            except Exception as e:  # reported in the table, not fatal to the run
                errors.append(f"{type(e).__name__}: {e}")
            finally:
                ctx.end()

        th = threading.Thread(target=body, daemon=True)
        th.start()
        th.join(timeout + 5)
        if th.is_alive():
            errors.append("timeout")
        ctx.end()
        if ctx.t_start is None:  # failed in its setup
            ctx.begin()
        time.sleep(AFTER_WINDOW)
        t_alive = time.monotonic()
        res.survived = survival(srv, scale["revive_secs"])
        if time.monotonic() - t_alive > 1:
            time.sleep(0.5)  # let the bystander collect the answers the server owed it
        rss_end = srv.rss_kib()
        res.rss_end_mb = rss_end / 1024 if rss_end else None
        srv.poll()
        data = bys.finish()
        t_stop = data.get("t_stop", time.monotonic())
        closed = data.get("closed", {})
        lo, hi = ctx.t_start, ctx.t_end
        res.echo_during = window(data.get("echo", []), t_stop, closed.get("echo"), lo, hi, True)
        res.echo_after = window(
            data.get("echo", []), t_stop, closed.get("echo"), hi, hi + AFTER_WINDOW, False
        )
        dead = closed.get("client") or closed.get("worker")
        res.job = window(data.get("job", []), t_stop, dead, lo, hi + AFTER_WINDOW, True)
        res.peak_rss_mb = max(srv.hwm_kib, srv.max_rss_kib) / 1024
        res.rss_before_mb = ctx.rss_start_kib / 1024
        res.cpu_s = srv.cpu - ctx.cpu_start
        res.attack_s = hi - lo
        saw = [n for n in ctx.notes if n]
        if errors:
            tag = errors[0]
            saw.append(f"{tag} after {timeout:g} s" if tag == "timeout" else tag)
        res.saw = "; ".join(saw)
        if res.survived != "yes":
            res.stderr = srv.stderr_tail()
    finally:
        ctx.close_all()
        if bys is not None:
            reap(bys.proc)
        srv.stop()
    return res


def table(results: list[Result]) -> str:
    lines = [
        "| attack | server | ECHO max / p99 ms during | ECHO max / p99 ms 2 s after | job max / p99 ms "
        "| RSS MB peak / end | server CPU s | survived | attacker saw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        end = "-" if r.rss_end_mb is None else f"{r.rss_end_mb:.0f}"
        lines.append(
            f"| {r.attack} | {r.server} | {r.echo_during.cell()} | {r.echo_after.cell()} | {r.job.cell()} "
            f"| {r.peak_rss_mb:.0f} / {end} | {r.cpu_s:.2f} | {r.survived} | {r.saw.replace('|', '/')} |"
        )
    return "\n".join(lines)


def check_release(path: str) -> None:
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError as e:
        sys.exit(f"probe: cannot run {path}: {e}")
    if "(release build)" not in version:
        sys.exit(f"probe: {path} is not a release build ({version.strip()!r}); refusing to measure it")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--bystander":
        try:
            return bystander_main(int(sys.argv[2]))
        except KeyboardInterrupt:
            return 1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polygeard", help="polygeard binary (release build)")
    ap.add_argument(
        "--gearmand", default=shutil.which("gearmand") or "/usr/sbin/gearmand", help="gearmand binary"
    )
    ap.add_argument("--no-gearmand", action="store_true", help="measure polygeard only")
    ap.add_argument(
        "--polygeard-args",
        action="append",
        default=[],
        metavar="ARGS",
        help="also measure polygeard with these extra flags (space-separated; repeatable), "
        "e.g. '--max-worker-functions 0 --max-idle-functions 0' (limits off, like gearmand)",
    )
    ap.add_argument(
        "--gearmand-threads", default="1,2", help="gearmand -t values, one column each (default 1,2)"
    )
    ap.add_argument("--only", help="comma-separated attack names (see --list)")
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--timeout", type=float, default=120.0, help="hard limit per attack and server, s")
    ap.add_argument("--rss-limit-mb", type=int, default=8000, help="kill a server whose RSS passes this")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--list", action="store_true", help="list the attacks and exit")
    a = ap.parse_args()
    if a.list:
        for name, (desc, _) in ATTACKS.items():
            print(f"{name:<20} {desc}")
        return 0
    if not a.polygeard:
        ap.error("--polygeard is required")
    check_release(a.polygeard)
    names = list(ATTACKS) if not a.only else [n.strip() for n in a.only.split(",")]
    for n in names:
        if n not in ATTACKS:
            ap.error(f"unknown attack {n!r}; --list shows them")
    specs = []
    if not a.no_gearmand:
        if not Path(a.gearmand).exists():
            ap.error(f"no gearmand at {a.gearmand} (apt install gearman-job-server, or --no-gearmand)")
        specs += [ServerSpec("gearmand", a.gearmand, int(t)) for t in a.gearmand_threads.split(",")]
    specs.append(ServerSpec("polygeard", a.polygeard))
    specs += [ServerSpec("polygeard", a.polygeard, args=tuple(x.split())) for x in a.polygeard_args]
    scale = SCALES[a.scale]

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results: list[Result] = []
    t0 = time.monotonic()
    try:
        for name in names:
            for spec in specs:
                try:
                    r = run_one(name, spec, scale, a.timeout, a.rss_limit_mb)
                except RuntimeError as e:  # the server or the bystander did not start
                    r = Result(name, spec.name, survived="-", saw=f"probe: {e}")
                results.append(r)
                print(
                    f"{name:<18} {spec.name:<14} echo {r.echo_during.cell():>14}"
                    f" after {r.echo_after.cell():>12}"
                    f"  job {r.job.cell():>16}  rss {r.peak_rss_mb:5.0f}/{r.rss_end_mb or 0:.0f} MB"
                    f"  cpu {r.cpu_s:6.2f} s"
                    f"  survived {r.survived}  | {r.saw}",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        print("probe: interrupted", file=sys.stderr)
        return 130
    finally:
        for p in list(LIVE):
            reap(p)
    print(f"probe: {len(results)} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    print(table(results))
    if a.json:
        meta = {
            "scale": a.scale,
            "scale_params": scale,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        meta["polygeard"] = a.polygeard
        rows = []
        for r in results:
            d = r.__dict__.copy()
            for k in ("echo_during", "echo_after", "job"):
                d[k] = r.__dict__[k].__dict__
            rows.append(d)
        Path(a.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
