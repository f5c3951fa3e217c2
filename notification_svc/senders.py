"""Where messages go: a `Sender` per channel. Two real implementations: SMTP (e-mail to a real server)
and the log (a structured log line; the `make up` default)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Protocol

log = logging.getLogger("notification_svc.sent")


class SendFailed(Exception):
    """The channel did not accept the message; it may accept it later (the retry worker tries again)."""


class Sender(Protocol):
    async def send(self, *, recipient: str, subject: str, body: str, notification_id: str) -> None:
        """Returns once the channel accepted the message; raises SendFailed otherwise."""


class LogSender:
    """Writes each message as one log line (development, and orders without an e-mail address)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, *, recipient: str, subject: str, body: str, notification_id: str) -> None:
        self.sent += 1
        # The recipient's address is personal data: the line names its domain only.
        domain = recipient.rpartition("@")[2] if recipient else ""
        log.info("notification %s to %s: %s", notification_id, f"…@{domain}" if domain else "(log)", subject)


class SmtpSender:
    """Sends e-mail through an SMTP server (smtplib, in a worker thread so the event loop never blocks)."""

    def __init__(self, host: str, port: int, sender_address: str, *, timeout_seconds: float = 10.0) -> None:
        self._host = host
        self._port = port
        self._from = sender_address
        self._timeout = timeout_seconds

    async def send(self, *, recipient: str, subject: str, body: str, notification_id: str) -> None:
        message = EmailMessage()
        try:
            message["From"] = self._from
            message["To"] = recipient
            message["Subject"] = subject
            # Lets the recipient's tooling (and our tests) tell a resent message from a new one.
            message["Message-ID"] = f"<{notification_id}@shop.notification>"
            message.set_content(body)
        except ValueError as error:  # e.g. a CR/LF in an address recorded before addresses were checked
            raise SendFailed(f"cannot be sent as e-mail: {error}"[:1000]) from None
        try:
            await asyncio.to_thread(self._deliver, message)
        except (OSError, smtplib.SMTPException) as error:
            raise SendFailed(f"smtp {self._host}:{self._port}: {error}"[:1000]) from None

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as client:
            client.send_message(message)
