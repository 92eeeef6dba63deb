"""Python worker for the demo's background queue: registers `send_digest`.

Each job is a JSON note `{"user": ..., "items": N}`; "sending" it is printing it.
Run: python send_digest.py HOST:PORT
"""

from __future__ import annotations

import json
import sys

import polygear


def send_digest(job: polygear.Job) -> str:
    note = json.loads(job.data)
    line = f"  [python] mailed the digest to {note['user']:<8} ({note['items']} items)\n"
    sys.stdout.write(line)  # one write per line: the worker runs 4 jobs at once
    sys.stdout.flush()
    return "sent"


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730"
    worker = polygear.Worker([server], concurrency=4)
    worker.register("send_digest", send_digest)
    worker.work()


if __name__ == "__main__":
    main()
