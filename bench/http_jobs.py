#!/usr/bin/env python3
"""HTTP job submission: polygeard -r http vs gearmand's HTTP plugin, same load tools, same run.

Usage: python3 bench/http_jobs.py [--quick] [--repeat N] [--out FILE]

Both servers run with `-r http --http-port P` (gearmand 1.1.20 `-t 1`, its
fastest in bench/run.py; polygeard its default threads), a fresh server per
run, medians of --repeat runs. Jobs are `POST /bench` with a 16-byte body:
background (`X-Gearman-Background: true`: 200 once queued, no worker) and
foreground (the result is the body; raw workers from `loadgen` on the Gearman
port: 1 for one request at a time, 4 for 16). Two generators:

- `loadgen http-bg` / `http-fg`: HTTP/1.0, a new TCP connection per request,
  read until the server closes (gearmand's plugin always closes, so both
  servers are treated alike); `--keepalive`: one HTTP/1.1 connection per
  client, reported for polygeard only;
- ApacheBench (`ab -p FILE -T application/octet-stream`, Debian's
  apache2-utils): HTTP/1.0, new connection per request; `-k` keep-alive for
  polygeard only.

Cells: rate and the server's CPU per job (utime+stime of the server process);
ratios polygeard / gearmand.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # bench/run.py: Server, cpu_seconds, free_port, Run
from tls import median, snapshot_binaries  # bench/tls.py

FUNC = "bench"


class HttpServer(run.Server):
    """A job server with its HTTP front end on a second free port."""

    def __init__(self, kind: str, threads: int):
        self.http_port = run.free_port()
        super().__init__(kind, threads, extra=["-r", "http", "--http-port", str(self.http_port)])
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{kind}: HTTP port {self.http_port} not open") from None
                time.sleep(0.02)


def timed(server: run.Server, cmd: list[str], n: int, rate_of) -> run.Run:
    """Runs `cmd` (a load generator for `n` jobs) and measures the server's CPU around it."""
    before, lg_before = run.cpu_seconds(server.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    after, lg_after = run.cpu_seconds(server.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()[-500:]}")
    lg = (lg_after.ru_utime + lg_after.ru_stime) - (lg_before.ru_utime + lg_before.ru_stime)
    return run.Run(rate_of(out.stdout), (after - before) / n * 1e6, lg / n * 1e6)


def loadgen_rate(stdout: str) -> float:
    return float(stdout.split("rate=")[1])


def ab_rate(stdout: str) -> float:
    fields = dict(line.split(":", 1) for line in stdout.splitlines() if ":" in line)
    non2xx = int(fields.get("Non-2xx responses", "0").split()[0])
    # "Length" failures are replies longer or shorter than the first: job handles grow a digit.
    failed = sum(int(n) for kind, n in re.findall(r"(Connect|Receive|Length|Exceptions): (\d+)", stdout)
                 if kind != "Length")
    if failed or non2xx:
        raise RuntimeError(f"ab: {failed} failed (not counting length changes), {non2xx} non-2xx responses")
    return float(fields["Requests per second"].split()[0])


def one_run(kind: str, threads: int, gen: str, mode: str, conc: int, keepalive: bool, n: int,
            body: Path) -> run.Run:
    s = HttpServer(kind, threads)
    workers = None
    try:
        url = f"127.0.0.1:{s.http_port}"
        gear = f"127.0.0.1:{s.port}"
        nworkers = 1 if conc == 1 else 4
        if gen == "loadgen":
            cmd = [str(run.LOADGEN), f"http-{mode}", "--addr", url, "--conns", str(conc), "--n", str(n),
                   "--size", str(body.stat().st_size), "--func", FUNC]
            if mode == "fg":
                cmd += ["--worker-addr", gear, "--workers", str(nworkers)]
            if keepalive:
                cmd.append("--keepalive")
            return timed(s, cmd, n, loadgen_rate)
        if mode == "fg":  # ab has no workers: loadgen's, until n jobs are done
            workers = subprocess.Popen([str(run.LOADGEN), "drain", "--addr", gear, "--n", str(n),
                                        "--workers", str(nworkers), "--func", FUNC],
                                       stdout=subprocess.DEVNULL)
            time.sleep(0.3)  # registered before the first request (polygeard: 503 without a worker)
        cmd = ["ab", "-q", "-n", str(n), "-c", str(conc), "-p", str(body), "-T", "application/octet-stream"]
        if mode == "bg":
            cmd += ["-H", "X-Gearman-Background: true"]
        if keepalive:
            cmd.append("-k")
        return timed(s, [*cmd, f"http://{url}/{FUNC}"], n, ab_rate)
    finally:
        if workers is not None:
            try:
                workers.wait(timeout=10)
            except subprocess.TimeoutExpired:
                workers.kill()
                workers.wait()
        s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts, one repetition (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median; default 3)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    a = ap.parse_args()
    k = 10 if a.quick else 1
    repeat = 1 if a.quick else a.repeat
    if not shutil.which("ab"):
        sys.exit("bench: ApacheBench missing: apt-get install apache2-utils")

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=run.ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="pghttp-"))
    rows = []
    try:
        snapshot_binaries(tmp)
        version = subprocess.run([str(run.POLYGEARD), "--version"], capture_output=True, text=True,
                                 check=False).stdout
        if "(release build)" not in version:  # loadgen checks itself
            sys.exit(f"bench: {run.POLYGEARD} is not a release build ({version.strip()!r})")
        body = tmp / "body"
        body.write_bytes(b"x" * 16)
        servers = (("gearmand -t 1", "gearmand", 1, False), ("polygeard", "polygeard", 0, False),
                   ("polygeard, keep-alive", "polygeard", 0, True))
        for gen in ("loadgen", "ab"):
            for mode in ("bg", "fg"):
                for conc in (1, 16):
                    n = (20_000 if conc == 16 else 10_000) // k
                    runs: list[list[run.Run]] = [[] for _ in servers]
                    for _ in range(repeat):  # alternate servers, so drift hits all
                        for i, (_, kind, threads, keepalive) in enumerate(servers):
                            runs[i].append(one_run(kind, threads, gen, mode, conc, keepalive, n, body))
                    g, p, pk = (median(r) for r in runs)
                    rows.append((gen, mode, conc, g, p, pk))
                    print(f"{gen:<8} {mode} c={conc:<2} | gearmand {g.rate:>7.0f}/s {g.server_us:6.1f} us "
                          f"| polygeard {p.rate:>7.0f}/s {p.server_us:6.1f} us "
                          f"| ratio {p.rate / g.rate:5.2f}x CPU {p.server_us / g.server_us:5.2f}x "
                          f"| keep-alive {pk.rate:>7.0f}/s "
                          f"{pk.server_us:6.1f} us | generator {g.loadgen_us:5.1f} / {p.loadgen_us:5.1f} us",
                          flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.out:
        lines = ["| generator | jobs | concurrency | gearmand -t 1 | polygeard | rate ratio | CPU ratio "
                 "| polygeard keep-alive | generator CPU/job (gearmand / polygeard) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for gen, mode, conc, g, p, pk in rows:
            jobs = "background" if mode == "bg" else "foreground"
            lines.append(f"| {gen} | {jobs} | {conc} | {g.rate:.0f}/s, {g.server_us:.1f} µs "
                         f"| {p.rate:.0f}/s, {p.server_us:.1f} µs | {p.rate / g.rate:.2f}x "
                         f"| {p.server_us / g.server_us:.2f}x | {pk.rate:.0f}/s, {pk.server_us:.1f} µs "
                         f"| {g.loadgen_us:.1f} / {p.loadgen_us:.1f} µs |")
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
