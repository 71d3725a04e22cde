"""Caregiver declarations: the contract's types and fields, answered by the declaration
service over RPC. The gateway checks the caller's role; the service checks ownership (the
caregiver whose BSN a declaration carries, by its keyed hash).

``Declaration.applicant`` is personal data: the service answers it only to the owner and the
municipality it was requested at, and records every read by the municipality.

Added to the contract (documented in docs/declarations.md): ``Declaration.unmetCriteria``,
``Declaration.history``, ``checkDeclarationToken``, ``declarationSettings`` and
``setDeclarationSettings``."""
from datetime import date, datetime

import graphene

from common.limits import page_size
from common.schemas.declaration import DECLARATION_PURPOSES, DECLARATION_STATUSES
from gateway.auth import ROLES
from gateway.limits import calls_services
from gateway.schema.scalars import Date, DateTime, Decimal
from gateway.schema.shared import audit_step, enum_of, selects, to_wire

SERVICE = "declaration"


DeclarationPurpose = enum_of("DeclarationPurpose", DECLARATION_PURPOSES,
                             "What a declaration may be shown for.")


DeclarationStatus = enum_of("DeclarationStatus", DECLARATION_STATUSES,
                            "Where a declaration is in its lifecycle.")


class Decision(graphene.Enum):
    ISSUE = "ISSUE"
    REJECT = "REJECT"


class CaregiverInput(graphene.InputObjectType):
    bsn = graphene.String(required=True)
    name = graphene.String(required=True)
    postcode = graphene.String(required=True)
    email = graphene.String()


class CareRecipientInput(graphene.InputObjectType):
    name = graphene.String(required=True)
    postcode = graphene.String(required=True)
    relationship = graphene.String(required=True)


class DeclarationRequestInput(graphene.InputObjectType):
    municipality_code = graphene.String(required=True)
    caregiver = graphene.Field(CaregiverInput, required=True)
    care_recipient = graphene.Field(CareRecipientInput, required=True)
    hours_per_week = Decimal(required=True)
    care_since = Date(required=True)
    purposes = graphene.List(graphene.NonNull(DeclarationPurpose), required=True)


DeclarationTransition = audit_step("DeclarationTransition", DeclarationStatus,
                                   "Added: one step of the audit trail.")


class DeclarationApplicant(graphene.ObjectType):
    caregiver_name = graphene.String(required=True)
    caregiver_postcode = graphene.String(required=True)
    caregiver_email = graphene.String()
    care_recipient_name = graphene.String(required=True)
    care_recipient_postcode = graphene.String(required=True)
    relationship = graphene.String(required=True)


class PersonalDataAccess(graphene.ObjectType):
    at = DateTime(required=True)
    role = graphene.String(required=True)
    organisation = graphene.String(required=True)
    what = graphene.String(required=True)


def applicants(context, declaration_ids):
    """The applicants of these declarations ({id: answer or None}), asked of the service
    once per request and declaration: it records every read by someone but the owner, so
    an alias that asks again is not a second read."""
    known = context.applicants
    with context.applicants_lock:
        missing = [i for i in dict.fromkeys(declaration_ids) if i not in known]
        if missing:
            known.update(context.call(SERVICE, "applicants", missing, context.actor))
    return known


class Declaration(graphene.ObjectType):
    id = graphene.ID(required=True)
    reference = graphene.String(required=True)
    status = graphene.Field(DeclarationStatus, required=True)
    municipality_code = graphene.String(required=True)
    purposes = graphene.List(graphene.NonNull(DeclarationPurpose), required=True)
    hours_per_week = Decimal(required=True)
    care_since = Date(required=True)
    valid_from = Date()
    valid_until = Date()
    decision_reason = graphene.String()
    verification_code = graphene.String()
    token = graphene.String()
    created_at = DateTime(required=True)
    unmet_criteria = graphene.List(
        graphene.NonNull(graphene.String), required=True,
        description="Added: criteria of the municipality the request does not meet "
                    "(CARE_DURATION, HOURS_PER_WEEK).")
    history = graphene.List(graphene.NonNull(DeclarationTransition), required=True,
                            description="Added: the audit trail, oldest first.")
    decision_due_on = Date(required=True)
    decided_at = DateTime()
    applicant = graphene.Field(DeclarationApplicant)

    def resolve_applicant(root, info):
        found = applicants(info.context, [root.id]).get(root.id)
        return DeclarationApplicant(**found) if found else None


class DeclarationCheck(graphene.ObjectType):
    valid = graphene.Boolean(required=True)
    status = graphene.Field(DeclarationStatus)
    valid_until = Date()
    purpose_accepted = graphene.Boolean(required=True)
    municipality_code = graphene.String()


class DeclarationSettings(graphene.ObjectType):
    """Added: a municipality's criteria, its own choices over the national defaults."""
    municipality_code = graphene.String(required=True)
    min_care_months = graphene.Int(required=True)
    min_hours_per_week = Decimal(required=True)
    validity_months = graphene.Int(required=True)
    purposes = graphene.List(graphene.NonNull(DeclarationPurpose), required=True)


class DeclarationSettingsInput(graphene.InputObjectType):
    """Added: leave a value out (null) to use the national default."""
    min_care_months = graphene.Int()
    min_hours_per_week = Decimal()
    validity_months = graphene.Int()
    purposes = graphene.List(graphene.NonNull(DeclarationPurpose))


# --- between GraphQL values and RPC payloads ---------------------------------------------

def _day(text):
    return date.fromisoformat(text) if text else None


def _declaration(answer):
    return Declaration(**{**answer, "care_since": _day(answer["care_since"]),
                          "valid_from": _day(answer["valid_from"]),
                          "valid_until": _day(answer["valid_until"]),
                          "decision_due_on": _day(answer["decision_due_on"]),
                          "decided_at": _moment(answer["decided_at"]),
                          "created_at": datetime.fromisoformat(answer["created_at"])})


def _moment(text):
    return datetime.fromisoformat(text) if text else None


def _check(answer):
    return DeclarationCheck(**{**answer, "valid_until": _day(answer["valid_until"])})


def _client(principal):
    """Whom failed checks are counted against."""
    return f"{principal.role}:{principal.sub}"


class DeclarationQuery(graphene.ObjectType):
    declaration = graphene.Field(Declaration, reference=graphene.String(required=True))
    my_declarations = graphene.List(graphene.NonNull(Declaration), required=True)
    declarations = graphene.List(
        graphene.NonNull(Declaration), required=True,
        municipality_code=graphene.String(required=True), status=DeclarationStatus(),
        first=graphene.Int(default_value=20), after=graphene.String())
    check_declaration = graphene.Field(
        DeclarationCheck, required=True, reference=graphene.String(required=True),
        verification_code=graphene.String(required=True),
        purpose=DeclarationPurpose(required=True))
    check_declaration_token = graphene.Field(
        DeclarationCheck, required=True, token=graphene.String(required=True),
        purpose=DeclarationPurpose(required=True),
        description="Added: the online check of a declaration's signed token (its QR code).")
    declaration_settings = graphene.Field(
        DeclarationSettings, required=True, municipality_code=graphene.String(required=True),
        description="Added: a municipality's declaration criteria; anyone may read them.")
    my_personal_data_access = graphene.List(graphene.NonNull(PersonalDataAccess), required=True)

    @calls_services()
    def resolve_declaration(root, info, reference):
        context = info.context
        # Any role: whom it is not for gets NOT_FOUND from the service, as for an unknown
        # reference, so that no answer tells that a reference is in use.
        context.principal.require(*ROLES)
        return _declaration(context.call(SERVICE, "declaration", reference, context.actor))

    @calls_services()
    def resolve_my_declarations(root, info):
        context = info.context
        context.principal.require("caregiver")
        return [_declaration(d) for d in context.call(SERVICE, "my_declarations", context.actor)]

    @calls_services(2)
    def resolve_declarations(root, info, municipality_code, status=None, first=20, after=None):
        context = info.context
        context.principal.require_municipality(municipality_code, "admin")
        first = page_size(20 if first is None else first)
        found = context.call(SERVICE, "declarations", municipality_code, to_wire(status), first,
                             after, context.actor)
        if selects(info, "applicant"):   # one call for the page, a read recorded for each
            applicants(context, [d["id"] for d in found])
        return [_declaration(d) for d in found]

    @calls_services()
    def resolve_my_personal_data_access(root, info):
        context = info.context
        context.principal.require("caregiver")
        return [PersonalDataAccess(**{**entry, "at": datetime.fromisoformat(entry["at"])})
                for entry in context.call(SERVICE, "personal_data_access", context.actor)]

    @calls_services()
    def resolve_check_declaration(root, info, reference, verification_code, purpose):
        context = info.context
        context.principal.require("partner", "municipality", "admin")
        return _check(context.call(SERVICE, "check_declaration", reference, verification_code,
                                   to_wire(purpose), _client(context.principal)))

    @calls_services()
    def resolve_check_declaration_token(root, info, token, purpose):
        context = info.context
        context.principal.require("partner", "municipality", "admin")
        return _check(context.call(SERVICE, "check_token", token, to_wire(purpose),
                                   _client(context.principal)))

    @calls_services()
    def resolve_declaration_settings(root, info, municipality_code):
        return DeclarationSettings(**info.context.call(SERVICE, "municipality_settings",
                                                       municipality_code))


class DeclarationMutation(graphene.ObjectType):
    request_declaration = graphene.Field(Declaration, required=True,
                                         input=DeclarationRequestInput(required=True))
    decide_declaration = graphene.Field(Declaration, required=True, id=graphene.ID(required=True),
                                        decision=Decision(required=True), reason=graphene.String())
    revoke_declaration = graphene.Field(Declaration, required=True, id=graphene.ID(required=True),
                                        reason=graphene.String(required=True))
    renew_verification_code = graphene.Field(Declaration, required=True,
                                             id=graphene.ID(required=True))
    set_declaration_settings = graphene.Field(
        DeclarationSettings, required=True, municipality_code=graphene.String(required=True),
        input=DeclarationSettingsInput(required=True),
        description="Added: a municipality's local choices (admin or the municipality itself).")

    @calls_services()
    def resolve_request_declaration(root, info, input):
        context = info.context
        principal = context.principal.require("caregiver", "municipality")
        if principal.role == "municipality":
            principal.require_municipality(str(input.get("municipality_code", "")).strip().upper())
        return _declaration(context.call(SERVICE, "request_declaration", to_wire(input),
                                         context.actor))

    @calls_services()
    def resolve_decide_declaration(root, info, id, decision, reason=None):
        context = info.context
        context.principal.require("municipality", "admin")
        return _declaration(context.call(SERVICE, "decide_declaration", id, to_wire(decision),
                                         reason, context.actor))

    @calls_services()
    def resolve_revoke_declaration(root, info, id, reason):
        context = info.context
        context.principal.require("municipality", "admin")
        return _declaration(context.call(SERVICE, "revoke_declaration", id, reason, context.actor))

    @calls_services()
    def resolve_renew_verification_code(root, info, id):
        context = info.context
        context.principal.require("caregiver", "municipality")
        return _declaration(context.call(SERVICE, "renew_verification_code", id, context.actor))

    @calls_services()
    def resolve_set_declaration_settings(root, info, municipality_code, input):
        context = info.context
        context.principal.require_municipality(municipality_code.strip().upper(), "admin")
        return DeclarationSettings(**context.call(SERVICE, "set_municipality_settings",
                                                  municipality_code, to_wire(input), context.actor))
