#!/usr/bin/env python3
"""Runs the code blocks of Markdown files, so the READMEs cannot drift from the code.

    python3 tests/docs/run_readmes.py --python PY --node-app DIR --bin DIR FILE.md ...

Which blocks run (a fenced block's language is the first word after the opening fence):

    python    the interpreter given by --python
    js        node, as CommonJS; as an ES module if it has `import ... from` or `export`
    mjs       node, as an ES module (top-level await works)
              JS snippets are written into the --node-app folder (it has node_modules/polygear),
              so `require('polygear')` and `import ... from 'polygear'` find the installed package
    ruby      ruby (GEM_HOME / GEM_PATH come from the caller's environment)
    sh        bash -euo pipefail, with --bin (polygeard, polygear) first on PATH
    rust      not run here: tests/interop/build.rs compiles every rust block of the root
              README.md into `cargo test -p polygear-interop --test readme`
    text, or no language: not code, ignored. Any other language is an error.

Skipping: `<!-- doctest: skip: REASON -->` on the line before the opening fence (blank lines
in between allowed) skips the block and prints the reason. It is the only way to skip; any
other `<!-- doctest` comment is an error.

Isolation: each block runs in a fresh temporary folder, inside its own user + network + PID
namespace (unshare) with only a loopback interface, so 127.0.0.1:4730 is free for it. When the
block's main process exits, or its deadline (--timeout, default 60 s) passes, every process it
started (`polygeard &` ...) is killed with the namespace.

A block passes when it exits 0 within its deadline, prints no Python traceback, unhandled
promise rejection or Ruby thread exception, and prints every output its comments claim.

Claimed output: a line that prints and ends with a comment. The comment's text (a leading
`=> ` dropped) must appear in the block's output (stdout and stderr):

    python   print(...)                       # VALUE
    js, mjs  console.log(...); // VALUE
    ruby     puts ... / p ... / pp ... / print ...   # VALUE   (or # => VALUE)
    sh       any command                      # prints: VALUE

The comment starts at the last " # " (python, ruby, sh) or " // " (js) of the line, so VALUE
itself cannot contain that. Comments on lines that do not print are ordinary comments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUST_CHECK = "checked by cargo test -p polygear-interop --test readme"
LANGS = {
    "python": "python",
    "js": "js",
    "mjs": "mjs",
    "ruby": "ruby",
    "sh": "sh",
    "rust": "rust",
}
NOT_CODE = {"", "text"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DOCTEST = re.compile(r"^\s*<!--\s*doctest\b(?P<rest>.*?)-->\s*$")
SKIP = re.compile(r"^:\s*skip:\s*(?P<reason>\S.*?)\s*$")
ESM = re.compile(r"^\s*(import\s[^;]*\bfrom\s|import\s*['\"]|export\s)", re.M)
# What counts as a line that prints, per language (searched in the code part of the line).
PRINTS = {
    "python": re.compile(r"\bprint\("),
    "js": re.compile(r"\bconsole\.(log|info|warn|error)\("),
    "ruby": re.compile(r"(^|[\s;{(])(puts|print|pp|p)([\s(]|$)"),
}
PRINTS["mjs"] = PRINTS["js"]
BAD_OUTPUT = (
    "Traceback (most recent call last)",  # Python, also from threads
    "UnhandledPromiseRejection",  # Node
    "Unhandled promise rejection",
    "terminated with exception (report_on_exception is true)",  # Ruby threads
)
NAMESPACE = [
    "unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--",
    "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
]  # fmt: skip


@dataclass
class Block:
    path: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None
    error: str | None = None  # the block cannot be run as written (unknown language, ...)
    claims: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def closes(line: str, marker: str) -> bool:
    """Whether ``line`` closes a block opened with ``marker``: the same character, at least as
    many, indented at most 3 spaces, nothing else (CommonMark)."""
    text = line.strip()
    return len(line) - len(line.lstrip(" ")) <= 3 and text.startswith(marker) and set(text) == {marker[0]}


def parse(path: str) -> list[Block]:
    """The code blocks of a Markdown file (text / untagged blocks left out)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    # a doctest comment waiting for its block: (line, skip reason, error)
    pending: tuple[int, str | None, str | None] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        comment = DOCTEST.match(line)
        if comment:
            skip = SKIP.match(comment.group("rest"))
            bad = None if skip else f"unknown doctest comment {line.strip()!r}"
            pending = (i, skip.group("reason") if skip else None, bad)
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip() and pending is not None:
                orphan = pending[2] or "a doctest comment not followed by a code block"
                blocks.append(Block(path, pending[0], "?", "", error=orphan))
                pending = None
            continue
        start, marker = i, fence.group("fence")
        body: list[str] = []
        while i < len(lines) and not closes(lines[i], marker):
            body.append(lines[i])
            i += 1
        closed = i < len(lines)
        i += 1
        info = fence.group("info").strip()
        word = re.split(r"[\s,{]", info, maxsplit=1)[0].lower() if info else ""
        skip_reason, error = (pending[1], pending[2]) if pending else (None, None)
        pending = None
        if word in NOT_CODE:
            if skip_reason or error:
                blocks.append(Block(path, start, "text", "", error="a doctest comment on a text block"))
            continue
        lang = LANGS.get(word, word)
        if word not in LANGS:
            error = error or f"no runner for language {word!r} (tag blocks that are not code `text`)"
        if not closed:
            error = "the code block is never closed"
        block = Block(path, start, lang, "\n".join(body) + "\n", skip=skip_reason, error=error)
        block.claims = claims(block)
        blocks.append(block)
    if pending is not None:
        blocks.append(Block(path, pending[0], "?", "", error="a doctest comment at the end of the file"))
    return blocks


def claims(block: Block) -> list[str]:
    """The outputs the block's comments claim (see the module docstring)."""
    found = []
    for line in block.code.splitlines():
        if block.lang == "sh":
            m = re.search(r"\s#\s*prints:\s*(.*?)\s*$", line)
            if m and m.group(1):
                found.append(m.group(1))
            continue
        printer = PRINTS.get(block.lang)
        if printer is None:
            continue
        mark = " // " if block.lang in ("js", "mjs") else " # "
        cut = line.rfind(mark)
        if cut < 0 or not printer.search(line[:cut]):
            continue
        value = line[cut + len(mark) :].strip()
        if value.startswith("=>"):
            value = value[2:].strip()
        if value:
            found.append(value)
    return found


@dataclass
class Options:
    python: str | None
    node_app: Path | None
    bin: Path | None
    timeout: float


def command(block: Block, opts: Options, workdir: Path) -> tuple[list[str], dict[str, str], Path | None]:
    """How to run the block: argv, environment, and a file to delete afterwards."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if opts.bin is not None:
        env["PATH"] = f"{opts.bin}{os.pathsep}{env.get('PATH', '')}"
    if block.lang == "python":
        if opts.python is None:
            raise RuntimeError("python blocks need --python")
        script = workdir / "block.py"
        script.write_text(block.code, encoding="utf-8")
        return [opts.python, str(script)], env, None
    if block.lang in ("js", "mjs"):
        if opts.node_app is None:
            raise RuntimeError("js blocks need --node-app")
        ext = ".mjs" if block.lang == "mjs" or ESM.search(block.code) else ".cjs"
        # Inside the app folder, so that 'polygear' resolves to its node_modules/polygear.
        script = opts.node_app / f".readme-doctest-{os.getpid()}-{block.line}{ext}"
        script.write_text(block.code, encoding="utf-8")
        return ["node", str(script)], env, script
    if block.lang == "ruby":
        script = workdir / "block.rb"
        script.write_text(block.code, encoding="utf-8")
        return ["ruby", str(script)], env, None
    if block.lang == "sh":
        if opts.bin is None:
            raise RuntimeError("sh blocks need --bin")
        script = workdir / "block.sh"
        script.write_text(block.code, encoding="utf-8")
        return ["bash", "-euo", "pipefail", str(script)], env, None
    raise RuntimeError(f"no runner for {block.lang}")


def run(block: Block, opts: Options) -> tuple[list[str], str]:
    """Runs the block; returns (problems, output). No problems: it passed."""
    with tempfile.TemporaryDirectory(prefix="readme-doctest-") as tmp:
        argv, env, cleanup = command(block, opts, Path(tmp))
        try:
            with tempfile.TemporaryFile() as out:
                proc = subprocess.Popen(
                    [*NAMESPACE, *argv],
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, killed below
                )
                problems = []
                try:
                    code = proc.wait(timeout=opts.timeout)
                except subprocess.TimeoutExpired:
                    code = None
                    problems.append(f"still running after {opts.timeout:g} s (killed)")
                finally:
                    kill_group(proc)
                out.seek(0)
                output = out.read().decode("utf-8", "replace")
        finally:
            if cleanup is not None:
                cleanup.unlink(missing_ok=True)
    if code not in (0, None):
        problems.append(f"exit status {code}")
    for bad in BAD_OUTPUT:
        if bad in output:
            problems.append(f"printed {bad!r}")
    for claim in block.claims:
        if claim not in output:
            problems.append(f"does not print {claim!r}, as a comment in the block claims")
    return problems, output


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kills the block's process group (and so its namespace) and reaps it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def check_namespace() -> None:
    """Fails loudly if private network namespaces are not available."""
    try:
        probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, text=True, timeout=30)
        problem = probe.stderr.strip() if probe.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        sys.exit(
            "run_readmes: cannot run blocks in a private network namespace "
            f"(`unshare --user --map-root-user --net --pid`, then `ip link set lo up`): {problem}\n"
            "The blocks use 127.0.0.1:4730 and start servers; they must not share the host's "
            "network. Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0) or run as root, and install util-linux and iproute2."
        )


def indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.rstrip("\n").splitlines())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--python", help="Python interpreter with polygear installed")
    ap.add_argument("--node-app", type=Path, help="Node app folder with node_modules/polygear")
    ap.add_argument("--bin", type=Path, help="folder holding polygeard and polygear")
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each block in seconds")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print the output of passing blocks")
    ap.add_argument("files", nargs="+", help="Markdown files")
    args = ap.parse_args(argv)
    node_app = args.node_app.resolve() if args.node_app else None
    if node_app is not None and not (node_app / "node_modules" / "polygear").is_dir():
        return fail_usage(f"--node-app {args.node_app}: no node_modules/polygear in it")
    bin_dir = args.bin.resolve() if args.bin else None
    for tool in ("polygeard", "polygear"):
        if bin_dir is not None and not os.access(bin_dir / tool, os.X_OK):
            return fail_usage(f"--bin {args.bin}: no executable {tool} in it")
    # absolute (cwd is a temporary folder), symlinks kept (a venv's python is one)
    python = os.path.abspath(args.python) if args.python and os.sep in args.python else args.python
    opts = Options(python, node_app, bin_dir, args.timeout)

    blocks = [b for f in args.files for b in parse(f)]
    if any(b.skip is None and b.error is None and b.lang != "rust" for b in blocks):
        check_namespace()
    passed = failed = skipped = 0
    for block in blocks:
        if block.error is not None:
            failed += 1
            print(f"FAIL {block.where} {block.lang}\n    {block.error}")
        elif block.skip is not None:
            skipped += 1
            print(f"skip {block.where} {block.lang}: {block.skip}")
        elif block.lang == "rust":
            if Path(block.path).resolve() != REPO / "README.md":
                failed += 1
                print(f"FAIL {block.where} rust\n    only the rust blocks of README.md are compiled "
                      "(tests/interop/build.rs)")  # fmt: skip
            else:
                skipped += 1
                print(f"skip {block.where} rust: {RUST_CHECK}")
        else:
            t0 = time.monotonic()
            try:
                problems, output = run(block, opts)
            except RuntimeError as exc:
                problems, output = [str(exc)], ""
            took = time.monotonic() - t0
            if problems:
                failed += 1
                print(f"FAIL {block.where} {block.lang} ({took:.1f} s)")
                print(indent("\n".join(problems)), end="")
                if output.strip():
                    print("    --- output ---")
                    print(indent(output), end="")
            else:
                passed += 1
                print(f"ok   {block.where} {block.lang} ({took:.1f} s)")
                if args.verbose and output.strip():
                    print(indent(output), end="")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if passed == 0 and failed == 0:
        print("no block ran")
    return 1 if failed or passed == 0 else 0


def fail_usage(message: str) -> int:
    print(f"run_readmes: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
