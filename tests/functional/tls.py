"""TLS for functional tests: a throwaway PKI made with the openssl command,
and a TLS-terminating proxy in front of the plain RabbitMQ listener, so that
the collector's TLS settings meet a real handshake and a real broker."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.functional.proxy import TCPProxy


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  #: a CA that signed none of these
    #: a server certificate the CA signed for another host than 127.0.0.1
    wrong_host_cert: Path
    wrong_host_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate authority (cert, key)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def _signed(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    """A key and a certificate for ``name`` signed by ``ca`` (cert, key)."""
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.csr")
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key


def make_pki(directory: Path) -> PKI:
    ca = _ca(directory, "test-ca")
    server = _signed(directory, "rabbit-server", ca,
                     "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                     "extendedKeyUsage = serverAuth\n")
    client = _signed(directory, "panko-collector-client", ca,
                     "extendedKeyUsage = clientAuth\n")
    other, _ = _ca(directory, "other-ca")
    wrong_host = _signed(directory, "another-broker", ca,
                         "subjectAltName = DNS:broker.example.invalid\n"
                         "extendedKeyUsage = serverAuth\n")
    return PKI(ca[0], *server, *client, other, *wrong_host)


class TLSProxy(TCPProxy):
    """127.0.0.1:<port> speaks TLS (a client certificate signed by the CA is
    required) and forwards the plain bytes to ``target``. ``clients`` holds
    the subject of every client certificate seen. It presents the PKI's
    server certificate, or ``cert`` (certificate, key) when given."""

    def __init__(self, target_host: str, target_port: int, pki: PKI,
                 cert: tuple[Path, Path] | None = None) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(*(cert or (pki.server_cert, pki.server_key)))
        self._context.load_verify_locations(pki.ca)
        self._context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[str] = []
        self.refused: list[str] = []
        super().__init__(target_host, target_port)

    def _start_pipes(self, client: socket.socket, upstream: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.refused.append(str(exc))
            for s in (client, upstream):
                s.close()
            return
        subject = dict(item[0] for item in (tls.getpeercert() or {}).get("subject", ()))
        self.clients.append(str(subject.get("commonName")))
        with self._lock:
            self._sockets.update((tls, upstream))
        # One thread per connection: an SSL socket is not read and written
        # from two threads at once.
        try:
            while True:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [])[0]
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            for s in (tls, upstream):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._sockets.difference_update((tls, upstream))
