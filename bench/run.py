#!/usr/bin/env python3
"""Server benchmark: gearmand vs polygeard, same load generator, same run.

Usage: python3 bench/run.py [--quick] [--repeat N] [--out bench/results.md]

Starts a fresh server on a free loopback port for every run, drives it with
target/release/loadgen (raw Gearman protocol), and prints rates, the
server's CPU per job (utime+stime of the server process around the run) and
the load generator's own CPU per job. gearmand runs with -t 1 and -t 2,
polygeard with -t 1 and its default (one thread per CPU); each figure is the
median of --repeat runs. Ratios compare polygeard's default with gearmand's
best rate and gearmand's lower CPU per job. Worker and foreground scenarios
run under both load generator behaviours (`loadgen --style`): every packet
written alone, and one write per batch of replies.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
LOADGEN = TARGET / "release" / "loadgen"
POLYGEARD = TARGET / "release" / "polygeard"
GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process on a free port."""

    def __init__(self, kind: str, threads: int = 1, durable: bool = False, extra: Sequence[str] = ()):
        self.kind, self.threads, self.durable = kind, threads, durable
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="pgbench-")
        if kind == "gearmand":
            cmd = [GEARMAND, "-L", "127.0.0.1", "-p", str(self.port), "-t", str(threads),
                   "-l", "none", "-P", f"{self.tmp}/pid"]
            if durable:
                cmd += ["-q", "libsqlite3", "--libsqlite3-db", f"{self.tmp}/q.sqlite"]
        else:
            cmd = [str(POLYGEARD), "-L", "127.0.0.1", "-p", str(self.port), "-t", str(threads),
                   "-l", "none"]
            cmd += ["--libsqlite3-db", f"{self.tmp}/q.sqlite3"] if durable else ["-q", "builtin"]
        cmd += extra
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{kind} did not start")

    @property
    def name(self) -> str:
        return f"{self.kind} -t {self.threads}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), in seconds."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Run(NamedTuple):
    rate: float  # jobs/s
    server_us: float  # server CPU per job (utime+stime), microseconds
    loadgen_us: float  # the load generator's own CPU per job


def loadgen(server: Server, scenario: str, **opts: object) -> Run:
    cmd = [str(LOADGEN), scenario, "--addr", f"127.0.0.1:{server.port}"]
    for k, v in opts.items():
        cmd += [f"--{k}", str(v)]
    before, lg_before = cpu_seconds(server.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    after, lg_after = cpu_seconds(server.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    n = int(out.stdout.split("n=")[1].split()[0])
    lg = (lg_after.ru_utime + lg_after.ru_stime) - (lg_before.ru_utime + lg_before.ru_stime)
    return Run(float(out.stdout.split("rate=")[1]), (after - before) / n * 1e6, lg / n * 1e6)


def scenario(kind: str, threads: int, fn, durable: bool = False) -> Run:
    s = Server(kind, threads, durable)
    try:
        return fn(s)
    finally:
        s.stop()


def median_run(kind: str, threads: int, fn, durable: bool, repeat: int) -> Run:
    """Median rate and CPU of `repeat` runs, each on a fresh server."""
    runs = [scenario(kind, threads, fn, durable) for _ in range(repeat)]
    return Run(*(statistics.median(r[i] for r in runs) for i in range(3)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts, one repetition (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per server and scenario (median; default 3)")
    ap.add_argument("--out", help="also write the tables as markdown to this file")
    a = ap.parse_args()
    k = 10 if a.quick else 1
    repeat = 1 if a.quick else a.repeat

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=ROOT, check=True)
    version = subprocess.run([str(POLYGEARD), "--version"], capture_output=True, text=True,
                             check=False).stdout
    if "(release build)" not in version:  # loadgen checks itself
        sys.exit(f"bench: {POLYGEARD} is not a release build ({version.strip()!r}); refusing to measure it")

    # (label, style, gearmand -t 1, gearmand -t 2, polygeard -t 1, polygeard default)
    rows: list[tuple[str, str, Run, Run, Run, Run]] = []

    def compare(label: str, fn, durable: bool = False, style: str = "-"):
        g1, g2 = (median_run("gearmand", t, fn, durable, repeat) for t in (1, 2))
        p1, pn = (median_run("polygeard", t, fn, durable, repeat) for t in (1, 0))
        rows.append((label, style, g1, g2, p1, pn))
        g = max(g1, g2, key=lambda r: r.rate)
        g_cpu = min(g1.server_us, g2.server_us)
        print(f"{label:<44} {style:<8} gearmand {g.rate:>8.0f}/s {g_cpu:6.1f} us/job | "
              f"polygeard -t1 {p1.rate:>8.0f}/s {p1.server_us:6.1f} us | default {pn.rate:>8.0f}/s "
              f"{pn.server_us:6.1f} us | ratio {pn.rate / g.rate:5.2f}x, CPU {pn.server_us / g_cpu:5.2f}x "
              f"| loadgen {pn.loadgen_us:5.1f} us/job", flush=True)

    n = 200_000 // k
    compare("echo round trips, 4 conns", lambda s: loadgen(s, "echo", n=n, conns=4))
    compare("background submit, 4 conns x 64 in flight",
            lambda s: loadgen(s, "bg-submit", n=n, conns=4, window=64))

    for style in ("separate", "batched"):
        def drain(s: Server, style: str = style) -> Run:
            loadgen(s, "bg-submit", n=n // 2, conns=4, window=64)
            return loadgen(s, "drain", n=n // 2, workers=2, style=style)
        compare("background drain, 2 workers", drain, style=style)
        for size in (16, 4096):
            compare(f"foreground 4x4, 1 in flight, {size} B",
                    lambda s, size=size, style=style: loadgen(s, "fg", n=50_000 // k, conns=4, workers=4,
                                                              window=1, size=size, style=style), style=style)
            compare(f"foreground 4x4, 16 in flight, {size} B",
                    lambda s, size=size, style=style: loadgen(s, "fg", n=200_000 // k, conns=4, workers=4,
                                                              window=16, size=size, style=style), style=style)
        compare("foreground 1x1, 1 in flight, 16 B",
                lambda s, style=style: loadgen(s, "fg", n=20_000 // k, conns=1, workers=1, window=1,
                                               style=style), style=style)
        compare("durable server: foreground 4x4, 16 in flight",
                lambda s, style=style: loadgen(s, "fg", n=100_000 // k, conns=4, workers=4, window=16,
                                               style=style), durable=True, style=style)
    compare("blocking pair (floor), 1 in flight", lambda s: loadgen(s, "floor", n=20_000 // k))
    compare("durable background submit (SQLite)",
            lambda s: loadgen(s, "bg-submit", n=(2_000 if s.kind == "gearmand" else 20_000) // k,
                              conns=4, window=64), durable=True)

    # Memory per queued job, and whether it is returned after the drain.
    mem_n = 1_000_000 // k
    mem_rows: list[tuple[str, float, float]] = []
    for kind, threads, count in (("gearmand", 1, min(mem_n, 200_000 // k)), ("polygeard", 0, mem_n)):
        s = Server(kind, threads)
        try:
            base = s.rss_kib()
            loadgen(s, "bg-submit", n=count, conns=4, window=64, timeout=600)
            full = s.rss_kib()
            loadgen(s, "drain", n=count, workers=2, timeout=600)
            time.sleep(0.5)
            after = s.rss_kib()
        finally:
            s.stop()
        per_job = (full - base) * 1024 / count
        kept = 100 * (after - base) / max(full - base, 1)
        mem_rows.append((f"{kind} ({count} queued)", per_job, kept))
        print(f"{kind}: {per_job:.0f} bytes per queued 16-byte job ({count} queued), "
              f"{kept:.0f}% of it kept after the drain", flush=True)

    # Submit cost must not grow with the queue (polygeard).
    s = Server("polygeard", 0)
    try:
        loadgen(s, "bg-submit", n=1_000, conns=4, window=64, tag="pre")
        small = loadgen(s, "bg-submit", n=50_000 // k, conns=4, window=64, tag="a").rate
        loadgen(s, "bg-submit", n=mem_n, conns=4, window=64, tag="fill", timeout=600)
        large = loadgen(s, "bg-submit", n=50_000 // k, conns=4, window=64, tag="b").rate
    finally:
        s.stop()
    print(f"polygeard submit rate with ~1k queued {small:.0f}/s, with ~{mem_n} queued {large:.0f}/s "
          f"({100 * large / small:.0f}%)", flush=True)

    if a.out:
        header = ("| scenario | peers write | gearmand -t 1 | gearmand -t 2 | polygeard -t 1 "
                  "| polygeard (default -t) | rate ratio | CPU ratio | loadgen CPU |")
        lines = [header, "|---|---|---|---|---|---|---|---|---|"]

        def cell(r: Run) -> str:
            return f"{r.rate:.0f}/s, {r.server_us:.1f} µs"
        for label, style, g1, g2, p1, pn in rows:
            g = max(g1, g2, key=lambda r: r.rate)
            g_cpu = min(g1.server_us, g2.server_us)
            lines.append(f"| {label} | {style} | {cell(g1)} | {cell(g2)} | {cell(p1)} | {cell(pn)} "
                         f"| {pn.rate / g.rate:.2f}x | {pn.server_us / g_cpu:.2f}x "
                         f"| {pn.loadgen_us:.1f} µs |")
        lines += ["", "| server | bytes per queued 16-byte job | share still held after the drain |",
                  "|---|---|---|"]
        for label, per_job, kept in mem_rows:
            lines.append(f"| {label} | {per_job:.0f} | {kept:.0f} % |")
        rate_line = (f"polygeard background submit rate with ~1,000 jobs queued: {small:.0f}/s; "
                     f"with ~{mem_n:,} queued: {large:.0f}/s ({100 * large / small:.0f} %).")
        lines += ["", rate_line]
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
