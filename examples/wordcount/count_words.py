"""Python worker for the word-count demo: registers `count_words`.

Each job is a piece of text; the result is one `count word` line per word,
after a `# counted by ...` header. Progress is reported per line with
WORK_STATUS so the client can draw a progress bar.

Run: python count_words.py HOST:PORT
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter

import polygear

WORD = re.compile(r"[a-z']+")


def count_words(job: polygear.Job) -> str:
    lines = job.data.decode().splitlines() or [""]
    counts: Counter[str] = Counter()
    for i, line in enumerate(lines, 1):
        counts.update(WORD.findall(line.lower()))
        job.send_status(i, len(lines))
        time.sleep(0.15)  # pretend each line is hard work, so progress is visible
    total = sum(counts.values())
    sys.stdout.write(f"  [python] counted a piece of {total} words\n")  # one write: 2 threads
    sys.stdout.flush()
    body = "".join(f"{n} {w}\n" for w, n in counts.items())
    return f"# counted by python (pid {os.getpid()}): {total} words\n{body}"


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730"
    worker = polygear.Worker([server], concurrency=2)
    worker.register("count_words", count_words)
    print(f"  [python] worker ready on {server} (2 threads)", flush=True)
    worker.work()  # until SIGINT: running jobs finish first
    print("  [python] worker stopped", flush=True)


if __name__ == "__main__":
    main()
