#!/usr/bin/env python3
"""Writes the seed corpus of the byte-stream fuzz targets (codec_request,
codec_response, admin_command) under fuzz/corpus/<target>/ from the
conformance vectors of protocol.md section 9 (captured from gearmand 1.1.20)
and a few admin commands and replies. Run it again after changing the
vectors; files are named by content, so it is idempotent.

The structured targets (packet_roundtrip, server_state) take `arbitrary`
input that cannot be written by hand: their corpus is a minimised run
(bench/fuzz/run.sh --merge), see bench/fuzz/README.md.

Input layout of the codec targets (fuzz/src/codec.rs): byte 0 picks the
limits (max packet [0, 1, 12, 100, 4096, 64 MiB][b % 6], max line
[0, 1, 8, 64, 4096][b / 6 % 5]), byte 1 seeds the chunk sizes, then the stream.
"""

import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def hx(s):
    return bytes.fromhex(s)


# Requests (client or worker to server), from protocol.md section 9.
REQ = [
    "00 52 45 51 00 00 00 10 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64",  # ECHO_REQ
    "00 52 45 51 00 00 00 10 00 00 00 00",  # ECHO_REQ empty
    "00 52 45 51 00 00 00 12 00 00 00 0f 72 65 76 65 72 73 65 00 75 31 00 74 65 73 74",  # SUBMIT_JOB_BG
    "00 52 45 51 00 00 00 0f 00 00 00 06 48 3a 76 6d 3a 31",  # GET_STATUS
    "00 52 45 51 00 00 00 29 00 00 00 02 75 31",  # GET_STATUS_UNIQUE
    "00 52 45 51 00 00 00 16 00 00 00 08 77 6f 72 6b 65 72 2d 41",  # SET_CLIENT_ID
    "00 52 45 51 00 00 00 01 00 00 00 03 72 65 76",  # CAN_DO
    "00 52 45 51 00 00 00 17 00 00 00 09 72 65 76 74 00 35 30 30 30",  # CAN_DO_TIMEOUT
    "00 52 45 51 00 00 00 09 00 00 00 00",  # GRAB_JOB
    "00 52 45 51 00 00 00 04 00 00 00 00",  # PRE_SLEEP
    "00 52 45 51 00 00 00 07 00 00 00 0c 72 65 76 00 73 61 6d 65 00 61 62 63",  # SUBMIT_JOB
    "00 52 45 51 00 00 00 1e 00 00 00 00",  # GRAB_JOB_UNIQ
    "00 52 45 51 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 34 00 31 00 34",  # WORK_STATUS
    "00 52 45 51 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 34 00 63 62 61",  # WORK_COMPLETE
    "00 52 45 51 00 00 00 1a 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73",  # OPTION_REQ
    "00 52 45 51 00 00 00 19 00 00 00 0b 48 3a 76 6d 3a 35 00 62 6f 6f 6d",  # WORK_EXCEPTION
    "00 52 45 51 00 00 00 0e 00 00 00 06 48 3a 76 6d 3a 36",  # WORK_FAIL
    "00 52 45 51 00 00 00 25 00 00 00 19 65 78 63 00 72 31 00 6d 79 72 65 64 75 63 65 72 00 00"
    " 70 61 79 6c 6f 61 64",  # SUBMIT_REDUCE_JOB
    "00 52 45 51 00 00 00 23 00 00 00 15 65 78 63 00 73 31 00 30 00 30 00 31 00 31 00 30 00 64 61 74 61",  # SCHED
    "00 52 45 51 00 00 00 24 00 00 00 1c 65 78 63 00 65 70 31 00 31 37 39 35 34 37 38 35 37 39 00"
    " 65 70 6f 63 68 64 61 74 61",  # SUBMIT_JOB_EPOCH
]

# Invalid input (section 9.3).
BAD = [
    "00 52 45 51 00 00 00 00 00 00 00 00",  # type 0
    "00 52 45 51 00 00 00 2b 00 00 00 00",  # type 43
    "00 58 59 5a 00 00 00 10 00 00 00 04 70 69 6e 67",  # bad magic
    "00 52 45 51 00 00 00 05 00 00 00 00",  # UNUSED
    "00 52 45 51 00 00 00 07 00 00 00 03 61 62 63",  # SUBMIT_JOB without separators
    "00 52 45 51 00 00 00 10 ff ff ff ff",  # declared size 4 GiB-1
    "00 52 45 51 00 00 00 10 00 00 04 01",  # 1025 bytes declared, nothing sent
]

# Responses (server to client or worker), section 9.
RES = [
    "00 52 45 53 00 00 00 11 00 00 00 0b 68 65 6c 6c 6f 00 77 6f 72 6c 64",  # ECHO_RES
    "00 52 45 53 00 00 00 08 00 00 00 06 48 3a 76 6d 3a 31",  # JOB_CREATED
    "00 52 45 53 00 00 00 14 00 00 00 0e 48 3a 76 6d 3a 31 00 31 00 30 00 30 00 30",  # STATUS_RES
    "00 52 45 53 00 00 00 14 00 00 00 10 48 3a 76 6d 3a 39 39 39 00 30 00 30 00 30 00 30",
    "00 52 45 53 00 00 00 2a 00 00 00 0c 75 31 00 31 00 30 00 30 00 30 00 30",  # STATUS_RES_UNIQUE
    "00 52 45 53 00 00 00 13 00 00 00 24 49 4e 56 41 4c 49 44 5f 43 4f 4d 4d 41 4e 44 00"
    " 43 6f 6d 6d 61 6e 64 20 6e 6f 74 20 65 78 70 65 63 74 65 64",  # ERROR
    "00 52 45 53 00 00 00 0a 00 00 00 00",  # NO_JOB
    "00 52 45 53 00 00 00 06 00 00 00 00",  # NOOP
    "00 52 45 53 00 00 00 1f 00 00 00 13 48 3a 76 6d 3a 34 00 72 65 76 00 73 61 6d 65 00 61 62 63",  # JOB_ASSIGN_UNIQ
    "00 52 45 53 00 00 00 0c 00 00 00 0a 48 3a 76 6d 3a 34 00 31 00 34",  # WORK_STATUS
    "00 52 45 53 00 00 00 0d 00 00 00 0a 48 3a 76 6d 3a 34 00 63 62 61",  # WORK_COMPLETE
    "00 52 45 53 00 00 00 1b 00 00 00 0a 65 78 63 65 70 74 69 6f 6e 73",  # OPTION_RES
    "00 52 45 53 00 00 00 0e 00 00 00 07 48 3a 76 6d 3a 35 00",  # WORK_FAIL with a NUL
    "00 52 45 53 00 00 00 28 00 00 00 1f 48 3a 76 6d 3a 38 00 65 78 63 00 72 31 00 6d 79 72 65"
    " 64 75 63 65 72 00 70 61 79 6c 6f 61 64",  # JOB_ASSIGN_ALL
    "00 52 45 53 00 00 00 13 00 00 00 1d 51 55 45 55 45 5f 45 52 52 4f 52 00"
    " 4a 6f 62 20 71 75 65 75 65 20 69 73 20 66 75 6c 6c",  # QUEUE_ERROR
]

ADMIN_COMMANDS = [
    b"status\n", b"prioritystatus\r\n", b"workers\n", b"show jobs\n", b"show unique jobs\n",
    b"SHOW   Jobs\n", b"cancel job H:vm:1\n", b"cancel job H:nothing:1\n", b"maxqueue\n",
    b"maxqueue foo 10\n", b"maxqueue foo 1 2 3\n", b"create function abc\n",
    b"drop function nosuch\n", b"shutdown\n", b"shutdown graceful\n", b"version\n",
    b"verbose\n", b"getpid\n", b"show foo\n", b" status\n", b"bogus command\n",
]

ADMIN_REPLIES = [
    b"OK\r\n", b"OK 1.1.20+ds\n", b"ERR UNKNOWN_JOB\r\n",
    b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n",
    b"ERR function not found\r\n",
    b"H:vm:1\t0\t0\t1\nH:vm:2\t0\t0\t1\nH:vm:4\t0\t0\t0\nH:vm:3\t0\t0\t1\n.\n",
    b"\n\nu1\nsame\n.\n",
    b"xyz\t0\t0\t0\nrevt\t0\t0\t1\nreverse\t3\t0\t0\nrev\t1\t0\t2\n.\n",
    b"prio\t2\t2\t2\t0\n.\n",
    b"38 127.0.0.1 worker-A : revt rev rev\n39 127.0.0.1 - :\n.\n",
]


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def codec(target, packets, extra=()):
    # max packet 64 MiB and max line 4096 (29), then smaller limits; chunk sizes 1 and 64.
    streams = [hx(p) for p in packets] + list(extra)
    for cfg in (29, 27, 3):
        for seed in (0, 4):
            write(target, bytes([cfg, seed]) + b"".join(streams))
    for s in streams:
        write(target, bytes([29, 1]) + s)


codec("codec_request", REQ, ADMIN_COMMANDS)
for p in BAD:
    write("codec_request", bytes([29, 2]) + hx(p))
codec("codec_response", RES)
for line in ADMIN_COMMANDS + ADMIN_REPLIES:
    write("admin_command", line)
write("admin_command", b"".join(ADMIN_COMMANDS))
