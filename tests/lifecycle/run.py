#!/usr/bin/env python3
"""Cross-language job lifecycle (issue #19), one story on one polygeard.

The polygear extensions must work the same whichever language submits,
works or administers, so every step crosses languages:

1. retries and the dead set: a Ruby client submits a background job; a
   Python worker raises on it; the server retries it with backoff until its
   attempts run out; Node's Admin finds it in the dead set with the Python
   exception's text; the `polygear` CLI requeues it; the (now fixed) Python
   worker completes it, exactly once more;
2. retained results: a Node client submits with `retain`; the Python worker
   completes it; a Ruby client fetches the result by handle;
3. pause and cancel: Ruby's Admin pauses a function; a Python client's
   background job waits; a Node client cancels it; after resume it never runs;
4. cancelling a running job: a Node foreground submission with an
   AbortSignal is aborted while the Python worker runs it; the worker sees
   `job.cancelled()` turn true;
5. periodic jobs: Python's Admin adds a per-second schedule; its firings reach
   the Python worker; Ruby lists and deletes it.

The server runs with the SQLite queue (the store that keeps all of it).
Usage (scripts/test-matrix.sh runs it):
  run.py --polygeard BIN --cli BIN [--python PY] [--node-module DIR]
Exit status 1 on the first failed step (the logs are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg: str) -> None:
    print(f"lifecycle: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    """Polls `probe` until it returns something truthy; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Story:
    def __init__(self, args: argparse.Namespace, tmp: str):
        self.args, self.tmp = args, tmp
        self.port = free_port()
        self.server = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        if args.node_module:
            self.env["POLYGEAR_NODE"] = args.node_module
        self.procs: list[subprocess.Popen[bytes]] = []

    # --- processes -------------------------------------------------------

    def start_server(self) -> None:
        cmd = [self.args.polygeard, "--listen", "127.0.0.1", "--port", str(self.port),
               "-q", "libsqlite3", "--libsqlite3-db", os.path.join(self.tmp, "q.sqlite3"),
               "--retry", "mixed.flaky=3:200:1000"]
        self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=open(os.path.join(self.tmp, "polygeard.log"), "wb")))
        wait_for("polygeard to listen", self.listening, 15)

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start_python_worker(self) -> None:
        cmd = [self.args.python, os.path.join(HERE, "worker.py"), self.server, self.tmp]
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=open(os.path.join(self.tmp, "worker.log"), "wb")))

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    # --- one-shot programs in each language --------------------------------

    def run(self, lang: str, code: str, *argv: str) -> Any:
        """Runs `code` in `lang` with SERVER and ARGS; returns its last stdout line as JSON."""
        if lang == "py":
            cmd = [self.args.python, "-c", code]
        elif lang == "node":
            cmd = [self.args.node, "-e", code]
        else:
            cmd = [self.args.ruby, "-e", code]
        env = dict(self.env, SERVER=self.server, ARGS=json.dumps(list(argv)))
        out = subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=False)
        if out.returncode != 0:
            raise AssertionError(f"{lang} program failed ({out.returncode}):\n{code}\n"
                                 f"{out.stderr.decode(errors='replace')}")
        lines = out.stdout.decode().strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def cli(self, *words: str) -> str:
        out = subprocess.run([self.args.cli, "admin", "-h", "127.0.0.1", "-p", str(self.port), *words],
                             capture_output=True, timeout=30, check=False)
        if out.returncode != 0:
            raise AssertionError(f"polygear admin {' '.join(words)}: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode().strip()

    def runs(self, name: str) -> list[str]:
        try:
            with open(os.path.join(self.tmp, name)) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []


PY = "import json, os, polygear\nserver = os.environ['SERVER']\nargs = json.loads(os.environ['ARGS'])\n"
NODE = ("const pg = require(process.env.POLYGEAR_NODE || 'polygear');\n"
        "const server = process.env.SERVER; const args = JSON.parse(process.env.ARGS);\n"
        "(async () => {\n%s\n})().catch((e) => { console.error(e); process.exit(1); });\n")
RB = "require 'json'\nrequire 'polygear'\nserver = ENV['SERVER']\nargs = JSON.parse(ENV['ARGS'])\n"


def node(body: str) -> str:
    return NODE % body


def retries_and_dead_set(s: Story) -> None:
    handle = s.run("rb", RB + """
Polygear::Client.open(servers: [server]) do |c|
  puts JSON.generate(c.submit_background('mixed.flaky', 'payload-from-ruby'))
end
""")
    log(f"Ruby submitted {handle}; the Python worker fails it 3 times")
    dead = wait_for("the job in the dead set (Node Admin)", lambda: s.run("node", node("""
const a = new pg.Admin({server});
const dead = await a.deadJobs('mixed.flaky');
console.log(JSON.stringify(dead.map((d) => ({handle: d.handle, attempts: d.attempts,
  error: d.error, data: Buffer.from(d.data).toString()}))));
await a.close();
""")))
    assert len(dead) == 1, dead
    d = dead[0]
    assert d["handle"] == handle and d["attempts"] == 3, d
    assert "flaky failed on run 3" in d["error"], d
    assert d["data"] == "payload-from-ruby", d
    assert s.runs("flaky.runs") == ["fail"] * 3, s.runs("flaky.runs")
    log("dead record seen from Node: " + json.dumps(d))

    open(os.path.join(s.tmp, "fixed"), "w").close()
    assert s.cli("dead", "retry", "function", "mixed.flaky") == "1"
    wait_for("the requeued job to complete", lambda: s.runs("flaky.runs")[-1:] == ["ok"])
    time.sleep(0.5)  # nothing runs it again
    assert s.runs("flaky.runs") == ["fail"] * 3 + ["ok"], s.runs("flaky.runs")
    left = s.run("py", PY + """
with polygear.Admin(server) as a:
    print(json.dumps(len(a.dead_jobs('mixed.flaky'))))
""")
    assert left == 0, left
    log("requeued by the CLI, completed once by Python, dead set empty")


def retained_results(s: Story) -> None:
    handle = s.run("node", node("""
const c = new pg.Client({servers: [server]});
console.log(JSON.stringify(await c.submitBackground('mixed.upper', 'keep me', {retain: 60000})));
await c.close();
"""))
    got = wait_for("the retained result (Ruby)", lambda: s.run("rb", RB + """
Polygear::Client.open(servers: [server]) do |c|
  puts JSON.generate(c.result(args[0]))
end
""", handle))
    assert got == "KEEP ME", got
    log(f"Node's retained job {handle} fetched by Ruby: {got!r}")


def pause_and_cancel(s: Story) -> None:
    s.run("rb", RB + """
a = Polygear::Admin.new(server)
a.pause('mixed.upper')
puts JSON.generate(a.paused)
a.close
""")
    handle = s.run("py", PY + """
with polygear.Client([server]) as c:
    print(json.dumps(c.submit_background('mixed.upper', 'never run')))
""")
    cancelled = s.run("node", node("""
const c = new pg.Client({servers: [server]});
console.log(JSON.stringify(await c.cancel(args[0])));
await c.close();
"""), handle)
    assert cancelled is True, cancelled
    again = s.run("node", node("""
const c = new pg.Client({servers: [server]});
console.log(JSON.stringify(await c.cancel(args[0])));
await c.close();
"""), handle)
    assert again is False, again
    s.run("rb", RB + """
a = Polygear::Admin.new(server)
a.resume('mixed.upper')
puts JSON.generate(a.paused)
a.close
""")
    time.sleep(0.5)
    assert "never run" not in s.runs("upper.runs"), s.runs("upper.runs")
    log(f"paused by Ruby, {handle} from Python cancelled by Node, never ran after resume")


def cancel_running(s: Story) -> None:
    outcome = s.run("node", node("""
const c = new pg.Client({servers: [server]});
const ac = new AbortController();
const p = c.submit('mixed.slow', 'x', {signal: ac.signal});
const fs = require('fs');
const started = args[0] + '/slow.started';
while (!fs.existsSync(started)) await new Promise((r) => setTimeout(r, 50));
ac.abort();
let out;
try { await p; out = 'completed'; } catch (e) { out = e.name; }
console.log(JSON.stringify(out));
await c.close();
"""), s.tmp)
    assert outcome == "AbortError", outcome
    wait_for("the Python worker to see job.cancelled()", lambda: s.runs("slow.runs") == ["cancelled"])
    log("Node aborted its running job; the Python worker saw job.cancelled()")


def periodic(s: Story) -> None:
    s.run("py", PY + """
with polygear.Admin(server) as a:
    a.schedule_add('tick', '* * * * * *', 'mixed.tick', 'beat')
""")
    wait_for("two firings of the schedule", lambda: len(s.runs("tick.runs")) >= 2, 15)
    rows = s.run("rb", RB + """
a = Polygear::Admin.new(server)
names = a.schedules.map(&:name)
a.schedule_delete('tick')
puts JSON.generate(names + a.schedules.map(&:name))
a.close
""")
    assert rows == ["tick"], rows
    log(f"schedule from Python fired {len(s.runs('tick.runs'))} times; Ruby listed and deleted it")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polygeard", required=True)
    ap.add_argument("--cli", required=True, help="the polygear command")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--ruby", default=shutil.which("ruby") or "ruby")
    ap.add_argument("--node-module", help="POLYGEAR_NODE for the Node programs")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="polygear-lifecycle-")
    s = Story(args, tmp)
    ok = False
    try:
        s.start_server()
        s.start_python_worker()
        wait_for("the Python worker", lambda: "mixed.flaky" in s.cli("status"), 30)
        for step in (retries_and_dead_set, retained_results, pause_and_cancel, cancel_running, periodic):
            log(f"--- {step.__name__}")
            step(s)
        ok = True
    except AssertionError as e:
        log(f"FAILED: {e}")
    finally:
        s.stop()
        if not ok:
            for name in ("polygeard.log", "worker.log"):
                log(f"--- {name}")
                with open(os.path.join(tmp, name), errors="replace") as f:
                    sys.stderr.write(f.read()[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)
    log("all steps passed" if ok else "failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
