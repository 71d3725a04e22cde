"""The pages' GraphQL operations are built from shared field lists; each, as built, is a valid
operation of the gateway's schema, so a page never sends one the gateway refuses."""
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

from gateway.web import operations
from gateway.web.desks import operations as desk_operations

GATEWAY_SCHEMA = Path(__file__).resolve().parents[2] / "gateway" / "schema.graphql"
SCHEMA = build_schema(GATEWAY_SCHEMA.read_text())
OPERATIONS = {f"{module.__name__}.{name}": text
              for module in (operations, desk_operations)
              for name, text in vars(module).items()
              if name.isupper() and isinstance(text, str)
              and text.lstrip().startswith(("query", "mutation"))}


def test_the_pages_have_their_operations():
    assert len(OPERATIONS) >= 40


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_is_valid_against_the_schema(name):
    assert validate(SCHEMA, parse(OPERATIONS[name])) == []
