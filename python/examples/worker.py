"""A Gearman worker with two functions; Ctrl-C stops it after running jobs finish.

python examples/worker.py 127.0.0.1:4730
"""

from __future__ import annotations

import sys
import time

import polygear

worker = polygear.Worker(sys.argv[1:] or ["127.0.0.1:4730"], concurrency=4)


@worker.function("reverse")
def reverse(job: polygear.Job) -> bytes:
    return job.data[::-1]


@worker.function("count", timeout=60)
def count(job: polygear.Job) -> str:
    n = int(job.data or b"3")
    for i in range(n):
        job.send_status(i + 1, n)
        job.send_data(f"tick {i + 1}\n")
        time.sleep(0.1)
    return f"counted to {n}"


def shout(job: polygear.Job) -> str:
    if not job.data:
        raise ValueError("nothing to shout")
    return job.data.decode().upper()


worker.register("shout", shout)

if __name__ == "__main__":
    print(f"serving {worker.functions}; Ctrl-C to stop")
    worker.work()
