"""Python client for `reverse`: sends each argument (or a greeting) and prints the answer.

Any `reverse` worker will do, whatever its language.

Run: python client.py HOST:PORT [TEXT ...]
"""

from __future__ import annotations

import sys

import polygear


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730"
    texts = sys.argv[2:] or ["Hello, Gearman!"]
    # timeout: give up on a job after 10 s instead of waiting for a worker forever
    with polygear.Client([server], timeout=10) as client:
        for text in texts:
            answer = client.submit("reverse", text).decode("utf-8")
            print(f"  [python client] reverse({text!r}) = {answer!r}")


if __name__ == "__main__":
    main()
