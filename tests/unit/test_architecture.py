"""The rules of docs/architecture.md, read from the code: the walls between services, the
gateway and common/; pymongo queries only in storage modules; who calls whom over RPC and
events, against the doc's table; the gateway's input types against the payload schemas;
every event name of the catalogue written out where grep finds it."""
import ast
import re
import types
import typing
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from graphql import (GraphQLEnumType, GraphQLInputObjectType, GraphQLList, GraphQLNonNull,
                     build_schema, get_named_type)
from pydantic import BaseModel

from common.config import SERVICE_NAMES
from common.events import CATALOGUE, SUBSCRIPTIONS
from common.schemas.campaign import BagOrderInput, CampaignInput, PrintRunInput
from common.schemas.declaration import DeclarationRequestInput, DeclarationSettingsInput
from common.schemas.registry import SupportPointInput
from common.schemas.travel_costs import TravelClaimInput
from gateway.schema import schema

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def python_files(folder):
    return sorted(path for path in (ROOT / folder).rglob("*.py")
                  if "node_modules" not in path.parts)


def parsed(path):
    return ast.parse(path.read_text(), filename=str(path))


def relative(path):
    return path.relative_to(ROOT).as_posix()


# --- (1) the walls ----------------------------------------------------------------------------

def imported_modules(path, root=ROOT):
    """Every module ``path`` imports, by its full dotted name."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:   # relative: resolved against the file's own package
                package = path.relative_to(root).parent.parts
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{module}" if module else base
            # ``from services import declaration`` imports the module services.declaration
            yield from (f"{module}.{alias.name}" for alias in node.names)


def crossings(folder, allowed, root=ROOT):
    """(file, module) for each import in ``folder`` that ``allowed(file, module)`` refuses."""
    return [(path.relative_to(root).as_posix(), module)
            for path in sorted((root / folder).rglob("*.py"))
            if "node_modules" not in path.parts
            for module in imported_modules(path, root) if not allowed(path, module)]


def top(module):
    return module.split(".")[0]


def own_service_only(path, module):
    """A module of a service may import its own service's modules, no other service's."""
    service = path.parts[path.parts.index("services") + 1]
    parts = module.split(".")
    return parts[0] != "services" or len(parts) < 2 or parts[1] == service


def service_of(path):
    return path.relative_to(ROOT / "services").parts[0]


def test_no_service_imports_another_service():
    assert crossings("services", own_service_only) == []


def test_the_gateway_imports_no_service():
    assert crossings("gateway", lambda path, module: top(module) != "services") == []


def test_common_imports_neither_a_service_nor_the_gateway():
    assert crossings("common", lambda path, module: top(module) not in ("services",
                                                                         "gateway")) == []


def test_the_wall_check_sees_an_import_across_it(tmp_path):
    probe = tmp_path / "services" / "registry" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from services.declaration import domain\nimport gateway.schema\n"
                     "from services.registry import storage\nfrom .. import campaign\n")
    assert crossings("services", own_service_only, tmp_path) == [
        ("services/registry/probe.py", "services.declaration.domain"),
        ("services/registry/probe.py", "services.campaign")]


# --- (2) pymongo queries live in storage modules ----------------------------------------------

# Collection methods that take a filter, an update or a pipeline.
QUERY_METHODS = {"find", "find_one", "find_one_and_update", "find_one_and_replace",
                 "find_one_and_delete", "update_one", "update_many", "replace_one",
                 "delete_one", "delete_many", "insert_one", "insert_many", "aggregate",
                 "count_documents", "distinct", "bulk_write", "create_index", "create_indexes",
                 "estimated_document_count", "watch"}


def queries_in(path):
    """Line numbers of pymongo calls and of dicts with $-operators (``{"$set": ...}``)."""
    found = []
    for node in ast.walk(parsed(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in QUERY_METHODS and not _is_text_find(node)):
            found.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(
                isinstance(key, ast.Constant) and isinstance(key.value, str)
                and key.value.startswith("$") for key in node.keys):
            found.append(node.lineno)
    return found


def _is_text_find(call):
    """``"text".find("x")`` or ``name.find("x", 3)``: str.find, not a collection's."""
    return call.func.attr == "find" and call.args and isinstance(call.args[0], ast.Constant) \
        and isinstance(call.args[0].value, str)


def modules_with_queries():
    return {relative(path): lines for folder in ("services", "common", "gateway", "ops", "bench")
            for path in python_files(folder)
            if path.name != "storage.py" and (lines := queries_in(path))}


def test_pymongo_filters_and_updates_appear_only_in_storage_modules():
    assert modules_with_queries() == {}, "move these queries into the module's storage.py"


def test_the_query_check_sees_a_filter_outside_storage(tmp_path):
    probe = tmp_path / "service.py"
    probe.write_text('def f(db, text):\n    text.find("x")\n'
                     '    db.claims.find({"status": "PAID"})\n'
                     '    return {"$set": {"status": "ON_HOLD"}}\n')
    assert queries_in(probe) == [3, 4]


# --- (3) who calls whom --------------------------------------------------------------------------

EVERY_SERVICE = "every service"
RPC_CALLS = ("call", "send", "long_call")


def table_rows(heading):
    """The rows of the table under ``## heading``: (caller, callees, how, what)."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and cells[0] not in ("caller", "---"):
            caller, callees, how, what = cells
            names = (SERVICE_NAMES if callees == EVERY_SERVICE
                     else tuple(name.strip() for name in callees.split(",")))
            rows.append((caller.replace("`", ""), names, how, what))
    return rows


def documented(how):
    return {(caller, callee) for caller, callees, kind, _ in table_rows("Who calls whom")
            if kind == how for callee in callees}


def _constants(tree):
    """Module-level NAME = "text" assignments."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


class _CallFinder(ast.NodeVisitor):
    """(service, method) of each ``x.call/send/long_call(service, method, ...)`` outside the
    functions of those names (the context's own forwarding between them)."""

    def __init__(self, constants):
        self.constants = constants
        self.calls = set()
        self.inside = []

    def visit_FunctionDef(self, node):
        self.inside.append(node.name)
        self.generic_visit(node)
        self.inside.pop()

    def visit_Call(self, node):
        if (isinstance(node.func, ast.Attribute) and node.func.attr in RPC_CALLS
                and len(node.args) >= 2 and not set(self.inside) & set(RPC_CALLS)):
            service, method = node.args[:2]
            if isinstance(service, ast.Constant):
                service = service.value
            elif isinstance(service, ast.Name) and service.id in self.constants:
                service = self.constants[service.id]
            else:
                service = EVERY_SERVICE
            self.calls.add((service, method.value if isinstance(method, ast.Constant) else None))
        self.generic_visit(node)


def gateway_calls():
    """(service, method) of each call of the gateway's resolvers and pages
    (``context.call/send/long_call(service, method, ...)``, the service a literal or a
    module's constant); a service given by a variable is every service, as in the health
    check. A method given by a variable is None."""
    calls = set()
    for path in python_files("gateway"):
        tree = parsed(path)
        finder = _CallFinder(_constants(tree))
        finder.visit(tree)
        calls |= finder.calls
    return calls


def test_the_gateway_calls_what_the_table_says():
    from gateway.service import GatewayService

    # one RPC proxy per service, named after it: all the gateway can call
    proxies = {name for name, value in vars(GatewayService).items()
               if "Rpc" in type(value).__name__}
    assert proxies == set(SERVICE_NAMES)
    calls = gateway_calls()
    assert {service for service, _ in calls} - {EVERY_SERVICE} <= proxies
    # A call to whichever service a variable names is only the health check, documented in
    # the row of every service; each service the gateway asks anything else has a row of its
    # own.
    assert {method for service, method in calls if service == EVERY_SERVICE} == {"health"}
    rows = [row for row in table_rows("Who calls whom") if row[0] == "gateway"]
    assert [what for _, callees, how, what in rows
            if callees == SERVICE_NAMES and how == "RPC"] == ["`health`"]
    asked = {service for service, method in calls
             if service != EVERY_SERVICE and method != "health"}
    assert asked == {callee for _, callees, how, _ in rows if how == "RPC"
                     and callees != SERVICE_NAMES for callee in callees}


def service_rpc_proxies():
    """(caller, callee) of each RPC proxy a service class holds: ``RpcProxy("declaration")``
    or any other dependency whose name says it is one (``ServiceRpc``, ...)."""
    found = set()
    for path in python_files("services"):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if "Rpc" in name and node.args[0].value in SERVICE_NAMES:
                    found.add((service_of(path), node.args[0].value))
    return found


def test_the_services_call_each_other_as_the_table_says():
    assert service_rpc_proxies() == {pair for pair in documented("RPC")
                                     if pair[0] in SERVICE_NAMES}


def cli_calls():
    """(service, method) of each ``rpc.<service>.<method>`` the operator's command makes."""
    found = set()
    for path in python_files("ops"):
        for node in ast.walk(parsed(path)):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "rpc"
                    and node.value.attr in SERVICE_NAMES):
                found.add((node.value.attr, node.attr))
    return found


def test_the_operators_command_calls_are_in_the_table():
    calls = cli_calls()
    assert calls, "the command's calls are no longer found: update cli_calls()"
    rows = [row for row in table_rows("Who calls whom") if row[0] == "mantelzorg CLI"]
    for service, method in calls:
        assert any(service in callees and f"`{method}`" in what for _, callees, _, what in rows), \
            f"{service}.{method} is missing in the table's rows of the mantelzorg CLI"


def _events_named(what):
    """The events a row names in backticks: `support_point.*` stands for every such one."""
    named = set()
    for pattern in re.findall(r"`([a-z0-9_.*]+)`", what):
        named |= {name for name in CATALOGUE if re.fullmatch(
            re.escape(pattern).replace(r"\*", "[a-z_]+"), name)}
    return named


def test_events_flow_as_the_table_says():
    subscribed = {}
    for entry in SUBSCRIPTIONS:
        subscribed.setdefault((entry.source, entry.consumer), set()).add(entry.event)
    documented_events = {}
    for caller, callees, how, what in table_rows("Who calls whom"):
        if how == "events":
            for callee in callees:
                documented_events.setdefault((caller, callee), set()).update(_events_named(what))
    assert documented_events == subscribed


def test_the_table_check_reads_the_rows():
    assert ("travel_costs", "declaration") in documented("RPC")
    assert ("registry", "campaign") in documented("events")
    assert _events_named("`support_point.*` and `pc4_areas.imported`") == {
        "support_point.registered", "support_point.updated", "support_point.deactivated",
        "pc4_areas.imported"}


# --- (4) the gateway's input types and the payload schemas --------------------------------------

# Per field of the schema that takes input: the argument holding it (None: the field's
# arguments themselves) and the payload schema the service parses it with.
PAYLOADS = {
    "requestDeclaration": ("input", DeclarationRequestInput),
    "setDeclarationSettings": ("input", DeclarationSettingsInput),
    "registerSupportPoint": ("input", SupportPointInput),
    "updateSupportPoint": ("input", SupportPointInput),
    "submitTravelClaim": ("input", TravelClaimInput),
    "travelClaimPreview": ("input", TravelClaimInput),
    "createCampaign": ("input", CampaignInput),
    "orderInformationBags": (None, BagOrderInput),
    "addPrintRun": (None, PrintRunInput),
}
# Mutations whose arguments are only ids, reasons, versions, codes and choices.
WITHOUT_PAYLOAD = {"markBagOrderShipped", "markBagOrderDelivered", "cancelBagOrder",
                   "runBagAllocation", "launchCampaign", "optOutOfCampaign", "reviewTravelClaim",
                   "createPayoutBatch", "releasePayoutBatch", "decideDeclaration",
                   "revokeDeclaration", "renewVerificationCode", "deactivateSupportPoint"}

SCALARS = {"String": str, "ID": str, "Int": int, "Boolean": bool, "Float": float,
           "Decimal": Decimal, "Date": date}


def _plain(annotation):
    """(python type or model or ('list', inner) or ('literal', values), optional)."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional |= len(members) < len(typing.get_args(annotation))
            assert len(members) == 1, annotation
            annotation = members[0]
        elif origin is list:
            return ("list", _plain(typing.get_args(annotation)[0])[0]), optional
        elif origin is typing.Literal:
            return ("literal", frozenset(typing.get_args(annotation))), optional
        else:
            return annotation, optional


def _text_like(annotation):
    return annotation is str or getattr(annotation, "__name__", "") in ("EmailStr", "HttpUrl",
                                                                        "AnyUrl")


def disagreements(graphql_fields, model, path):
    """Where GraphQL input fields (name -> GraphQLInputField or GraphQLArgument) and a
    pydantic model differ: names, required or not, types."""
    problems = []
    by_alias = {field.alias or name: field for name, field in model.model_fields.items()}
    if set(graphql_fields) != set(by_alias):
        problems.append(f"{path}: GraphQL has {sorted(graphql_fields)}, "
                        f"{model.__name__} has {sorted(by_alias)}")
    for name in sorted(set(graphql_fields) & set(by_alias)):
        gql_type, field = graphql_fields[name].type, by_alias[name]
        where = f"{path}.{name}"
        annotation, optional = _plain(field.annotation)
        if isinstance(gql_type, GraphQLNonNull) != field.is_required():
            problems.append(f"{where}: required in one and not the other")
        if isinstance(gql_type, GraphQLNonNull) and optional:
            problems.append(f"{where}: required in GraphQL, may be null in {model.__name__}")
        problems += _type_problems(gql_type, annotation, where)
    return problems


def _type_problems(gql_type, annotation, where):
    if isinstance(gql_type, GraphQLNonNull):
        gql_type = gql_type.of_type
    if isinstance(gql_type, GraphQLList):
        if not (isinstance(annotation, tuple) and annotation[0] == "list"):
            return [f"{where}: a list in GraphQL, not in the payload schema"]
        return _type_problems(gql_type.of_type, annotation[1], f"{where}[]")
    if isinstance(annotation, tuple) and annotation[0] == "list":
        return [f"{where}: a list in the payload schema, not in GraphQL"]
    if isinstance(gql_type, GraphQLInputObjectType):
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [f"{where}: an input object in GraphQL, {annotation} in the payload schema"]
        return disagreements(gql_type.fields, annotation, where)
    if isinstance(gql_type, GraphQLEnumType):
        if isinstance(annotation, tuple) and annotation[0] == "literal":
            if set(gql_type.values) != set(annotation[1]):
                return [f"{where}: the enum's values differ from the payload schema's"]
            return []
        return [] if annotation is str else [f"{where}: an enum in GraphQL, {annotation} in "
                                             "the payload schema"]
    expected = SCALARS.get(gql_type.name)
    fits = _text_like(annotation) if expected is str else annotation is expected
    return [] if fits else [f"{where}: {gql_type.name} in GraphQL, {annotation} in the payload "
                            "schema"]


def fields_taking_input():
    graphql = schema.graphql_schema
    return {name: field for kind in (graphql.query_type, graphql.mutation_type)
            for name, field in kind.fields.items()
            if any(isinstance(get_named_type(arg.type), GraphQLInputObjectType)
                   for arg in field.args.values())}


def test_every_mutation_is_either_checked_against_its_payload_schema_or_takes_none():
    contract = build_schema((ROOT / "contract" / "schema.graphql").read_text())
    served = schema.graphql_schema.mutation_type.fields
    # the contract's (some still pending) and the gateway's additions
    mutations = set(contract.mutation_type.fields) | set(served)
    assert mutations == (set(PAYLOADS) | WITHOUT_PAYLOAD) - set(
        schema.graphql_schema.query_type.fields), \
        "name the new mutation in PAYLOADS or WITHOUT_PAYLOAD"
    assert set(fields_taking_input()) <= set(PAYLOADS)
    for name in WITHOUT_PAYLOAD & set(served):
        for argument in served[name].args.values():
            assert get_named_type(argument.type).name in SCALARS or isinstance(
                get_named_type(argument.type), GraphQLEnumType), f"{name} takes input"


@pytest.mark.parametrize("field_name", sorted(PAYLOADS))
def test_the_gateways_input_and_the_payload_schema_agree_field_by_field(field_name):
    graphql = schema.graphql_schema
    field = (graphql.mutation_type.fields.get(field_name)
             or graphql.query_type.fields[field_name])
    argument, model = PAYLOADS[field_name]
    if argument is None:
        fields = field.args
    else:
        fields = get_named_type(field.args[argument].type).fields
    assert disagreements(fields, model, argument or field_name) == []


def test_the_input_check_sees_a_field_that_differs():
    class Probe(BaseModel):
        name: str
        quantity: int | None = None
        when: date

    fields = schema.graphql_schema.mutation_type.fields["orderInformationBags"].args
    problems = disagreements(fields, Probe, "probe")
    assert any("GraphQL has" in problem for problem in problems)
    assert "probe.quantity: required in one and not the other" in problems


# --- (5) the catalogue's event names are written out --------------------------------------------

def test_every_event_name_of_the_catalogue_is_a_literal_that_grep_finds():
    source = (ROOT / "common" / "events.py").read_text()
    literals = {node.value for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert sorted(set(CATALOGUE) - literals) == []
    for name in CATALOGUE:
        assert f'"{name}"' in source
    # and no name in it is put together from pieces
    built = [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(
        node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant)
        and re.fullmatch(r"[a-z0-9_]+\.", node.values[0].value)]
    assert built == []
