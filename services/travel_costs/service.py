"""The travel-cost fund's entrypoints: claims, their review, payout batches, statements."""
import base64
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
from bson import ObjectId
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from common.calls import RpcProxy, rpc
from common import metrics
from common.crypto import ServiceKeys
from common.errors import BadUserInput, Conflict, NotFound, Unavailable, bad_input_from_validation
from common.consumers import handles_event
from common.schemas.travel_costs import CLAIM_STATUSES, TravelClaimInput, sepa_account
from common.service import BROKER_UNREACHABLE, CALL_RETRY_POLICY, PlatformService
from common.storage import Storage, utcnow_millis
from services.travel_costs import domain, payouts
from services.travel_costs.dependencies import FundConfiguration
from services.travel_costs.storage import CLAIMS, TravelCostsStore

PAY_CHUNK = 1000          # claims marked paid (with their events) per transaction
FILE_CHUNK = 4 * 1024 * 1024
GRANT_ATTEMPTS = 20


class _GrantsChanged(Exception):
    """Another claim of the same caregiver changed the annual counters meanwhile."""


def _validated(model, data, prefix):
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise bad_input_from_validation(exc, prefix) from None


class TravelCostsService(PlatformService):
    name = "travel_costs"
    store = Storage(TravelCostsStore)
    keys = ServiceKeys()
    fund = FundConfiguration()
    # No publisher confirm per call: the reply is waited for anyway, with a timeout.
    declaration = RpcProxy("declaration", ("DECLARATION_TIMEOUT_SECONDS", 10), use_confirms=False,
                           retry_policy=CALL_RETRY_POLICY)

    # --- what the fund learns from other services -----------------------------------------

    @handles_event("declaration.issued")
    @handles_event("declaration.revoked")
    @handles_event("declaration.expired")
    def on_declaration_changed(self, event):
        """Keeps the fund's copy of the declaration; when it has ended, every open claim on
        it goes on hold with that reason."""
        payload = event.parsed_payload()
        declaration = domain.declaration_projection(event, payload)
        ended = domain.ENDED.get(payload.status)

        def work(session):
            if self.store.save_declaration(declaration, session) and ended:
                self._hold_open_claims(payload.reference, ended, session)

        return self.store.apply_once(event.event_id, work)

    @handles_event("pc4_areas.imported")
    def on_pc4_areas_imported(self, event):
        """The fund's own copy of the PC4 centroids, for the plausibility of distances."""
        areas = [domain.pc4_projection(area, event.occurred_at)
                 for area in event.parsed_payload().areas]
        return self.store.apply_once(event.event_id,
                                     lambda session: self.store.save_pc4_areas(areas, session))

    @rpc(open=True)
    def health(self):
        """Also how many PC4 centroids the fund has: without them it refuses every claim."""
        return {**super().health(), "pc4_areas": self.store.pc4_area_count()}

    # --- claims ---------------------------------------------------------------------------

    def _checked_claim(self, data, actor):
        """Every check a claim passes before anything is stored, and its trips' amounts:
        what a submission and its preview share. Refusals raise; nothing is written."""
        request = _validated(TravelClaimInput, data, "input")
        domain.may_submit(actor)
        domain.refuse_repeated_trips(request.trips)
        assessment = domain.assess_trips(
            request.trips, self.store.centroids(
                p[:4] for t in request.trips for p in (t.from_postcode, t.to_postcode)),
            self.fund.rules)
        self._ask_declaration("claim_eligibility", request.declaration_reference,
                              [trip.date.isoformat() for trip in request.trips], actor)
        caregiver_key = self.keys.hash("bsn", actor["bsn"])
        trip_keys = [self.keys.hash("trip", caregiver_key, *domain.trip_identity(trip))
                     for trip in request.trips]
        self._refuse_claimed_trips(request.trips, trip_keys)
        return request, assessment, caregiver_key, trip_keys

    @rpc
    def preview_travel_claim(self, data, actor):
        """What the fund would pay for a claim as things stand (the annual cap with this
        caregiver's earlier claims), after the same checks as a submission; stores nothing."""
        request, assessment, caregiver_key, _trip_keys = self._checked_claim(data, actor)
        granted = self.store.granted(caregiver_key, sorted(assessment.cents_by_year), None)
        grants, cap_notes = domain.annual_grants(assessment.cents_by_year, granted,
                                                 self.fund.rules.annual_cap)
        hold = domain.hold_reason(assessment,
                                  self.store.declaration(request.declaration_reference))
        return domain.preview_view(request, assessment, grants, hold,
                                   assessment.notes + cap_notes)

    @rpc
    def submit_travel_claim(self, data, actor):
        """A caregiver claims trips on their issued declaration. The amounts are the fund's;
        a claim with an implausible distance, or on a declaration the fund knows has ended,
        waits on hold for a review. Refusals store nothing."""
        request, assessment, caregiver_key, trip_keys = self._checked_claim(data, actor)
        rules = self.fund.rules

        claim_id = str(ObjectId())   # grows with time: the order of the fund's claim list
        iban, bic = sepa_account(request.iban)
        sealed = self.keys.cipher.encrypt(
            {"iban": iban, "bic": bic, "account_holder": request.account_holder}, context=claim_id)
        years = sorted(assessment.cents_by_year)
        self.store.ensure_grant_counters(caregiver_key, years)

        def work(session):
            now = utcnow_millis()
            granted = self.store.granted(caregiver_key, years, session)
            grants, cap_notes = domain.annual_grants(assessment.cents_by_year, granted,
                                                     rules.annual_cap)
            for year, cents in grants.items():
                if not self.store.add_grant(caregiver_key, year, cents, granted.get(year, 0), session):
                    raise _GrantsChanged()
            self.store.record_trips(trip_keys, claim_id, session)
            claim = domain.new_claim(claim_id, request, caregiver_key, actor, assessment, grants,
                                     assessment.notes + cap_notes, domain.mask_iban(iban), sealed, now)
            events = [(domain.EVENT_OF[claim["status"]], domain.event_payload(claim))]
            hold = domain.hold_reason(
                assessment, self.store.touch_declaration(request.declaration_reference, now, session))
            if hold:
                claim = self._stepped(claim, "hold", domain.SYSTEM, hold, now)
                events.append((domain.EVENT_OF[claim["status"]], domain.event_payload(claim)))
            self.store.insert_claim(claim, session)
            self.outbox.record_many(session, events)
            return claim

        claim = self._with_grants(work, request.trips, trip_keys)
        self.log.info("travel_claim.submitted", claim_id=claim_id, status=claim["status"],
                      declaration_reference=claim["declaration_reference"],
                      amount_euros=str(domain.from_cents(claim["amount_cents"])))
        return domain.claim_view(claim)

    def _with_grants(self, work, trips, trip_keys):
        """Runs the submission's transaction again while another claim of the same
        caregiver changes the annual counters at the same moment."""
        for _attempt in range(GRANT_ATTEMPTS):
            try:
                return self.store.in_transaction(work)
            except _GrantsChanged:
                eventlet.sleep(0.01)
            except DuplicateKeyError:   # a trip claimed by a claim submitted at the same moment
                self._refuse_claimed_trips(trips, trip_keys)
                raise
        raise Unavailable("too many claims of this caregiver at once; try again")

    def _refuse_claimed_trips(self, trips, trip_keys):
        claimed = self.store.claimed_trips(trip_keys)
        for number, key in enumerate(trip_keys):
            if key in claimed:
                raise domain.repeated_trip(number, "a trip of an earlier claim")

    def _ask_declaration(self, method, *args):
        """An RPC call to the declaration service that answers UNAVAILABLE instead of
        waiting for ever, or when the broker cannot take it; its refusals (FORBIDDEN,
        BAD_USER_INPUT) pass on as they are."""
        try:
            reply = getattr(self.declaration, method).call_async(*args)
        except BROKER_UNREACHABLE:
            raise Unavailable("the declaration service cannot be reached; "
                              "try again later") from None
        with eventlet.Timeout(self.fund.declaration_timeout, False):
            return reply.result()
        raise Unavailable("the declaration service did not answer; try again later")

    @rpc
    def my_travel_claims(self, actor):
        domain.may_submit(actor)
        return [domain.claim_view(c) for c in self.store.claims_of(self.keys.hash("bsn", actor["bsn"]))]

    @rpc
    def travel_claim(self, claim_id, actor):
        """A claim for its caregiver or the fund's staff (None for them when there is none).
        Anyone else gets FORBIDDEN alike for someone else's claim and an id not in use, so
        that an answer never tells that an id is in use."""
        claim = self.store.claim(claim_id)
        caller_key = self.keys.hash("bsn", actor["bsn"]) if actor.get("bsn") else None
        domain.may_read(actor, claim, caller_key, self.keys.hash.same)
        return domain.claim_view(claim) if claim else None

    @rpc
    def travel_claims(self, status, first, after, actor):
        """The fund's work list, in the order claims came in; ``after`` is the last id of the
        previous page."""
        domain.may_review(actor)
        if status is not None and status not in CLAIM_STATUSES:
            raise BadUserInput("status: unknown claim status", field="status")
        if after is not None and not ObjectId.is_valid(after):
            raise BadUserInput("after: not a claim id of an earlier page", field="after")
        return [domain.claim_view(c) for c in self.store.claims_page(status, int(first), after)]

    @rpc
    def review_travel_claim(self, claim_id, approve, reason, actor):
        """The fund's decision: APPROVED or REJECTED (with a reason). A rejected claim's
        amount no longer counts towards the caregiver's annual cap."""
        domain.may_review(actor)
        reason = domain.review_reason(reason)
        action = "approve" if approve else "reject"

        def work(session):
            claim = domain.require_found(self.store.claim(claim_id, session))
            changed = self._step(claim, action, actor, reason, session)
            if changed["status"] == domain.REJECTED:
                self.store.release_grants(claim["caregiver_key"],
                                          {int(y): c for y, c in claim["grants"].items()}, session)
            return changed

        changed = self.store.in_transaction(work)
        self.log.info(f"travel_claim.{changed['status'].lower()}", claim_id=changed["_id"])
        return domain.claim_view(changed)

    def _stepped(self, claim, action, actor, reason, now):
        """The claim after one step of the table, as a document not yet stored."""
        after = domain.next_status(claim["status"], action, actor, reason)
        entry = domain.history_entry(claim["status"], after, action, actor, reason, now)
        return {**claim, "status": after, "status_reason": reason, "updated_at": now,
                "history": [*claim["history"], entry]}

    def _step(self, claim, action, actor, reason, session):
        """One step of a stored claim, its audit entry and its event, in the caller's
        transaction; only from the status read, so two steps never both apply."""
        after = domain.next_status(claim["status"], action, actor, reason)
        entry = domain.history_entry(claim["status"], after, action, actor, reason, utcnow_millis())
        changed = self.store.change_claim(claim["_id"], claim["status"], after, entry, session,
                                          changes={"status_reason": reason})
        if changed is None:
            raise Conflict("the claim was changed meanwhile; reload it")
        self.outbox.record(session, domain.EVENT_OF[after], domain.event_payload(changed))
        return changed

    def _hold_open_claims(self, reference, reason, session):
        for claim in self.store.open_claims_on(reference, session):
            self._step(claim, "hold", domain.SYSTEM, reason, session)
            self.log.info("travel_claim.on_hold", claim_id=claim["_id"], declaration_reference=reference)

    @rpc(callers=("notifications",))
    def claim_notice(self, claim_id):
        """Asked by the notifications service when a claim is put on hold: what the fund
        needs before it decides (``hold``: DISTANCE, DECLARATION_REVOKED or
        DECLARATION_EXPIRED). No personal data."""
        claim = domain.require_found(self.store.claim(claim_id))
        return domain.claim_notice(claim, self.store.declaration(claim["declaration_reference"]))

    # --- payouts --------------------------------------------------------------------------

    @rpc
    def create_payout_batch(self, actor):
        """Every approved claim not yet paid, in one SEPA credit transfer file (validated
        before it is stored), then marked PAID with an event each. Claims are reserved for
        the batch first, one update per claim, so batches made at once never share one."""
        domain.may_review(actor)
        self._take_up_stalled_batches()
        now = utcnow_millis()
        batch_id = str(uuid.uuid4())
        settings = self.fund
        self.store.insert_batch(domain.new_batch(
            batch_id, actor, settings.sepa_schema, now,
            now + timedelta(seconds=settings.payout_lease_seconds)))
        if not self.store.reserve_approved_claims(batch_id):
            self.store.give_up_batch(batch_id, "no approved claims")
            raise domain.no_claims_to_pay()
        try:
            self._write_file(batch_id, now.date())
        except Exception:
            self._give_up(batch_id, "the file could not be written")
            raise
        batch = self._pay(batch_id)
        self.log.info("travel_costs.payout_batch_created", batch_id=batch_id,
                      claim_count=batch["claim_count"], schema=batch["schema"])
        return domain.batch_view(batch)

    def _write_file(self, batch_id, execution_date):
        payments, total = [], 0
        for claim in self.store.reserved_claims(batch_id):
            account = self.keys.cipher.decrypt(claim["account"], context=claim["_id"])
            payments.append(domain.payment(claim, account))
            total += claim["amount_cents"]
        settings = self.fund
        content = payouts.credit_transfer_file(settings.account, payments, settings.sepa_schema,
                                               execution_date)
        file_id = self.store.save_file(f"{batch_id}.xml", content)
        if not self.store.attach_file(batch_id, file_id, len(payments), total):
            self.store.delete_file(file_id)
            raise Conflict("the payout batch took too long and was given up; create a new one")

    def _pay(self, batch_id):
        """Marks the batch's claims PAID with their events, a chunk per transaction; safe to
        run again for a batch whose run stopped halfway."""
        paid = 0
        unpaid = self.store.claims_to_pay(batch_id)
        for start in range(0, len(unpaid), PAY_CHUNK):
            chunk = unpaid[start:start + PAY_CHUNK]

            def work(session, chunk=chunk):
                entry = domain.history_entry(domain.APPROVED, domain.PAID, "pay", domain.SYSTEM,
                                             None, utcnow_millis())
                claims = self.store.pay_claims(chunk, batch_id, entry, session)
                self.outbox.record_many(session, [(domain.EVENT_OF[domain.PAID],
                                                   domain.event_payload(c)) for c in claims])
                return claims

            claims = self.store.in_transaction(work)
            paid += len(claims)
            metrics.TRAVEL_CLAIMS_PAID.inc(len(claims))
            metrics.TRAVEL_EUROS_PAID.inc(float(domain.from_cents(sum(c["amount_cents"] for c in claims))))
        return self.store.finish_batch(batch_id, utcnow_millis())

    def _give_up(self, batch_id, reason):
        """Lets a batch without a file go: its claims can be in the next batch. A claim whose
        declaration ended meanwhile (holds skip claims being paid) goes on hold now."""
        if not self.store.give_up_batch(batch_id, reason):
            return
        for reference in self.store.release_claims(batch_id):
            declaration = self.store.declaration(reference) or {}
            ended = domain.ENDED.get(declaration.get("status"))
            if ended:
                self.store.in_transaction(lambda session, r=reference, e=ended:
                                          self._hold_open_claims(r, e, session))
        self.log.warning("travel_costs.payout_batch_given_up", batch_id=batch_id, reason=reason)

    def _take_up_stalled_batches(self):
        """A batch whose preparation stopped (a crash, a restart) before its lease ran out:
        with its file stored, its claims are marked paid now; without, it is given up."""
        now = utcnow_millis()
        for batch in self.store.stalled_batches(now):
            if batch.get("file_id") is not None:
                lease = now + timedelta(seconds=self.fund.payout_lease_seconds)
                if self.store.take_over_batch(batch, lease):
                    self._pay(batch["_id"])
            else:
                self._give_up(batch["_id"], "its preparation stopped")

    @rpc
    def payout_file(self, batch_id, offset, actor):
        """A piece of a paid batch's SEPA file (an RPC message stays small however large the
        file): {"size", "data" (base64 of up to 4 MiB from ``offset``), "schema"}."""
        domain.may_review(actor)
        batch = self.store.batch(batch_id)
        if batch is None or batch["status"] != "PAID":
            raise NotFound("no such payout batch")
        size, data = self.store.read_file(batch["file_id"], int(offset), FILE_CHUNK)
        return {"size": size, "data": base64.b64encode(data).decode(), "schema": batch["schema"]}

    # --- rotation of the data key ---------------------------------------------------------

    @rpc
    def reencrypt_personal_data(self, batch=500):
        """Re-encrypts with the current data key up to ``batch`` claims' accounts (IBAN, BIC,
        account holder) that an earlier, still configured key encrypted; called by
        ``mantelzorg reencrypt-personal-data`` until none remain."""
        report = self.store.reencrypt(CLAIMS, "account", self.keys.cipher, batch)
        self.log.info("travel_costs.personal_data_reencrypted", reencrypted=report["reencrypted"],
                      remaining=report["remaining"], key_id=report["key_id"])
        return report

    # --- statements -----------------------------------------------------------------------

    @rpc
    def travel_statement(self, year, actor):
        """What the fund paid the caller in a calendar year, per claim."""
        domain.may_submit(actor)
        year = domain.statement_year(year)
        start = datetime(year, 1, 1, tzinfo=timezone.utc)
        claims = self.store.paid_claims(self.keys.hash("bsn", actor["bsn"]), start,
                                        start.replace(year=year + 1))
        return domain.statement_view(year, claims)

