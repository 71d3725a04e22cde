"""Errors that cross the RPC boundary and keep their meaning.

nameko re-raises exceptions registered with ``deserialize_to_instance`` as the same class on
the caller's side, so the gateway can map them to the contract's ``extensions.code``. Their
messages must never contain personal data: they reach clients as they are.
"""
from nameko.exceptions import deserialize_to_instance


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message, field=None):
        # The arguments are what nameko sends to the caller; a None among them would arrive
        # as the string "None".
        super().__init__(*((message,) if field is None else (message, field)))
        self.message = message
        self.field = field

    def __str__(self):
        return self.message


@deserialize_to_instance
class BadUserInput(DomainError):
    code = "BAD_USER_INPUT"


@deserialize_to_instance
class NotFound(DomainError):
    code = "NOT_FOUND"


@deserialize_to_instance
class Conflict(DomainError):
    code = "CONFLICT"


@deserialize_to_instance
class Forbidden(DomainError):
    code = "FORBIDDEN"


@deserialize_to_instance
class Unauthenticated(DomainError):
    """No valid credentials: a request without a valid token, a call without a valid
    signature (common/calls.py)."""
    code = "UNAUTHENTICATED"


@deserialize_to_instance
class Unavailable(DomainError):
    code = "UNAVAILABLE"


def bad_input_from_validation(exc, prefix=""):
    """Turn a pydantic ValidationError into BadUserInput naming the first offending field."""
    first = exc.errors()[0]
    path = ".".join(str(part) for part in first["loc"])
    field = f"{prefix}.{path}" if prefix and path else (prefix or path)
    message = first["msg"].removeprefix("Value error, ")
    return BadUserInput(f"{field}: {message}" if field else message, field=field or None)
