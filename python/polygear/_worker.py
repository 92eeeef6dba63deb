"""Python side of the workers: function registry, threads / asyncio tasks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Iterable
from typing import Callable, TypeVar, Union

from ._errors import ClosedError, GearmanConnectionError
from ._polygear import Job, NativeWorker
from ._tls import TLSSetting

__all__ = ["AsyncWorker", "Payload", "Worker"]

log = logging.getLogger("polygear")

#: What a worker function may return.
Payload = Union[bytes, bytearray, memoryview, str, None]

SyncFunction = Callable[[Job], Payload]
AsyncFunction = Callable[[Job], Union[Awaitable[Payload], Payload]]
SF = TypeVar("SF", bound=SyncFunction)
AF = TypeVar("AF", bound=AsyncFunction)
F = TypeVar("F", bound=Callable[[Job], object])


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text if text else type(exc).__name__


def _end(job: Job, end: Callable[[], object]) -> None:
    """Ends ``job`` with ``end``. If its connection is gone the result is lost
    with it (the server hands the job out again) and the worker goes on."""
    try:
        end()
    except (GearmanConnectionError, ClosedError) as exc:
        log.warning("polygear: could not end job %s of %r: %s", job.handle, job.function, exc)


def _send_exception(job: Job, message: str) -> None:
    """WORK_EXCEPTION for a job its function did not end itself."""
    if not job.done:
        _end(job, lambda: job.exception(message))


def _join(threads: list[threading.Thread]) -> None:
    """Joins threads while staying responsive to Ctrl-C."""
    for t in threads:
        while t.is_alive():
            t.join(0.1)


class _Base:
    #: Blocking threads take their next job before ending the current one.
    _handoff = False

    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        concurrency: int = 1,
        *,
        client_id: str | None = None,
        tls: TLSSetting = None,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool):
            raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._native = NativeWorker(servers, concurrency, client_id, self._handoff, tls)
        self._concurrency = concurrency
        self._functions: dict[str, Callable[[Job], object]] = {}

    @property
    def concurrency(self) -> int:
        """Jobs processed at the same time."""
        return self._concurrency

    @property
    def functions(self) -> list[str]:
        """Names of the registered functions."""
        return list(self._functions)

    def _register(self, name: str, fn: Callable[[Job], object], timeout: float | None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"function name must be str, not {type(name).__name__}")
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        self._native.register(name, timeout)
        self._functions[name] = fn

    def _decorator(self, name: str | None, timeout: float | None) -> Callable[[F], F]:
        """The decorator behind ``function()`` of both worker kinds."""

        def decorate(fn: F) -> F:
            self._register(name if name is not None else fn.__name__, fn, timeout)
            return fn

        return decorate

    def unregister(self, name: str) -> None:
        """Stops taking jobs for ``name`` (CANT_DO)."""
        self._native.unregister(name)
        self._functions.pop(name, None)

    def stop(self) -> None:
        """Graceful stop: grab no new jobs; running jobs finish, then work() returns."""
        self._native.stop()

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._native.stopped

    def _finish(self, job: Job, result: object) -> None:
        if job.done:
            return
        try:
            _end(job, lambda: job.complete(result))  # type: ignore[arg-type]
        except TypeError as exc:
            log.error("polygear: function %r returned a bad value: %s", job.function, exc)
            _send_exception(job, str(exc))

    def _failed(self, job: Job, exc: BaseException) -> None:
        self._log_failure(job, exc)
        _send_exception(job, _message(exc))

    @staticmethod
    def _log_failure(job: Job, exc: BaseException) -> None:
        log.warning("polygear: function %r raised on job %s", job.function, job.handle, exc_info=exc)


class Worker(_Base):
    """A blocking Gearman worker; functions run on ``concurrency`` threads.

    ``work()`` blocks until ``stop()`` or Ctrl-C, then lets running jobs finish.
    """

    def register(self, name: str, fn: SyncFunction, timeout: float | None = None) -> None:
        """Registers ``fn`` for jobs of function ``name`` (CAN_DO / CAN_DO_TIMEOUT)."""
        self._register(name, fn, timeout)

    def function(self, name: str | None = None, timeout: float | None = None) -> Callable[[SF], SF]:
        """Decorator registering a function; ``name`` defaults to the function's ``__name__``."""
        return self._decorator(name, timeout)

    _handoff = True

    def _serve(self, errors: list[BaseException]) -> None:
        try:
            job = self._native.next_job()
            while job is not None:
                job = self._run(job)
        except BaseException as exc:  # pragma: no cover - reported by work()
            errors.append(exc)
            self._native.stop()

    def _run(self, job: Job) -> Job | None:
        """Runs and ends ``job``; returns this thread's next job (None once stopped)."""
        fn = self._functions.get(job.function)
        if fn is None:
            return self._then_next(lambda: _end(job, job.fail))
        try:
            result = fn(job)
        except Exception as exc:
            # Logged and described before the next job is taken: a slow log
            # handler must not hold that job up.
            self._log_failure(job, exc)
            message = _message(exc)
            return self._then_next(lambda: _send_exception(job, message))
        except BaseException:
            if not job.done:
                _end(job, job.fail)
            raise
        return self._then_next(lambda: self._finish(job, result))

    def _then_next(self, end: Callable[[], None]) -> Job | None:
        """Ends the current job with ``end``, taking the next assigned job first
        if one is waiting: this thread then runs it at once, instead of waking
        another thread for it (a GIL hand-off per job)."""
        nxt = self._native.try_next_job()
        try:
            end()
        except BaseException:
            # Not expected; the next job must not stay counted as running
            # (shutdown would wait for it), so it is failed.
            if nxt is not None:
                _end(nxt, nxt.fail)
            raise
        return nxt if nxt is not None else self._native.next_job()

    def work(self) -> None:
        """Processes jobs until stop() or Ctrl-C; returns after running jobs finished."""
        if not self._functions:
            raise RuntimeError("no function registered; use register() or @worker.function()")
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._serve, args=(errors,), name=f"polygear-worker-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        try:
            # Started inside the try: a Ctrl-C that lands while the threads start
            # (one may already be running a job) must still shut down gracefully.
            for t in threads:
                t.start()
            _join(threads)
        except KeyboardInterrupt:
            log.info("polygear: interrupted, finishing running jobs (Ctrl-C again to abort)")
            self._native.stop()
            _join(threads)  # a second Ctrl-C propagates from here, skipping the graceful shutdown
        self._native.shutdown()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stops and closes the connections (waits for unfinished jobs)."""
        self._native.shutdown()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWorker(_Base):
    """An asyncio Gearman worker; ``async def`` functions run as ``concurrency`` tasks."""

    def register(self, name: str, fn: AsyncFunction, timeout: float | None = None) -> None:
        """Registers ``fn`` (async or plain) for jobs of function ``name``."""
        self._register(name, fn, timeout)

    def function(self, name: str | None = None, timeout: float | None = None) -> Callable[[AF], AF]:
        """Decorator registering a function; ``name`` defaults to the function's ``__name__``."""
        return self._decorator(name, timeout)

    async def _run(self, job: Job) -> None:
        fn = self._functions.get(job.function)
        if fn is None:
            _end(job, job.fail)
            return
        try:
            result = fn(job)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            self._failed(job, exc)
            return
        except BaseException:
            if not job.done:
                _end(job, job.fail)
            raise
        self._finish(job, result)

    async def _serve(self) -> None:
        while True:
            job = await self._native.next_job_async()
            if job is None:
                return
            await self._run(job)

    async def work(self) -> None:
        """Processes jobs until stop() or cancellation; running jobs finish first."""
        if not self._functions:
            raise RuntimeError("no function registered; use register() or @worker.function()")
        tasks = [asyncio.ensure_future(self._serve()) for _ in range(self._concurrency)]
        serving = asyncio.gather(*tasks)
        try:
            # shielded: cancelling work() must not cancel the running functions
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            self._native.stop()
            # running jobs finish; tasks waiting for a job see the stop and return
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        except BaseException:
            self._native.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            await self._native.shutdown_async()

    async def close(self) -> None:
        """Stops and closes the connections (waits for unfinished jobs)."""
        await self._native.shutdown_async()

    async def __aenter__(self) -> AsyncWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
