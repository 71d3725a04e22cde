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
