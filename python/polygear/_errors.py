"""Exception hierarchy of polygear (raised by the native module)."""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "GearmanConnectionError",
    "GearmanError",
    "GearmanTimeoutError",
    "InvalidArgumentError",
    "JobCancelled",
    "JobException",
    "JobFailed",
    "ProtocolError",
    "ServerError",
]


class GearmanError(Exception):
    """Base class of every error raised by polygear.

    ``code`` is the stable code of the shared error table (the same as Node's
    ``err.code``): ``ECONNREFUSED``, ``ENOTFOUND``, ``EADDRINUSE``, ...
    for connection errors, else ``ETIMEDOUT``, ``EPROTOCOL``, ``ESERVER``,
    ``EJOBFAILED``, ``ECANCELED`` (``JobCancelled``), ``EJOBEXCEPTION``,
    ``EINVAL`` or ``ECLOSED`` (``ServerError``: the server's own code, e.g.
    ``QUEUE_ERROR``).
    """

    code: str = ""


class GearmanConnectionError(GearmanError, ConnectionError):
    """A server could not be reached, or the connection was lost (``errno`` is
    set when ``code`` names an errno, e.g. ``errno.ECONNREFUSED``)."""


class GearmanTimeoutError(GearmanError, TimeoutError):
    """An operation ran past its deadline."""


class ProtocolError(GearmanError):
    """The peer broke the Gearman wire protocol."""


class ServerError(GearmanError):
    """The server answered with an ERROR packet (e.g. ``QUEUE_ERROR``)."""

    def __init__(self, message: str, code: str = "", text: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = text


class JobFailed(GearmanError):
    """The job failed (WORK_FAIL); ``reason`` says why when the server failed it
    itself and said so (polygeard: "the worker exceeded its 1 s timeout")."""

    def __init__(self, message: str, handle: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.handle = handle
        self.reason = reason


class JobCancelled(JobFailed):
    """The job was cancelled (``Client.cancel``, admin ``cancel job``) while its
    client waited; ``code`` is ``ECANCELED`` and ``reason`` the server's words
    (e.g. "cancelled by its submitter")."""


class JobException(JobFailed):
    """The worker raised an exception (WORK_EXCEPTION); ``message`` is its text."""

    def __init__(self, message: str, handle: str = "", worker_message: str = "") -> None:
        super().__init__(message, handle)
        self.message = worker_message


class InvalidArgumentError(GearmanError, ValueError):
    """A value is not acceptable to the protocol (e.g. a unique key that is too long)."""


class ClosedError(GearmanError):
    """The client, worker or job was already closed or finished."""
