#!/usr/bin/env python3
"""Cross-language failure table (stdlib only; see tests/failures/README.md).

Runs the same failure scenarios from Python, Node and Ruby against one real
polygeard (and a closed port, a busy port, a name that cannot resolve, an HTTP
server that is not Gearman), and prints a table: scenario x language -> error
class, code and message. Every cell must match the scenario's expected error
category and message pattern (in the language's time unit), so the three
packages cannot drift apart. Exit status 1 on any mismatch.

Each language has a script (python/failures.py, node/failures.js,
ruby/failures.rb) with two modes: `worker <server>` serves the scenario
functions `<lang>.*` until SIGTERM, and `client <config-json>` runs every
scenario and prints one JSON line per scenario:
{"scenario", "category", "class", "code", "message"}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LANGS = ["py", "node", "rb"]
NAMES = {"py": "Python", "node": "Node", "rb": "Ruby"}
UNITS = {"py": "seconds", "node": "milliseconds", "rb": "seconds"}

# scenario -> (category, code or None, message pattern; {unit} is the language's time unit).
# Categories are the rows of bindings/common/src/errors.rs; each script maps its
# exception classes onto them.
EXPECT: dict[str, tuple[str, str | None, str]] = {
    "connect_refused": ("connection", "ECONNREFUSED", r"could not connect to 127\.0\.0\.1:\d+"),
    "host_not_found": ("connection", "ENOTFOUND", r"nosuch\.invalid"),
    "not_gearman": ("protocol", "EPROTOCOL", r"answered 'HTTP', not Gearman"),
    "worker_fail_fast": ("connection", "ECONNREFUSED", r"127\.0\.0\.1:\d+"),
    "empty_function": ("invalid", None, r"empty function name"),
    "zero_timeout": ("invalid", None, r"timeout.*{unit}|{unit}.*timeout"),
    "no_worker": (
        "timeout",
        "ETIMEDOUT",
        r"no worker has taken job \S+ for function '\w+\.nobody' in .*is a worker registered\? "
        r"\(timeout is in {unit}\)",
    ),
    "slow_job": ("timeout", "ETIMEDOUT", r"job \S+ did not finish within .*\(timeout is in {unit}\)"),
    "job_exception": ("jobexception", "EJOBEXCEPTION", r"boom from \w+"),
    "bad_result": ("jobexception", "EJOBEXCEPTION", r"returned (dict|Hash|object)"),
    "worker_timeout": ("jobfailed", "EJOBFAILED", r"failed: the worker exceeded its 1 s timeout"),
    "busy_port": ("connection", "EADDRINUSE", r"port \d+ on 127\.0\.0\.1 is already in use"),
    "bad_port": ("invalid", None, r"99999"),
}
SCENARIOS = list(EXPECT)


def log(msg: str) -> None:
    print(f"failures: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def admin(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command.encode() + b"\n")
        out = b""
        while not out.endswith(b".\n") and not out.startswith(b"ERR"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out.decode()


def wait_workers(port: int, funcs: list[str], timeout: float = 60) -> None:
    """Until every function in `funcs` has a worker (admin `status`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = set()
        for line in admin(port, "status").splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and int(parts[3]) > 0:
                have.add(parts[0])
        if all(f in have for f in funcs):
            return
        time.sleep(0.1)
    raise RuntimeError(f"workers for {funcs} never registered")


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "py": [args.python, os.path.join(HERE, "python", "failures.py")],
        "node": [args.node, os.path.join(HERE, "node", "failures.js")],
        "rb": [args.ruby, os.path.join(HERE, "ruby", "failures.rb")],
    }


def check(lang: str, row: dict[str, str | None]) -> str | None:
    """Why `row` does not match its scenario's expectation (None: it matches)."""
    category, code, pattern = EXPECT[row["scenario"] or ""]
    if row.get("category") != category:
        return f"expected a {category} error, got {row.get('category')} ({row.get('class')})"
    if code is not None and row.get("code") not in (None, code):
        return f"expected code {code}, got {row.get('code')}"
    regex = pattern.replace("{unit}", UNITS[lang])
    if not re.search(regex, row.get("message") or ""):
        return f"message does not match /{regex}/"
    return None


def shorten(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--polygeard", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--ruby", default=shutil.which("ruby") or "ruby")
    ap.add_argument("--node-module", help="POLYGEAR_NODE for the Node script")
    ap.add_argument("--langs", default=",".join(LANGS))
    args = ap.parse_args()
    langs = [lang for lang in args.langs.split(",") if lang]
    env = dict(os.environ)
    if args.node_module:
        env["POLYGEAR_NODE"] = args.node_module

    port, http_port = free_port(), free_port()
    dead = free_port()  # nothing listens here
    tmp = tempfile.mkdtemp(prefix="polygear-failures-")
    server = subprocess.Popen(
        [args.polygeard, "--port", str(port), "--listen", "127.0.0.1", "--http-port", str(http_port)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tmp, "polygeard.log"), "wb"),  # noqa: SIM115
    )
    workers: list[subprocess.Popen[bytes]] = []
    rows: dict[tuple[str, str], dict[str, str | None]] = {}
    try:
        wait_port(port, server)
        wait_port(http_port, server)
        cmds = commands(args)
        for lang in langs:
            workers.append(
                subprocess.Popen(
                    [*cmds[lang], "worker", f"127.0.0.1:{port}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(os.path.join(tmp, f"worker-{lang}.log"), "wb"),  # noqa: SIM115
                )
            )
        wait_workers(port, [f"{lang}.{f}" for lang in langs for f in ("sleep", "raise", "badresult", "timeout")])
        config = {
            "server": f"127.0.0.1:{port}",
            "http": f"127.0.0.1:{http_port}",
            "dead": f"127.0.0.1:{dead}",
            "busy_port": port,
        }
        for lang in langs:
            log(f"{NAMES[lang]} client")
            out = subprocess.run(
                [*cmds[lang], "client", json.dumps(config)],
                env=env,
                capture_output=True,
                timeout=180,
            )
            sys.stderr.write(out.stderr.decode(errors="replace"))
            for line in out.stdout.decode(errors="replace").splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    rows[(row["scenario"], lang)] = row
            if out.returncode != 0:
                log(f"{NAMES[lang]} client exited with {out.returncode}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    failures = []
    print()
    print("scenario".ljust(18) + "".join(NAMES[lang].ljust(62) for lang in langs))
    for scenario in SCENARIOS:
        cells = []
        for lang in langs:
            row = rows.get((scenario, lang))
            if row is None:
                why: str | None = "no result"
                cell = "MISSING"
            else:
                why = check(lang, row)
                code = f" {row['code']}" if row.get("code") else ""
                cell = f"{'ok' if why is None else 'FAIL'} {row.get('class')}{code}: {row.get('message')}"
            if why is not None:
                failures.append(f"{scenario} / {NAMES[lang]}: {why}")
            cells.append(shorten(cell, 60).ljust(62))
        print(scenario.ljust(18) + "".join(cells))
    print()
    for f in failures:
        print(f"FAIL {f}")
    total = len(SCENARIOS) * len(langs)
    print(f"{total - len(failures)} passed, {len(failures)} failed")
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
