"""Python worker for `thumbnail`: shrinks an image with Pillow (pip install pillow).

The job's data is an image in any format Pillow reads (PNG, JPEG, GIF, ...); the
result is a PNG that fits in SIZE x SIZE pixels, aspect ratio kept. Progress goes
back to the client with WORK_STATUS; data that is not an image raises, and the
client gets the message as a job exception.

Run: python thumbnail.py HOST:PORT [SIZE]     (SIZE defaults to 128; Ctrl-C to stop)
"""

from __future__ import annotations

import io
import sys

import polygear
from PIL import Image


def make_thumbnail(job: polygear.Job, size: int) -> bytes:
    job.send_status(0, 3)
    with Image.open(io.BytesIO(job.data)) as source:  # raises if the data is no image
        source.load()
        job.send_status(1, 3)
        print(f"  [python worker] got a {source.width}x{source.height} {source.format} image", flush=True)
        # PNG stores these modes as they are; others (CMYK JPEGs, palettes, ...) become RGBA
        image = source if source.mode in ("RGB", "RGBA", "L", "LA") else source.convert("RGBA")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)  # in place, keeps the ratio
        job.send_status(2, 3)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    job.send_status(3, 3)
    print(f"  [python worker] sent back a {image.width}x{image.height} PNG", flush=True)
    return out.getvalue()


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4730"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    worker = polygear.Worker([server], concurrency=2)
    worker.register("thumbnail", lambda job: make_thumbnail(job, size))
    print(f"  [python worker] making {size}px thumbnails for {server}", flush=True)
    worker.work()  # until Ctrl-C; running jobs finish first


if __name__ == "__main__":
    main()
