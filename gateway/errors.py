"""Every error a client sees carries ``extensions.code`` from the contract; none carries a
stack trace, a database detail or personal data."""
import re

from graphql import GraphQLError
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


_VARIABLE_ERROR = re.compile(r"^Variable '\$(?P<name>\w+)' got invalid value .*?(?: at '(?P<path>[^']+)')?;")


def variable_field(message):
    """The input a variable error is about, as a field path: 'input.purposes.0'."""
    match = _VARIABLE_ERROR.match(message or "")
    if not match:
        return None
    return re.sub(r"\[(\d+)\]", r".\1", match.group("path") or match.group("name"))


def format_error(error):
    """A GraphQLError from validation or from a resolver, as the contract's JSON."""
    original = error.original_error if isinstance(error, GraphQLError) else error
    path = list(error.path) if getattr(error, "path", None) else None
    field = variable_field(error.message) if isinstance(error, GraphQLError) else None
    if field:   # a variable that does not fit its type (bad enum value, date, decimal)
        return error_entry(redact_text(error.message), "BAD_USER_INPUT", field, path)
    if original is None:   # parse or validation error: the query itself is wrong
        return error_entry(redact_text(error.message), "BAD_USER_INPUT", path=path)
    if isinstance(original, DomainError):
        return error_entry(redact_text(original.message), original.code, original.field, path)
    # OperationalError: the broker could not take the call (down, restarting).
    if isinstance(original, (RpcTimeout, UnknownService, TimeoutError, OperationalError)):
        log.warning("gateway.service_unavailable", error=type(original).__name__)
        return error_entry("a service is temporarily unavailable; try again later",
                           "UNAVAILABLE", path=path)
    if isinstance(original, GraphQLError):   # e.g. a variable of the wrong type
        return error_entry(redact_text(original.message), "BAD_USER_INPUT", path=path)
    detail = original.exc_type if isinstance(original, RemoteError) else type(original).__name__
    log.error("gateway.internal_error", error=detail, path=path,
              exc_info=not isinstance(original, RemoteError))
    return error_entry("internal error", "INTERNAL", path=path)
