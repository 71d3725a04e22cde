"""Runs one GraphQL request: parse, validate, check the limits, execute, format errors."""
from functools import lru_cache

import eventlet
from graphql import parse, specified_rules, validate
from graphql import GraphQLError, execute

from gateway.errors import BadRequest, error_entry, format_error
from gateway.limits import check_query_limits
from gateway.schema import schema


class GraphQLContext:
    """What a resolver knows of the request: who asks, and how to reach the services."""

    def __init__(self, service, principal, timeout):
        self.service = service
        self.principal = principal
        self.timeout = timeout

    @property
    def actor(self):
        return self.principal.as_actor()

    @property
    def payout_timeout(self):
        """Seconds to wait for a payout batch, which may take minutes for many claims."""
        return max(self.timeout, float(self.service.config.get("PAYOUT_TIMEOUT_SECONDS", 600)))

    def call(self, service_name, method, *args, timeout=None, **kwargs):
        """An RPC call that answers UNAVAILABLE instead of waiting for ever."""
        proxy = getattr(getattr(self.service, service_name), method)
        reply = proxy.call_async(*args, **kwargs)
        with eventlet.Timeout(timeout or self.timeout, TimeoutError):
            return reply.result()


# Clients send the same few queries again and again: parsing and validating each once saves
# most of the gateway's own time per request. Only short queries are kept.
CACHED_QUERY_CHARS = 10_000


def _prepare(query):
    document = parse(query, max_tokens=20_000)
    return document, tuple(validate(schema.graphql_schema, document, specified_rules))


_prepared = lru_cache(maxsize=512)(_prepare)


def run_query(body, context):
    """Returns the JSON answer for a request body already decoded to a dict."""
    query = body.get("query")
    variables = body.get("variables") or {}
    if not isinstance(query, str) or not query.strip():
        return {"errors": [error_entry("the request needs a 'query' string", "BAD_USER_INPUT")]}
    if not isinstance(variables, dict):
        return {"errors": [error_entry("'variables' must be an object", "BAD_USER_INPUT")]}
    try:
        document, errors = _prepared(query) if len(query) <= CACHED_QUERY_CHARS \
            else _prepare(query)
    except GraphQLError as error:
        return {"errors": [format_error(error)]}
    if errors:
        return {"errors": [format_error(e) for e in errors]}
    try:
        check_query_limits(document, variables)
    except BadRequest as error:
        return {"errors": [format_error(error)]}
    result = execute(schema.graphql_schema, document, context_value=context,
                     variable_values=variables, operation_name=body.get("operationName"))
    answer = {"data": result.data}
    if result.errors:
        answer["errors"] = [format_error(e) for e in result.errors]
    return answer
