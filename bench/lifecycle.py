#!/usr/bin/env python3
"""Job-lifecycle features off vs on: background submit and drain, same run.

Usage: python3 bench/lifecycle.py [--quick] [--repeat N] [--out FILE]

Issue #19 adds retry policies (backoff, dead set), result retention and
unique windows to polygeard. They must not slow the common path: this
benchmark measures background submissions and their drain on polygeard
without any policy ("off") and with every feature switched on for the
benchmarked function (`--retry` alone, and `--retry` with `--retain` and
`--unique-window`), with
C gearmand 1.1.20 `-t 1` as the reference, in memory and with the SQLite
queue. Every run gets a fresh server; the variants alternate run by run,
so drift in the machine's load hits all of them, and each cell is the median
of --repeat runs: the rate and the server's CPU per job (utime+stime of the
server process, /proc/PID/stat).

Two load generators:

- `loadgen` (tokio, raw packets): `bg-submit` with 4 connections x 64 in
  flight, then `drain` with 2 workers;
- `pyraw` (this file): one blocking socket, hand-written packets, windows
  of 64 submissions per write; its drain is one worker doing
  GRAB_JOB_UNIQ / WORK_COMPLETE in lock step (how a blocking program talks).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # bench/run.py: Server, loadgen, Run, cpu_seconds
from tls import snapshot_binaries  # bench/tls.py

FUNC = "bench"
# Retries on for FUNC: 25 attempts from 1 s backoff up to an hour (no job
# fails here: this is the cost of the bookkeeping on the common path).
RETRIES = ["--retry", f"{FUNC}=25:1000:3600000"]
# Everything on: also results kept 10 minutes and uniques reserved 10 minutes
# after completion (each completed job's result is then stored: real work).
ALL = [*RETRIES, "--retain", f"{FUNC}=600", "--unique-window", f"{FUNC}=600"]

REQ, RES = b"\0REQ", b"\0RES"
SUBMIT_JOB_BG, JOB_CREATED = 18, 8
GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ, NO_JOB, WORK_COMPLETE = 30, 31, 10, 13
CAN_DO = 1


def packet(kind: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return REQ + struct.pack(">II", kind, len(body)) + body


class Reader:
    """Reads response packets from a blocking socket."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()

    def next(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 12:
                kind, size = struct.unpack(">II", self.buf[4:12])
                if len(self.buf) >= 12 + size:
                    body = bytes(self.buf[12:12 + size])
                    del self.buf[:12 + size]
                    return kind, body
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pyraw_submit(port: int, n: int, tag: str) -> int:
    """n background jobs (unique per job), 64 per write; returns n."""
    with connect(port) as s:
        r = Reader(s)
        for start in range(0, n, 64):
            batch = range(start, min(n, start + 64))
            s.sendall(b"".join(packet(SUBMIT_JOB_BG, FUNC.encode(), f"{tag}-{i}".encode(), b"x" * 16)
                               for i in batch))
            for _ in batch:
                kind, _ = r.next()
                if kind != JOB_CREATED:
                    raise RuntimeError(f"expected JOB_CREATED, got packet {kind}")
    return n


def pyraw_drain(port: int, n: int) -> int:
    """One worker takes and completes n jobs, one at a time."""
    with connect(port) as s:
        r = Reader(s)
        s.sendall(packet(CAN_DO, FUNC.encode()))
        done = 0
        while done < n:
            s.sendall(packet(GRAB_JOB_UNIQ))
            kind, body = r.next()
            if kind == NO_JOB:
                raise RuntimeError(f"queue empty after {done} of {n} jobs")
            if kind != JOB_ASSIGN_UNIQ:
                continue
            handle = body.split(b"\0", 1)[0]
            s.sendall(packet(WORK_COMPLETE, handle, b"ok"))
            done += 1
    return n


def timed(server: run.Server, fn) -> run.Run:
    """Runs fn() -> jobs; the rate, server CPU per job (generator CPU not split out: 0)."""
    before, t0 = run.cpu_seconds(server.proc.pid), time.perf_counter()
    jobs = fn()
    elapsed, after = time.perf_counter() - t0, run.cpu_seconds(server.proc.pid)
    return run.Run(jobs / elapsed, (after - before) / jobs * 1e6, 0.0)


def cases(k: int):
    """(generator, phase, function of a server -> Run)."""
    n = 100_000 // k
    pn = 20_000 // k

    def lg_submit(s):
        return run.loadgen(s, "bg-submit", n=n, conns=4, window=64)

    def lg_drain(s):
        run.loadgen(s, "bg-submit", n=n, conns=4, window=64)
        return run.loadgen(s, "drain", n=n, workers=2)

    def py_submit(s):
        return timed(s, lambda: pyraw_submit(s.port, pn, "p"))

    def py_drain(s):
        pyraw_submit(s.port, pn, "p")
        return timed(s, lambda: pyraw_drain(s.port, pn))

    return [("loadgen 4x64", "submit", lg_submit), ("loadgen 2 workers", "drain", lg_drain),
            ("pyraw 1x64", "submit", py_submit), ("pyraw 1 worker", "drain", py_drain)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts, one repetition (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median; default 3)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    a = ap.parse_args()
    k = 10 if a.quick else 1
    repeat = 1 if a.quick else a.repeat

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=run.ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="pglife-"))
    snapshot_binaries(tmp)
    variants = [("gearmand", 1, []), ("polygeard", 0, []), ("polygeard", 0, RETRIES), ("polygeard", 0, ALL)]
    header = ("| generator | phase | queue | gearmand -t 1 | polygeard, off | polygeard, retries on | "
              "polygeard, retries + retain + window | retries/off rate, CPU | all/off rate, CPU |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    print(header, flush=True)
    for durable in (False, True):
        for gen, phase, fn in cases(k):
            runs: list[list[run.Run]] = [[] for _ in variants]
            for _ in range(repeat):
                for i, (kind, threads, extra) in enumerate(variants):
                    s = run.Server(kind, threads, durable, extra)
                    try:
                        runs[i].append(fn(s))
                    finally:
                        s.stop()
            med = [run.Run(*(statistics.median(r[j] for r in rs) for j in range(3))) for rs in runs]
            cell = [f"{m.rate:.0f}/s, {m.server_us:.1f} µs" for m in med]
            off = med[1]
            ratios = [f"{on.rate / off.rate:.2f}x, {on.server_us / off.server_us:.2f}x" for on in med[2:]]
            line = (f"| {gen} | {phase} | {'SQLite' if durable else 'memory'} | {' | '.join(cell)} | "
                    f"{' | '.join(ratios)} |")
            lines.append(line)
            print(line, flush=True)
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
