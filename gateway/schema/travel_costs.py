"""The travel-cost fund: the contract's claims, payout batches and statements, answered by the
travel_costs service over RPC. The gateway checks the caller's role; the service checks that
a claim or declaration is the caller's own.

Added to the contract (documented in docs/travel_costs.md): ``TravelClaim.history``,
``Query.travelClaimPreview``, ``PayoutBatch.proposedByYou``.
``PayoutBatch.sepaXmlUrl`` and ``TravelStatement.pdfUrl`` are paths on the gateway, fetched
with the same bearer token."""
import base64
from datetime import date, datetime

import graphene

from common.limits import page_size
from common.schemas.travel_costs import CLAIM_STATUSES, PAYOUT_BATCH_STATUSES, TRAVEL_MODES
from gateway.limits import calls_services
from gateway.schema.scalars import Date, DateTime, Decimal
from gateway.schema.shared import audit_step, enum_of, to_wire

SERVICE = "travel_costs"
CAREGIVER = ("caregiver",)
FUND_STAFF = ("fund", "admin")

TravelMode = enum_of("TravelMode", TRAVEL_MODES, "How a trip was made.")
ClaimStatus = enum_of("ClaimStatus", CLAIM_STATUSES, "Where a travel claim is in its lifecycle.")
PayoutBatchStatus = enum_of("PayoutBatchStatus", PAYOUT_BATCH_STATUSES,
                            "Four eyes: proposed by one fund member, released by another.")


def sepa_xml_path(batch_id):
    return f"/payout-batches/{batch_id}/sepa.xml"


def statement_pdf_path(year):
    return f"/travel-statements/{year}.pdf"


class _TripFields:
    """What a trip has both as input and as the fund's answer."""
    date = Date(required=True)
    from_postcode = graphene.String(required=True)
    to_postcode = graphene.String(required=True)
    distance_km = Decimal(required=True)
    return_trip = graphene.Boolean(required=True)
    mode = TravelMode(required=True)


class TripInput(_TripFields, graphene.InputObjectType):
    cost_euros = Decimal()


class TravelClaimInput(graphene.InputObjectType):
    declaration_reference = graphene.String(required=True)
    iban = graphene.String(required=True)
    account_holder = graphene.String(required=True)
    trips = graphene.List(graphene.NonNull(TripInput), required=True)


class Trip(_TripFields, graphene.ObjectType):
    amount_euros = Decimal(required=True)


ClaimTransition = audit_step("ClaimTransition", ClaimStatus,
                             "Added: one step of a claim's audit trail.")


class TravelClaim(graphene.ObjectType):
    id = graphene.ID(required=True)
    status = graphene.Field(ClaimStatus, required=True)
    declaration_reference = graphene.String(required=True)
    trips = graphene.List(graphene.NonNull(Trip), required=True)
    amount_euros = Decimal(required=True)
    iban_masked = graphene.String(required=True)
    reason = graphene.String()
    submitted_at = DateTime(required=True)
    history = graphene.List(graphene.NonNull(ClaimTransition), required=True,
                            description="Added: the audit trail, oldest first.")


class TravelClaimPreview(graphene.ObjectType):
    """Added: what the fund would pay for a claim if it were submitted now, after the same
    checks; nothing is stored."""
    trips = graphene.List(graphene.NonNull(Trip), required=True)
    amount_euros = Decimal(required=True)
    reason = graphene.String(description="What would not be paid and why, or why the claim "
                                         "would wait for a review.")


class PayoutBatch(graphene.ObjectType):
    """Four eyes: one fund member proposes a batch, another releases it. Until it is
    released its claims stay APPROVED and its SEPA file is not served (CONFLICT)."""
    id = graphene.ID(required=True)
    claim_count = graphene.Int(required=True)
    total_euros = Decimal(required=True)
    created_at = DateTime(required=True)
    sepa_xml_url = graphene.String(required=True)
    status = graphene.Field(PayoutBatchStatus, required=True)
    released_at = DateTime()
    proposed_by_you = graphene.Boolean(
        required=True, description="Added: whether the caller proposed this batch (and so "
                                   "cannot release it: four eyes).")


class TravelStatement(graphene.ObjectType):
    year = graphene.Int(required=True)
    claim_count = graphene.Int(required=True)
    paid_euros = Decimal(required=True)
    pdf_url = graphene.String(required=True)


# --- between GraphQL values and RPC answers ---------------------------------------------

def _trips(answer):
    return [Trip(**{**t, "date": date.fromisoformat(t["date"])}) for t in answer["trips"]]


def _claim(answer):
    if answer is None:
        return None
    trips = _trips(answer)
    history = [ClaimTransition(**{**h, "at": datetime.fromisoformat(h["at"])})
               for h in answer["history"]]
    return TravelClaim(**{**answer, "trips": trips, "history": history,
                          "submitted_at": datetime.fromisoformat(answer["submitted_at"])})


def _batch(answer):
    released = answer["released_at"]
    return PayoutBatch(id=answer["id"], claim_count=answer["claim_count"],
                       total_euros=answer["total_euros"],
                       created_at=datetime.fromisoformat(answer["created_at"]),
                       sepa_xml_url=sepa_xml_path(answer["id"]), status=answer["status"],
                       released_at=datetime.fromisoformat(released) if released else None,
                       proposed_by_you=bool(answer.get("proposed_by_you")))


def payout_file(context, batch_id):
    """The bytes of a released batch's SEPA file, fetched in pieces (one RPC message stays
    small however large the file); CONFLICT while the batch awaits its release."""
    content = bytearray()
    while True:
        piece = context.call(SERVICE, "payout_file", batch_id, len(content), context.actor)
        content += base64.b64decode(piece["data"])
        if not piece["data"] or len(content) >= piece["size"]:
            return bytes(content)


class TravelCostsQuery(graphene.ObjectType):
    my_travel_claims = graphene.List(graphene.NonNull(TravelClaim), required=True)
    travel_claim = graphene.Field(TravelClaim, id=graphene.ID(required=True))
    travel_claims = graphene.List(graphene.NonNull(TravelClaim), required=True,
                                  status=ClaimStatus(), first=graphene.Int(default_value=20),
                                  after=graphene.String())
    travel_statement = graphene.Field(TravelStatement, required=True,
                                      year=graphene.Int(required=True))
    payout_batches = graphene.List(graphene.NonNull(PayoutBatch), required=True,
                                   first=graphene.Int(default_value=20), after=graphene.String())
    travel_claim_preview = graphene.Field(
        TravelClaimPreview, required=True, input=TravelClaimInput(required=True),
        description="Added: what submitTravelClaim would pay for this input now; stores nothing.")

    @calls_services()
    def resolve_my_travel_claims(root, info):
        context = info.context
        context.principal.require(*CAREGIVER)
        return [_claim(c) for c in context.call(SERVICE, "my_travel_claims", context.actor)]

    @calls_services()
    def resolve_travel_claim(root, info, id):
        context = info.context
        context.principal.require(*CAREGIVER, *FUND_STAFF)
        return _claim(context.call(SERVICE, "travel_claim", id, context.actor))

    @calls_services()
    def resolve_travel_claims(root, info, status=None, first=20, after=None):
        context = info.context
        context.principal.require(*FUND_STAFF)
        first = page_size(20 if first is None else first)
        found = context.call(SERVICE, "travel_claims", to_wire(status), first, after, context.actor)
        return [_claim(c) for c in found]

    @calls_services()
    def resolve_payout_batches(root, info, first=20, after=None):
        context = info.context
        context.principal.require(*FUND_STAFF)
        first = page_size(20 if first is None else first)
        return [_batch(b) for b in context.call(SERVICE, "payout_batches", first, after,
                                                context.actor)]

    @calls_services()
    def resolve_travel_claim_preview(root, info, input):
        context = info.context
        context.principal.require(*CAREGIVER)
        answer = context.call(SERVICE, "preview_travel_claim", to_wire(input), context.actor)
        return TravelClaimPreview(trips=_trips(answer), amount_euros=answer["amount_euros"],
                                  reason=answer["reason"])

    @calls_services()
    def resolve_travel_statement(root, info, year):
        context = info.context
        context.principal.require(*CAREGIVER)
        answer = context.call(SERVICE, "travel_statement", year, context.actor)
        return TravelStatement(year=answer["year"], claim_count=answer["claim_count"],
                               paid_euros=answer["paid_euros"],
                               pdf_url=statement_pdf_path(answer["year"]))


class TravelCostsMutation(graphene.ObjectType):
    submit_travel_claim = graphene.Field(TravelClaim, required=True,
                                         input=TravelClaimInput(required=True))
    review_travel_claim = graphene.Field(TravelClaim, required=True, id=graphene.ID(required=True),
                                         approve=graphene.Boolean(required=True),
                                         reason=graphene.String())
    create_payout_batch = graphene.Field(PayoutBatch, required=True)
    release_payout_batch = graphene.Field(PayoutBatch, required=True, id=graphene.ID(required=True))

    @calls_services()
    def resolve_submit_travel_claim(root, info, input):
        context = info.context
        context.principal.require(*CAREGIVER)
        return _claim(context.call(SERVICE, "submit_travel_claim", to_wire(input), context.actor))

    @calls_services()
    def resolve_review_travel_claim(root, info, id, approve, reason=None):
        context = info.context
        context.principal.require(*FUND_STAFF)
        return _claim(context.call(SERVICE, "review_travel_claim", id, approve, reason,
                                   context.actor))

    @calls_services()
    def resolve_create_payout_batch(root, info):
        context = info.context
        context.principal.require(*FUND_STAFF)
        # A batch of many claims takes longer than an ordinary call.
        return _batch(context.long_call(SERVICE, "create_payout_batch", context.actor,
                                        setting="PAYOUT_TIMEOUT_SECONDS", default=600))

    @calls_services()
    def resolve_release_payout_batch(root, info, id):
        context = info.context
        context.principal.require(*FUND_STAFF)
        # Marking every claim of a large batch paid takes longer than an ordinary call.
        return _batch(context.long_call(SERVICE, "release_payout_batch", id, context.actor,
                                        setting="PAYOUT_TIMEOUT_SECONDS", default=600))
