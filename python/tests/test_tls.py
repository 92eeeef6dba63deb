"""TLS: Client, AsyncClient, Worker and Admin against polygear.Server(tls=...).

Certificates are made with the openssl CLI (scripts/make-test-certs.sh) in a
temporary folder for the session: a CA, a server certificate for
127.0.0.1/localhost, a client certificate, another CA's client certificate
and an expired server certificate.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, running_worker

import polygear
from polygear import TLS, ServerTLS


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run([str(REPO / "scripts" / "make-test-certs.sh"), str(d)], check=True)
    return d


@contextmanager
def tls_server(certs: Path, cert: str = "server", verify_clients: bool = False) -> Iterator[str]:
    tls = ServerTLS(
        cert_file=certs / f"{cert}.pem",
        key_file=certs / f"{cert}.key",
        ca_file=certs / "ca.pem" if verify_clients else None,
        verify_clients=verify_clients,
    )
    with polygear.Server(tls=tls) as server:
        yield server.address


def trust(certs: Path, client: str | None = None, ca: str = "ca") -> TLS:
    if client is None:
        return TLS(ca_file=certs / f"{ca}.pem")
    return TLS(
        ca_file=certs / f"{ca}.pem", cert_file=certs / f"{client}.pem", key_file=certs / f"{client}.key"
    )


def reverse(job: polygear.Job) -> bytes:
    return job.data[::-1]


def test_job_round_trip_over_tls(certs: Path, fname: str) -> None:
    with tls_server(certs) as address, running_worker(address, {fname: reverse}, tls=trust(certs)):
        client = polygear.Client([address], timeout=20, tls=trust(certs))
        assert client.submit(fname, b"over TLS") == b"SLT revo"
        big = bytes(range(256)) * 4096  # 1 MiB each way
        assert client.submit(fname, big) == big[::-1]
        # the dict form and a server name the certificate carries
        named = polygear.Client(
            [address], timeout=20, tls={"ca_file": str(certs / "ca.pem"), "server_name": "localhost"}
        )
        assert named.submit(fname, "abc") == b"cba"
        with polygear.Admin(address, tls=trust(certs)) as admin:
            assert any(s.function == fname and s.workers >= 1 for s in admin.status())


def test_async_client_over_tls(certs: Path, fname: str) -> None:
    async def main(address: str) -> bytes:
        client = polygear.AsyncClient([address], timeout=20, tls=trust(certs))
        return await client.submit(fname, b"async")

    with tls_server(certs) as address, running_worker(address, {fname: reverse}, tls=trust(certs)):
        assert asyncio.run(main(address)) == b"cnysa"


def test_tls_true_reads_libgearmans_variables(
    certs: Path, fname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEARMAND_CA_CERTIFICATE", str(certs / "ca.pem"))
    monkeypatch.setenv("GEARMAN_CLIENT_PEM", str(certs / "client.pem"))
    monkeypatch.setenv("GEARMAN_CLIENT_KEY", str(certs / "client.key"))
    with (
        tls_server(certs, verify_clients=True) as address,
        running_worker(address, {fname: reverse}, tls=True),
    ):
        assert polygear.Client([address], timeout=20, tls=True).submit(fname, b"env") == b"vne"
        with polygear.Admin(address, tls=True) as admin:
            assert admin.version()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(certs: Path, fname: str) -> None:
    with tls_server(certs, verify_clients=True) as address:
        with running_worker(address, {fname: reverse}, tls=trust(certs, "client")):
            client = polygear.Client([address], timeout=20, tls=trust(certs, "client"))
            assert client.submit(fname, b"mtls") == b"sltm"
        for what, tls in [
            ("no client certificate", trust(certs)),
            ("another CA's", trust(certs, "stranger")),
        ]:
            with pytest.raises(polygear.GearmanConnectionError, match="certificate") as err:
                polygear.Admin(address, tls=tls).status()
            assert "TLS" in str(err.value) or "certificate" in str(err.value), what
            client = polygear.Client([address], timeout=10, connect_timeout=5, tls=tls)
            with pytest.raises(polygear.GearmanConnectionError, match="certificate"):
                client.submit(fname, b"x")


def test_untrusted_expired_or_misnamed_server_certificates_are_refused(certs: Path) -> None:
    with tls_server(certs) as address:
        with pytest.raises(polygear.GearmanConnectionError, match=r"TLS handshake failed.*UnknownIssuer"):
            polygear.Admin(address, tls=trust(certs, ca="other-ca"))
        client = polygear.Client([address], connect_timeout=5, timeout=10, tls=trust(certs, ca="other-ca"))
        with pytest.raises(polygear.GearmanConnectionError, match="UnknownIssuer"):
            client.submit("f", b"x")
        with pytest.raises(polygear.GearmanConnectionError, match="not valid for name"):
            polygear.Admin(address, tls=TLS(ca_file=certs / "ca.pem", server_name="gearman.example"))
    with tls_server(certs, cert="expired") as address:
        with pytest.raises(polygear.GearmanConnectionError, match="certificate expired"):
            polygear.Admin(address, tls=trust(certs))


def test_plain_client_on_the_tls_port_fails_quickly(certs: Path) -> None:
    with tls_server(certs) as address:
        start = time.monotonic()
        client = polygear.Client([address], connect_timeout=5, timeout=10)
        with pytest.raises(polygear.GearmanError, match="TLS"):
            client.submit("f", b"x")
        assert time.monotonic() - start < 10


def test_missing_files_name_the_file(certs: Path) -> None:
    missing = certs / "nope.pem"
    for make in (
        lambda: polygear.Client(["127.0.0.1:1"], tls=TLS(ca_file=missing)),
        lambda: polygear.AsyncClient(["127.0.0.1:1"], tls={"ca_file": missing}),
        lambda: polygear.Worker(["127.0.0.1:1"], tls=TLS(ca_file=missing)),
        lambda: polygear.Admin("127.0.0.1:1", tls=TLS(ca_file=missing)),
        lambda: polygear.Client(
            ["127.0.0.1:1"],
            tls=TLS(ca_file=certs / "ca.pem", cert_file=missing, key_file=certs / "client.key"),
        ),
    ):
        with pytest.raises(polygear.InvalidArgumentError, match=str(missing)):
            make()
    server = polygear.Server(tls=ServerTLS(cert_file=missing, key_file=certs / "server.key"))
    with pytest.raises(polygear.InvalidArgumentError, match=str(missing)):
        server.start()


def test_tls_argument_checks(certs: Path) -> None:
    with pytest.raises(TypeError, match="tls must be"):
        polygear.Client(tls="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown tls key 'cafile'"):
        polygear.Client(tls={"cafile": "ca.pem"})
    with pytest.raises(ValueError, match="cert_file and key_file together"):
        polygear.Client(tls=TLS(cert_file=certs / "client.pem"))
    with pytest.raises(ValueError, match="must not be empty"):
        polygear.Client(tls=TLS(ca_file=""))
    with pytest.raises(TypeError, match="unknown Server tls key"):
        polygear.Server(tls={"cert": "x"})
    with pytest.raises(ValueError, match="verify_clients needs ca_file"):
        polygear.Server(tls=ServerTLS(cert_file="s.pem", key_file="s.key", verify_clients=True))
    # False and None mean plain TCP
    polygear.Client(tls=False)
    polygear.Client(tls=None)
