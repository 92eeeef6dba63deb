"""Type stubs for the native module ``polygear._polygear``."""

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Literal, final

from typing_extensions import Self

from ._tls import ServerTLSSetting, TLSSetting

_Data = bytes | bytearray | memoryview | str
_Servers = str | Iterable[str] | None
_Priority = Literal["high", "normal", "low"]
_Kind = Literal["data", "warning", "status", "complete", "failed", "exception"]

__all__ = [
    "BUILD_PROFILE",
    "DEFAULT_PORT",
    "Admin",
    "AsyncClient",
    "AsyncRunningJob",
    "Client",
    "FunctionStatus",
    "Job",
    "JobEvent",
    "JobInfo",
    "JobStatus",
    "NativeWorker",
    "PriorityStatus",
    "RunningJob",
    "Server",
    "WorkerInfo",
]

DEFAULT_PORT: Final[int]
BUILD_PROFILE: Final[str]

@final
class JobStatus:
    """Progress of a job as reported by GET_STATUS."""

    @property
    def handle(self) -> str: ...
    @property
    def known(self) -> bool: ...
    @property
    def running(self) -> bool: ...
    @property
    def numerator(self) -> int: ...
    @property
    def denominator(self) -> int: ...
    @property
    def client_count(self) -> int | None: ...

@final
class JobEvent:
    """One event of a running job; ``data`` is b"" for status and failed events."""

    @property
    def kind(self) -> _Kind: ...
    @property
    def data(self) -> bytes: ...
    @property
    def numerator(self) -> int: ...
    @property
    def denominator(self) -> int: ...
    @property
    def is_final(self) -> bool: ...

@final
class RunningJob:
    """A submitted foreground job; iterate it for its events."""

    @property
    def handle(self) -> str: ...
    def next_event(self) -> JobEvent | None: ...
    def result(self) -> bytes: ...
    def __iter__(self) -> Iterator[JobEvent]: ...
    def __next__(self) -> JobEvent: ...

@final
class AsyncRunningJob:
    """The asyncio view of a running job: ``async for event in job``."""

    @property
    def handle(self) -> str: ...
    async def next_event(self) -> JobEvent | None: ...
    async def result(self) -> bytes: ...
    def __aiter__(self) -> AsyncRunningJob: ...
    async def __anext__(self) -> JobEvent: ...

@final
class Client:
    """A blocking Gearman client; the GIL is released while waiting."""

    def __new__(
        cls,
        servers: _Servers = None,
        timeout: float | None = None,
        *,
        connect_timeout: float | None = None,
        client_id: str | None = None,
        exceptions: bool = True,
        tls: TLSSetting = None,
    ) -> Self: ...
    def submit(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], object] | None = None,
        on_warning: Callable[[bytes], object] | None = None,
        on_status: Callable[[int, int], object] | None = None,
    ) -> bytes: ...
    def submit_json(
        self,
        func: str,
        obj: Any,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], object] | None = None,
        on_warning: Callable[[bytes], object] | None = None,
        on_status: Callable[[int, int], object] | None = None,
    ) -> Any: ...
    def submit_job(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
    ) -> RunningJob: ...
    def submit_background(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        epoch: int | None = None,
    ) -> str: ...
    def submit_many(
        self,
        func: str,
        iterable: Iterable[_Data],
        *,
        priority: _Priority | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]: ...
    def status(self, handle: str) -> JobStatus: ...
    def status_unique(self, unique: str) -> JobStatus: ...
    def echo(self, data: _Data) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class AsyncClient:
    """An asyncio Gearman client."""

    def __new__(
        cls,
        servers: _Servers = None,
        timeout: float | None = None,
        *,
        connect_timeout: float | None = None,
        client_id: str | None = None,
        exceptions: bool = True,
        tls: TLSSetting = None,
    ) -> Self: ...
    async def submit(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], object] | None = None,
        on_warning: Callable[[bytes], object] | None = None,
        on_status: Callable[[int, int], object] | None = None,
    ) -> bytes: ...
    async def submit_json(
        self,
        func: str,
        obj: Any,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], object] | None = None,
        on_warning: Callable[[bytes], object] | None = None,
        on_status: Callable[[int, int], object] | None = None,
    ) -> Any: ...
    async def submit_job(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        timeout: float | None = None,
    ) -> AsyncRunningJob: ...
    async def submit_background(
        self,
        func: str,
        data: _Data,
        *,
        unique: str | bytes | None = None,
        priority: _Priority | None = None,
        epoch: int | None = None,
    ) -> str: ...
    async def submit_many(
        self,
        func: str,
        iterable: Iterable[_Data],
        *,
        priority: _Priority | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]: ...
    async def status(self, handle: str) -> JobStatus: ...
    async def status_unique(self, unique: str) -> JobStatus: ...
    async def echo(self, data: _Data) -> bytes: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class Job:
    """A job assigned to a worker."""

    @property
    def data(self) -> bytes: ...
    @property
    def handle(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def unique(self) -> str: ...
    @property
    def done(self) -> bool: ...
    def send_data(self, data: _Data) -> None: ...
    def send_warning(self, data: _Data) -> None: ...
    def send_status(self, numerator: int, denominator: int) -> None: ...
    def json(self) -> Any: ...
    def complete(self, result: _Data | None = None) -> None: ...
    def fail(self) -> None: ...
    def exception(self, message: _Data) -> None: ...

@final
class NativeWorker:
    def __new__(
        cls,
        servers: _Servers = None,
        concurrency: int = 1,
        client_id: str | None = None,
        handoff: bool = False,
        tls: TLSSetting = None,
    ) -> Self: ...
    def register(self, name: str, timeout: float | None = None) -> None: ...
    def unregister(self, name: str) -> None: ...
    def next_job(self) -> Job | None: ...
    def try_next_job(self) -> Job | None: ...
    async def next_job_async(self) -> Job | None: ...
    def next_event(self, timeout: float) -> tuple[int, str] | None: ...
    def connect(self) -> None: ...
    async def connect_async(self) -> None: ...
    def stop(self, timeout: float | None = None) -> None: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def stop_remaining(self) -> float | None: ...
    def shutdown(self) -> int: ...
    async def shutdown_async(self) -> int: ...

@final
class FunctionStatus:
    @property
    def function(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def workers(self) -> int: ...

@final
class PriorityStatus:
    @property
    def function(self) -> str: ...
    @property
    def high(self) -> int: ...
    @property
    def normal(self) -> int: ...
    @property
    def low(self) -> int: ...
    @property
    def workers(self) -> int: ...

@final
class WorkerInfo:
    @property
    def fd(self) -> int: ...
    @property
    def ip(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def functions(self) -> list[str]: ...

@final
class JobInfo:
    @property
    def handle(self) -> str: ...
    @property
    def retries(self) -> int: ...
    @property
    def ignore(self) -> bool: ...
    @property
    def queued(self) -> bool: ...

@final
class Admin:
    """A blocking admin-protocol connection to one server."""

    def __new__(cls, server: str | None = None, timeout: float = 5.0, *, tls: TLSSetting = None) -> Self: ...
    def status(self) -> list[FunctionStatus]: ...
    def priority_status(self) -> list[PriorityStatus]: ...
    def workers(self) -> list[WorkerInfo]: ...
    def version(self) -> str: ...
    def getpid(self) -> int: ...
    def verbose(self) -> str: ...
    def show_jobs(self) -> list[JobInfo]: ...
    def show_unique_jobs(self) -> list[str]: ...
    def cancel_job(self, handle: str) -> None: ...
    def maxqueue(self, function: str, limit: int | tuple[int, int, int] | None = None) -> None: ...
    def create_function(self, function: str) -> None: ...
    def drop_function(self, function: str) -> None: ...
    def shutdown(self, graceful: bool = False) -> None: ...
    def raw(self, command: str) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class Server:
    """The Rust job server running in this process (port 0 picks a free port)."""

    def __new__(
        cls, port: int | None = 0, host: str = "127.0.0.1", *, tls: ServerTLSSetting = None
    ) -> Self: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def port(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
