"""The contract's query limits, checked before any resolver runs."""
import pytest
from graphql import parse

from common.errors import BadUserInput
from common.limits import page_size
from gateway.errors import BadRequest
from gateway.limits import MAX_DEPTH, MAX_ROOT_FIELDS, check_query_limits


def test_a_normal_query_passes():
    check_query_limits(parse("{ health { status services { name status } } }"), {})


def test_more_than_fifty_root_fields_with_aliases_is_refused():
    fields = " ".join(f"a{i}: health {{ status }}" for i in range(MAX_ROOT_FIELDS + 1))
    with pytest.raises(BadRequest, match="root fields"):
        check_query_limits(parse("{ " + fields + " }"), {})


def test_fifty_root_fields_pass():
    fields = " ".join(f"a{i}: health {{ status }}" for i in range(MAX_ROOT_FIELDS))
    check_query_limits(parse("{ " + fields + " }"), {})


def test_nesting_deeper_than_ten_levels_is_refused_also_through_fragments():
    inner = "x"
    for _ in range(MAX_DEPTH):
        inner = f"a {{ {inner} }}"
    with pytest.raises(BadRequest, match="nested"):
        check_query_limits(parse(f"query {{ {inner} }}"), {})
    via_fragment = parse("query { ...F } fragment F on Query { " + inner + " }")
    with pytest.raises(BadRequest, match="nested"):
        check_query_limits(via_fragment, {})


def test_list_sizes_multiply_into_the_cost():
    query = parse("query($n: Int) { a(first: $n) { b(first: 100) { c(first: 10) { d } } } }")
    check_query_limits(query, {"n": 1})
    with pytest.raises(BadRequest, match="expensive"):
        check_query_limits(query, {"n": 100})


def test_page_size_is_between_one_and_a_hundred():
    assert page_size(100) == 100
    for wrong in (0, 101, None, True):
        with pytest.raises(BadUserInput) as raised:
            page_size(wrong)
        assert raised.value.field == "first"
    with pytest.raises(BadUserInput) as raised:
        page_size(0, "limit")
    assert raised.value.field == "limit"
