"""The declaration service's entrypoints."""
from datetime import date

from nameko.timer import timer
from pymongo.errors import DuplicateKeyError

from common import clock, metrics
from common.calls import rpc
from common.crypto import ServiceKeys
from common.errors import BadUserInput, Conflict, Forbidden, NotFound
from common.consumers import handles_event
from common.schemas.declaration import (DECLARATION_STATUSES, DeclarationRequestInput,
                                        DeclarationSettingsInput)
from common.service import PlatformService
from common.storage import Storage, once_per_request
from services.declaration import domain, tokens
from services.declaration.dependencies import FailedCheckLimit
from services.declaration.storage import DECLARATIONS, PERSONAL_DATA_READS, DeclarationStore


class DeclarationService(PlatformService):
    name = "declaration"
    store = Storage(DeclarationStore)
    keys = ServiceKeys()
    failed_checks = FailedCheckLimit()
    republishable = {event: (DECLARATIONS, domain.event_payload, {"status": status})
                     for status, event in domain.EVENT_OF.items()}

    # --- reference data -------------------------------------------------------------------

    @handles_event("municipality.imported")
    def on_municipality_imported(self, event):
        municipality = domain.municipality_projection(event.parsed_payload())
        return self.store.apply_once(event.event_id, lambda session: self.store.save_municipality(
            municipality, session))

    # --- local choices --------------------------------------------------------------------

    @rpc
    def municipality_settings(self, municipality_code):
        """The effective criteria of a municipality: its choices over the national defaults."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        return {"municipality_code": code, **self._criteria(code).as_dict()}

    @rpc
    @once_per_request
    def set_municipality_settings(self, municipality_code, data, actor):
        """Admin or the municipality itself; a value left out keeps the national default."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        domain.may_decide(actor, code)
        chosen = DeclarationSettingsInput.parsed(data)
        self.store.save_settings(domain.settings_document(code, chosen.model_dump(), actor,
                                                          clock.now()))
        self.log.info("declaration.settings_changed", municipality_code=code)
        return {"municipality_code": code, **self._criteria(code).as_dict()}

    # --- the lifecycle --------------------------------------------------------------------

    @rpc
    @once_per_request
    def request_declaration(self, data, actor):
        """A caregiver for their own BSN, or the municipality on the caregiver's behalf,
        files a request; either way it is the caregiver's whose BSN it carries. Answers the
        declaration with its verification code."""
        actor = self._caller(actor)
        request = DeclarationRequestInput.parsed(data)
        code = self._known_municipality(request.municipality_code, "input.municipalityCode")
        domain.may_make("request", actor, {
            "municipality_code": code,
            "caregiver_key": domain.caregiver_key(self.keys, request.caregiver.bsn)})
        criteria = self._criteria(code)
        if domain.unsupported_purposes(request.purposes, criteria):
            raise BadUserInput("input.purposes: this municipality does not issue declarations "
                               "for one of these purposes", field="input.purposes")
        active_key = domain.active_key(self.keys, request, code)
        self._refuse_duplicate(active_key)

        now = clock.now()
        reference = domain.reference(now.year, self.store.next_reference_number(now.year))
        document, verification_code = domain.new_declaration(request, code, reference, criteria,
                                                             actor, self.keys, now)

        def work(session):
            self.store.insert(document, session)
            self.outbox.record(session, domain.EVENT_OF[domain.REQUESTED],
                               domain.event_payload(document))

        try:
            self.store.in_transaction(work)
        except DuplicateKeyError:   # a concurrent duplicate won the race
            self._refuse_duplicate(active_key)
            raise
        self.log.info("declaration.requested", reference=reference, municipality_code=code,
                      unmet_criteria=document["unmet_criteria"])
        return domain.view(document, actor, verification_code)

    @rpc
    def declaration(self, reference, actor):
        """NOT_FOUND alike for an unknown reference and for one the caller may not read."""
        actor = self._caller(actor)
        return self._view(domain.readable(actor, self.store.find_by_reference(reference)), actor)

    @rpc
    def my_declarations(self, actor):
        """Every declaration that carries the calling caregiver's BSN, newest first, also
        those a municipality filed on their behalf."""
        actor = self._caller(actor)
        if "caregiver_key" not in actor:
            raise Forbidden("only a caregiver has declarations of their own")
        return [self._view(document, actor)
                for document in self.store.owned_by(actor["caregiver_key"])]

    @rpc
    def declarations(self, municipality_code, status, first, after, actor):
        """A municipality's declarations, oldest reference first; ``after`` is the last
        reference of the previous page."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        domain.may_decide(actor, code)
        if status is not None and status not in DECLARATION_STATUSES:
            raise BadUserInput("status: unknown status", field="status")
        found = self.store.page_of_municipality(code, status, after, int(first))
        return [self._view(document, actor) for document in found]

    @rpc
    def applicants(self, declaration_ids, actor):
        """{id: the applicant, or None} of each declaration: for its owner caregiver and the
        municipality it was requested at, None for anyone else (admin included) and for an
        id that is not there. Every read by someone but the owner is recorded before the
        answer leaves, in the append-only log the owner sees (``personal_data_access``); the
        application log never names it."""
        actor = self._caller(actor)
        answer, reads, now = {str(i): None for i in declaration_ids}, [], clock.now()
        for document in self.store.find_by_ids(list(answer)):
            reader = domain.applicant_reader(actor, document)
            if reader is None:
                continue
            personal = self.keys.cipher.decrypt(
                document["personal"], context=domain.sealing_context("personal", document["_id"]))
            answer[document["_id"]] = domain.applicant_view(personal)
            if reader == "recorded":
                reads.append(domain.personal_data_read(document, actor, now, self.keys.cipher))
        self.store.record_reads(reads)
        return answer

    @rpc
    def personal_data_access(self, actor):
        """The calling caregiver's log: every read of their personal data by someone else,
        newest first."""
        actor = self._caller(actor)
        if "caregiver_key" not in actor:
            raise Forbidden("only a caregiver has personal data of their own here")
        return [domain.access_view(entry) for entry in self.store.reads_of(actor["caregiver_key"])]

    @timer(interval=30, eager=True)
    def measure_waiting(self):
        """The operators' gauges: per municipality the requests waiting for a decision and
        the age of the oldest (an alert fires when one passes its decision due date)."""
        now = clock.now()
        metrics.set_waiting_declarations(
            self.store.waiting_per_municipality(domain.overdue_before(now.date())), now)

    @rpc
    @once_per_request
    def decide_declaration(self, declaration_id, decision, reason, actor):
        action = {"ISSUE": "issue", "REJECT": "reject"}.get(decision)
        if action is None:
            raise BadUserInput("decision: must be ISSUE or REJECT", field="decision")
        reason = domain.required_reason(action, reason)

        def issue(document):
            changes = domain.issue_changes(self._criteria(document["municipality_code"]),
                                           clock.today(), reason)
            return {**changes, "token": tokens.sign({**document, **changes}, self.keys.signer)}

        def reject(document):
            return {"decision_reason": reason}

        changed = self._transition(declaration_id, action, actor, reason,
                                   issue if action == "issue" else reject)
        return self._view(changed, actor)

    @rpc
    @once_per_request
    def revoke_declaration(self, declaration_id, reason, actor):
        reason = domain.required_reason("revoke", reason)
        changed = self._transition(declaration_id, "revoke", actor, reason,
                                   lambda document: {"decision_reason": reason})
        return self._view(changed, actor)

    @rpc
    @once_per_request
    def renew_verification_code(self, declaration_id, actor):
        """A new verification code, for the owner caregiver or the issuing municipality;
        from now on the old one fails every check. The audit trail records who renewed it."""
        actor = self._caller(actor)
        document = domain.require_found(self.store.find_by_id(declaration_id))
        domain.require_owner_or_issuer(actor, document)   # the contract: anyone else FORBIDDEN
        now = clock.now()
        code, code_fields = domain.new_code(self.keys, document["_id"], document["reference"])
        changed = self.store.replace_code(document["_id"], document["verification_hash"],
                                          {**code_fields, "updated_at": now},
                                          domain.renewal_entry(document, actor, now))
        if changed is None:
            raise Conflict("the verification code was renewed meanwhile; reload it")
        self.log.info("declaration.code_renewed", reference=changed["reference"],
                      by_role=actor.get("role"))
        return domain.view(changed, actor, code)

    # --- expiry ---------------------------------------------------------------------------

    @timer(interval=60)
    def expire_due_declarations(self):
        self.expire_due()

    @rpc
    def expire_due(self, today=None, limit=1000):
        """Moves issued declarations whose validity ended before ``today`` to EXPIRED
        (``mantelzorg expire-declarations``). Safe to run in every replica at once: each
        declaration is claimed by a conditional update in the transaction that writes its
        event. Returns how many this call moved."""
        today = date.fromisoformat(today) if today else clock.today()
        expired = 0
        for declaration_id in self.store.due_for_expiry(today.isoformat(), limit):
            try:
                self._transition(declaration_id, "expire", domain.SYSTEM, "validity ended")
                expired += 1
            except Conflict:   # another worker or replica expired it first
                continue
        return expired

    # --- checks by partners ---------------------------------------------------------------

    @rpc
    def check_declaration(self, reference, verification_code, purpose, client):
        """valid/status/validUntil/purposeAccepted/municipality, and nothing else. Unknown
        reference and wrong code answer alike; a client with too many failures recently
        gets 'not valid' without any lookup until its window has passed."""
        if self.failed_checks.blocked(str(client), self.store):
            return dict(domain.NO_ANSWER)
        reference = domain.normal_reference(reference)
        document = self.store.find_for_check(reference)
        # Hashed also for an unknown reference, so that both take the same time.
        offered = domain.code_hash(self.keys, reference, verification_code)
        if document is None or not self.keys.hash.same(offered, document["verification_hash"]):
            return self._failed_check(client)
        return domain.check_answer(document, purpose, clock.today())

    @rpc
    def check_token(self, token, purpose, client):
        """The online check of an offline token: its signature, then the declaration's
        current status (a revoked or expired declaration's token is not valid)."""
        if self.failed_checks.blocked(str(client), self.store):
            return dict(domain.NO_ANSWER)
        reference = tokens.signed_reference(token, self.keys.signer)
        document = self.store.find_for_check(reference) if reference else None
        if document is None or document.get("token") != token:
            return self._failed_check(client)
        return domain.check_answer(document, purpose, clock.today())

    # --- the travel-cost fund -------------------------------------------------------------

    @rpc
    def claim_eligibility(self, reference, trip_dates, actor):
        """Asked by the travel-cost fund before it accepts a claim: the declaration must be
        the caller's (its BSN is the caller's), issued, for the travel-cost fund and valid on
        every trip date (ISO dates). Refuses with FORBIDDEN or BAD_USER_INPUT naming the
        claim's field; answers the reference, municipality and end of validity."""
        document = self.store.find_by_reference(domain.normal_reference(reference))
        caller_key = self.keys.hash("bsn", actor["bsn"]) if actor.get("bsn") else None
        return domain.claim_eligibility(document, caller_key,
                                        [date.fromisoformat(day) for day in trip_dates],
                                        self.keys.hash.same)

    # --- the caregiver's messages ---------------------------------------------------------

    @rpc(callers=("notifications",))
    def notice_recipient(self, reference):
        """Asked by the notifications service when it writes a caregiver a message about a
        declaration (events carry no personal data): whose it is, as the keyed hash of the
        BSN, and the caregiver's name and e-mail address as requested; nothing else."""
        document = domain.require_found(
            self.store.find_by_reference(domain.normal_reference(reference)))
        personal = self.keys.cipher.decrypt(
            document["personal"], context=domain.sealing_context("personal", document["_id"]))
        return domain.notice_recipient(document, personal)

    # --- signed documents -----------------------------------------------------------------

    @rpc
    def signing_keys(self):
        """The public keys of the offline tokens, as a JWKS document."""
        return self.keys.signer.jwks()

    @rpc
    def printable(self, reference, actor):
        """What the printable declaration shows: for the owner or the issuing municipality,
        and only while issued."""
        actor = self._caller(actor)
        document = domain.readable(actor, self.store.find_by_reference(reference))
        domain.require_owner_or_issuer(actor, document)
        if document["status"] != domain.ISSUED:
            raise Conflict("only an issued declaration can be printed")
        # It names its holder, so that a desk can hold it against an identity document.
        holder = self._caregiver_name(document, actor, what="verklaring")
        return domain.printable(document, self.store.municipality(document["municipality_code"]),
                                domain.revealed_code(self.keys, actor, document), holder)

    @rpc
    def decision_letter(self, reference, actor):
        """What the decision letter says, for the owner caregiver or the municipality it was
        requested at, once the municipality decided. It is addressed to the caregiver by
        name: the municipality's letter is recorded as a read of the applicant's data."""
        actor = self._caller(actor)
        document = domain.readable(actor, self.store.find_by_reference(reference))
        domain.require_owner_or_issuer(actor, document)
        if domain.decided_at(document) is None:
            raise Conflict("the municipality has not decided on this request yet")
        return domain.decision_letter(document, self.store.municipality(
            document["municipality_code"]), self._caregiver_name(document, actor, "besluitbrief"))

    def _caregiver_name(self, document, actor, what):
        """The caregiver's name for a document addressed to them; a municipality's read of
        it is recorded in the log the caregiver sees."""
        personal = self.keys.cipher.decrypt(
            document["personal"], context=domain.sealing_context("personal", document["_id"]))
        if domain.applicant_reader(actor, document) == "recorded":
            self.store.record_reads([domain.personal_data_read(
                document, actor, clock.now(), self.keys.cipher, what=what)])
        return personal["caregiver"]["name"]

    # --- rotation of the data key ---------------------------------------------------------

    @rpc
    def reencrypt_personal_data(self, batch=500):
        """Re-encrypts with the current data key, of each encrypted field (the personal data,
        the verification code), up to ``batch`` values that an earlier, still configured key
        encrypted. ``mantelzorg reencrypt-personal-data`` calls it until none remain; then
        the earlier keys can be dropped. Values under a key that is no longer configured
        cannot be read: they are counted and left as they are."""
        cipher = self.keys.cipher
        earlier_keys = [kid for kid in cipher.keys if kid != cipher.current_id]
        reencrypted = remaining = unreadable = 0
        unknown_keys = set()
        for field in domain.SEALED_FIELDS:
            for declaration_id, sealed in self.store.sealed_with(field, earlier_keys, batch):
                context = domain.sealing_context(field, declaration_id)
                value = cipher.decrypt(sealed, context=context)
                reencrypted += self.store.reseal(declaration_id, field, sealed,
                                                 cipher.encrypt(value, context=context))
            remaining += self.store.count_sealed_with(field, earlier_keys)
            key_ids, count = self.store.unknown_key_ids(field, cipher.keys)
            unknown_keys.update(key_ids)
            unreadable += count
        # the readers in the log of reads of personal data, each bound to its entry
        readers = self.store.reencrypt(PERSONAL_DATA_READS, "reader", cipher, batch)
        reencrypted += readers["reencrypted"]
        remaining += readers["remaining"]
        unreadable += readers["unreadable"]
        unknown_keys.update(readers["unknown_keys"])
        self.log.info("declaration.personal_data_reencrypted", reencrypted=reencrypted,
                      remaining=remaining, key_id=cipher.current_id)
        return {"key_id": cipher.current_id, "reencrypted": reencrypted, "remaining": remaining,
                "unreadable": unreadable, "unknown_keys": sorted(unknown_keys)}

    # --- helpers ----------------------------------------------------------------------------

    def _caller(self, actor):
        """The actor as the rules see it: a caregiver's BSN, which the gateway passes on from
        the token, only as its keyed hash (compared with the one a declaration carries)."""
        caller = {key: value for key, value in (actor or {}).items() if key != "bsn"}
        if caller.get("role") == "caregiver" and (actor or {}).get("bsn"):
            caller["caregiver_key"] = domain.caregiver_key(self.keys, actor["bsn"])
        return caller

    def _view(self, document, actor):
        return domain.view(document, actor, domain.revealed_code(self.keys, actor, document))

    def _known_municipality(self, value, field):
        code = (value or "").strip().upper()
        if not self.store.knows_municipality(code):
            raise BadUserInput(f"{field}: unknown municipality", field=field)
        return code

    def _criteria(self, code):
        return domain.Criteria.of(self.store.settings_of(code))

    def _refuse_duplicate(self, active_key):
        existing = self.store.active_reference(active_key)
        if existing:
            raise Conflict(f"an active declaration for this caregiver and care recipient exists "
                           f"at this municipality: {existing}")

    def _transition(self, declaration_id, action, actor, reason, changes=None):
        """One step of the lifecycle table, its audit entry and its event, in one
        transaction. The update only applies to the status read, so two workers (or two
        replicas) never both make the same step."""

        def work(session):
            document = self.store.find_by_id(declaration_id, session)
            if document is None:
                raise NotFound("no such declaration")
            domain.may_make(action, actor, document)
            after = domain.next_status(document["status"], action)
            fields, entry, release = domain.step_changes(document, after, action, actor, reason,
                                                         clock.now())
            fields.update(changes(document) if changes else {})
            changed = self.store.change_if_status(document["_id"], document["status"], fields,
                                                  entry, release, session)
            if changed is None:
                raise Conflict("the declaration was changed meanwhile; reload it")
            self.outbox.record(session, domain.EVENT_OF[after], domain.event_payload(changed))
            return changed

        changed = self.store.in_transaction(work)
        if changed["status"] == domain.ISSUED:
            metrics.DECLARATIONS_ISSUED.labels(changed["municipality_code"]).inc()
        self.log.info(f"declaration.{changed['status'].lower()}", reference=changed["reference"],
                      municipality_code=changed["municipality_code"])
        return changed

    def _failed_check(self, client):
        self.failed_checks.count_failure(str(client), self.store)
        self.log.info("declaration.check_failed", client=str(client))
        return dict(domain.NO_ANSWER)
