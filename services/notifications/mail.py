"""How an e-mail leaves the platform: over SMTP (``MANTELZORG_SMTP_URL``), or in development,
without that setting, as an ``.eml`` file under ``$MANTELZORG_DATA_DIR/mail/``.

``smtp://[user:password@]host[:587]`` talks STARTTLS and refuses to send when the server does
not offer it; ``smtps://[user:password@]host[:465]`` talks TLS from the start. The server's
certificate is checked against the system's trust store, or ``MANTELZORG_SMTP_CA_FILE``.

A transport answers a try in one of three ways: sent, ``MailDelayed`` (the server cannot be
reached or answers 4xx: try again later) or ``MailRefused`` (the server refused the address or
the message for good, 5xx: parking it is all that is left)."""
import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

from common import config as settings

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


class MailDelayed(Exception):
    """Not sent this time; nothing says it will not go later."""


class MailRefused(Exception):
    """Refused for good (5xx)."""


def smtp_url(environ=None):
    """The mail server's address; it may hold a password, so it is read from the
    environment only, never from a config file."""
    return settings.setting(None, "MANTELZORG_SMTP_URL", environ=environ)


def compose(mail_id, sender, address, subject, body, now):
    """The e-mail as it is sent: plain text in Dutch, its Message-ID fixed by the mail's id
    so that a mail server or a reader can tell a repeat."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "mantelzorg.localhost"
    message["Message-ID"] = f"<{mail_id}@{domain}>"
    message["Content-Language"] = "nl"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


class SmtpTransport:
    def __init__(self, url, ca_file=None, timeout=10.0):
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise settings.SettingsError(
                "MANTELZORG_SMTP_URL must be smtp://host[:port] (STARTTLS) or smtps://host[:port]")
        self.tls_from_start = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.context = ssl.create_default_context(cafile=ca_file or None)
        self.timeout = timeout

    def describe(self):
        return f"{'smtps' if self.tls_from_start else 'smtp'}://{self.host}:{self.port}"

    def _connect(self):
        if self.tls_from_start:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                    context=self.context)
        server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        server.ehlo()
        if not server.has_extn("starttls"):
            server.close()
            raise MailDelayed("the mail server does not offer STARTTLS")
        server.starttls(context=self.context)
        server.ehlo()
        return server

    def send(self, message):
        try:
            with self._connect() as server:
                if self.user:
                    server.login(self.user, self.password or "")
                server.send_message(message)
        except smtplib.SMTPRecipientsRefused as refusal:
            codes = [code for code, _text in refusal.recipients.values()]
            if codes and min(codes) >= 500:
                raise MailRefused(f"address refused ({min(codes)})") from None
            raise MailDelayed(f"address not taken now ({min(codes or [0])})") from None
        except smtplib.SMTPDataError as refusal:
            if refusal.smtp_code >= 500:
                raise MailRefused(f"message refused ({refusal.smtp_code})") from None
            raise MailDelayed(f"message not taken now ({refusal.smtp_code})") from None
        except smtplib.SMTPResponseException as error:
            # The sender or the login refused: the platform's settings, not the address.
            raise MailDelayed(f"the mail server answered {error.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise MailDelayed(f"the mail server cannot be reached ({type(error).__name__})") \
                from None


class FileTransport:
    """Development without a mail server: each e-mail is a file ``<mail id>.eml`` in
    ``folder``, written whole (a temporary file renamed), once per mail."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def describe(self):
        return f"files in {self.folder.name}/"

    def send(self, message):
        name = message["Message-ID"].strip("<>").partition("@")[0]
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        with os.fdopen(handle, "wb") as file:
            file.write(bytes(message))
        os.replace(temporary, self.folder / f"{name}.eml")


def transport(config=None, environ=None):
    """The transport the settings choose; production does not start without a mail server."""
    url = smtp_url(environ)
    if url:
        return SmtpTransport(url, settings.setting(None, "MANTELZORG_SMTP_CA_FILE", environ=environ),
                             settings.float_setting(config, "SMTP_TIMEOUT_SECONDS", 10, environ=environ))
    if settings.is_production(environ):
        raise settings.missing_in_production(
            "MANTELZORG_SMTP_URL", "e-mails are written to files in development only")
    folder = settings.data_dir(config)
    if folder == ":memory:":
        folder = tempfile.mkdtemp(prefix="mantelzorg-")
    return FileTransport(Path(folder) / "mail")
