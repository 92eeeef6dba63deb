"""Prints what a job server is doing (like `gearadmin --status --workers`).

python examples/admin.py 127.0.0.1:4730
"""

from __future__ import annotations

import sys

import polygear


def main(server: str) -> None:
    with polygear.Admin(server, timeout=5) as admin:
        print("version", admin.version())
        for s in admin.status():
            print(f"{s.function}\t{s.total}\t{s.running}\t{s.workers}")
        for w in admin.workers():
            print(w.fd, w.ip, w.client_id, ":", " ".join(w.functions))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730")
