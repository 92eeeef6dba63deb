#!/usr/bin/env python3
"""TLS overhead on foreground jobs: polygeard with --ssl vs polygeard plain, same run.

Usage: python3 bench/tls.py [--quick] [--repeat N] [--threads T ...] [--out FILE]

Debian's gearmand has no TLS, so the peer is polygeard itself without TLS.
Every run gets a fresh server (an ECDSA P-256 certificate signed by a CA made
for the run with openssl); plain and TLS runs alternate, and each cell is
the median of --repeat runs. Two load generators:

- `loadgen fg` (raw packets, 4 clients x 4 workers, `--style separate` and
  `batched`; with `--tls` its sockets are tokio-rustls streams);
- `loadgen pair` (one polygear Client and one polygear Worker, TlsOptions).

Cells: rate, and the server's CPU per job (utime+stime of the server
process, /proc/PID/stat) — the issue's target is TLS/plain <= 1.3x on the
CPU per job; the load generator's CPU per job is shown too, as it shares
the 2 cores.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # bench/run.py: Server, loadgen, Run

TLS_CPU_TARGET = 1.3


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it."""
    def ssl(*a: str) -> None:
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=polygear-bench-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    ssl("req", *ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "srv.csr")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                           "extendedKeyUsage=serverAuth\n")
    ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext", "-out", "cert.pem")
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def median(runs: list[run.Run]) -> run.Run:
    return run.Run(*(statistics.median(r[i] for r in runs) for i in range(3)))


def snapshot_binaries(d: Path) -> None:
    """Measure copies: other builds may rewrite the shared target directory meanwhile."""
    for name in ("POLYGEARD", "LOADGEN"):
        src = getattr(run, name)
        dst = d / src.name
        shutil.copy2(src, dst)
        setattr(run, name, dst)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts, one repetition (smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (median; default 3)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="polygeard -t values to measure (0: its default, one per CPU)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    a = ap.parse_args()
    k = 10 if a.quick else 1
    repeat = 1 if a.quick else a.repeat

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "polygear-server", "-p", "polygear-bench"],
                   cwd=run.ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="pgtls-"))
    try:
        snapshot_binaries(tmp)
        version = subprocess.run([str(run.POLYGEARD), "--version"], capture_output=True, text=True,
                                 check=False).stdout
        if "(release build)" not in version:  # loadgen checks itself
            sys.exit(f"bench: {run.POLYGEARD} is not a release build ({version.strip()!r})")
        ca, cert, key = make_certs(tmp)
        rows: list[tuple[int, str, str, int, int, run.Run, run.Run]] = []
        extras: list[tuple[str, str, run.Run]] = []
        ssl_args = ["--ssl", "--ssl-certificate", str(cert), "--ssl-key", str(key)]

        # (generator, peers write, in flight, size, loadgen scenario options)
        cases: list[tuple[str, str, int, int, dict[str, object]]] = []
        for style in ("separate", "batched"):
            for window in (1, 16):
                for size in (16, 4096):
                    n = (50_000 if window == 1 else 200_000) // k
                    cases.append(("loadgen fg 4x4", style, window, size,
                                  dict(scenario="fg", n=n, conns=4, workers=4, window=window, size=size,
                                       style=style)))
        for window in (1, 16):
            for size in (16, 4096):
                n = (20_000 if window == 1 else 100_000) // k
                cases.append(("pair (polygear Client + Worker) 1x1", "polygear", window, size,
                              dict(scenario="pair", n=n, window=window, size=size)))

        plain_v = ("plain", [], {})
        tls_v = ("TLS", ssl_args, {"tls": ca})

        def measure(threads: int, opts: dict[str, object], variants) -> list[run.Run]:
            """Median per variant; the variants alternate, so drift in the machine's load hits all."""
            runs: list[list[run.Run]] = [[] for _ in variants]
            for _ in range(repeat):
                for i, (_, extra, lg_extra) in enumerate(variants):
                    s = run.Server("polygeard", threads, extra=extra)
                    try:
                        o = {**opts, **lg_extra}
                        runs[i].append(run.loadgen(s, str(o.pop("scenario")), **o))
                    finally:
                        s.stop()
            return [median(r) for r in runs]

        for threads in a.threads:
            for gen, style, window, size, opts in cases:
                p, t = measure(threads, opts, (plain_v, tls_v))
                rows.append((threads, gen, style, window, size, p, t))
                print(f"-t {threads} {gen:<36} {style:<8} {window:>2} in flight {size:>5} B "
                      f"| plain {p.rate:>7.0f}/s {p.server_us:5.1f} us | TLS {t.rate:>7.0f}/s "
                      f"{t.server_us:5.1f} us | rate {t.rate / p.rate:4.2f}x "
                      f"CPU {t.server_us / p.server_us:4.2f}x "
                      f"| loadgen {p.loadgen_us:5.1f} / {t.loadgen_us:5.1f} us", flush=True)

        # What the server's TLS preferences cost: the loadgen client offers one choice only.
        threads = a.threads[0]
        conns = 1000 // k
        hs_opts: dict[str, object] = dict(scenario="echo", n=conns, conns=conns)
        hs_variants = (plain_v,
                       ("TLS, rustls' default key exchange (P-384 first)", ssl_args, {"tls": ca}),
                       ("TLS, X25519", ssl_args, {"tls": ca, "tls-kx": "X25519"}),
                       ("TLS, P-256", ssl_args, {"tls": ca, "tls-kx": "secp256r1"}))
        for (label, _, _), r in zip(hs_variants, measure(threads, hs_opts, hs_variants), strict=True):
            extras.append((f"{conns} connections, one ECHO each", label, r))
        fg_opts: dict[str, object] = dict(scenario="fg", n=200_000 // k, conns=4, workers=4, window=16,
                                          size=4096, style="batched")
        fg_variants = (plain_v,
                       ("TLS, AES-256-GCM (rustls' first choice)", ssl_args, {"tls": ca}),
                       ("TLS, AES-128-GCM", ssl_args, {"tls": ca, "tls-suite": "TLS13_AES_128_GCM_SHA256"}),
                       ("TLS, ChaCha20-Poly1305", ssl_args,
                        {"tls": ca, "tls-suite": "TLS13_CHACHA20_POLY1305_SHA256"}))
        for (label, _, _), r in zip(fg_variants, measure(threads, fg_opts, fg_variants), strict=True):
            extras.append(("fg 4x4, batched, 16 in flight, 4096 B", label, r))
        for what, label, r in extras:
            print(f"-t {threads} {what:<40} {label:<48} {r.rate:>7.0f}/s {r.server_us:7.1f} us "
                  f"(per job or connection)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.out:
        lines = ["| polygeard -t | generator | peers write | in flight | size | plain | TLS | rate TLS/plain "
                 "| server CPU TLS/plain | loadgen CPU plain / TLS |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for threads, gen, style, window, size, p, t in rows:
            ratio = t.server_us / p.server_us
            mark = f"**{ratio:.2f}x**" if ratio > TLS_CPU_TARGET else f"{ratio:.2f}x"
            lines.append(f"| {threads or 'default'} | {gen} | {style} | {window} | {size} B "
                         f"| {p.rate:.0f}/s, {p.server_us:.1f} µs | {t.rate:.0f}/s, {t.server_us:.1f} µs "
                         f"| {t.rate / p.rate:.2f}x | {mark} | {p.loadgen_us:.1f} / {t.loadgen_us:.1f} µs |")
        lines += ["", f"| polygeard -t {a.threads[0] or 'default'} | client offers | rate | "
                  "server CPU per job (per connection for the handshakes) |", "|---|---|---|---|"]
        for what, label, r in extras:
            lines.append(f"| {what} | {label} | {r.rate:.0f}/s | {r.server_us:.1f} µs |")
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
