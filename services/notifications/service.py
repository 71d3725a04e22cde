"""The notifications service's entrypoints: the caregiver's messages from the events of the
declaration and travel_costs services, the notice before a declaration expires, and the
e-mails that go with them.

Events carry no personal data: whose message it is, the caregiver's name and e-mail address
are asked of the declaration service (``notice_recipient``) when the message is written, and
what the fund needs for a claim on hold of the travel_costs service (``claim_notice``)."""
from datetime import timedelta

from nameko.timer import timer

from common import clock
from common.calls import RpcProxy, rpc
from common.crypto import ServiceKeys
from common.errors import Forbidden, Unavailable
from common.consumers import handles_event
from common.service import PlatformService, ask
from common.storage import Storage
from services.notifications import domain
from services.notifications.dependencies import MAILS, MAILS_WAITING, MESSAGES_WRITTEN, Notices
from services.notifications.mail import MailDelayed, MailRefused, compose
from services.notifications.storage import MAILS as MAIL_QUEUE
from services.notifications.storage import MESSAGES, NotificationsStore

MAX_MESSAGES = 200       # the newest a caregiver's message box shows
MAILS_PER_TICK = 50
NOTICES_PER_CHECK = 100


class NotificationsService(PlatformService):
    name = "notifications"
    store = Storage(NotificationsStore)
    keys = ServiceKeys()
    notices = Notices()
    declaration = RpcProxy("declaration", ("OWNER_TIMEOUT_SECONDS", 10))
    travel_costs = RpcProxy("travel_costs", ("OWNER_TIMEOUT_SECONDS", 10))

    # --- what happened ----------------------------------------------------------------------

    @handles_event("declaration.issued")
    @handles_event("declaration.rejected")
    @handles_event("declaration.revoked")
    @handles_event("declaration.expired")
    def on_declaration_changed(self, event):
        """A decision on a declaration: its message, and the validity the expiry notice is
        counted from."""
        payload = event.parsed_payload()
        projection = domain.declaration_projection(event, payload)
        key = domain.message_id("declaration", payload.id, payload.status)
        letter = None
        if payload.status in domain.DECLARATION_MESSAGES and not self.store.has_message(key):
            recipient = self._recipient(payload.reference)
            letter = (key, recipient, domain.declaration_message(
                payload.status, payload.reference, payload.valid_until, recipient,
                self.notices.settings.site))

        def work(session):
            self.store.save_declaration(projection, session)
            return letter and self._write(session, *letter, "declaration", payload.reference)

        return self._handled(event, work, payload.status)

    @handles_event("travel_claim.on_hold")
    @handles_event("travel_claim.approved")
    @handles_event("travel_claim.rejected")
    @handles_event("travel_claim.paid")
    def on_travel_claim_changed(self, event):
        """A step of a travel claim the caregiver waits for; a hold says what the fund needs."""
        payload = event.parsed_payload()
        key = domain.message_id("travel_claim", payload.id, payload.status, event.event_id)
        letter = None
        if not self.store.has_message(key):
            notice = {"amount_euros": payload.amount_euros,
                      "declaration_reference": payload.declaration_reference}
            if payload.status == "ON_HOLD":
                notice.update(ask(self.travel_costs, "claim_notice", payload.id,
                                  timeout=self.notices.settings.owner_timeout,
                                  service="travel_costs"))
            recipient = self._recipient(payload.declaration_reference)
            letter = (key, recipient, domain.claim_message(payload.status, notice, recipient,
                                                           self.notices.settings.site))
        return self._handled(event, lambda session: letter and self._write(
            session, *letter, "travel_claim", payload.id), payload.status)

    def _handled(self, event, work, status):
        written = []
        handled = self.store.apply_once(event.event_id,
                                        lambda session: written.append(work(session)))
        if handled and written[-1]:
            MESSAGES_WRITTEN.labels(event.type).inc()
            self.log.info("notifications.message_written", event_type=event.type, status=status)
        return handled

    # --- the notice before a declaration expires ----------------------------------------------

    @timer(interval=1.0)
    def send_expiry_notices(self):
        """Every EXPIRY_CHECK_SECONDS: a message to each caregiver whose issued declaration
        ends within EXPIRY_NOTICE_DAYS, once (each is claimed in the transaction that writes
        it, so replicas looking at once write it once)."""
        if not self.notices.expiry_check_due():
            return
        settings = self.notices.settings
        until = domain.expiry_notice_until(clock.today(), settings.expiry_notice_days)
        for declaration in self.store.due_for_expiry_notice(until, NOTICES_PER_CHECK):
            try:
                recipient = self._recipient(declaration["reference"])
            except Unavailable:
                self.log.warning("notifications.expiry_notice_deferred")
                return   # the next check tries again
            key = domain.message_id("declaration", declaration["_id"], "EXPIRING")
            letter = domain.declaration_message("EXPIRING", declaration["reference"],
                                                declaration["valid_until"], recipient, settings.site)

            def work(session, declaration=declaration, key=key, recipient=recipient,
                     letter=letter):
                return self.store.mark_notice_sent(declaration["_id"], session) and self._write(
                    session, key, recipient, letter, "declaration", declaration["reference"])

            if self.store.in_transaction(work):
                MESSAGES_WRITTEN.labels("declaration.expiring").inc()
                self.log.info("notifications.expiry_notice_written",
                              reference=declaration["reference"])

    # --- e-mail ------------------------------------------------------------------------------------

    @timer(interval=1.0)
    def relay_mail(self):
        """Sends the e-mails that are due, each held by one sender at a time."""
        settings = self.notices.settings
        now = clock.now_millis()
        for mail_id in self.store.due_mails(now, MAILS_PER_TICK):
            mail = self.store.claim_mail(mail_id, now, settings.lease_seconds)
            if mail is not None:
                self._send(mail)
        if self.notices.measure_due():
            for status, count in self.store.mail_counts().items():
                MAILS_WAITING.labels(status.lower()).set(count)

    def _send(self, mail):
        settings = self.notices.settings
        cipher = self.keys.cipher
        text = domain.message_view(self.store.message(mail["message_id"]), cipher)
        address = cipher.decrypt(mail["to"], context=mail["_id"])
        attempts = mail["attempts"] + 1
        try:
            self.notices.transport.send(compose(mail["_id"], settings.sender, address,
                                                text["subject"], text["body"], clock.now_millis()))
        except MailRefused as refusal:
            self.store.mail_parked(mail["_id"], attempts, clock.now_millis(), str(refusal))
            MAILS.labels("parked").inc()
            self.log.warning("notifications.mail_parked", mail_id=mail["_id"], attempts=attempts,
                             reason=str(refusal))
        except MailDelayed as delay:
            wait = domain.retry_delay_seconds(attempts, settings.retry_delay_ms,
                                              settings.retry_max_delay_ms)
            self.store.mail_retried(mail["_id"], attempts,
                                    clock.now_millis() + timedelta(seconds=wait), str(delay))
            MAILS.labels("retried").inc()
            self.log.warning("notifications.mail_delayed", mail_id=mail["_id"],
                             attempts=attempts, retry_in_seconds=wait, reason=str(delay))
        else:
            self.store.mail_sent(mail["_id"], clock.now_millis())
            MAILS.labels("sent").inc()
            self.log.info("notifications.mail_sent", mail_id=mail["_id"], attempts=attempts,
                          via=self.notices.transport.describe())

    # --- the caregiver's message box ---------------------------------------------------------------

    @rpc
    def my_messages(self, actor):
        """The calling caregiver's messages, newest first."""
        if (actor or {}).get("role") != "caregiver" or not actor.get("bsn"):
            raise Forbidden("only a caregiver has messages of their own")
        owner = self.keys.hash("bsn", actor["bsn"])
        return [domain.message_view(message, self.keys.cipher)
                for message in self.store.messages_of(owner, MAX_MESSAGES)]

    @rpc
    def mail_queue(self):
        """For operators: how many e-mails wait and which are parked (never an address)."""
        counts = self.store.mail_counts()
        return {"pending": counts[domain.PENDING], "parked": [
            {"id": mail["_id"], "attempts": mail["attempts"], "error": mail.get("last_error"),
             "parked_at": mail["parked_at"].isoformat()} for mail in self.store.parked_mails()]}

    @rpc(open=True)
    def health(self):
        counts = self.store.mail_counts()
        return {**super().health(), "mails_pending": counts[domain.PENDING],
                "mails_parked": counts[domain.PARKED]}

    # --- rotation of the data key -------------------------------------------------------------

    @rpc
    def reencrypt_personal_data(self, batch=500):
        """Re-encrypts with the current data key up to ``batch`` messages' texts and e-mail
        addresses that an earlier, still configured key encrypted."""
        reports = [self.store.reencrypt(collection, field, self.keys.cipher, batch)
                   for collection, field in ((MESSAGES, "text"), (MAIL_QUEUE, "to"))]
        report = {"key_id": self.keys.cipher.current_id,
                  **{name: sum(r[name] for r in reports)
                     for name in ("reencrypted", "remaining", "unreadable")},
                  "unknown_keys": sorted({k for r in reports for k in r["unknown_keys"]})}
        self.log.info("notifications.personal_data_reencrypted",
                      reencrypted=report["reencrypted"], remaining=report["remaining"])
        return report

    # --- helpers ---------------------------------------------------------------------------------

    def _recipient(self, reference):
        """Whose the declaration is (the keyed hash of their BSN), their name and e-mail."""
        return ask(self.declaration, "notice_recipient", reference,
                   timeout=self.notices.settings.owner_timeout, service="declaration")

    def _write(self, session, key, recipient, letter, kind, about):
        """The message in the owner's box and, with an address, its e-mail in the queue."""
        subject, body = letter
        now = clock.now_millis()
        cipher = self.keys.cipher
        message = domain.new_message(key, recipient["caregiver_key"], kind, about, subject, body,
                                     cipher, now)
        mail = domain.new_mail(key, recipient["caregiver_key"], recipient["email"], cipher, now) \
            if recipient.get("email") else None
        return self.store.save_message(message, mail, session)
