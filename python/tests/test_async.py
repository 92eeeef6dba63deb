"""asyncio API: AsyncClient and AsyncWorker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

import polygear

T = TypeVar("T")


def run(coro: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro(), timeout)

    return asyncio.run(bounded())


@asynccontextmanager
async def async_worker(
    server: str, functions: Mapping[str, Callable[[polygear.Job], Any]], concurrency: int = 1
) -> AsyncIterator[polygear.AsyncWorker]:
    worker = polygear.AsyncWorker([server], concurrency=concurrency)
    for name, fn in functions.items():
        worker.register(name, fn)
    task = asyncio.ensure_future(worker.work())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


def test_async_roundtrip_and_batch(server: str, fname: str) -> None:
    async def reverse(job: polygear.Job) -> bytes:
        await asyncio.sleep(0)
        return job.data[::-1]

    async def main() -> None:
        async with async_worker(server, {fname: reverse}, concurrency=4):
            async with polygear.AsyncClient([server], timeout=20) as client:
                assert await client.submit(fname, b"hello") == b"olleh"
                assert await client.submit(fname, "abc", priority="high") == b"cba"
                many = await client.submit_many(fname, [f"{i}x".encode() for i in range(100)])
                assert many == [f"{i}x".encode()[::-1] for i in range(100)]
                gathered = await asyncio.gather(*(client.submit(fname, str(i)) for i in range(20)))
                assert gathered == [str(i)[::-1].encode() for i in range(20)]
                assert await client.echo(b"e") == b"e"

    run(main)


def test_async_worker_concurrency_uses_tasks(server: str, fname: str) -> None:
    async def main() -> None:
        running = 0
        peak = 0
        all_in = asyncio.Event()

        async def meet(job: polygear.Job) -> bytes:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 4:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 15)  # only passes if 4 run at once
            running -= 1
            return job.data

        async with async_worker(server, {fname: meet}, concurrency=4):
            async with polygear.AsyncClient([server], timeout=30) as client:
                assert await client.submit_many(fname, [b"a", b"b", b"c", b"d"]) == [b"a", b"b", b"c", b"d"]
        assert peak == 4

    run(main)


def test_async_events_and_errors(server: str, fname: str) -> None:
    async def chatty(job: polygear.Job) -> bytes:
        job.send_data(b"d1")
        job.send_status(3, 4)
        job.send_warning(b"w")
        return b"end"

    async def bad(job: polygear.Job) -> bytes:
        raise LookupError("not here")

    def sync_fn(job: polygear.Job) -> str:  # plain functions work in an AsyncWorker too
        return "sync:" + job.data.decode()

    async def main() -> None:
        funcs = {fname: chatty, fname + "_bad": bad, fname + "_sync": sync_fn}
        async with async_worker(server, funcs):
            async with polygear.AsyncClient([server], timeout=20) as client:
                job = await client.submit_job(fname, b"")
                kinds = [(e.kind, e.data, e.numerator, e.denominator) async for e in job]
                assert kinds == [
                    ("data", b"d1", 0, 0),
                    ("status", b"", 3, 4),
                    ("warning", b"w", 0, 0),
                    ("complete", b"end", 0, 0),
                ]
                assert await job.result() == b"end"
                seen: list[object] = []
                result = await client.submit(
                    fname,
                    b"",
                    on_data=lambda d: seen.append(("data", d)),
                    on_status=lambda n, d: seen.append(("status", n, d)),
                    on_warning=lambda w: seen.append(("warning", w)),
                )
                assert result == b"end"
                assert seen == [("data", b"d1"), ("status", 3, 4), ("warning", b"w")]
                with pytest.raises(polygear.JobException) as info:
                    await client.submit(fname + "_bad", b"")
                assert info.value.message == "not here"
                assert await client.submit(fname + "_sync", b"q") == b"sync:q"
                out = await client.submit_many(fname + "_bad", [b"1"], return_exceptions=True)
                assert isinstance(out[0], polygear.JobException)

    run(main)


def test_async_background_status(server: str, fname: str) -> None:
    async def main() -> None:
        async with polygear.AsyncClient([server], timeout=20) as client:
            handle = await client.submit_background(fname, b"x", priority="low")
            st = await client.status(handle)
            assert st.known and not st.running
        # drain it
        got: list[bytes] = []

        async def take(job: polygear.Job) -> None:
            got.append(job.data)

        async with async_worker(server, {fname: take}):
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.05)
        assert got == [b"x"]

    run(main)


def test_async_timeout_and_cancel(server: str, fname: str) -> None:
    async def main() -> None:
        async with polygear.AsyncClient([server]) as client:
            with pytest.raises(polygear.GearmanTimeoutError):
                await client.submit(fname, b"x", timeout=0.3)
            # cancelling the awaiting task drops the Rust future
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.submit(fname, b"x"), 0.3)

    run(main)


def test_async_worker_cancel_finishes_running_job(server: str, fname: str) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def slow(job: polygear.Job) -> bytes:
            started.set()
            await asyncio.sleep(0.5)
            return b"completed"

        worker = polygear.AsyncWorker(server)
        worker.register(fname, slow)
        task = asyncio.ensure_future(worker.work())
        async with polygear.AsyncClient([server], timeout=20) as client:
            pending = asyncio.ensure_future(client.submit(fname, b""))
            await asyncio.wait_for(started.wait(), 15)
            task.cancel()
            assert await pending == b"completed"
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main)


def test_async_dead_server_and_bad_input() -> None:
    from conftest import free_port

    async def main() -> None:
        client = polygear.AsyncClient([f"127.0.0.1:{free_port()}"], connect_timeout=2)
        with pytest.raises(polygear.GearmanConnectionError):
            await client.submit("f", b"x")
        with pytest.raises(TypeError, match="data must be bytes, bytearray, memoryview or str, not int"):
            await client.submit("f", 5)  # type: ignore[arg-type]

    run(main)
