"""Query limits of the contract, checked after validation and before any resolver runs.

The cost of a query counts every field, multiplied by the page sizes of the lists around it,
and SERVICE_CALL_COST for every field that calls a service (``calls_services``), so that one
request cannot fan out into hundreds of RPC calls. Introspection (``__schema``, ``__type``,
``__typename``) is not counted against depth and cost, as the contract says; it has bounds
of its own so that it cannot be nested into an expensive answer either. (The page size,
which the services check too, is in common/limits.py.)"""
from graphql import (FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode,
                     get_named_type, is_list_type)
from graphql.type.introspection import introspection_types

from common.limits import MAX_PAGE
from gateway.errors import BadRequest

MAX_ROOT_FIELDS = 50
MAX_DEPTH = 10
MAX_COST = 5000
SERVICE_CALL_COST = 250          # so at most 20 service calls in one request
MAX_INTROSPECTION_ROOTS = 3      # __schema / __type fields in one request
MAX_INTROSPECTION_LISTS = 3      # lists nested in introspection (types > fields > args)
DEFAULT_LIST_SIZE = 20
_SIZE_ARGUMENTS = ("first", "limit")


def calls_services(count=1):
    """Marks a resolver that makes ``count`` RPC calls, for the cost of a query."""
    def mark(resolver):
        resolver.service_calls = count
        return resolver
    return mark


def check_query_limits(document, variables, schema=None):
    """BadRequest when an operation of ``document`` is too wide, too deep or too costly.
    Without ``schema`` (or for fields it does not know) service calls are not counted."""
    fragments = {d.name.value: d for d in document.definitions
                 if d.kind == "fragment_definition"}
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        root_type = schema.get_root_type(operation.operation) if schema else None
        roots = _fields(operation.selection_set, fragments, set())
        if len(roots) > MAX_ROOT_FIELDS:
            raise BadRequest(f"a query may have at most {MAX_ROOT_FIELDS} root fields")
        introspection = [field for field in roots if field.name.value in ("__schema", "__type")]
        if len(introspection) > MAX_INTROSPECTION_ROOTS:
            raise BadRequest(f"a query may ask at most {MAX_INTROSPECTION_ROOTS} introspection "
                             "fields (__schema, __type)")
        for field in introspection:
            answer_type = introspection_types["__Schema" if field.name.value == "__schema"
                                              else "__Type"]
            if _list_nesting(field.selection_set, fragments, answer_type) > \
                    MAX_INTROSPECTION_LISTS:
                raise BadRequest(f"introspection may nest at most {MAX_INTROSPECTION_LISTS} "
                                 "lists (types, fields, args)")
        depth, cost = _measure(operation.selection_set, root_type, fragments, variables or {},
                               1, 1)
        if depth > MAX_DEPTH:
            raise BadRequest(f"a query may be nested at most {MAX_DEPTH} levels deep")
        if cost > MAX_COST:
            raise BadRequest(f"the query is too expensive ({cost} > {MAX_COST}; every field "
                             f"that asks a service costs {SERVICE_CALL_COST}); ask for less")


def _fields(selection_set, fragments, seen):
    """The fields of a selection set with fragments spread in."""
    found = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                found.extend(_fields(fragments[name].selection_set, fragments, seen | {name}))
    return found


def _field_definition(parent_type, field):
    fields = getattr(parent_type, "fields", None)   # unions and unknown types have none
    return fields.get(field.name.value) if fields else None


def _measure(selection_set, parent_type, fragments, variables, depth, multiplier):
    deepest, cost = depth - 1, 0
    for field in _fields(selection_set, fragments, set()):
        if field.name.value.startswith("__"):   # introspection: bounded on its own
            continue
        definition = _field_definition(parent_type, field)
        calls = getattr(definition.resolve, "service_calls", 0) if definition else 0
        cost += multiplier * (1 + calls * SERVICE_CALL_COST)
        if field.selection_set:
            size = _list_size(field, variables)
            child_type = get_named_type(definition.type) if definition else None
            sub_depth, sub_cost = _measure(field.selection_set, child_type, fragments, variables,
                                           depth + 1, multiplier * size)
            deepest, cost = max(deepest, sub_depth), cost + sub_cost
        else:
            deepest = max(deepest, depth)
    return deepest, cost


def _list_nesting(selection_set, fragments, parent_type):
    """How many list fields an introspection selection nests, at most, along one path."""
    deepest = 0
    for field in _fields(selection_set, fragments, set()):
        definition = _field_definition(parent_type, field)
        if definition is None or not field.selection_set:
            continue
        own = 1 if _is_list(definition.type) else 0
        deepest = max(deepest, own + _list_nesting(field.selection_set, fragments,
                                                   get_named_type(definition.type)))
    return deepest


def _is_list(type_):
    while hasattr(type_, "of_type"):
        if is_list_type(type_):
            return True
        type_ = type_.of_type
    return False


def _list_size(field, variables):
    for argument in field.arguments or ():
        if argument.name.value in _SIZE_ARGUMENTS:
            node = argument.value
            value = variables.get(node.name.value) if node.kind == "variable" else getattr(node, "value", None)
            try:
                return max(1, min(int(value), MAX_PAGE))
            except (TypeError, ValueError):
                return DEFAULT_LIST_SIZE
    return 1
