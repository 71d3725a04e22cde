"""Support points: the national overview (public) and its upkeep by municipalities and the
support points themselves. Added to the contract: ``supportPointHistory``."""
import json
from datetime import datetime

import graphene

from common.errors import NotFound
from common.schemas.registry import SUPPORT_AREAS, SUPPORT_POINT_KINDS
from common.limits import page_size
from gateway.limits import calls_services
from gateway.schema.scalars import DateTime
from gateway.schema.shared import enum_of, to_wire

SERVICE = "registry"
EDITORS = ("admin", "municipality", "support_point")


SupportArea = enum_of("SupportArea", SUPPORT_AREAS,
                      "The eight areas where caregivers ask for support.")


SupportPointKind = enum_of("SupportPointKind", SUPPORT_POINT_KINDS,
                           "Whom a support point serves: its municipality, a region or the country.")


class Address(graphene.ObjectType):
    street = graphene.String(required=True)
    house_number = graphene.String(required=True)
    postcode = graphene.String(required=True)
    city = graphene.String(required=True)


class AddressInput(graphene.InputObjectType):
    street = graphene.String(required=True)
    house_number = graphene.String(required=True)
    postcode = graphene.String(required=True)
    city = graphene.String(required=True)


def _when(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class SupportPoint(graphene.ObjectType):
    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    kind = SupportPointKind(required=True)
    municipality_code = graphene.String(required=True)
    serves_municipality_codes = graphene.List(graphene.NonNull(graphene.String), required=True)
    address = graphene.Field(Address, required=True)
    phone = graphene.String()
    email = graphene.String()
    website = graphene.String()
    areas = graphene.List(graphene.NonNull(SupportArea), required=True)
    active = graphene.Boolean(required=True)
    version = graphene.Int(required=True)
    updated_at = DateTime(required=True)

    def resolve_updated_at(root, info):
        return _when(root["updated_at"])


class SupportPointInput(graphene.InputObjectType):
    name = graphene.String(required=True)
    kind = SupportPointKind(required=True)
    municipality_code = graphene.String(required=True)
    serves_municipality_codes = graphene.List(graphene.NonNull(graphene.String))
    address = AddressInput(required=True)
    phone = graphene.String()
    email = graphene.String()
    website = graphene.String()
    areas = graphene.List(graphene.NonNull(SupportArea), required=True)


class SupportPointPage(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(SupportPoint), required=True)
    total = graphene.Int(required=True)
    next_cursor = graphene.String()


class FieldChange(graphene.ObjectType):
    field = graphene.String(required=True, description="input path, e.g. address.postcode")
    old = graphene.String(description="the value before, as JSON; null when there was none")
    new = graphene.String(description="the value after, as JSON")

    def resolve_old(root, info):
        return None if root["old"] is None else json.dumps(root["old"])

    def resolve_new(root, info):
        return None if root["new"] is None else json.dumps(root["new"])


class SupportPointChange(graphene.ObjectType):
    version = graphene.Int(required=True)
    at = DateTime(required=True)
    change = graphene.String(required=True, description="registered, updated or deactivated")
    actor_role = graphene.String()
    actor_sub = graphene.String()
    reason = graphene.String()
    changes = graphene.List(graphene.NonNull(FieldChange), required=True)

    def resolve_at(root, info):
        return _when(root["at"])



class Municipality(graphene.ObjectType):
    """A municipality as CBS lists it, for forms that let a person pick one."""
    code = graphene.String(required=True)
    name = graphene.String(required=True)


class RegistryQuery(graphene.ObjectType):
    support_points = graphene.Field(
        SupportPointPage, required=True, municipality_code=graphene.String(),
        postcode=graphene.String(), area=SupportArea(), first=graphene.Int(default_value=20),
        after=graphene.String())
    support_point = graphene.Field(SupportPoint, id=graphene.ID(required=True))
    nearest_support_points = graphene.List(
        graphene.NonNull(SupportPoint), required=True, postcode=graphene.String(required=True),
        area=SupportArea(), limit=graphene.Int(default_value=5))
    support_point_history = graphene.List(
        graphene.NonNull(SupportPointChange), required=True, id=graphene.ID(required=True),
        description="Added by the gateway: the audit trail of a support point, for those "
                    "who may edit it.")
    municipalities = graphene.List(graphene.NonNull(Municipality), required=True)
    municipality_for_postcode = graphene.Field(Municipality,
                                               postcode=graphene.String(required=True))

    @calls_services()
    def resolve_support_points(root, info, first=20, **criteria):
        page_size(first)
        return info.context.call(SERVICE, "search_support_points", first=first,
                                 **{k: to_wire(v) for k, v in criteria.items()})

    @calls_services()
    def resolve_support_point(root, info, id):
        try:
            return info.context.call(SERVICE, "get_support_point", id)
        except NotFound:
            return None

    @calls_services()
    def resolve_nearest_support_points(root, info, postcode, area=None, limit=5):
        page_size(limit, "limit")
        return info.context.call(SERVICE, "nearest_support_points", postcode, to_wire(area),
                                 limit)

    @calls_services()
    def resolve_municipalities(root, info):
        return info.context.call(SERVICE, "municipalities")

    @calls_services()
    def resolve_municipality_for_postcode(root, info, postcode):
        return info.context.call(SERVICE, "municipality_for_postcode", postcode)

    @calls_services()
    def resolve_support_point_history(root, info, id):
        info.context.principal.require(*EDITORS)
        return info.context.call(SERVICE, "support_point_history", id, info.context.actor)


class RegistryMutation(graphene.ObjectType):
    register_support_point = graphene.Field(
        SupportPoint, required=True, input=SupportPointInput(required=True))
    update_support_point = graphene.Field(
        SupportPoint, required=True, id=graphene.ID(required=True),
        input=SupportPointInput(required=True), expected_version=graphene.Int(required=True))
    deactivate_support_point = graphene.Field(
        SupportPoint, required=True, id=graphene.ID(required=True),
        reason=graphene.String(required=True))

    @calls_services()
    def resolve_register_support_point(root, info, input):
        info.context.principal.require("admin", "municipality")
        return info.context.call(SERVICE, "register_support_point", to_wire(input),
                                 info.context.actor)

    @calls_services()
    def resolve_update_support_point(root, info, id, input, expected_version):
        info.context.principal.require(*EDITORS)
        return info.context.call(SERVICE, "update_support_point", id, to_wire(input),
                                 expected_version, info.context.actor)

    @calls_services()
    def resolve_deactivate_support_point(root, info, id, reason):
        info.context.principal.require(*EDITORS)
        return info.context.call(SERVICE, "deactivate_support_point", id, reason,
                                 info.context.actor)
