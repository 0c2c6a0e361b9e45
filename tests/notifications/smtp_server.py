"""A small SMTP server on the loopback address for tests: STARTTLS or implicit TLS, AUTH PLAIN,
with a certificate authority and a server certificate for 127.0.0.1 made on the spot."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Certificates:
    ca_file: Path  # what a client trusts
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> Certificates:
    """A throwaway authority and a server certificate it signed for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tollgate test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = Certificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(pem))
    files.cert_file.write_bytes(cert.public_bytes(pem))
    files.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass
class Received:
    """One message as the server saw it, with how the session was protected."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    tls_version: str | None
    login: tuple[str, str] | None


@dataclass
class SmtpServer:
    port: int
    messages: list[Received] = field(default_factory=list)
    sessions_without_tls_commands: list[str] = field(default_factory=list)


class _Handler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def setup(self) -> None:
        self.conn: socket.socket = self.request
        self.conn.settimeout(30)
        self.tls: ssl.SSLSocket | None = None
        if self.server.implicit_tls:
            self.tls = self.server.context.wrap_socket(self.conn, server_side=True)
            self.conn = self.tls
        self.reader = self.conn.makefile("rb")
        self.login: tuple[str, str] | None = None

    def send(self, line: str) -> None:
        self.conn.sendall(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.send("220 test.smtp ESMTP ready")
        mail_from, rcpt_to = "", []
        while line := self.reader.readline():
            command, _, argument = line.decode().rstrip("\r\n").partition(" ")
            verb = command.upper()
            if verb in ("EHLO", "HELO"):
                features = ["250-test.smtp", "250-8BITMIME"]
                if self.tls is None:
                    features.append("250-STARTTLS")
                else:
                    features.append("250-AUTH PLAIN")
                features.append("250 SMTPUTF8")
                self.conn.sendall("\r\n".join(features).encode() + b"\r\n")
            elif verb == "STARTTLS" and self.tls is None:
                self.send("220 go ahead")
                self.tls = self.server.context.wrap_socket(self.conn, server_side=True)
                self.conn = self.tls
                self.reader = self.conn.makefile("rb")
            elif verb == "AUTH" and self.tls is not None:
                mechanism, _, initial = argument.partition(" ")
                if mechanism.upper() != "PLAIN":
                    self.send("504 unrecognized authentication type")
                    continue
                _, user, password = base64.b64decode(initial).decode().split("\0")
                self.login = (user, password)
                self.send("235 authenticated")
            elif verb == "MAIL":
                if self.tls is None:
                    self.server.record.sessions_without_tls_commands.append(verb)
                mail_from = argument.split(":", 1)[1].split()[0].strip("<>")
                self.send("250 ok")
            elif verb == "RCPT":
                rcpt_to.append(argument.split(":", 1)[1].strip().strip("<>"))
                self.send("250 ok")
            elif verb == "DATA":
                self.send("354 end with .")
                self.server.record.messages.append(
                    Received(
                        mail_from=mail_from,
                        rcpt_to=rcpt_to,
                        data=self._read_data(),
                        tls_version=self.tls.version() if self.tls else None,
                        login=self.login,
                    )
                )
                mail_from, rcpt_to = "", []
                self.send("250 queued")
            elif verb == "RSET" or verb == "NOOP":
                self.send("250 ok")
            elif verb == "QUIT":
                self.send("221 bye")
                return
            else:
                self.send("502 not implemented")

    def _read_data(self) -> bytes:
        lines = []
        while (line := self.reader.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, context: ssl.SSLContext, implicit_tls: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.implicit_tls = implicit_tls
        self.record = SmtpServer(port=self.server_address[1])


class running_smtp_server:  # used as a context manager, like open()
    """``with running_smtp_server(certs, implicit_tls=True) as server: ...``"""

    def __init__(self, certificates: Certificates, *, implicit_tls: bool) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.cert_file, certificates.key_file)
        self._server = _TcpServer(context=context, implicit_tls=implicit_tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpServer:
        self._thread.start()
        return self._server.record

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
