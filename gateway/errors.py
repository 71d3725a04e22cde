"""Every error a client sees carries ``extensions.code`` from the contract; none carries a
stack trace, a database detail or personal data."""
import re

from graphql import GraphQLError, GraphQLSyntaxError
from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService

from common.errors import DomainError
from common.logging import get_logger, redact_text

log = get_logger()


class BadRequest(DomainError):
    """Input the gateway itself refuses (shape, limits) before asking any service."""
    code = "BAD_USER_INPUT"


# For the plain HTTP routes (not /graphql, which answers 200 with errors in the body).
HTTP_STATUS = {"BAD_USER_INPUT": 400, "UNAUTHENTICATED": 401, "FORBIDDEN": 403,
               "NOT_FOUND": 404, "CONFLICT": 409, "UNAVAILABLE": 503, "INTERNAL": 500}


def error_entry(message, code, field=None, path=None):
    extensions = {"code": code}
    if field:
        extensions["field"] = field
    entry = {"message": message, "extensions": extensions}
    if path:
        entry["path"] = path
    return entry


# graphql-core's own variable errors are replaced by gateway.inputs before execution; should
# one still come, it is named by the variable alone, never by what the client sent.
_VARIABLE_ERROR = re.compile(
    r"^Variable '\$(?P<name>\w+)' (?:got invalid value|of required type|of non-null type)")
_ARGUMENT_ERROR = re.compile(r"^Argument '(?P<name>\w+)'")


def _syntax_message(message):
    """"Syntax Error: Expected Name, found String 'x'." without the part that quotes the
    query."""
    return re.split(r"""["'“]""", message, maxsplit=1)[0].rstrip(" :,.") + "."


def format_error(error):
    """A GraphQLError from parsing, validation or a resolver, as the contract's JSON."""
    original = error.original_error if isinstance(error, GraphQLError) else error
    path = list(error.path) if getattr(error, "path", None) else None
    if isinstance(error, GraphQLSyntaxError):
        return error_entry(_syntax_message(error.message), "BAD_USER_INPUT")
    if original is None:   # validation: the query or its input is wrong
        field = (error.extensions or {}).get("field")
        variable = _VARIABLE_ERROR.match(error.message or "")
        if variable and not field:
            field = variable.group("name")
            return error_entry(f"{field}: is not valid", "BAD_USER_INPUT", field, path)
        return error_entry(redact_text(error.message), "BAD_USER_INPUT", field, path)
    if isinstance(original, DomainError):
        return error_entry(redact_text(original.message), original.code, original.field, path)
    argument = _ARGUMENT_ERROR.match(original.message) if isinstance(original, GraphQLError) \
        else None
    if argument:   # e.g. null sent for a variable that a non-null argument takes
        field = argument.group("name")
        return error_entry(f"{field}: is not valid", "BAD_USER_INPUT", field, path)
    # OperationalError: the broker could not take the call (down, restarting).
    if isinstance(original, (RpcTimeout, UnknownService, TimeoutError, OperationalError)):
        log.warning("gateway.service_unavailable", error=type(original).__name__)
        return error_entry("a service is temporarily unavailable; try again later",
                           "UNAVAILABLE", path=path)
    detail = original.exc_type if isinstance(original, RemoteError) else type(original).__name__
    log.error("gateway.internal_error", error=detail, path=path,
              exc_info=not isinstance(original, RemoteError))
    return error_entry("internal error", "INTERNAL", path=path)
