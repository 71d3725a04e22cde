"""Runs one GraphQL request: parse, validate, check the limits and the variables, execute,
format errors."""
import contextvars
from functools import lru_cache

import eventlet
from graphql import ExecutionContext, GraphQLError, OperationType, Undefined, execute
from graphql import get_operation_ast, parse
from graphql import validate
from graphql.pyutils import Path

from gateway.errors import BadRequest, error_entry, format_error
from gateway.inputs import VALIDATION_RULES, variable_problems
from gateway.limits import check_query_limits
from gateway.schema import schema


class ConcurrentRootFields(ExecutionContext):
    """Resolves the root fields of a query at the same time, each in a green thread, so that
    independent services are asked in parallel. (Mutations stay one after another, as the
    GraphQL specification says.)"""

    def execute_fields(self, parent_type, source_value, path, fields):
        if path is not None or len(fields) < 2:
            return super().execute_fields(parent_type, source_value, path, fields)
        threads = {
            name: eventlet.spawn(contextvars.copy_context().run, self._execute_root,
                                 parent_type, source_value, nodes, name)
            for name, nodes in fields.items()}
        results, failure = {}, None
        for name, thread in threads.items():
            try:
                result = thread.wait()
            except Exception as error:   # a non-null root field failed: data becomes null
                failure = failure or error
                continue
            if result is not Undefined:
                results[name] = result
        if failure is not None:
            raise failure
        return results

    def _execute_root(self, parent_type, source_value, nodes, name):
        return self.execute_field(parent_type, source_value, nodes,
                                  Path(None, name, parent_type.name))


# Clients send the same few queries again and again: parsing and validating each once saves
# most of the gateway's own time per request. Only short queries are kept.
CACHED_QUERY_CHARS = 10_000


def _prepare(query):
    document = parse(query, max_tokens=20_000)
    return document, tuple(validate(schema.graphql_schema, document, VALIDATION_RULES))


_prepared = lru_cache(maxsize=512)(_prepare)


def is_mutation(body):
    """Whether the request's operation is a mutation; a request that does not parse runs
    nothing, so it is not one."""
    query, name = body.get("query"), body.get("operationName")
    if not isinstance(query, str) or not isinstance(name, (str, type(None))):
        return False
    try:
        document = (_prepared(query) if len(query) <= CACHED_QUERY_CHARS else _prepare(query))[0]
    except GraphQLError:
        return False
    operation = get_operation_ast(document, name)
    return operation is not None and operation.operation == OperationType.MUTATION


def run_query(body, context):
    """Returns the JSON answer for a request body already decoded to a dict."""
    query = body.get("query")
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        return {"errors": [error_entry("the request needs a 'query' string", "BAD_USER_INPUT")]}
    if not isinstance(variables, dict):
        return {"errors": [error_entry("'variables' must be an object", "BAD_USER_INPUT")]}
    if operation_name is not None and not isinstance(operation_name, str):
        return {"errors": [error_entry("'operationName' must be a string", "BAD_USER_INPUT",
                                       "operationName")]}
    try:
        document, errors = _prepared(query) if len(query) <= CACHED_QUERY_CHARS \
            else _prepare(query)
    except GraphQLError as error:
        return {"errors": [format_error(error)]}
    if errors:
        return {"errors": [format_error(e) for e in errors]}
    try:
        check_query_limits(document, variables, schema.graphql_schema)
    except BadRequest as error:
        return {"errors": [format_error(error)]}
    operation = get_operation_ast(document, operation_name)
    if operation is not None:
        problems = variable_problems(schema.graphql_schema, operation, variables)
        if problems:
            return {"errors": [format_error(e) for e in problems]}
    result = execute(schema.graphql_schema, document, context_value=context,
                     variable_values=variables, operation_name=operation_name,
                     execution_context_class=ConcurrentRootFields)
    answer = {"data": result.data}
    if result.errors:
        answer["errors"] = [format_error(e) for e in result.errors]
    return answer
