"""The contract's scalars: Date and DateTime are graphene's (ISO 8601); Decimal travels as a
string like "12.34" both ways and refuses what is no finite number."""
from decimal import Decimal as _Decimal, InvalidOperation

import graphene
from graphql import IntValueNode, StringValueNode, Undefined

Date = graphene.Date
DateTime = graphene.DateTime


class Decimal(graphene.Decimal):
    """A decimal number written as a string, "12.34"."""

    @staticmethod
    def serialize(value):
        return str(value if isinstance(value, _Decimal) else _Decimal(str(value)))

    @classmethod
    def parse_literal(cls, node, _variables=None):
        if isinstance(node, (StringValueNode, IntValueNode)):
            return cls.parse_value(node.value)
        return Undefined

    @staticmethod
    def parse_value(value):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return Undefined
        try:
            number = _Decimal(str(value).strip())
        except InvalidOperation:
            return Undefined
        return number if number.is_finite() else Undefined
