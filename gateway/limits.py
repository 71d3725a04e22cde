"""Query limits of the contract, checked after validation and before any resolver runs.

The cost of a query counts every field, multiplied by the page sizes of the lists around it,
and SERVICE_CALL_COST for every field that calls a service (``calls_services``), so that one
request cannot fan out into hundreds of RPC calls. Introspection (``__schema``, ``__type``,
``__typename``) is not counted against depth and cost, as the contract says; it has budgets
of its own so that it cannot be nested or repeated into an expensive answer either: at most
MAX_INTROSPECTION_LISTS lists deep, and at most MAX_INTROSPECTION_COST values in the answer,
estimated from the sizes of the schema's own lists. Every field, introspection included,
counts in MAX_NODES, the size of the query with every fragment spread in.

The time the check takes is linear in the document: each selection set (a fragment's
included) is measured once per type it is spread on and its measure reused, so a chain of
fragments that each spread the next twice costs no more to check than to read. (The page
size, which the services check too, is in common/limits.py.)"""
import math
from dataclasses import dataclass
from functools import lru_cache

from graphql import (FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode,
                     get_named_type, is_input_object_type, is_interface_type,
                     is_list_type, is_object_type)
from graphql.type.introspection import introspection_types

from common.limits import MAX_PAGE
from gateway.errors import BadRequest

MAX_ROOT_FIELDS = 50
MAX_DEPTH = 10
MAX_COST = 5000
SERVICE_CALL_COST = 250          # so at most 20 service calls in one request
MAX_NODES = 2000                 # fields with every fragment spread in, introspection included
MAX_INTROSPECTION_ROOTS = 3      # __schema / __type fields in one request
MAX_INTROSPECTION_LISTS = 3      # lists nested in introspection (types > fields > args)
MAX_INTROSPECTION_COST = 150_000  # values an introspection answer may hold (estimated)
DEFAULT_LIST_SIZE = 20
_SIZE_ARGUMENTS = ("first", "limit")
_INTROSPECTION_ROOTS = ("__schema", "__type")


def calls_services(count=1):
    """Marks a resolver that makes ``count`` RPC calls, for the cost of a query."""
    def mark(resolver):
        resolver.service_calls = count
        return resolver
    return mark


@dataclass(frozen=True)
class _Measure:
    """What a selection set weighs, measured once. Costs are for one instance of the
    selection set; the lists around it multiply them."""
    fields: int = 0          # fields at its own level (root fields, for an operation)
    introspection_roots: int = 0
    nodes: int = 0           # fields at every level, every fragment spread in
    depth: int = 0           # levels of non-introspection fields
    cost: int = 0
    introspection_cost: int = 0
    introspection_lists: int = 0

    def __add__(self, other):
        return _Measure(self.fields + other.fields,
                        self.introspection_roots + other.introspection_roots,
                        self.nodes + other.nodes, max(self.depth, other.depth),
                        self.cost + other.cost, self.introspection_cost + other.introspection_cost,
                        max(self.introspection_lists, other.introspection_lists))


def check_query_limits(document, variables, schema=None):
    """BadRequest when an operation of ``document`` is too wide, too deep, too large or too
    costly. Without ``schema`` (or for fields it does not know) service calls are not
    counted."""
    measurer = _Measurer(document, variables or {}, schema)
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        root_type = schema.get_root_type(operation.operation) if schema else None
        measure = measurer.measure(operation.selection_set, root_type, False)
        if measure.fields > MAX_ROOT_FIELDS:
            raise BadRequest(f"a query may have at most {MAX_ROOT_FIELDS} root fields")
        if measure.nodes > MAX_NODES:
            raise BadRequest(f"a query may have at most {MAX_NODES} fields, counted with "
                             "every fragment spread in")
        if measure.introspection_roots > MAX_INTROSPECTION_ROOTS:
            raise BadRequest(f"a query may ask at most {MAX_INTROSPECTION_ROOTS} introspection "
                             "fields (__schema, __type)")
        if measure.introspection_lists > MAX_INTROSPECTION_LISTS:
            raise BadRequest(f"introspection may nest at most {MAX_INTROSPECTION_LISTS} "
                             "lists (types, fields, args)")
        if measure.introspection_cost > MAX_INTROSPECTION_COST:
            raise BadRequest("the introspection or __typename fields of the query would "
                             "answer too much; ask for less")
        if measure.depth > MAX_DEPTH:
            raise BadRequest(f"a query may be nested at most {MAX_DEPTH} levels deep")
        if measure.cost > MAX_COST:
            raise BadRequest(f"the query is too expensive ({measure.cost} > {MAX_COST}; every "
                             f"field that asks a service costs {SERVICE_CALL_COST}); ask for less")


class _Measurer:
    """Measures the selection sets of one document, each once per (type, introspection)."""

    def __init__(self, document, variables, schema):
        self.fragments = {d.name.value: d for d in document.definitions
                          if d.kind == "fragment_definition"}
        self.variables = variables
        self.schema = schema
        self.list_sizes = _introspection_list_sizes(schema) if schema else {}
        self.known = {}

    def measure(self, selection_set, parent_type, introspective):
        key = (id(selection_set), getattr(parent_type, "name", None), introspective)
        if key in self.known:
            return self.known[key]
        self.known[key] = _Measure()   # a fragment cycle (refused by validation) adds nothing
        total = _Measure()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent_type, introspective)
            elif isinstance(selection, InlineFragmentNode):
                total += self.measure(selection.selection_set,
                                      self._condition(selection, parent_type), introspective)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    total += self.measure(fragment.selection_set,
                                          self._condition(fragment, parent_type), introspective)
        self.known[key] = total
        return total

    def _condition(self, fragment, parent_type):
        condition = fragment.type_condition
        known = self.schema.get_type(condition.name.value) if condition and self.schema else None
        return known or parent_type

    def _field(self, field, parent_type, introspective):
        name = field.name.value
        definition = _field_definition(parent_type, field)
        if introspective or name in _INTROSPECTION_ROOTS or name == "__typename":
            return self._introspection_field(field, definition, introspective)
        calls = getattr(definition.resolve, "service_calls", 0) if definition else 0
        own = 1 + calls * SERVICE_CALL_COST
        if not field.selection_set:
            return _Measure(fields=1, nodes=1, depth=1, cost=own)
        child_type = get_named_type(definition.type) if definition else None
        child = self.measure(field.selection_set, child_type, False)
        size = _list_size(field, self.variables)
        return _Measure(fields=1, nodes=1 + child.nodes, depth=1 + child.depth,
                        cost=own + size * child.cost,
                        introspection_cost=size * child.introspection_cost,
                        introspection_lists=child.introspection_lists)

    def _introspection_field(self, field, definition, introspective):
        name = field.name.value
        root = int(not introspective and name in _INTROSPECTION_ROOTS)
        if not field.selection_set:   # __typename, or a name, a kind ...
            return _Measure(fields=1, introspection_roots=root, nodes=1, introspection_cost=1)
        if root:
            child_type, is_list = introspection_types[
                "__Schema" if name == "__schema" else "__Type"], False
        else:
            child_type = get_named_type(definition.type) if definition else None
            is_list = definition is not None and _is_list(definition.type)
        child = self.measure(field.selection_set, child_type, True)
        size = self.list_sizes.get(name, DEFAULT_LIST_SIZE) if is_list else 1
        return _Measure(fields=1, introspection_roots=root, nodes=1 + child.nodes,
                        introspection_cost=1 + size * child.introspection_cost,
                        introspection_lists=int(is_list) + child.introspection_lists)


@lru_cache(maxsize=4)
def _introspection_list_sizes(schema):
    """How long each list of an introspection answer is, on average, in ``schema``: the
    multipliers of the introspection cost."""
    types = list(schema.type_map.values())

    def mean(counts):
        counts = [count for count in counts if count]
        return max(1, math.ceil(sum(counts) / len(counts))) if counts else 1

    fields = [field for type_ in types for field in (getattr(type_, "fields", None) or {}).values()]
    return {
        "types": len(types),
        "directives": len(schema.directives),
        "fields": mean(len(t.fields) for t in types
                       if is_object_type(t) or is_interface_type(t)),
        "inputFields": mean(len(t.fields) for t in types if is_input_object_type(t)),
        "args": mean([len(getattr(f, "args", None) or {}) for f in fields] +
                     [len(d.args) for d in schema.directives]),
        "enumValues": mean(len(getattr(t, "values", None) or {}) for t in types),
        "interfaces": mean(len(getattr(t, "interfaces", None) or ()) for t in types),
        "possibleTypes": mean(len(getattr(t, "types", None) or ()) for t in types),
    }


def _field_definition(parent_type, field):
    fields = getattr(parent_type, "fields", None)   # unions and unknown types have none
    return fields.get(field.name.value) if fields else None


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
