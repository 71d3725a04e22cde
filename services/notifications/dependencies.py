"""The notifications service's nameko dependencies besides its store: its settings and the
mail transport, set up once per process, and its metrics."""
import time
from dataclasses import dataclass

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge

from common import config as settings
from services.notifications import mail

MESSAGES_WRITTEN = Counter(
    "mantelzorg_notifications_messages_total",
    "Messages written to caregivers' message boxes, by what they are about.", ["kind"])
MAILS = Counter(
    "mantelzorg_notifications_mails_total",
    "Tries to send an e-mail, by outcome: sent, retried (the server could not be reached or "
    "answered 4xx) or parked (refused for good, 5xx).", ["outcome"])
MAILS_WAITING = Gauge(
    "mantelzorg_notifications_mails_waiting",
    "E-mails by status in the mail queue: pending (not sent yet) or parked.", ["status"])
MAIL_OUTCOMES = ("sent", "retried", "parked")
MEASURE_SECONDS = 5.0


@dataclass(frozen=True)
class NoticeSettings:
    site: str                 # the pages' public address, which messages link to
    sender: str               # the From of every e-mail
    retry_delay_ms: int       # the first wait after a failed try; it doubles ...
    retry_max_delay_ms: int   # ... up to this
    lease_seconds: int        # how long a sender holds an e-mail it is trying
    expiry_notice_days: int   # the notice before a declaration's validity ends
    expiry_check_seconds: float   # how often to look for declarations due for it
    owner_timeout: float      # seconds to wait for the declaration or travel_costs service


class Notices(DependencyProvider):
    """The settings and the mail transport. In production a process without
    ``MANTELZORG_SMTP_URL``, ``MANTELZORG_MAIL_FROM`` or ``MANTELZORG_PUBLIC_URL`` stops at
    start naming the setting."""

    def setup(self):
        config = self.container.config
        with settings.stop_if_misconfigured():
            settings.require_in_production(
                ("MANTELZORG_MAIL_FROM", "MANTELZORG_PUBLIC_URL"),
                "e-mails need a sender and the address of the pages they link to")
            self.transport = mail.transport(config)
        self.settings = NoticeSettings(
            site=settings.setting(config, "PUBLIC_URL", "http://127.0.0.1:8000",
                                  "MANTELZORG_PUBLIC_URL").rstrip("/"),
            sender=settings.setting(config, "MAIL_FROM", "Mantelzorg <noreply@mantelzorg.localhost>",
                                    "MANTELZORG_MAIL_FROM"),
            retry_delay_ms=settings.int_setting(config, "MAIL_RETRY_DELAY_MS", 1000),
            retry_max_delay_ms=settings.int_setting(config, "MAIL_RETRY_MAX_DELAY_MS", 120_000),
            lease_seconds=settings.int_setting(config, "MAIL_LEASE_SECONDS", 60),
            expiry_notice_days=settings.int_setting(config, "EXPIRY_NOTICE_DAYS", 30),
            expiry_check_seconds=settings.float_setting(config, "EXPIRY_CHECK_SECONDS", 300),
            owner_timeout=settings.float_setting(config, "OWNER_TIMEOUT_SECONDS", 10))
        self.last_done = {}   # what this process does now and then -> when it last did
        for outcome in MAIL_OUTCOMES:   # every series from the start, at 0
            MAILS.labels(outcome)

    def due(self, what, every_seconds):
        """Whether this process does ``what`` now: the timers tick every second, some of
        their work is done only every ``every_seconds``."""
        now = time.monotonic()
        last = self.last_done.get(what)
        if last is not None and now - last < every_seconds:
            return False
        self.last_done[what] = now
        return True

    def expiry_check_due(self):
        """Whether to look for declarations due for their expiry notice now."""
        return self.due("expiry check", self.settings.expiry_check_seconds)

    def measure_due(self):
        """Whether to count the mail queue for the metrics now: the embedded store counts by
        reading, and an alert looks at minutes, not seconds."""
        return self.due("measure", MEASURE_SECONDS)

    def get_dependency(self, worker_ctx):
        return self
