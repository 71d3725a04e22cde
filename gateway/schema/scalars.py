"""The contract's scalars: Date and DateTime in ISO 8601, Decimal as a string ("12.34")."""
from graphene import Date, DateTime, Decimal

__all__ = ["Date", "DateTime", "Decimal"]
