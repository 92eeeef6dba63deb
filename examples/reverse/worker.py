"""Python worker for `reverse`, the "hello world" of the Gearman talks.

The job's data is UTF-8 text; the result is the same text backwards
(by characters, not bytes, so "ünï" comes back as "ïnü").

Run: python worker.py HOST:PORT     (Ctrl-C to stop)
"""

from __future__ import annotations

import sys

import polygear


def reverse(job: polygear.Job) -> str:
    text = job.data.decode("utf-8")
    print(f"  [python worker] reversing {text!r}", flush=True)
    return text[::-1]


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730"
    worker = polygear.Worker([server])
    worker.register("reverse", reverse)
    print(f"  [python worker] ready on {server}", flush=True)
    worker.work()  # until Ctrl-C; a running job finishes first


if __name__ == "__main__":
    main()
