"""What the domain modules of the schema share: enums built from the value lists in
common/schemas (one list serves the gateway and the services), the type of an audit trail's
step, and the conversion of GraphQL input into the plain JSON the services' input schemas
read."""
import enum
from datetime import date, datetime
from decimal import Decimal

import graphene
from pydantic.alias_generators import to_camel

from gateway.schema.scalars import DateTime


def enum_of(name, values, description):
    """A GraphQL enum whose names and values are the given strings."""
    return graphene.Enum(name, [(value, value) for value in values], description=description)


def audit_step(name, status, description, action_description=None, **details):
    """The object type of one step of an audit trail whose statuses are the enum ``status``:
    an entry of ``common.workflow.history_view``, answered as the service sent it (a dict,
    ``at`` in ISO 8601) or built as an instance. ``details``: further fields of the step
    (such as the bags of a bag order step), placed after ``action``."""
    fields = {"from_status": graphene.Field(status),
              "to_status": graphene.Field(status, required=True),
              "action": graphene.String(required=True, description=action_description)}
    for field_name, field in details.items():
        field.reset_counter()           # listed where the step's details belong
        fields[field_name] = field
    fields.update(at=DateTime(required=True), actor_role=graphene.String(),
                  reason=graphene.String())
    return type(name, (graphene.ObjectType,), {"__doc__": description, **fields,
                                               "resolve_at": _resolve_at})


def _resolve_at(root, info):
    at = root["at"] if isinstance(root, dict) else root.at
    return datetime.fromisoformat(at) if isinstance(at, str) else at


def to_wire(value):
    """graphene input (snake_case keys, enum members, dates, decimals) as camelCase JSON."""
    if isinstance(value, dict):
        return {to_camel(key): to_wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def selects(info, name):
    """Whether the query asks for the field ``name`` of the objects the resolver answers
    (directly, through a fragment or an inline fragment)."""
    def within(selection_set):
        for selection in (selection_set.selections if selection_set else ()):
            kind = selection.kind
            if kind == "field" and selection.name.value == name:
                return True
            if kind == "inline_fragment" and within(selection.selection_set):
                return True
            if kind == "fragment_spread":
                fragment = info.fragments.get(selection.name.value)
                if fragment is not None and within(fragment.selection_set):
                    return True
        return False

    return any(within(node.selection_set) for node in info.field_nodes)
