"""The examples under examples/, run end to end so they never rot.

reverse (every worker language with every client language), thumbnail, mailqueue and
shell run against one polygeard (memory queue) on a free loopback port; the Python
examples are linted (ruff, mypy --strict) and the Node, Ruby and shell ones
syntax-checked. examples/wordcount is the demo (scripts/demo.sh, tested on a fresh clone).

Run by scripts/test-examples.sh, which installs polygear into the tests' environment
and sets: POLYGEAR_BIN (folder with polygeard and polygear), NODE_PATH (the Node app
folder's node_modules) and GEM_HOME/GEM_PATH (the tests' gems). The Python examples
run with the interpreter running these tests (the tests' venv).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polygear
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LINTED = ("reverse", "thumbnail", "mailqueue", "shell")
BIN = Path(os.environ.get("POLYGEAR_BIN", ROOT / "target" / "debug"))
PYTHON = sys.executable
RUN_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """A long-running example process; its output goes to a log file read on failure."""

    def __init__(self, name: str, args: list[str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(name: str, args: list[str], logs: Path) -> Iterator[Process]:
    p = Process(name, args, logs)
    try:
        yield p
    finally:
        p.stop()


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A foreground step with a deadline; stdout and stderr together in `.stdout`."""
    return subprocess.run(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT, env=env
    )


class JobServer:
    """polygeard with its memory queue on a free loopback port."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        command = [str(BIN / "polygeard"), "-L", "127.0.0.1", "-p", str(self.port), "-q", "builtin"]
        self.process = Process("polygeard", command, logs)
        deadline = time.monotonic() + 10
        while True:
            try:  # polygear.Admin connects at once
                self.admin = polygear.Admin(self.address, timeout=10)
                return
            except polygear.GearmanError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"polygeard did not start:\n{self.process.output()}") from None
                time.sleep(0.1)

    def workers_of(self, function: str) -> int:
        return next((s.workers for s in self.admin.status() if s.function == function), 0)

    def wait_workers(self, function: str, n: int, timeout: float = 20) -> bool:
        """Until the server has exactly `n` workers for `function`."""
        deadline = time.monotonic() + timeout
        while self.workers_of(function) != n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        self.admin.close()
        self.process.stop()


@pytest.fixture(scope="session")
def logs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="polygear-examples-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def server(logs: Path) -> Iterator[JobServer]:
    s = JobServer(logs)
    yield s
    s.stop()


def files(suffix: str) -> list[str]:
    return sorted(str(f) for d in LINTED for f in (EXAMPLES / d).glob(f"*{suffix}"))


# --- lint --------------------------------------------------------------------------------


def test_python_examples_pass_ruff() -> None:
    config = ["--config", str(ROOT / "python" / "pyproject.toml")]
    bindir = Path(PYTHON).parent
    check = run([str(bindir / "ruff"), "check", *config, *files(".py")])
    assert check.returncode == 0, check.stdout
    fmt = run([str(bindir / "ruff"), "format", *config, "--check", *files(".py")])
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.parametrize("folder", [d for d in LINTED if list((EXAMPLES / d).glob("*.py"))])
def test_python_examples_pass_mypy_strict(folder: str) -> None:
    # one folder at a time: each has its own worker/client modules
    sources = sorted(str(f) for f in (EXAMPLES / folder).glob("*.py"))
    mypy = Path(PYTHON).parent / "mypy"
    r = run([str(mypy), "--strict", "--no-incremental", "--cache-dir=/dev/null", *sources])
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize(
    ("suffix", "command"),
    [(".js", ["node", "--check"]), (".rb", ["ruby", "-wc"]), (".sh", ["bash", "-n"])],
)
def test_node_ruby_and_shell_examples_parse_without_warnings(suffix: str, command: list[str]) -> None:
    examples = files(suffix)
    assert examples, f"no {suffix} examples found"
    for f in examples:
        r = run([*command, f])
        assert r.returncode == 0 and "warning" not in r.stdout, f"{f}:\n{r.stdout}"


# --- reverse: every worker language x every client language ---------------------------

LANGS = ("python", "node", "ruby")


def reverse_command(lang: str, role: str) -> list[str]:
    script = EXAMPLES / "reverse" / f"{role}.{ {'python': 'py', 'node': 'js', 'ruby': 'rb'}[lang] }"
    return [{"python": PYTHON, "node": "node", "ruby": "ruby"}[lang], str(script)]


@pytest.mark.parametrize("worker", LANGS)
def test_reverse_worker_serves_every_client_language(worker: str, server: JobServer, logs: Path) -> None:
    with running(f"reverse-{worker}-worker", [*reverse_command(worker, "worker"), server.address], logs) as w:
        assert server.wait_workers("reverse", 1), f"the {worker} worker did not register:\n{w.output()}"
        for client in LANGS:
            before = w.output().count("reversing")
            r = run([*reverse_command(client, "client"), server.address, "Hello, Gearman!", "ünïcödé ☃"])
            assert r.returncode == 0, f"{worker} worker + {client} client:\n{r.stdout}\n{w.output()}"
            assert "!namraeG ,olleH" in r.stdout and "☃ édöcïnü" in r.stdout, r.stdout
            # each text reached this worker (the server had no other)
            assert w.output().count("reversing") == before + 2, w.output()
    assert server.wait_workers("reverse", 0), f"the {worker} reverse worker did not unregister"


# --- thumbnail: Python (Pillow) worker, Node client --------------------------------------


@pytest.fixture
def thumbnail_worker(server: JobServer, logs: Path) -> Iterator[Process]:
    cmd = [PYTHON, str(EXAMPLES / "thumbnail" / "thumbnail.py"), server.address, "128"]
    with running("thumbnail-worker", cmd, logs) as w:
        assert server.wait_workers("thumbnail", 1), w.output()
        yield w
    server.wait_workers("thumbnail", 0)


def test_thumbnail_node_client_gets_a_png_from_the_python_worker(
    thumbnail_worker: Process, server: JobServer, tmp_path: Path
) -> None:
    from PIL import Image

    thumb = tmp_path / "thumb.png"
    r = run(["node", str(EXAMPLES / "thumbnail" / "client.js"), server.address, str(thumb)])
    assert r.returncode == 0 and "progress 3/3" in r.stdout, f"{r.stdout}\n{thumbnail_worker.output()}"
    with Image.open(thumb) as im:
        im.verify()  # the PNG's structure and CRCs
    with Image.open(thumb) as im:
        im.load()  # the pixels decode
        assert im.format == "PNG"
        assert im.size == (128, 96)  # 640x480 scaled to fit 128x128
        colours = im.convert("RGB").getcolors(1 << 16)
        assert colours is None or len(colours) > 100, "the thumbnail is not a picture"


def test_thumbnail_of_a_file_that_is_no_image_reaches_the_client_as_a_job_exception(
    thumbnail_worker: Process, server: JobServer, tmp_path: Path
) -> None:
    out = tmp_path / "bad.png"
    readme = EXAMPLES / "thumbnail" / "README.md"
    r = run(["node", str(EXAMPLES / "thumbnail" / "client.js"), server.address, str(out), str(readme)])
    assert r.returncode == 1, r.stdout
    assert "EJOBEXCEPTION: cannot identify image file" in r.stdout, r.stdout
    assert not out.exists()


# --- mailqueue: Ruby client (background jobs, uniques, status), Node worker --------------


def test_mailqueue_ruby_background_jobs_reach_the_node_worker(
    server: JobServer, logs: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    cmd = ["node", str(EXAMPLES / "mailqueue" / "worker.js"), server.address, str(outbox)]
    with running("mail-worker", cmd, logs) as w:
        assert server.wait_workers("send_mail", 1), w.output()
        r = run(["ruby", str(EXAMPLES / "mailqueue" / "client.rb"), server.address])
        context = f"{r.stdout}\n{w.output()}"
        assert r.returncode == 0, context
        assert "all 5 mails sent" in r.stdout and "again: same handle" in r.stdout, context
        lines = r.stdout.splitlines()
        assert any(line.endswith(" running 1/2") for line in lines), context
        assert sum(line.endswith(" done") for line in lines) == 5, context
        mails = sorted(outbox.iterdir())
        assert len(mails) == 5, mails
        recipients = [[line for line in m.read_text().splitlines() if line.startswith("To: ")] for m in mails]
        assert all(len(to) == 1 and to[0].endswith("@example.com") for to in recipients), recipients
        assert w.output().count("  [node worker] sent ") == 5, w.output()
    server.wait_workers("send_mail", 0)


# --- shell: the polygear CLI in pipelines --------------------------------------------------


def test_shell_pipelines_with_the_polygear_cli(server: JobServer, tmp_path: Path) -> None:
    folder = tmp_path / "shell"
    env = {**os.environ, "POLYGEAR": str(BIN / "polygear")}
    r = run(["bash", str(EXAMPLES / "shell" / "pipeline.sh"), server.address, str(folder)], env=env)
    assert r.returncode == 0, r.stdout
    # tail -f app.log | polygear -n -f logger: every line reached the logger worker, in order
    app_log = (folder / "app.log").read_text()
    assert len(app_log.splitlines()) == 4, app_log
    assert (folder / "collected.log").read_text() == app_log
    # ls / | polygear -f wc, with `polygear -w -f wc -- wc -l` as the worker
    entries = len([e for e in os.listdir("/") if not e.startswith(".")])  # what `ls /` lists
    assert f"polygear -f wc  ->  {entries} entries" in r.stdout, r.stdout
    for function in ("logger", "wc"):
        assert server.wait_workers(function, 0), f"pipeline.sh left a {function} worker running"
