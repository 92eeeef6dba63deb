"""asyncio client and worker against an in-process polygear.Server.

python examples/asyncio_demo.py
"""

from __future__ import annotations

import asyncio

import polygear


async def main() -> None:
    with polygear.Server() as server:
        worker = polygear.AsyncWorker([server.address], concurrency=8)

        @worker.function("slow_square")
        async def slow_square(job: polygear.Job) -> str:
            await asyncio.sleep(0.1)
            return str(int(job.data) ** 2)

        serving = asyncio.ensure_future(worker.work())
        async with polygear.AsyncClient([server.address], timeout=10) as client:
            results = await client.submit_many("slow_square", [str(i) for i in range(16)])
            print([int(r) for r in results])
            one = await client.submit_job("slow_square", b"12")
            async for event in one:
                print(event.kind, event.data)
        worker.stop()
        await serving


if __name__ == "__main__":
    asyncio.run(main())
