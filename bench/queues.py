#!/usr/bin/env python3
"""Durable queue backends: polygeard vs gearmand on the same database, same run.

Usage: python3 bench/queues.py [--quick] [--backends postgres,mysql,redis,libmemcached]
                               [--kills N] [--out FILE]

For each backend one database server is started (PostgreSQL, MariaDB, Redis,
memcached from Debian's packages, as user `nobody`, on a free loopback port in a
temporary directory, durable settings: fsync on, Redis appendfsync always) and
every scenario gets a fresh job server and a fresh table or key prefix:

* durable background submits with pipelining clients (4 connections x 64 in
  flight), measured with two load generators: target/release/loadgen (tokio,
  raw packets) and a plain-socket Python submitter (this file, one process
  per connection);
* the drain of the stored jobs by 2 workers;
* the job server's CPU time per job beside each rate (the database's CPU is
  not counted on either side);
* takeover (PostgreSQL and MySQL): two polygeard sharing the table with
  `--queue-lease`, 200 jobs queued on A, A killed with SIGKILL, the time until
  a worker connected only to B has received the first and the last of A's
  jobs; p50 and p99 (with 10 kills: the maximum) over `--kills` runs.

Debian's gearmand has no MySQL queue, so MySQL is reported against polygeard's
PostgreSQL figures only (no gearmand column).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import pwd
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import GEARMAND, POLYGEARD, ROOT, free_port, loadgen

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NOBODY = pwd.getpwnam("nobody")


def wait_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


def as_nobody(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                             "--clear-groups", *cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


class Database:
    """One database server for a whole backend's scenarios."""

    def __init__(self, kind: str):
        self.kind = kind
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix=f"pgq-{kind}-")
        os.chown(self.tmp, NOBODY.pw_uid, NOBODY.pw_gid)
        self.n = 0
        data = f"{self.tmp}/data"
        if kind == "postgres":
            subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                            "--clear-groups", str(PG_BIN / "initdb"), "-D", data, "-A", "trust",
                            "-U", "postgres", "--no-sync"], check=True, capture_output=True)
            self.proc = as_nobody([str(PG_BIN / "postgres"), "-D", data, "-p", str(self.port),
                                   "-k", self.tmp, "-c", "listen_addresses=127.0.0.1",
                                   "-c", "fsync=on", "-c", "max_connections=200"])
        elif kind == "mysql":
            subprocess.run(["mariadb-install-db", "--user=nobody", f"--datadir={data}",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           check=True, capture_output=True)
            self.proc = as_nobody(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}",
                                   f"--port={self.port}", "--bind-address=127.0.0.1",
                                   f"--socket={self.tmp}/sock", f"--pid-file={self.tmp}/pid",
                                   "--innodb-flush-log-at-trx-commit=1", "--skip-grant-tables"])
        elif kind == "redis":
            self.proc = as_nobody(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--dir", self.tmp, "--appendonly", "yes",
                                   "--appendfsync", "always", "--save", ""])
        elif kind == "libmemcached":
            self.proc = as_nobody(["memcached", "-p", str(self.port), "-l", "127.0.0.1", "-U", "0",
                                   "-m", "1024"])
        else:
            raise ValueError(kind)
        wait_port(self.port, kind)
        if kind == "postgres":
            time.sleep(0.5)  # accepting TCP before it accepts logins

    def fresh(self) -> str:
        """A new table name or key prefix."""
        self.n += 1
        return f"bench{self.n}"

    def flags(self, server: str, space: str) -> list[str]:
        """The queue flags of `server` (gearmand or polygeard) for table/prefix `space`."""
        p = str(self.port)
        if self.kind == "postgres":
            return ["-q", "postgres", "--libpq-conninfo",
                    f"host=127.0.0.1 port={p} user=postgres dbname=postgres", "--libpq-table", space]
        if self.kind == "mysql":
            return ["-q", "mysql", "--mysql-host", "127.0.0.1", "--mysql-port", p,
                    "--mysql-user", "root", "--mysql-db", "mysql", "--mysql-table", space]
        if self.kind == "redis":
            # gearmand's Redis queue has no prefix flag: one database per server run.
            return ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port", p] + (
                ["--redis-prefix", space] if server == "polygeard" else [])
        return ["-q", "libmemcached", "--libmemcached-servers", f"127.0.0.1:{p}"] + (
            ["--libmemcached-prefix", space] if server == "polygeard" else [])

    def flush(self) -> None:
        """Empties a key-value store between scenarios (gearmand uses fixed prefixes)."""
        if self.kind in ("redis", "libmemcached"):
            with socket.create_connection(("127.0.0.1", self.port)) as s:
                s.sendall(b"FLUSHALL\r\n" if self.kind == "redis" else b"flush_all\r\n")
                s.recv(100)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class JobServer:
    def __init__(self, kind: str, flags: list[str], port: int | None = None):
        self.kind = kind
        self.port = port or free_port()
        if kind == "gearmand":
            # Its own pid file: gearmand removes the file when it exits.
            self.pidfile = tempfile.mktemp(prefix="pgq-gearmand-", suffix=".pid")
            cmd = [GEARMAND, "-L", "127.0.0.1", "-p", str(self.port), "-t", "1", "-l", "none",
                   "-P", self.pidfile]
        else:
            cmd = [str(POLYGEARD), "-L", "127.0.0.1", "-p", str(self.port), "-t", "2", "-l", "none"]
        self.proc = subprocess.Popen(cmd + flags, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port, kind)
        except RuntimeError as e:
            self.proc.kill()
            err = self.proc.stderr.read().decode()[-500:]
            raise RuntimeError(f"{kind} {' '.join(flags)}: {err}") from e

    def cpu(self) -> float:
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.kind == "gearmand":
            Path(self.pidfile).unlink(missing_ok=True)


def packet(kind: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return b"\0REQ" + struct.pack(">II", kind, len(body)) + body


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_packet(s: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    while True:
        if len(buf) >= 12:
            kind, n = struct.unpack(">II", buf[4:12])
            if len(buf) >= 12 + n:
                body = bytes(buf[12:12 + n])
                del buf[:12 + n]
                return kind, body
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk


def py_conn(port: int, n: int, window: int, tag: str) -> None:
    """One connection: `window` submissions in flight until `n` are acknowledged."""
    s = connect(port)
    buf = bytearray()
    sent = got = 0
    while got < n:
        out = []
        while sent < n and sent - got < window:
            out.append(packet(18, b"q", f"{tag}-{sent}".encode(), b"x" * 16))
            sent += 1
        if out:
            s.sendall(b"".join(out))
        chunk = s.recv(1 << 16)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
        while len(buf) >= 12:
            kind, size = struct.unpack(">II", buf[4:12])
            if len(buf) < 12 + size:
                break
            if kind != 8:
                raise RuntimeError(f"submit answered {kind}: {bytes(buf[12:12 + size])[:200]!r}")
            del buf[:12 + size]
            got += 1
    s.close()


def py_submit(port: int, n: int, conns: int = 4, window: int = 64, tag: str = "py") -> float:
    """The second load generator: plain sockets, one process per connection (so
    that Python itself is not the limit), `window` submissions in flight each."""
    share = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    procs = [multiprocessing.Process(target=py_conn, args=(port, share[i], window, f"{tag}-{i}"))
             for i in range(conns)]
    t0 = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("a submitter process failed")
    return n / (time.time() - t0)


def measure(db: Database, server: str, n: int) -> dict[str, float]:
    """Submit rate (loadgen and Python), drain rate, CPU per job, on fresh servers."""
    res: dict[str, float] = {}
    for gen in ("loadgen", "python"):
        db.flush()
        js = JobServer(server, db.flags(server, db.fresh()))
        try:
            c0 = js.cpu()
            if gen == "loadgen":
                res["submit"] = loadgen(js, "bg-submit", n=n, conns=4, window=64, tag="lg", func="q")
                res["submit_cpu_us"] = (js.cpu() - c0) / n * 1e6
                c0 = js.cpu()
                res["drain"] = loadgen(js, "drain", n=n, workers=2, func="q")
                res["drain_cpu_us"] = (js.cpu() - c0) / n * 1e6
            else:
                res["submit_py"] = py_submit(js.port, n)
                res["submit_py_cpu_us"] = (js.cpu() - c0) / n * 1e6
        finally:
            js.kill()
    return res


def takeover(db: Database, lease: float, jobs: int = 200) -> tuple[float, float]:
    """Seconds from SIGKILL of A until a worker on B received the first and the
    last of A's jobs."""
    space = db.fresh()
    shared = [*db.flags("polygeard", space), "--queue-lease", str(lease), "--server-id"]
    a = JobServer("polygeard", [*shared, "a"])
    b = JobServer("polygeard", [*shared, "b"])
    try:
        s = connect(a.port)
        buf = bytearray()
        s.sendall(b"".join(packet(18, b"q", f"t{i}".encode(), b"x") for i in range(jobs)))
        for _ in range(jobs):
            kind, _ = read_packet(s, buf)
            assert kind == 8, kind
        w = connect(b.port)
        w.settimeout(lease * 4 + 30)
        wbuf = bytearray()
        w.sendall(packet(1, b"q"))
        t0 = time.time()
        a.kill()
        seen: set[bytes] = set()
        first = 0.0
        w.sendall(packet(30))  # GRAB_JOB_UNIQ
        while len(seen) < jobs:
            kind, body = read_packet(w, wbuf)
            if kind == 31:  # JOB_ASSIGN_UNIQ
                first = first or time.time() - t0
                handle, _, unique, _ = body.split(b"\0", 3)
                if unique in seen:
                    raise RuntimeError(f"job {unique!r} ran twice")
                seen.add(unique)
                w.sendall(packet(13, handle, b"") + packet(30))  # WORK_COMPLETE, GRAB
            elif kind == 10:  # NO_JOB
                w.sendall(packet(4))  # PRE_SLEEP
                while read_packet(w, wbuf)[0] != 6:  # NOOP
                    pass
                w.sendall(packet(30))
        return first, time.time() - t0
    finally:
        for js in (a, b):
            if js.proc.poll() is None:
                js.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--backends", default="postgres,mysql,redis,libmemcached")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/queues.py starts the databases as user nobody: run it as root")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=ROOT, check=True)
    version = subprocess.run([str(POLYGEARD), "--version"], capture_output=True, text=True).stdout
    if "(release build)" not in version:
        sys.exit(f"bench: {POLYGEARD} is not a release build ({version.strip()!r}); refusing to measure it")
    lines = ["| backend | server | submit/s (loadgen) | CPU µs/job | submit/s (python) | CPU µs/job "
             "| drain/s | CPU µs/job |", "|---|---|---|---|---|---|---|---|"]
    takeovers = []
    for kind in a.backends.split(","):
        db = Database(kind)
        try:
            servers = ["polygeard"] if kind == "mysql" else ["gearmand", "polygeard"]
            results = {}
            for server in servers:
                n = (5_000 if server == "gearmand" else 50_000) // (5 if a.quick else 1)
                r = measure(db, server, n)
                results[server] = r
                lines.append(f"| {kind} | {server} | {r['submit']:.0f} | {r['submit_cpu_us']:.1f} | "
                             f"{r['submit_py']:.0f} | {r['submit_py_cpu_us']:.1f} | {r['drain']:.0f} | "
                             f"{r['drain_cpu_us']:.1f} |")
                print(lines[-1], flush=True)
            if "gearmand" in results:
                g, p = results["gearmand"], results["polygeard"]
                lines.append(f"| {kind} | **ratio** | **{p['submit'] / g['submit']:.1f}x** | "
                             f"{p['submit_cpu_us'] / g['submit_cpu_us']:.2f}x | "
                             f"**{p['submit_py'] / g['submit_py']:.1f}x** | "
                             f"{p['submit_py_cpu_us'] / g['submit_py_cpu_us']:.2f}x | "
                             f"**{p['drain'] / g['drain']:.1f}x** | "
                             f"{p['drain_cpu_us'] / g['drain_cpu_us']:.2f}x |")
                print(lines[-1], flush=True)
            if kind in ("postgres", "mysql") and a.kills > 0:
                runs = [takeover(db, a.lease) for _ in range(a.kills)]
                firsts, alls = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
                takeovers.append(f"| {kind} | {a.lease:g} s | {statistics.median(firsts):.2f} s | "
                                 f"{firsts[-1]:.2f} s | {statistics.median(alls):.2f} s | "
                                 f"{alls[-1]:.2f} s | {len(runs)} |")
                print(takeovers[-1], flush=True)
        finally:
            db.stop()
    text = "\n".join(lines)
    if takeovers:
        text += ("\n\n| backend | lease | first job p50 | first job p99 (max) | all 200 jobs p50 "
                 "| all p99 (max) | kills |\n|---|---|---|---|---|---|---|\n" + "\n".join(takeovers))
    print("\n" + text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
