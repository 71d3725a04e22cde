"""The gateway's schema against the public contract: nothing renamed, retyped or dropped.

gateway/schema.graphql is the committed print of the schema (``python -m gateway.schema``);
the contract the gateway implements is the repository's own copy in contract/, which must be
the published one (../shared/contract/) wherever that lies beside the checkout."""
from pathlib import Path

import pytest
from graphql import BreakingChangeType, build_schema, find_breaking_changes, print_schema

from gateway.schema import schema

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_DIR = ROOT / "contract"
CONTRACT = CONTRACT_DIR / "schema.graphql"
PUBLISHED_DIR = ROOT.parent / "shared" / "contract"
COMMITTED = ROOT / "gateway" / "schema.graphql"

# Contract additions whose issue has not been built yet, each with its issue. An issue that
# builds a part of the contract removes its names here; the test fails for anything missing
# that is not listed, and for a listed name that is no longer missing.
PENDING_TYPES = {}
PENDING_FIELDS = {}


def _is_pending(change):
    words = change.description.split(" ")
    name = words[2] if words[:2] == ["Standard", "scalar"] else words[0]
    if change.type == BreakingChangeType.TYPE_REMOVED:
        return name in PENDING_TYPES
    if change.type == BreakingChangeType.FIELD_REMOVED:
        owner, _, field = name.partition(".")
        return field in PENDING_FIELDS.get(owner, {})
    return False


def test_committed_schema_is_the_one_the_gateway_serves():
    assert COMMITTED.read_text() == print_schema(schema.graphql_schema) + "\n", \
        "run `python -m gateway.schema` and commit gateway/schema.graphql"


def test_gateway_breaks_nothing_in_the_contract():
    contract = build_schema(CONTRACT.read_text())
    # Compared as printed: graphene's scalar classes differ from graphql-core's own, which
    # find_breaking_changes would report as a change of kind.
    ours = build_schema(print_schema(schema.graphql_schema))
    changes = find_breaking_changes(contract, ours)
    unexpected = [c.description for c in changes if not _is_pending(c)]
    assert unexpected == []


def test_pending_lists_name_only_what_is_really_missing():
    contract = build_schema(CONTRACT.read_text())
    ours = schema.graphql_schema
    for name in PENDING_TYPES:
        assert name in contract.type_map and name not in ours.type_map, name
    for owner, fields in PENDING_FIELDS.items():
        ours_owner = ours.type_map.get(owner)
        for field in fields:
            assert field in contract.type_map[owner].fields
            assert ours_owner is None or field not in ours_owner.fields, f"{owner}.{field}"


@pytest.mark.parametrize("name", ["schema.graphql", "README.md"])
def test_the_repository_holds_the_published_contract(name):
    published = PUBLISHED_DIR / name
    if not published.exists():
        pytest.skip("no published contract beside this checkout; the repository's copy stands")
    assert (CONTRACT_DIR / name).read_text() == published.read_text(), \
        f"copy ../shared/contract/{name} into contract/"
