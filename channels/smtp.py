"""Email over plain SMTP (stdlib `smtplib`), for small senders and local development.

Point it at any relay: a mailbox provider's submission port, a company relay, or a
local inbox (`python -m aiosmtpd -n -l 127.0.0.1:8025`). Each send opens its own
connection, so one adapter instance is safe to share between worker threads; the
cost is a handshake per message, which is fine at the volumes SMTP relays accept.

How SMTP replies become errors (the code is kept in the error's `code`):

    4xx anywhere, connection refused/reset/timeout, server hung up    -> TransientChannelError
    5xx to RCPT TO: x.1.x or 5.2.1 enhanced status, or bare 550/551/553 -> invalid_recipient
    5xx to RCPT TO with another enhanced status (5.7.1 relaying denied) -> rejected
    530 (authentication required), 535 and other AUTH failures        -> auth
    5xx to MAIL FROM or DATA, STARTTLS missing, bad TLS certificate   -> rejected

Only a reply that is about the mailbox suppresses the address: a relay that refuses
us for policy reasons must not suppress every contact we try.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, getaddresses
from typing import Any, ClassVar, Literal, get_args

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .base import Channel, OutgoingMessage, Receipt
from .email import EmailSettings, list_unsubscribe_headers, recipient, reply_to, sender
from .errors import (
    ChannelConfigError,
    ChannelError,
    PermanentChannelError,
    PermanentReason,
    TransientChannelError,
)

NAME = "smtp"
Security = Literal["starttls", "ssl", "none"]
SECURITY_CHOICES: tuple[str, ...] = get_args(Security)

# 7bit transfer encodings (quoted-printable/base64) survive every relay, even the
# ones that do not announce 8BITMIME.
POLICY = default_policy.clone(cte_type="7bit")
CREDENTIALS = "JOURNEYS_SMTP_USERNAME/JOURNEYS_SMTP_PASSWORD"
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_NOT_MSG_ID = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


class SmtpSettings(BaseSettings):
    """`JOURNEYS_SMTP_*`; the sender defaults come from `EmailSettings` (`JOURNEYS_EMAIL_*`)."""

    model_config = SettingsConfigDict(env_prefix="JOURNEYS_SMTP_", extra="ignore")

    host: str | None = None
    port: int | None = None  # 465 with security=ssl, else 587
    username: str | None = None
    password: SecretStr | None = None
    security: Security | None = None  # none for loopback hosts, else starttls
    timeout: float = 10.0
    helo_name: str | None = None  # the name we greet with; default: this machine's FQDN
    ca_file: str | None = None  # trust this CA (a company relay's); default: the system's


def is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpChannel(Channel):
    """Sends each email as multipart/alternative (text, then HTML) over one SMTP connection."""

    name: ClassVar[str] = NAME
    serves: ClassVar[tuple[str, ...]] = ("email",)

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        security: str | None = None,
        timeout: float = 10.0,
        sender: str | None = None,
        reply_to: str | None = None,
        unsubscribe_mailto: str | None = None,
        helo_name: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        if not host:
            raise ChannelConfigError(
                "the smtp channel needs JOURNEYS_SMTP_HOST (the relay's host name)", provider=NAME
            )
        if not sender:
            raise ChannelConfigError(
                "the smtp channel needs a default sender: set JOURNEYS_EMAIL_FROM "
                "(e.g. 'Shop <news@shop.example>')",
                provider=NAME,
            )
        security = security or ("none" if is_loopback(host) else "starttls")
        if security not in SECURITY_CHOICES:
            raise ChannelConfigError(
                f"JOURNEYS_SMTP_SECURITY must be one of {', '.join(SECURITY_CHOICES)}, "
                f"not {security!r}",
                provider=NAME,
            )
        if bool(username) != bool(password):
            raise ChannelConfigError(
                f"set both {CREDENTIALS} or neither (only one of them is set)", provider=NAME
            )
        if username and security == "none" and not is_loopback(host):
            raise ChannelConfigError(
                f"refusing to send {CREDENTIALS} in clear text to {host}: "
                "set JOURNEYS_SMTP_SECURITY=starttls or ssl",
                provider=NAME,
            )
        port = port or (465 if security == "ssl" else 587)
        if not 0 < port < 65536:
            raise ChannelConfigError(f"JOURNEYS_SMTP_PORT {port} is not a port", provider=NAME)
        if timeout <= 0:
            raise ChannelConfigError("JOURNEYS_SMTP_TIMEOUT must be positive", provider=NAME)
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.security: Security = security  # type: ignore[assignment]
        self.timeout = timeout
        # smtplib would look the FQDN up on every connection; once is enough.
        self.helo_name = helo_name or socket.getfqdn()
        self.email = EmailSettings.model_construct(
            from_=sender, reply_to=reply_to, unsubscribe_mailto=unsubscribe_mailto
        )
        self._tls: ssl.SSLContext | None = None
        if security != "none":
            try:
                self._tls = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ChannelConfigError(
                    f"JOURNEYS_SMTP_CA_FILE {ca_file!r} cannot be read: {exc}", provider=NAME
                ) from exc

    @classmethod
    def from_settings(cls, settings: Any = None) -> SmtpChannel:
        try:
            smtp = SmtpSettings()
        except ValidationError as exc:
            raise ChannelConfigError(_describe(exc, "JOURNEYS_SMTP_"), provider=NAME) from exc
        try:
            email = EmailSettings()
        except ValidationError as exc:
            raise ChannelConfigError(_describe(exc, "JOURNEYS_EMAIL_"), provider=NAME) from exc
        return cls(
            host=smtp.host or "",
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            security=smtp.security,
            timeout=smtp.timeout,
            sender=email.from_,
            reply_to=email.reply_to,
            unsubscribe_mailto=email.unsubscribe_mailto,
            helo_name=smtp.helo_name,
            ca_file=smtp.ca_file,
        )

    # --- the pipeline ---------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Receipt:
        mime, envelope_from, envelope_to = self.compose(message)
        try:
            self._deliver(mime, envelope_from, envelope_to)
        except ChannelError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise _mapped(exc) from exc
        return Receipt(provider_message_id=str(mime["Message-ID"]))

    def compose(self, message: OutgoingMessage) -> tuple[EmailMessage, str, str]:
        """The MIME message and its envelope; the Message-ID is stable across retries."""
        if message.channel != "email":
            raise PermanentChannelError(
                f"the smtp channel sends email, not {message.channel}",
                provider=NAME,
                reason="bad_payload",
            )
        to = _address(recipient(message, NAME))
        if to is None:
            raise PermanentChannelError(
                f"{message.to!r} is not an email address", provider=NAME, reason="invalid_recipient"
            )
        from_value = sender(message, self.email, NAME)
        from_addr = _address(from_value)
        if from_addr is None:
            raise PermanentChannelError(
                f"sender {from_value!r} is not an email address (JOURNEYS_EMAIL_FROM or the "
                "journey's `from`)",
                provider=NAME,
                reason="bad_payload",
            )
        text, html = message.content.get("text"), message.content.get("html")
        if not (text or html):
            raise PermanentChannelError(
                "the email has neither a text nor an HTML body", provider=NAME, reason="bad_payload"
            )
        mime = EmailMessage(policy=POLICY)
        try:
            mime["From"] = from_value
            # The one addr-spec the envelope goes to, nothing else: the header must name
            # exactly it (`recipient` refused encoded words, which would show decoded).
            mime["To"] = to
            mime["Subject"] = message.content.get("subject", "")
            mime["Date"] = format_datetime(datetime.now(UTC))
            mime["Message-ID"] = message_id_header(message.message_id, from_addr)
            answer_to = reply_to(message, self.email)
            if answer_to:
                mime["Reply-To"] = answer_to
            for header, value in list_unsubscribe_headers(
                message, self.email.unsubscribe_mailto
            ).items():
                mime[header] = value
            mime["X-Journeys-Message-Id"] = message.message_id
            if text:
                mime.set_content(text)
                if html:
                    mime.add_alternative(html, subtype="html")
            else:
                mime.set_content(html, subtype="html")
        except (ValueError, TypeError) as exc:  # e.g. a line break inside a header value
            raise PermanentChannelError(
                f"cannot build the email: {exc}", provider=NAME, reason="bad_payload"
            ) from exc
        if [address.addr_spec for address in mime["To"].addresses] != [to]:
            raise PermanentChannelError(
                "the recipient address would show in the To header as something else",
                provider=NAME,
                reason="invalid_recipient",
            )
        return mime, from_addr, to

    def _deliver(self, mime: EmailMessage, envelope_from: str, envelope_to: str) -> None:
        # Connecting in the constructor (not with .connect()) is what tells smtplib the
        # host name that TLS certificates are checked against.
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.helo_name,
                timeout=self.timeout,
                context=self._tls,
            )
        else:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.helo_name, timeout=self.timeout
            )
        try:
            if self.security == "starttls":
                try:
                    smtp.starttls(context=self._tls)
                except smtplib.SMTPNotSupportedError as exc:
                    # Never fall back to clear text: that is what a downgrade attack looks like.
                    raise PermanentChannelError(
                        f"{self.host}:{self.port} does not offer STARTTLS; nothing was sent. "
                        "Set JOURNEYS_SMTP_SECURITY=ssl for an implicit-TLS port (465), or none "
                        "only for a relay on a trusted network",
                        provider=NAME,
                        reason="rejected",
                        code="starttls",
                    ) from exc
            if self.username and self._password:
                self._login(smtp)
            smtp.send_message(mime, from_addr=envelope_from, to_addrs=[envelope_to])
        finally:
            # Once DATA is accepted the message is delivered: a failing QUIT must not
            # turn that into an error (and a retry, and a duplicate).
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _login(self, smtp: smtplib.SMTP) -> None:
        assert self.username and self._password
        try:
            smtp.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise
            raise PermanentChannelError(
                f"{self.host} rejected {CREDENTIALS}: {exc.smtp_code} {_text(exc.smtp_error)}",
                provider=NAME,
                reason="auth",
                code=exc.smtp_code,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentChannelError(
                f"{self.host} does not offer AUTH but {CREDENTIALS} are set (many servers offer "
                "it only after STARTTLS: check JOURNEYS_SMTP_SECURITY)",
                provider=NAME,
                reason="auth",
            ) from exc
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPServerDisconnected):
                raise
            raise PermanentChannelError(  # "No suitable authentication method found"
                f"cannot log in to {self.host} with {CREDENTIALS}: {exc}",
                provider=NAME,
                reason="auth",
            ) from exc


def message_id_header(message_id: str, from_addr: str) -> str:
    """`<our id@sender's domain>`: replies and bounces quote it, so they lead back to us."""
    local = _NOT_MSG_ID.sub("-", message_id).strip(".")
    local = re.sub(r"\.{2,}", ".", local) or "message"
    domain = from_addr.rpartition("@")[2] or "localhost"
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "localhost"
    return f"<{local}@{domain}>"


def _address(value: str) -> str | None:
    """The one addr-spec in `value`, or None (several, none, or a header-injection attempt)."""
    if not value or "\r" in value or "\n" in value:
        return None
    found = [addr for _, addr in getaddresses([value]) if addr]
    if len(found) != 1 or "@" not in found[0] or found[0].startswith("@") or found[0].endswith("@"):
        return None
    return found[0]


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _recipient_reason(code: int, text: str) -> PermanentReason:
    if code == 530:
        return "auth"
    enhanced = _ENHANCED.match(text)
    if enhanced:
        _, subject, detail = enhanced.groups()
        about_mailbox = subject == "1" or (subject == "2" and detail == "1")
        return "invalid_recipient" if about_mailbox else "rejected"
    return "invalid_recipient" if code in (550, 551, 553) else "rejected"


def _mapped(exc: smtplib.SMTPException | OSError) -> ChannelError:
    """One SMTP/socket failure as the typed error the pipeline acts on."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        address, (code, raw) = next(iter(exc.recipients.items()), ("", (0, b"")))
        text = _text(raw)
        if 400 <= code < 500:
            return TransientChannelError(
                f"recipient {address} deferred: {code} {text}", provider=NAME, code=code
            )
        return PermanentChannelError(
            f"recipient {address} refused: {code} {text}",
            provider=NAME,
            code=code,
            reason=_recipient_reason(code, text),
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, _text(exc.smtp_error)
        stage = {
            smtplib.SMTPSenderRefused: "sender refused",
            smtplib.SMTPDataError: "message refused",
            smtplib.SMTPConnectError: "connection refused",
            smtplib.SMTPHeloError: "greeting refused",
        }.get(type(exc), "server said")
        if 400 <= code < 500 or code < 200:
            return TransientChannelError(f"{stage}: {code} {text}", provider=NAME, code=code)
        if code == 530:
            return PermanentChannelError(
                f"the server requires authentication: set {CREDENTIALS} ({code} {text})",
                provider=NAME,
                code=code,
                reason="auth",
            )
        return PermanentChannelError(
            f"{stage}: {code} {text}", provider=NAME, code=code, reason="rejected"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentChannelError(
            f"the server's TLS certificate does not verify ({exc.verify_message}): "
            "check JOURNEYS_SMTP_HOST (or JOURNEYS_SMTP_CA_FILE for a private CA)",
            provider=NAME,
            code="tls",
            reason="rejected",
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientChannelError(f"the server hung up: {exc}", provider=NAME)
    return TransientChannelError(
        f"cannot talk to the SMTP server: {type(exc).__name__}: {exc}", provider=NAME
    )


def _describe(exc: ValidationError, prefix: str) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]).rstrip("_").upper() if error["loc"] else ""
        name = field if field.startswith(prefix) else prefix + field
        problems.append(f"{name}: {error['msg']}")
    return "invalid smtp channel settings: " + "; ".join(problems)
