"""polygear: a fast Gearman client, worker, admin client and server on a Rust core.

>>> import polygear
>>> with polygear.Server() as server:                      # doctest: +SKIP
...     client = polygear.Client([server.address])
...     client.submit("reverse", b"hello")
"""

from __future__ import annotations

from ._errors import (
    ClosedError,
    GearmanConnectionError,
    GearmanError,
    GearmanTimeoutError,
    InvalidArgumentError,
    JobCancelled,
    JobException,
    JobFailed,
    ProtocolError,
    ServerError,
)
from ._polygear import (
    BUILD_PROFILE,
    DEFAULT_PORT,
    Admin,
    AsyncClient,
    AsyncRunningJob,
    Client,
    DeadJob,
    DrainingWorker,
    FunctionStatus,
    Job,
    JobEvent,
    JobInfo,
    JobStatus,
    PriorityStatus,
    RetryPolicy,
    RunningJob,
    ScheduleInfo,
    Server,
    WorkerInfo,
)
from ._tls import TLS, ServerTLS, ServerTLSSetting, TLSSetting
from ._worker import AsyncWorker, Payload, Worker

__version__ = "0.1.0"

__all__ = [
    "BUILD_PROFILE",
    "DEFAULT_PORT",
    "TLS",
    "Admin",
    "AsyncClient",
    "AsyncRunningJob",
    "AsyncWorker",
    "Client",
    "ClosedError",
    "DeadJob",
    "DrainingWorker",
    "FunctionStatus",
    "GearmanConnectionError",
    "GearmanError",
    "GearmanTimeoutError",
    "InvalidArgumentError",
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobException",
    "JobFailed",
    "JobInfo",
    "JobStatus",
    "Payload",
    "PriorityStatus",
    "ProtocolError",
    "RetryPolicy",
    "RunningJob",
    "ScheduleInfo",
    "Server",
    "ServerError",
    "ServerTLS",
    "ServerTLSSetting",
    "TLSSetting",
    "Worker",
    "WorkerInfo",
]
