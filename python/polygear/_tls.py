"""TLS settings of a client, worker or admin connection (``tls=``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

__all__ = ["TLS", "ServerTLS", "ServerTLSSetting", "TLSSetting"]

_Path = Union[str, os.PathLike[str]]


@dataclass(frozen=True)
class TLS:
    """Which CA to trust and which client certificate to present.

    Pass it as ``tls=`` to :class:`Client`, :class:`AsyncClient`,
    :class:`Worker`, :class:`AsyncWorker` or :class:`Admin`::

        Client(["gm.example:4730"], tls=TLS(ca_file="ca.pem"))

    ``ca_file``: PEM file of the certificate authorities that sign the
    server's certificate (``None``: the system's trust store).
    ``cert_file`` / ``key_file``: a client certificate and its key, for a
    server that verifies clients (mutual TLS); both or neither.
    ``server_name``: the name the server's certificate must carry (``None``:
    the host connected to).

    Only the files given here are used; ``tls=True`` instead reads
    libgearman's variables ``GEARMAND_CA_CERTIFICATE``,
    ``GEARMAN_CLIENT_PEM`` and ``GEARMAN_CLIENT_KEY``. A dict with these
    field names works like ``TLS(**dict)``. A file that cannot be read raises
    :class:`InvalidArgumentError` naming it when the object is made; a
    handshake the server (or this side) refuses raises
    :class:`GearmanConnectionError` with the reason.
    """

    ca_file: _Path | None = None
    cert_file: _Path | None = None
    key_file: _Path | None = None
    server_name: str | None = None


#: What ``tls=`` accepts.
TLSSetting = Union[bool, TLS, dict[str, Union[str, os.PathLike[str], None]], None]


@dataclass(frozen=True)
class ServerTLS:
    """TLS on the port of the in-process :class:`Server` (``Server(tls=...)``).

    ``cert_file`` / ``key_file``: the server's PEM certificate (chain) and
    key. ``ca_file``: the CA that signs client certificates; with
    ``verify_clients=True`` every client must present one (mutual TLS).
    Every connection on the port must then speak TLS, admin text included.
    A dict with these field names works like ``ServerTLS(**dict)``.
    """

    cert_file: _Path
    key_file: _Path
    ca_file: _Path | None = None
    verify_clients: bool = False


#: What ``Server(tls=...)`` accepts.
ServerTLSSetting = Union[ServerTLS, dict[str, Union[str, os.PathLike[str], bool, None]], None]
