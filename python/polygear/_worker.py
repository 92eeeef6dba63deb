"""Python side of the workers: function registry, threads / asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from typing import Any, Callable, Literal, TypeVar, Union, overload

from . import _json
from ._errors import ClosedError, GearmanConnectionError, InvalidArgumentError
from ._polygear import Job, NativeWorker
from ._tls import TLSSetting

__all__ = ["AsyncWorker", "Payload", "Worker"]

log = logging.getLogger("polygear")

#: What a worker function may return.
Payload = Union[bytes, bytearray, memoryview, str, None]

SyncFunction = Callable[[Job], Payload]
AsyncFunction = Callable[[Job], Union[Awaitable[Payload], Payload]]
#: A function registered with ``json=True``: the decoded payload in, a value to encode out.
JSONFunction = Callable[[Any], Any]
#: ``on_error(job, exc)``: called when a function raises or returns a bad value.
ErrorHook = Callable[[Job, BaseException], object]
SF = TypeVar("SF", bound=SyncFunction)
AF = TypeVar("AF", bound=AsyncFunction)
JF = TypeVar("JF", bound=JSONFunction)
F = TypeVar("F", bound=Callable[..., object])

_PAYLOAD_TYPES = (bytes, bytearray, memoryview, str)


class _Function:
    """A registered function: plain (``fn(job)`` returns the payload) or JSON
    (``fn(value)`` gets the decoded payload, returns a value to encode)."""

    __slots__ = ("fn", "json")

    def __init__(self, fn: Callable[..., object], json: bool) -> None:
        self.fn = fn
        self.json = json

    def call(self, job: Job) -> object:
        if not self.json:
            return self.fn(job)
        try:
            value = _json.decode(job.data)  # what job.json() does, without a trip through Rust
        except ValueError as exc:
            raise ValueError(f"function {job.function!r} got a payload that is not JSON: {exc}") from exc
        return self.fn(value)

    def payload(self, job: Job, result: object) -> Payload:
        """The bytes to complete ``job`` with; ``TypeError`` for a bad result."""
        if self.json:
            return _json.encode(result, f"the result of function {job.function!r}")
        if result is None or isinstance(result, _PAYLOAD_TYPES):
            return result
        raise TypeError(
            f"worker function returned {type(result).__name__}; "
            "return bytes, str or None (or register with json=True)"
        )


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


#: How often a waiting work() checks for signals, the stop timeout and its own end.
_TICK = 0.1


@contextlib.contextmanager
def _logging_events(native: NativeWorker) -> Iterator[None]:
    """Logs the worker's connection events to ``polygear`` from a thread, until
    the end of the block (then the events that are left)."""
    done = threading.Event()

    def run() -> None:
        while not done.is_set():
            record = native.next_event(_TICK)
            if record is not None:
                log.log(*record)
        while (record := native.next_event(0)) is not None:
            log.log(*record)

    thread = threading.Thread(target=run, name="polygear-events", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.asynccontextmanager
async def _logging_events_async(native: NativeWorker) -> AsyncIterator[None]:
    """``_logging_events`` for asyncio: the same thread, joined without blocking
    the event loop. Not an asyncio task over ``next_event_async``: each of its
    awaits would be completed from a runtime thread, and one completing while
    the program exits right after ``work()`` aborts the interpreter
    (PyGILState_Release during finalization)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_logging_events(native))
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, stack.close)


def _log_handed_back(count: int) -> None:
    if count:
        log.warning(
            "polygear: the stop timeout passed; %d unfinished job(s) handed back to the server "
            "(it gives them to another worker)",
            count,
        )


def _log_failure(job: Job, exc: BaseException) -> None:
    """The default report of a failed job: an error with traceback."""
    log.error("polygear: function %r failed on job %s", job.function, job.handle, exc_info=exc)


def _hook_failed(job: Job, exc: BaseException, hook_exc: BaseException) -> None:
    """``on_error`` itself raised: both exceptions are logged."""
    log.error("polygear: on_error raised on job %s", job.handle, exc_info=hook_exc)
    _log_failure(job, exc)


@contextlib.contextmanager
def _sigterm_stops(stop: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """In the main thread: a SIGTERM meanwhile calls ``stop`` (a graceful stop,
    like Ctrl-C) and logs it; a second one goes to the handler set before (by
    default it ends the process), which is restored at the end. With ``loop``
    the handler is the event loop's (it wakes the loop up). Elsewhere (no signal
    handler can be set there) or when the current handler was set from C (it
    could not be restored), nothing is installed."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return

    def restore() -> None:
        if loop is not None:
            loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)

    def on_sigterm(*_: object) -> None:
        restore()
        log.warning("polygear: SIGTERM, finishing running jobs and taking no new ones")
        stop()

    try:
        if loop is None:
            signal.signal(signal.SIGTERM, on_sigterm)
        else:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, ValueError, RuntimeError):  # e.g. Windows' proactor loop
        yield
        return
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is not previous:
            restore()


def _check_hook(hook: ErrorHook | None) -> ErrorHook | None:
    if hook is not None and not callable(hook):
        raise TypeError(f"on_error must be callable or None, not {type(hook).__name__}")
    return hook


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
        on_error: ErrorHook | None = None,
        fail_fast: bool = False,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool):
            raise TypeError(f"concurrency must be an int, not {type(concurrency).__name__}")
        if not 1 <= concurrency <= sys.maxsize:
            raise ValueError(f"concurrency must be at least 1 (and at most {sys.maxsize}), not {concurrency}")
        if not isinstance(fail_fast, bool):
            raise TypeError(f"fail_fast must be a bool, not {type(fail_fast).__name__}")
        self._on_error = _check_hook(on_error)
        self._fail_fast = fail_fast
        self._native = NativeWorker(servers, concurrency, client_id, self._handoff, tls)
        self._concurrency = concurrency
        self._functions: dict[str, _Function] = {}

    @property
    def on_error(self) -> ErrorHook | None:
        """``on_error(job, exc)``, called (instead of the default log line) when a
        function raises or returns a value it may not; None: log to ``polygear``."""
        return self._on_error

    @on_error.setter
    def on_error(self, hook: ErrorHook | None) -> None:
        self._on_error = _check_hook(hook)

    @property
    def concurrency(self) -> int:
        """Jobs processed at the same time."""
        return self._concurrency

    @property
    def functions(self) -> list[str]:
        """Names of the registered functions."""
        return list(self._functions)

    def _register(self, name: str, fn: Callable[..., object], timeout: float | None, json: bool) -> None:
        if not isinstance(name, str):
            raise TypeError(f"function name must be str, not {type(name).__name__}")
        if not name:
            raise InvalidArgumentError("function name must not be empty")
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not isinstance(json, bool):
            raise TypeError(f"json must be a bool, not {type(json).__name__}")
        self._native.register(name, timeout)
        self._functions[name] = _Function(fn, json)

    def _decorator(self, name: str | None, timeout: float | None, json: bool) -> Callable[[F], F]:
        """The decorator behind ``function()`` of both worker kinds."""

        def decorate(fn: F) -> F:
            self._register(name if name is not None else fn.__name__, fn, timeout, json)
            return fn

        return decorate

    def unregister(self, name: str) -> None:
        """Stops taking jobs for ``name`` (CANT_DO)."""
        self._native.unregister(name)
        self._functions.pop(name, None)

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: grab no new jobs; running jobs finish, then work() returns.

        With ``timeout`` (seconds), jobs still running when it passes are handed
        back to the server, which gives them to another worker (they are not
        failed; what their functions do afterwards is dropped), and work()
        returns then."""
        self._native.stop(timeout)

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._native.stopped

    @staticmethod
    def _finish(job: Job, result: Payload) -> None:
        if not job.done:
            _end(job, lambda: job.complete(result))

    def _report(self, job: Job, exc: BaseException) -> object:
        """Reports a failed job: to ``on_error`` if set (returns what it returned,
        possibly an awaitable), else as an error with traceback to ``polygear``."""
        hook = self._on_error
        if hook is None:
            _log_failure(job, exc)
            return None
        try:
            return hook(job, exc)
        except Exception as hook_exc:
            _hook_failed(job, exc, hook_exc)
            return None


class Worker(_Base):
    """A blocking Gearman worker; functions run on ``concurrency`` threads.

    ``work()`` blocks until ``stop()``, Ctrl-C or SIGTERM, then lets running jobs
    finish. It keeps (re)connecting to servers it cannot reach, logging it to the
    ``polygear`` logger; with ``fail_fast=True`` it raises ``GearmanConnectionError``
    at the start instead if no server can be reached. ``on_error(job, exc)``
    replaces the log line of a failed function.
    """

    @overload
    def register(
        self, name: str, fn: SyncFunction, timeout: float | None = None, *, json: Literal[False] = False
    ) -> None: ...
    @overload
    def register(
        self, name: str, fn: JSONFunction, timeout: float | None = None, *, json: Literal[True]
    ) -> None: ...
    def register(
        self, name: str, fn: Callable[..., object], timeout: float | None = None, *, json: bool = False
    ) -> None:
        """Registers ``fn`` for jobs of function ``name`` (CAN_DO / CAN_DO_TIMEOUT).

        ``fn(job)`` returns bytes, str or None; with ``json=True``, ``fn(value)``
        gets the payload decoded from JSON and returns a value to encode."""
        self._register(name, fn, timeout, json)

    def register_task(self, task: str, callback: Callable[[Worker, Job], Payload]) -> None:
        """python-gearman's ``GearmanWorker.register_task``: ``callback(worker, job)``
        returns the result (bytes, str or None)."""
        self._register(task, lambda job: callback(self, job), None, False)

    @overload
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: Literal[False] = False
    ) -> Callable[[SF], SF]: ...
    @overload
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: Literal[True]
    ) -> Callable[[JF], JF]: ...
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: bool = False
    ) -> Callable[[F], F]:
        """Decorator registering a function; ``name`` defaults to the function's ``__name__``."""
        return self._decorator(name, timeout, json)

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
        function = self._functions.get(job.function)
        if function is None:
            return self._then_next(lambda: _end(job, job.fail))
        try:
            result = function.payload(job, function.call(job))
        except Exception as exc:
            # Reported and described before the next job is taken: a slow log
            # handler must not hold that job up.
            self._report(job, exc)
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
        """Processes jobs until stop(), Ctrl-C or SIGTERM; returns after running jobs finished.

        Run from the main thread, it handles SIGTERM like Ctrl-C (takes no new
        job, lets running ones finish); a second SIGTERM then goes to the handler
        that was set before (by default it ends the process), which is restored
        when work() returns."""
        if not self._functions:
            raise RuntimeError("no function registered; use register() or @worker.function()")
        with _sigterm_stops(self._native.stop), _logging_events(self._native):
            self._work()

    def _join(self, threads: list[threading.Thread]) -> None:
        """Joins threads while staying responsive to Ctrl-C, until the stop
        timeout (if any) passed."""
        for t in threads:
            while t.is_alive():
                t.join(_TICK)
                if self._native.stop_remaining == 0:
                    return

    def _work(self) -> None:
        if self._fail_fast:
            self._native.connect()
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
            self._join(threads)
        except KeyboardInterrupt:
            log.info("polygear: interrupted, finishing running jobs (Ctrl-C again to abort)")
            self._native.stop()
            self._join(threads)  # a second Ctrl-C propagates from here, skipping the graceful shutdown
        _log_handed_back(self._native.shutdown())
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stops and closes the connections (waits for unfinished jobs, or until
        the timeout given to stop())."""
        _log_handed_back(self._native.shutdown())

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWorker(_Base):
    """An asyncio Gearman worker; ``async def`` functions run as ``concurrency`` tasks.

    The options are those of ``Worker``."""

    @overload
    def register(
        self, name: str, fn: AsyncFunction, timeout: float | None = None, *, json: Literal[False] = False
    ) -> None: ...
    @overload
    def register(
        self, name: str, fn: JSONFunction, timeout: float | None = None, *, json: Literal[True]
    ) -> None: ...
    def register(
        self, name: str, fn: Callable[..., object], timeout: float | None = None, *, json: bool = False
    ) -> None:
        """Registers ``fn`` (async or plain) for jobs of function ``name``; ``json=True``
        as for ``Worker.register``."""
        self._register(name, fn, timeout, json)

    @overload
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: Literal[False] = False
    ) -> Callable[[AF], AF]: ...
    @overload
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: Literal[True]
    ) -> Callable[[JF], JF]: ...
    def function(
        self, name: str | None = None, timeout: float | None = None, *, json: bool = False
    ) -> Callable[[F], F]:
        """Decorator registering a function; ``name`` defaults to the function's ``__name__``."""
        return self._decorator(name, timeout, json)

    async def _run(self, job: Job) -> None:
        function = self._functions.get(job.function)
        if function is None:
            _end(job, job.fail)
            return
        try:
            result = function.call(job)
            if inspect.isawaitable(result):
                result = await result
            payload = function.payload(job, result)
        except Exception as exc:
            reported = self._report(job, exc)
            if inspect.isawaitable(reported):
                try:
                    await reported
                except Exception as hook_exc:
                    _hook_failed(job, exc, hook_exc)
            _send_exception(job, _message(exc))
            return
        except BaseException:
            if not job.done:
                _end(job, job.fail)
            raise
        self._finish(job, payload)

    async def _serve(self) -> None:
        while True:
            job = await self._native.next_job_async()
            if job is None:
                return
            await self._run(job)

    async def work(self) -> None:
        """Processes jobs until stop(), cancellation or SIGTERM; running jobs finish first.

        SIGTERM as for ``Worker.work()`` when the event loop runs in the main thread."""
        if not self._functions:
            raise RuntimeError("no function registered; use register() or @worker.function()")
        with _sigterm_stops(self._native.stop, asyncio.get_running_loop()):
            async with _logging_events_async(self._native):
                await self._work()

    async def _settle(self, serving: asyncio.Future[Any]) -> bool:
        """Waits until ``serving`` is done (True) or the stop timeout passed (False).
        Cancelling this wait does not cancel ``serving``: the running functions go on."""
        while not serving.done():
            await asyncio.wait({serving}, timeout=_TICK)
            if self._native.stop_remaining == 0:
                return serving.done()
        return True

    async def _work(self) -> None:
        if self._fail_fast:
            await self._native.connect_async()
        tasks = [asyncio.ensure_future(self._serve()) for _ in range(self._concurrency)]
        serving = asyncio.gather(*tasks)
        try:
            if await self._settle(serving):
                serving.result()  # a task's error
        except asyncio.CancelledError:
            self._native.stop()
            # running jobs finish (or the stop timeout passes); tasks waiting
            # for a job see the stop and return
            await self._settle(serving)
            raise
        except BaseException:
            self._native.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            _log_handed_back(await self._native.shutdown_async())
            # functions still running after a hand-back: their results would be dropped
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stops and closes the connections (waits for unfinished jobs, or until
        the timeout given to stop())."""
        _log_handed_back(await self._native.shutdown_async())

    async def __aenter__(self) -> AsyncWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
