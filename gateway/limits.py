"""Query limits of the contract, checked after validation and before any resolver runs
(the page size, which the services check too, is in common/limits.py)."""
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode

from common.limits import MAX_PAGE
from gateway.errors import BadRequest

MAX_ROOT_FIELDS = 50
MAX_DEPTH = 10
MAX_COST = 5000
DEFAULT_LIST_SIZE = 20
_SIZE_ARGUMENTS = ("first", "limit")


def check_query_limits(document, variables):
    fragments = {d.name.value: d for d in document.definitions
                 if d.kind == "fragment_definition"}
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        roots = _fields(operation.selection_set, fragments, set())
        if len(roots) > MAX_ROOT_FIELDS:
            raise BadRequest(f"a query may have at most {MAX_ROOT_FIELDS} root fields")
        depth, cost = _measure(operation.selection_set, fragments, variables or {}, 1, 1)
        if depth > MAX_DEPTH:
            raise BadRequest(f"a query may be nested at most {MAX_DEPTH} levels deep")
        if cost > MAX_COST:
            raise BadRequest(f"the query is too expensive ({cost} > {MAX_COST}); ask for less")


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


def _measure(selection_set, fragments, variables, depth, multiplier):
    deepest, cost = depth - 1, 0
    for field in _fields(selection_set, fragments, set()):
        cost += multiplier
        if field.selection_set:
            size = _list_size(field, variables)
            sub_depth, sub_cost = _measure(field.selection_set, fragments, variables,
                                           depth + 1, multiplier * size)
            deepest, cost = max(deepest, sub_depth), cost + sub_cost
        else:
            deepest = max(deepest, depth)
    return deepest, cost


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
