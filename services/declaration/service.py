"""The declaration service's entrypoints."""
import uuid
from datetime import date

import jwt
from nameko.dependency_providers import Config
from nameko.rpc import rpc
from nameko.timer import timer
from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from common import metrics
from common.crypto import ServiceKeys
from common.errors import BadUserInput, Conflict, Forbidden, NotFound, bad_input_from_validation
from common.messaging import handles_event
from common.schemas.declaration import (DECLARATION_PURPOSES, DECLARATION_STATUSES,
                                        DeclarationRequestInput, DeclarationSettingsInput)
from common.service import PlatformService
from common.storage import Storage, utcnow
from services.declaration import domain
from services.declaration.dependencies import FailedCheckLimit
from services.declaration.storage import (CHECK_FAILURES, COUNTERS, DECLARATIONS, MUNICIPALITIES,
                                          SETTINGS, DeclarationStore)

SYSTEM = {"role": "system", "sub": "declaration-expiry", "municipality": None}


def _validated(model, data, prefix):
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise bad_input_from_validation(exc, prefix) from None


class DeclarationService(PlatformService):
    name = "declaration"
    store = Storage(DeclarationStore)
    keys = ServiceKeys()
    failed_checks = FailedCheckLimit()
    config = Config()

    # --- reference data -------------------------------------------------------------------

    @handles_event("municipality.imported")
    def on_municipality_imported(self, event):
        municipality = domain.municipality_projection(event.parsed_payload())
        return self.store.apply_once(event.event_id, lambda session: self.store[MUNICIPALITIES].replace_one(
            {"_id": municipality["_id"]}, municipality, upsert=True, session=session))

    @rpc
    def municipality(self, code):
        """A municipality this service knows (decisions are made per municipality)."""
        return self.store[MUNICIPALITIES].find_one({"_id": code})

    # --- local choices --------------------------------------------------------------------

    @rpc
    def municipality_settings(self, municipality_code):
        """The effective criteria of a municipality: its choices over the national defaults."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        return {"municipality_code": code, **self._criteria(code).as_dict()}

    @rpc
    def set_municipality_settings(self, municipality_code, data, actor):
        """Admin or the municipality itself; a value left out keeps the national default."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        domain.may_decide(actor, code)
        chosen = _validated(DeclarationSettingsInput, data, "input")
        document = domain.settings_document(code, chosen.model_dump(), actor, utcnow())
        self.store[SETTINGS].replace_one({"_id": code}, document, upsert=True)
        self.log.info("declaration.settings_changed", municipality_code=code)
        return {"municipality_code": code, **self._criteria(code).as_dict()}

    def _criteria(self, code):
        return domain.Criteria.of(self.store[SETTINGS].find_one({"_id": code}))

    def _known_municipality(self, value, field):
        code = (value or "").strip().upper()
        if not self.store[MUNICIPALITIES].find_one({"_id": code}, {"_id": 1}):
            raise BadUserInput(f"{field}: unknown municipality", field=field)
        return code

    # --- the lifecycle --------------------------------------------------------------------

    @rpc
    def request_declaration(self, data, actor):
        """A caregiver (who becomes the owner) or the municipality on their behalf files a
        request. Answers the declaration with its verification code, shown this once."""
        request = _validated(DeclarationRequestInput, data, "input")
        code = self._known_municipality(request.municipality_code, "input.municipalityCode")
        domain.may_request(actor, code)
        criteria = self._criteria(code)
        if domain.unsupported_purposes(request.purposes, criteria):
            raise BadUserInput("input.purposes: this municipality does not issue declarations "
                               "for one of these purposes", field="input.purposes")
        caregiver = request.caregiver.model_dump(mode="json")
        recipient = request.care_recipient.model_dump(mode="json")
        active_key = self.keys.hash("active", caregiver["bsn"], *domain.recipient_identity(recipient), code)
        self._refuse_duplicate(active_key)

        now = utcnow()
        declaration_id = str(uuid.uuid4())
        reference = self._next_reference(now.year)
        verification_code = domain.new_verification_code()
        document = {
            "_id": declaration_id, "reference": reference, "status": domain.REQUESTED,
            "municipality_code": code, "purposes": request.purposes,
            "hours_per_week": str(request.hours_per_week), "care_since": request.care_since.isoformat(),
            "unmet_criteria": domain.unmet_criteria(request.care_since, request.hours_per_week,
                                                    criteria, now.date()),
            "owner": actor.get("sub") if actor.get("role") == "caregiver" else None,
            "caregiver_key": self.keys.hash("bsn", caregiver["bsn"]),
            "active_key": active_key,
            "personal": self.keys.cipher.encrypt({"caregiver": caregiver, "care_recipient": recipient},
                                                 context=declaration_id),
            "verification_hash": self.keys.hash("code", reference, domain.normalise_code(verification_code)),
            "created_at": now, "updated_at": now,
            "history": [self._audit(None, domain.next_status(None, "request"), "request", actor, None, now)],
        }

        def work(session):
            self.store[DECLARATIONS].insert_one(document, session=session)
            self.outbox.record(session, domain.EVENT_OF[domain.REQUESTED], domain.event_payload(document))

        try:
            self.store.in_transaction(work)
        except DuplicateKeyError:   # a concurrent duplicate won the race
            self._refuse_duplicate(active_key)
            raise
        self.log.info("declaration.requested", reference=reference, municipality_code=code,
                      unmet_criteria=document["unmet_criteria"])
        return domain.view(document, actor, verification_code)

    def _refuse_duplicate(self, active_key):
        existing = self.store[DECLARATIONS].find_one({"active_key": active_key}, {"reference": 1})
        if existing:
            raise Conflict(f"an active declaration for this caregiver and care recipient exists "
                           f"at this municipality: {existing['reference']}")

    def _next_reference(self, year):
        counter = self.store[COUNTERS].find_one_and_update(
            {"_id": f"reference-{year}"}, {"$inc": {"value": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return domain.reference(year, counter["value"])

    @staticmethod
    def _audit(before, after, action, actor, reason, now):
        return {"from": before, "to": after, "action": action, "at": now,
                "by": domain.actor_trace(actor), "reason": reason}

    @rpc
    def declaration(self, reference, actor):
        document = self.store[DECLARATIONS].find_one({"reference": reference})
        if document is None:
            return None
        domain.may_read(actor, document)
        return domain.view(document, actor)

    @rpc
    def declarations(self, municipality_code, status, first, after, actor):
        """A municipality's declarations, oldest reference first; ``after`` is the last
        reference of the previous page."""
        code = self._known_municipality(municipality_code, "municipalityCode")
        domain.may_decide(actor, code)
        if status is not None and status not in DECLARATION_STATUSES:
            raise BadUserInput("status: unknown status", field="status")
        query = {"municipality_code": code}
        if status:
            query["status"] = status
        if after:
            query["reference"] = {"$gt": after}
        found = self.store[DECLARATIONS].find(query).sort("reference", 1).limit(int(first))
        return [domain.view(d, actor) for d in found]

    @rpc
    def decide_declaration(self, declaration_id, decision, reason, actor):
        action = {"ISSUE": "issue", "REJECT": "reject"}.get(decision)
        if action is None:
            raise BadUserInput("decision: must be ISSUE or REJECT", field="decision")
        reason = (reason or "").strip() or None
        if action == "reject" and not reason:
            raise BadUserInput("reason: a rejection needs a reason", field="reason")

        def issue(document):
            valid_from, valid_until = domain.validity(self._criteria(document["municipality_code"]),
                                                      date.today())
            issued = {**document, "valid_from": valid_from.isoformat(),
                      "valid_until": valid_until.isoformat()}
            return {"valid_from": issued["valid_from"], "valid_until": issued["valid_until"],
                    "token": self._sign(issued), "decision_reason": reason}

        def reject(document):
            return {"decision_reason": reason}

        return domain.view(self._transition(declaration_id, action, actor, reason,
                                            issue if action == "issue" else reject), actor)

    @rpc
    def revoke_declaration(self, declaration_id, reason, actor):
        reason = (reason or "").strip()
        if not reason:
            raise BadUserInput("reason: a revocation needs a reason", field="reason")
        return domain.view(self._transition(declaration_id, "revoke", actor, reason,
                                            lambda document: {"decision_reason": reason}), actor)

    def _transition(self, declaration_id, action, actor, reason, changes=None):
        """One step of the lifecycle table, its audit entry and its event, in one
        transaction. The update only applies to the status read, so two workers (or two
        replicas) never both make the same step."""

        def work(session):
            collection = self.store[DECLARATIONS]
            document = collection.find_one({"_id": str(declaration_id)}, session=session)
            if document is None:
                raise NotFound("no such declaration")
            if actor is not SYSTEM:
                domain.may_decide(actor, document["municipality_code"])
            before = document["status"]
            after = domain.next_status(before, action)
            now = utcnow()
            update = {"$set": {"status": after, "updated_at": now,
                               **(changes(document) if changes else {})},
                      "$push": {"history": self._audit(before, after, action, actor, reason, now)}}
            if after not in domain.ACTIVE:
                update["$unset"] = {"active_key": ""}
            changed = collection.find_one_and_update(
                {"_id": document["_id"], "status": before}, update, session=session,
                return_document=ReturnDocument.AFTER)
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

    # --- expiry ---------------------------------------------------------------------------

    @timer(interval=60)
    def expire_due_declarations(self):
        self.expire_due()

    @rpc
    def expire_due(self, today=None, limit=1000):
        """Moves issued declarations whose validity ended before ``today`` to EXPIRED.
        Safe to run in every replica at once: each declaration is claimed by a conditional
        update in the transaction that writes its event. Returns how many this call moved."""
        today = date.fromisoformat(today) if today else date.today()
        due = self.store[DECLARATIONS].find(
            {"status": domain.ISSUED, "valid_until": {"$lt": today.isoformat()}}, {"_id": 1}).limit(limit)
        expired = 0
        for document in list(due):
            try:
                self._transition(document["_id"], "expire", SYSTEM, "validity ended")
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
        if self._blocked(client):
            return dict(domain.NO_ANSWER)
        document = self.store[DECLARATIONS].find_one(
            {"reference": str(reference or "").strip().upper()},
            {"verification_hash": 1, "reference": 1, "status": 1, "valid_from": 1,
             "valid_until": 1, "purposes": 1, "municipality_code": 1})
        offered = self.keys.hash("code", document["reference"] if document else reference,
                                 domain.normalise_code(verification_code))
        if document is None or not self.keys.hash.same(offered, document["verification_hash"]):
            self._count_failure(client)
            return dict(domain.NO_ANSWER)
        return domain.check_answer(document, purpose, date.today())

    @rpc
    def check_token(self, token, purpose, client):
        """The online check of an offline token: its signature, then the declaration's
        current status (a revoked or expired declaration's token is not valid)."""
        if self._blocked(client):
            return dict(domain.NO_ANSWER)
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.signer.public_keys[header.get("kid")]
            claims = jwt.decode(token, key, algorithms=["EdDSA"], issuer="mantelzorg-declaration",
                                options={"require": ["exp", "iss"], "verify_exp": False,
                                         "verify_nbf": False})
        except (jwt.PyJWTError, KeyError, TypeError):
            self._count_failure(client)
            return dict(domain.NO_ANSWER)
        document = self.store[DECLARATIONS].find_one({"reference": claims.get("reference")})
        if document is None or document.get("token") != token:
            self._count_failure(client)
            return dict(domain.NO_ANSWER)
        return domain.check_answer(document, purpose, date.today())

    def _blocked(self, client):
        return self.failed_checks.blocked(str(client), self.store[CHECK_FAILURES])

    def _count_failure(self, client):
        self.failed_checks.count_failure(str(client), self.store[CHECK_FAILURES])
        self.log.info("declaration.check_failed", client=str(client))

    # --- the travel-cost fund -------------------------------------------------------------

    @rpc
    def claim_eligibility(self, reference, trip_dates, actor):
        """Asked by the travel-cost fund before it accepts a claim: the declaration must be
        the caller's (its BSN is the caller's), issued, for the travel-cost fund and valid on
        every trip date (ISO dates). Refuses with FORBIDDEN or BAD_USER_INPUT naming the
        claim's field; answers the reference, municipality and end of validity."""
        document = self.store.declaration_by_reference(str(reference or "").strip().upper())
        caller_key = self.keys.hash("bsn", actor["bsn"]) if actor.get("bsn") else None
        return domain.claim_eligibility(document, caller_key,
                                        [date.fromisoformat(day) for day in trip_dates],
                                        self.keys.hash.same)

    # --- signed documents -----------------------------------------------------------------

    def _sign(self, declaration):
        signer = self.keys.signer
        return jwt.encode(domain.token_claims(declaration), signer.private_key, algorithm="EdDSA",
                          headers={"kid": signer.key_id})

    @rpc
    def signing_keys(self):
        """The public keys of the offline tokens, as a JWKS document."""
        return self.keys.signer.jwks()

    @rpc
    def printable(self, reference, actor):
        """What the printable declaration shows: for the owner or the issuing municipality,
        and only while issued."""
        document = self.store[DECLARATIONS].find_one({"reference": reference})
        if document is None:
            raise NotFound("no such declaration")
        domain.may_print(actor, document)
        if document["status"] != domain.ISSUED:
            raise Conflict("only an issued declaration can be printed")
        municipality = self.store[MUNICIPALITIES].find_one({"_id": document["municipality_code"]}) or {}
        return {"reference": document["reference"], "municipality_code": document["municipality_code"],
                "municipality_name": municipality.get("name"), "purposes": document["purposes"],
                "valid_from": document["valid_from"], "valid_until": document["valid_until"],
                "token": document["token"]}

    # --- rotation of the data key ---------------------------------------------------------

    @rpc
    def reencrypt_personal_data(self, batch=500):
        """Re-encrypts with the current data key up to ``batch`` declarations whose personal
        data an earlier, still configured key encrypted. ``mantelzorg reencrypt-personal-data``
        calls it until none remain; then the earlier keys can be dropped. Data under a key
        that is no longer configured cannot be read: it is counted and left as it is."""
        report = self.store.reencrypt(DECLARATIONS, "personal", self.keys.cipher, batch)
        self.log.info("declaration.personal_data_reencrypted", reencrypted=report["reencrypted"],
                      remaining=report["remaining"], key_id=report["key_id"])
        return report

    # --- bulk path for load tests ---------------------------------------------------------

    @rpc
    def seed_issued_declarations(self, municipality_code, start, count, code):
        """Stores ``count`` synthetic issued declarations (references MZV-1999-<start...>, all
        with verification code ``code``) in one batch, without events. Only when the service
        runs with DECLARATION_ALLOW_SEEDING=1, as the benchmark does."""
        if str(self.config.get("ALLOW_SEEDING", "")) not in ("1", "true"):
            raise Forbidden("seeding is switched off")
        now = utcnow()
        valid_from, valid_until = domain.validity(domain.Criteria(), now.date())
        batch = []
        for number in range(start, start + count):
            reference = domain.reference(1999, number)
            code_hash = self.keys.hash("code", reference, domain.normalise_code(code))
            batch.append({
                "_id": str(uuid.uuid4()), "reference": reference, "status": domain.ISSUED,
                "municipality_code": municipality_code, "purposes": list(DECLARATION_PURPOSES[:3]),
                "hours_per_week": "12", "care_since": "2020-01-01", "unmet_criteria": [],
                "owner": f"seed-{number}", "verification_hash": code_hash,
                "valid_from": valid_from.isoformat(), "valid_until": valid_until.isoformat(),
                "created_at": now, "updated_at": now, "history": []})
        self.store[DECLARATIONS].insert_many(batch, ordered=False)
        return len(batch)
