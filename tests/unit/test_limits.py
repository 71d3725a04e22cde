"""The contract's query limits, checked before any resolver runs."""
import time

import pytest
from graphql import parse

from common.errors import BadUserInput
from common.limits import page_size
from gateway.errors import BadRequest
from gateway.executor import run_query
from gateway.limits import (MAX_COST, MAX_DEPTH, MAX_INTROSPECTION_COST, MAX_NODES,
                            MAX_ROOT_FIELDS, SERVICE_CALL_COST, check_query_limits)
from gateway.schema import schema

SCHEMA = schema.graphql_schema


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


def test_the_standard_introspection_query_is_answered_whatever_its_depth():
    from graphql import get_introspection_query

    check_query_limits(parse(get_introspection_query(descriptions=True)), {}, SCHEMA)
    answer = run_query({"query": get_introspection_query(descriptions=True)}, None)
    assert "errors" not in answer
    assert answer["data"]["__schema"]["queryType"]["name"] == "Query"


def test_typename_and_introspection_do_not_count_against_depth():
    inner = "__typename"
    for _ in range(MAX_DEPTH - 1):
        inner = f"a {{ {inner} }}"
    check_query_limits(parse(f"query {{ {inner} }}"), {})


def test_introspection_has_bounds_of_its_own():
    three_lists = "{ __type(name: \"Query\") { fields { type { fields { type { fields { name } } } } } } }"
    check_query_limits(parse(three_lists), {}, SCHEMA)
    four_lists = three_lists.replace("fields { name }", "fields { type { fields { name } } }")
    with pytest.raises(BadRequest, match="introspection may nest"):
        check_query_limits(parse(four_lists), {}, SCHEMA)
    many = " ".join(f'a{i}: __type(name: "Query") {{ name }}' for i in range(4))
    with pytest.raises(BadRequest, match="introspection fields"):
        check_query_limits(parse("{ " + many + " }"), {}, SCHEMA)


def test_every_field_that_asks_a_service_counts_in_the_cost():
    calls_per_request = MAX_COST // SERVICE_CALL_COST
    points = " ".join(f'p{i}: supportPoint(id: "{i}") {{ id }}' for i in range(calls_per_request))
    with pytest.raises(BadRequest, match="expensive"):
        check_query_limits(parse("{ " + points + " }"), {}, SCHEMA)
    fewer = " ".join(f'p{i}: supportPoint(id: "{i}") {{ id }}' for i in range(calls_per_request - 1))
    check_query_limits(parse("{ " + fewer + " }"), {}, SCHEMA)
    # health asks every service: five of them would be twenty calls and more
    healths = " ".join(f"h{i}: health {{ status }}" for i in range(5))
    with pytest.raises(BadRequest, match="expensive"):
        check_query_limits(parse("{ " + healths + " }"), {}, SCHEMA)


def test_every_root_field_that_asks_a_service_is_marked_for_the_cost():
    """A new resolver that calls a service must say so with @calls_services, or the cost
    budget would not see its calls. All root fields of the gateway call a service."""
    for root in (SCHEMA.query_type, SCHEMA.mutation_type):
        for name, field in root.fields.items():
            assert getattr(field.resolve, "service_calls", 0) >= 1, f"{root.name}.{name}"


def _fragment_bomb(type_name, leaf, depth=20):
    """Each fragment spreads the next twice: 2**depth copies of ``leaf`` once spread in."""
    chain = [f"fragment F{i} on {type_name} {{ ...F{i + 1} ...F{i + 1} }}" for i in range(depth)]
    return " ".join(chain + [f"fragment F{depth} on {type_name} {{ {leaf} }}"])


def _refused_quickly(query, within=0.1):
    started = time.perf_counter()
    answer = run_query({"query": query}, None)
    elapsed = time.perf_counter() - started
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"]
    assert "data" not in answer
    assert elapsed < within, f"refused after {elapsed:.3f} s"
    return answer["errors"][0]["message"]


@pytest.mark.parametrize("query", [
    "query { ...F0 } " + _fragment_bomb("Query", "__typename"),
    "query { ...F0 } " + _fragment_bomb("Query", "health { status }"),
    "query { supportPoints { items { ...F0 } } } " + _fragment_bomb("SupportPoint", "id name"),
    "query { supportPoints { items { ...F0 } } } " + _fragment_bomb("SupportPoint", "__typename"),
], ids=["root-typename", "root-health", "in-support-points", "typename-in-support-points"])
def test_a_fragment_bomb_is_refused_in_well_under_a_tenth_of_a_second(query):
    assert len(query) < 2000
    _refused_quickly(query)


def test_each_fragment_is_measured_once_so_the_check_is_linear():
    """A chain of 200 fragments, each spreading the next twice, is checked at once: measured
    per spread it would be 2**200 visits and never end. The bound tells those apart with room
    for a loaded machine (a few milliseconds on a quiet one; 0.33 s was seen with the suite's
    two processes and a build beside them)."""
    def timed(depth):
        document = parse("query { supportPoints { items { ...F0 } } } " +
                         _fragment_bomb("SupportPoint", "id", depth), max_tokens=100_000)
        started = time.perf_counter()
        with pytest.raises(BadRequest, match="fields"):
            check_query_limits(document, {}, SCHEMA)
        return time.perf_counter() - started
    assert timed(200) < 2.0


def test_a_query_within_the_node_budget_through_fragments_passes():
    # 2**9 = 512 fields once spread in: more than the page of 100, fewer than the budget
    check_query_limits(parse("query { supportPoints { items { ...F0 } } } " +
                             _fragment_bomb("SupportPoint", "id", 9)), {}, SCHEMA)
    with pytest.raises(BadRequest, match="fields"):
        check_query_limits(parse("query { supportPoints { items { ...F0 } } } " +
                                 _fragment_bomb("SupportPoint", "id", 11)), {}, SCHEMA)
    assert 2 ** 11 > MAX_NODES > 2 ** 9


def test_a_large_introspection_query_is_refused_before_it_runs():
    """65 KB of aliases inside types > fields > args once held the gateway for seconds and
    answered megabytes. Reading and validating that much text takes most of the time it
    is refused in; the limits themselves take a few milliseconds."""
    names = " ".join(f"n{i}: name" for i in range(1500))
    query = "{ __schema { types { fields { args { " + names + " } } } } }"
    assert "introspection" in _refused_quickly(query, within=1.0)
    document = parse(query)
    started = time.perf_counter()
    with pytest.raises(BadRequest, match="introspection"):
        check_query_limits(document, {}, SCHEMA)
    # a few milliseconds on a quiet machine; seconds before the limits were checked first
    assert time.perf_counter() - started < 0.5
    aliases = " ".join(f"t{i}: __typename" for i in range(MAX_NODES + 1))
    assert len("{ " + aliases + " }") > 30_000
    assert "fields" in _refused_quickly("{ " + aliases + " }", within=1.0)


def test_typename_counts_in_the_introspection_budget_with_the_lists_around_it():
    names = " ".join(f"t{i}: __typename" for i in range(MAX_INTROSPECTION_COST // 100 + 1))
    with pytest.raises(BadRequest, match="introspection or __typename"):
        check_query_limits(parse("{ supportPoints(first: 100) { items { " + names +
                                 " } } }"), {}, SCHEMA)
    fewer = " ".join(f"t{i}: __typename" for i in range(50))
    check_query_limits(parse("{ supportPoints(first: 100) { items { " + fewer + " } } }"),
                       {}, SCHEMA)


def test_the_standard_introspection_query_leaves_room_in_its_budget():
    """The schema may double before the standard introspection query reaches its budget."""
    from graphql import get_introspection_query

    from gateway.limits import _Measurer
    document = parse(get_introspection_query(descriptions=True))
    operation = document.definitions[0]
    measure = _Measurer(document, {}, SCHEMA).measure(operation.selection_set,
                                                      SCHEMA.query_type, False)
    assert measure.introspection_cost * 2 < MAX_INTROSPECTION_COST
    assert measure.nodes * 4 < MAX_NODES
