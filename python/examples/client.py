"""Runs jobs against the example worker (examples/worker.py).

python examples/client.py 127.0.0.1:4730
"""

from __future__ import annotations

import sys

import polygear


def main(servers: list[str]) -> None:
    with polygear.Client(servers, timeout=30) as client:
        print(client.submit("reverse", b"hello world"))
        print(client.submit_many("reverse", [b"one", b"two", b"three"]))

        job = client.submit_job("count", b"3")
        for event in job:
            if event.kind == "status":
                print(f"progress {event.numerator}/{event.denominator}")
            elif event.kind == "data":
                print("partial:", event.data.decode().strip())
        print("result:", job.result().decode())

        handle = client.submit_background("reverse", "in the background", priority="low")
        status: polygear.JobStatus = client.status(handle)
        print(handle, "known" if status.known else "done")

        try:
            client.submit("shout", b"")
        except polygear.JobException as exc:
            print("worker raised:", exc.message)
        except polygear.GearmanConnectionError as exc:
            print("server down:", exc)


if __name__ == "__main__":
    main(sys.argv[1:] or ["127.0.0.1:4730"])
