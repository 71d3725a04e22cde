"""What the domain modules of the schema share: enums built from the value lists in
common/schemas (one list serves the gateway and the services), and the conversion of
GraphQL input into the plain JSON the services' input schemas read."""
import enum
from datetime import date, datetime
from decimal import Decimal

import graphene
from pydantic.alias_generators import to_camel


def enum_of(name, values, description):
    """A GraphQL enum whose names and values are the given strings."""
    return graphene.Enum(name, [(value, value) for value in values], description=description)


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
