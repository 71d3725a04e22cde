"""The travel-cost fund's entrypoints: claims, their review, payout batches, statements."""
import base64
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import eventlet
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from common import clock
from common.calls import RpcProxy, rpc
from common.crypto import ServiceKeys
from common.errors import BadUserInput, Conflict, Unavailable
from common.limits import page_size
from common.consumers import handles_event
from common.schemas.travel_costs import CLAIM_STATUSES, TravelClaimInput, sepa_account
from common.service import PlatformService
from common.storage import Storage, once_per_request
from common.transport import BROKER_UNREACHABLE
from common.workflow import audit_entry
from services.travel_costs import domain, payouts
from services.travel_costs.dependencies import Centroids, FundConfiguration
from services.travel_costs.storage import CLAIMS, PAYOUT_FILE_PARTS, TravelCostsStore

GRANT_ATTEMPTS = 20


class _GrantsChanged(Exception):
    """Another claim of the same caregiver changed the annual counters meanwhile."""


class TravelCostsService(PlatformService):
    name = "travel_costs"
    store = Storage(TravelCostsStore)
    keys = ServiceKeys()
    fund = FundConfiguration()
    centroids = Centroids()
    declaration = RpcProxy("declaration", ("DECLARATION_TIMEOUT_SECONDS", 10))

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
        stored = self.store.apply_once(event.event_id,
                                       lambda session: self.store.save_pc4_areas(areas, session))
        self.centroids.forget()
        return stored

    @rpc(open=True)
    def health(self):
        """Also how many PC4 centroids the fund has: without them it refuses every claim."""
        return {**super().health(), "pc4_areas": self.store.pc4_area_count()}

    # --- claims ---------------------------------------------------------------------------

    def _checked_claim(self, data, actor, trips_claimed_before=True):
        """Every check a claim passes before anything is stored, and its trips' amounts:
        what a submission and its preview share. Refusals raise; nothing is written.
        ``trips_claimed_before``: whether to look up the trips claimed before here; a
        submission leaves that to the unique trip keys its transaction writes."""
        request = TravelClaimInput.parsed(data)
        domain.may_submit(actor)
        domain.refuse_repeated_trips(request.trips)
        assessment = domain.assess_trips(
            request.trips, self.centroids.of(
                self.store, (p[:4] for t in request.trips for p in (t.from_postcode, t.to_postcode))),
            self.fund.rules)
        self._ask_declaration("claim_eligibility", request.declaration_reference,
                              [trip.date.isoformat() for trip in request.trips], actor)
        caregiver_key = self.keys.hash("bsn", actor["bsn"])
        trip_keys = [self.keys.hash("trip", caregiver_key, *domain.trip_identity(trip))
                     for trip in request.trips]
        if trips_claimed_before:
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
    @once_per_request
    def submit_travel_claim(self, data, actor):
        """A caregiver claims trips on their issued declaration. The amounts are the fund's;
        a claim with an implausible distance, or on a declaration the fund knows has ended,
        waits on hold for a review. Refusals store nothing."""
        # A trip claimed before is refused by its unique key in the transaction below
        # (_with_grants names it), not looked up first as well.
        request, assessment, caregiver_key, trip_keys = self._checked_claim(
            data, actor, trips_claimed_before=False)
        rules = self.fund.rules

        claim_id = str(ObjectId())   # grows with time: the order of the fund's claim list
        iban, bic = sepa_account(request.iban)
        sealed = self.keys.cipher.encrypt(
            {"iban": iban, "bic": bic, "account_holder": request.account_holder}, context=claim_id)
        years = sorted(assessment.cents_by_year)
        self.store.ensure_grant_counters(caregiver_key, years)

        def work(session):
            now = clock.now_millis()
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
        BAD_USER_INPUT) pass on as they are. Asked once per worker: a request done once
        that starts again (``once_per_request``, a counter changed meanwhile) takes the
        answer it had, since the assertion it passes on is good for one call only."""
        answers = self.__dict__.setdefault("_declaration_answers", {})
        question = (method, json.dumps(args, sort_keys=True, default=str))
        if question not in answers:
            answers[question] = self._call_declaration(method, *args)
        return answers[question]

    def _call_declaration(self, method, *args):
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
    @once_per_request
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
        entry = audit_entry(claim["status"], after, action, actor, now, reason)
        return {**claim, "status": after, "status_reason": reason, "updated_at": now,
                "history": [*claim["history"], entry]}

    def _step(self, claim, action, actor, reason, session, changes=None):
        """One step of a stored claim, its audit entry and its event, in the caller's
        transaction; only from the status read, so two steps never both apply."""
        after = domain.next_status(claim["status"], action, actor, reason)
        entry = audit_entry(claim["status"], after, action, actor, clock.now_millis(), reason)
        changed = self.store.change_claim(claim["_id"], claim["status"], after, entry, session,
                                          changes={"status_reason": reason, **(changes or {})})
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

    # --- payouts (four eyes; the logic is payouts.py) ---------------------------------------

    @rpc
    @once_per_request(in_steps=True)
    def create_payout_batch(self, actor):
        """Proposes a batch of every approved claim not in another batch: its SEPA file is
        written and stored encrypted, its claims stay APPROVED until another fund member
        releases it."""
        return self._payouts().propose(actor)

    @rpc
    @once_per_request(in_steps=True)
    def release_payout_batch(self, batch_id, actor):
        """Releases a proposed batch (by another fund member than its proposer): its claims
        become PAID with their events and its file is served. A second release is CONFLICT,
        so a retry never pays twice. Retry safety per request (the first answer again for a
        repeat of the same request) wraps this entrypoint as a whole: its answer is the
        batch's public view, without personal data."""
        return self._payouts().release(batch_id, actor)

    @rpc
    def payout_batches(self, first, after, actor):
        """Proposed and released batches, newest first; ``after`` is the last id of the
        previous page."""
        return self._payouts().page(page_size(first), after, actor)

    @rpc
    def payout_file(self, batch_id, offset, actor):
        """A piece of a released batch's SEPA file (an RPC message stays small however large
        the file): {"size", "data" (base64 of up to 1 MiB from ``offset``), "schema"}."""
        piece = self._payouts().file_piece(batch_id, offset, actor)
        return {**piece, "data": base64.b64encode(piece["data"]).decode()}

    def _payouts(self):
        return payouts.Payouts(self.store, self.keys.cipher, self.fund, self.outbox, self.log,
                               SimpleNamespace(step=self._step,
                                               hold_open_claims=self._hold_open_claims))

    # --- rotation of the data key ---------------------------------------------------------

    @rpc
    def reencrypt_personal_data(self, batch=500):
        """Re-encrypts with the current data key up to ``batch`` claims' accounts (IBAN, BIC,
        account holder) that an earlier, still configured key encrypted, and then the parts
        of the SEPA files (a file of an earlier release stored as written is encrypted
        first); called by ``mantelzorg reencrypt-personal-data`` until none remain."""
        self._payouts().seal_plain_files()
        report = self.store.reencrypt(CLAIMS, "account", self.keys.cipher, batch)
        if not report["remaining"]:
            files = self.store.reencrypt(PAYOUT_FILE_PARTS, "sealed", self.keys.cipher,
                                         max(1, batch // 50))
            report = {**files, "reencrypted": report["reencrypted"] + files["reencrypted"],
                      "unreadable": report["unreadable"] + files["unreadable"],
                      "unknown_keys": sorted({*report["unknown_keys"], *files["unknown_keys"]})}
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

