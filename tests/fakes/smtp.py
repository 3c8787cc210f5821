"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives and can be scripted.

`SmtpInbox` listens on a free port and parses each accepted message with the
`email` package, so tests read headers and parts as a mail client would. It can
refuse a recipient, the sender or the message with any reply line (`550 5.1.1 ...`,
`451 4.3.0 ...`), require AUTH with given credentials, and hang up mid-command.
It can also speak TLS (STARTTLS or implicit) with a certificate from `make_tls`, a
throwaway CA the client may be told to trust, and answer the end of `DATA` slowly
(`answer_delay`), as a loaded relay does. `SilentServer` accepts connections
and never greets, to exercise timeouts.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# aiosmtpd 1.4 itself sets its deprecated `Session.login_data` on every AUTH and logs a
# warning about it; that is noise for tests of our client.
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None


class _Controller(Controller):
    """aiosmtpd cannot be told port 0 by itself: read the port the OS picked."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpInbox:
    """Context manager: `with SmtpInbox() as inbox: ... inbox.messages`."""

    host = "127.0.0.1"

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        tls: Literal["starttls", "ssl"] | None = None,
        certificate: TlsFiles | None = None,
    ) -> None:
        self.credentials = credentials
        self.messages: list[Received] = []
        self.rejected_recipients: dict[str, str] = {}
        self.sender_reply: str | None = None
        self.data_reply: str | None = None
        self.drop_at: str | None = None
        self.answer_delay = 0.0
        self.answering: set[str] = set()  # kept, `250` not sent yet: X-Journeys-Message-Id
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if credentials:
            kwargs["authenticator"] = self._authenticate
            # AUTH over plain TCP is fine on loopback; with TLS, offer it only after
            # STARTTLS, as real relays do.
            kwargs["auth_require_tls"] = tls is not None
        if tls:
            assert certificate is not None, "TLS needs make_tls(...) files"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certificate.cert, certificate.key)
            kwargs["ssl_context" if tls == "ssl" else "tls_context"] = context
        self._controller = _Controller(
            self, hostname=self.host, port=0, server_hostname="inbox.test", **kwargs
        )

    # --- scripting -----------------------------------------------------------

    def reject_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        self.rejected_recipients[address] = reply

    def reject_sender(self, reply: str) -> None:
        self.sender_reply = reply

    def reject_data(self, reply: str) -> None:
        self.data_reply = reply

    def slow(self, seconds: float) -> None:
        """Answer each message `seconds` after its `DATA` ends. The message is kept at the
        end of `DATA`, as real relays keep it: a client that hangs up (or dies) before the
        answer has still sent it."""
        self.answer_delay = seconds

    def by_message_id(self) -> dict[str, int]:
        """How many times each of our messages arrived (`X-Journeys-Message-Id`)."""
        counts: dict[str, int] = {}
        with self._lock:
            for received in self.messages:
                key = str(received.message["X-Journeys-Message-Id"] or "")
                counts[key] = counts.get(key, 0) + 1
        return counts

    def drop_connection(self, at: str = "data") -> None:
        """Hang up without answering `MAIL`, `RCPT`, the end of `DATA` or `QUIT`.

        At `quit` the message has been accepted (and is kept) before the hang-up.
        """
        assert at in ("mail", "rcpt", "data", "quit")
        self.drop_at = at

    # --- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def __enter__(self) -> SmtpInbox:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    # --- aiosmtpd handler hooks ------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        given = (
            (data.login.decode(), data.password.decode())
            if isinstance(data, LoginPassword)
            else None
        )
        ok = given == self.credentials
        return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)

    def _drop(self, server: SMTP, stage: str) -> bool:
        if self.drop_at == stage:
            assert server.transport is not None
            server.transport.abort()
            return True
        return False

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self._drop(server, "mail"):
            return "421 gone"
        if self.sender_reply:
            return self.sender_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._drop(server, "rcpt"):
            return "421 gone"
        if address in self.rejected_recipients:
            return self.rejected_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._drop(server, "data"):
            return "421 gone"
        if self.data_reply:
            return self.data_reply
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    raw=raw,
                    message=parsed,
                    authenticated_as=session.auth_data if session.authenticated else None,
                )
            )
        if self.answer_delay:
            key = str(parsed["X-Journeys-Message-Id"] or id(parsed))
            with self._lock:
                self.answering.add(key)
            try:
                await asyncio.sleep(self.answer_delay)
            finally:
                with self._lock:
                    self.answering.discard(key)
        return "250 2.0.0 Queued"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._drop(server, "quit"):
            return "421 gone"
        return "221 Bye"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what a client trusts
    cert: Path  # the server's, for 127.0.0.1 and localhost, signed by `ca`
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate it signed (EC keys: fast to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("journeys test CA"))
        .issuer_name(name("journeys test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
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
    server = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(pem(ca))
    files.cert.write_bytes(pem(server))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class SilentServer:
    """Accepts TCP connections (the kernel does) and never says a word."""

    host = "127.0.0.1"

    def __enter__(self) -> SilentServer:
        self._socket = socket.socket()
        self._socket.bind((self.host, 0))
        self._socket.listen(8)
        self.port = self._socket.getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


def free_port() -> int:
    """A port nothing listens on (for connection-refused tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
