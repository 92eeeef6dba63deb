#!/usr/bin/env python3
"""Server benchmark: gearmand vs polygeard, same load generator, same run.

Usage: python3 bench/run.py [--quick] [--out bench/results.md]

Starts each server on a free loopback port, drives it with
target/release/loadgen (raw Gearman protocol), and prints a table of rates
and ratios. gearmand is run with -t 1 and -t 2 and its best result is used.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

    def __init__(self, kind: str, threads: int = 1, durable: bool = False):
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


def loadgen(server: Server, scenario: str, **opts: object) -> float:
    cmd = [str(LOADGEN), scenario, "--addr", f"127.0.0.1:{server.port}"]
    for k, v in opts.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return float(out.stdout.split("rate=")[1])


def scenario(kind: str, threads: int, fn, durable: bool = False) -> float:
    s = Server(kind, threads, durable)
    try:
        return fn(s)
    finally:
        s.stop()


def best_gearmand(fn, durable: bool = False) -> float:
    return max(scenario("gearmand", t, fn, durable) for t in (1, 2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    a = ap.parse_args()
    k = 10 if a.quick else 1

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=ROOT, check=True)
    version = subprocess.run([str(POLYGEARD), "--version"], capture_output=True, text=True).stdout
    if "(release build)" not in version:  # loadgen checks itself
        sys.exit(f"bench: {POLYGEARD} is not a release build ({version.strip()!r}); refusing to measure it")

    rows: list[tuple[str, float, float, str]] = []

    def compare(label: str, fn, durable: bool = False, poly_threads: int = 2, unit: str = "jobs/s"):
        g = best_gearmand(fn, durable)
        p = scenario("polygeard", poly_threads, fn, durable)
        rows.append((label, g, p, unit))
        print(f"{label:<48} gearmand {g:>10.0f}  polygeard {p:>10.0f}  ratio {p / g:5.2f}x", flush=True)

    n = 200_000 // k
    compare("echo round trips, 4 conns", lambda s: loadgen(s, "echo", n=n, conns=4))
    compare("background submit, 4 conns x 64 in flight",
            lambda s: loadgen(s, "bg-submit", n=n, conns=4, window=64))

    def drain(s: Server) -> float:
        loadgen(s, "bg-submit", n=n, conns=4, window=64)
        return loadgen(s, "drain", n=n, workers=2)
    compare("background drain, 2 workers", drain)

    for size in (16, 4096):
        compare(f"foreground 4x4, 1 in flight, {size} B",
                lambda s, size=size: loadgen(s, "fg", n=50_000 // k, conns=4, workers=4, window=1, size=size))
        compare(f"foreground 4x4, 16 in flight, {size} B",
                lambda s, size=size: loadgen(s, "fg", n=200_000 // k, conns=4, workers=4, window=16, size=size))

    compare("durable background submit (SQLite)",
            lambda s: loadgen(s, "bg-submit", n=(2_000 if s.kind == "gearmand" else 20_000) // k,
                              conns=4, window=64), durable=True)

    # Memory per queued job, and whether it is returned after the drain.
    mem_n = 1_000_000 // k
    for kind, threads, count in (("gearmand", 1, min(mem_n, 200_000 // k)), ("polygeard", 2, mem_n)):
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
        rows.append((f"{kind} bytes/queued job ({count} queued)", per_job, kept, "B, % kept"))
        print(f"{kind}: {per_job:.0f} bytes per queued 16-byte job ({count} queued), "
              f"{kept:.0f}% of it kept after the drain", flush=True)

    # Submit cost must not grow with the queue (polygeard).
    s = Server("polygeard", 2)
    try:
        loadgen(s, "bg-submit", n=1_000, conns=4, window=64, tag="pre")
        small = loadgen(s, "bg-submit", n=50_000 // k, conns=4, window=64, tag="a")
        loadgen(s, "bg-submit", n=mem_n, conns=4, window=64, tag="fill", timeout=600)
        large = loadgen(s, "bg-submit", n=50_000 // k, conns=4, window=64, tag="b")
    finally:
        s.stop()
    rows.append(("polygeard submit rate: 1k queued vs 1M queued", small, large, "jobs/s"))
    print(f"polygeard submit rate with ~1k queued {small:.0f}/s, with ~{mem_n} queued {large:.0f}/s "
          f"({100 * large / small:.0f}%)", flush=True)

    if a.out:
        lines = ["| scenario | gearmand (best of -t 1/-t 2) | polygeard | ratio |", "|---|---|---|---|"]
        for label, g, p, unit in rows:
            if unit == "jobs/s" and not label.startswith("polygeard submit rate"):
                lines.append(f"| {label} | {g:.0f} | {p:.0f} | {p / g:.2f}x |")
        lines += ["", "| server | bytes per queued 16-byte job | share still held after the drain |",
                  "|---|---|---|"]
        for label, per_job, kept, unit in rows:
            if unit.startswith("B"):
                lines.append(f"| {label.replace(' bytes/queued job', '')} | {per_job:.0f} | {kept:.0f} % |")
        for label, small, large, unit in rows:
            if label.startswith("polygeard submit rate"):
                lines += ["", f"polygeard background submit rate with ~1,000 jobs queued: {small:.0f}/s; "
                              f"with ~{mem_n:,} queued: {large:.0f}/s ({100 * large / small:.0f} %)."]
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
