"""The gateway's HTTP surface: every answer is JSON, limits and bad requests included."""
import json

import requests

from tests.support import (error_codes, personal_data_in, personal_email, random_bsn,
                           random_iban, token)


def test_a_body_over_one_mebibyte_is_refused_with_413(gql):
    padding = "x" * (1024 * 1024)
    response = requests.post(gql.url, data=json.dumps({"query": "{ health { status } }",
                                                       "variables": {"pad": padding}}),
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert error_codes(response.json()) == ["BAD_USER_INPUT"]


def test_a_body_that_is_not_json_is_a_json_error(gql):
    response = requests.post(gql.url, data="query=health", timeout=10)
    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_USER_INPUT"]


def test_syntax_errors_and_unknown_fields_are_bad_user_input(gql):
    assert error_codes(gql("{ health { status ")) == ["BAD_USER_INPUT"]
    answer = gql("{ nonsense }")
    assert error_codes(answer) == ["BAD_USER_INPUT"]
    assert "Traceback" not in json.dumps(answer)


def test_a_too_deep_query_never_reaches_a_resolver(gql):
    fields = " ".join(f"h{i}: health {{ status }}" for i in range(51))
    assert error_codes(gql("{ " + fields + " }")) == ["BAD_USER_INPUT"]


def test_an_invalid_token_is_unauthenticated_and_a_valid_one_is_accepted(gql):
    response = gql.post("{ health { status } }", token="not-a-jwt")
    assert response.status_code == 401
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]
    assert "errors" not in gql("{ health { status } }", token=token("admin"))


def test_graphiql_is_served_for_humans(gql):
    page = requests.get(gql.url, timeout=10)
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_an_unknown_path_is_answered_without_an_html_stack_trace(gql):
    response = requests.get(gql.url.replace("/graphql", "/no-such-page"), timeout=10)
    assert response.status_code == 404
    assert error_codes(response.json()) == ["NOT_FOUND"]


def test_options_and_unknown_methods_are_answered_with_json(gql):
    options = requests.options(gql.url, timeout=10)
    assert options.status_code == 200
    assert options.headers["Content-Type"].startswith("application/json")
    assert {"GET", "POST", "OPTIONS"} <= set(options.json()["methods"])
    assert "Access-Control-Allow-Origin" not in options.headers
    for method in ("PUT", "DELETE", "PATCH", "TRACE", "PURGE"):
        response = requests.request(method, gql.url, timeout=10)
        assert response.status_code == 405, method
        assert error_codes(response.json()) == ["BAD_USER_INPUT"], method
        assert "POST" in response.headers["Allow"]
    unknown = requests.request("PURGE", gql.url.replace("/graphql", "/nothing"), timeout=10)
    assert unknown.status_code == 404 and error_codes(unknown.json()) == ["NOT_FOUND"]


def test_no_origin_may_call_from_a_browser_unless_configured(gql):
    preflight = requests.options(gql.url, timeout=10, headers={
        "Origin": "https://portal.example.nl", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403
    assert error_codes(preflight.json()) == ["FORBIDDEN"]
    answer = gql.post("{ health { status } }", headers={"Origin": "https://portal.example.nl"})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_the_schema_is_served_as_sdl(gql):
    from gateway.schema import schema
    from graphql import build_schema, print_schema

    response = requests.get(f"{gql.url}/schema.graphql", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert print_schema(build_schema(response.text)) == print_schema(
        build_schema(print_schema(schema.graphql_schema)))


def test_the_standard_introspection_query_is_answered(gql):
    from graphql import build_client_schema, get_introspection_query

    answer = gql(get_introspection_query(descriptions=True))
    assert "errors" not in answer
    assert "requestDeclaration" in build_client_schema(answer["data"]).mutation_type.fields


def test_an_error_about_nothing_the_client_sent_names_no_field(gql):
    answer = gql('{ supportPointHistory(id: "no-such-point") { version } }', token=token("admin"))
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "NOT_FOUND"}


def test_health_detail_is_for_admin_only(gql):
    query = "{ health { services { name outboxPending } } }"
    admin = gql(query, token=token("admin"))["data"]["health"]["services"]
    assert all(isinstance(s["outboxPending"], int) for s in admin)
    for anyone in (None, token("partner"), token("municipality", municipality="GM0363")):
        services = gql(query, token=anyone)["data"]["health"]["services"]
        assert all(s["outboxPending"] is None for s in services)


def test_one_request_cannot_fan_out_into_many_service_calls(gql):
    points = " ".join(f'p{i}: supportPoint(id: "{i}") {{ id }}' for i in range(50))
    answer = gql("{ " + points + " }")
    assert error_codes(answer) == ["BAD_USER_INPUT"] and "expensive" in answer["errors"][0]["message"]
    healths = " ".join(f"h{i}: health {{ status }}" for i in range(10))
    assert error_codes(gql("{ " + healths + " }")) == ["BAD_USER_INPUT"]


def test_input_errors_never_repeat_what_the_client_sent(gql):
    bsn, email, iban = random_bsn(), personal_email(), random_iban()
    spaced = f"{bsn[:3]} {bsn[3:6]} {bsn[6:]}"
    request = """mutation($input: DeclarationRequestInput!) {
        requestDeclaration(input: $input) { id } }"""
    sent = {"municipalityCode": "GM0363",
            "caregiver": {"bsn": spaced, "postcode": "1012 AB", "email": email, "iban": iban},
            "careRecipient": {"name": "B", "postcode": "1012 AB", "relationship": "parent"},
            "hoursPerWeek": iban, "careSince": email, "purposes": ["OTHER"]}
    answer = gql(request, {"input": sent}, token=token("municipality", municipality="GM0363"))
    assert [(e["message"].split(":")[0], e["extensions"]["field"]) for e in answer["errors"]] == [
        ("input.caregiver.name", "input.caregiver.name"),
        ("input.caregiver", "input.caregiver"),
        ("input.hoursPerWeek", "input.hoursPerWeek"),
        ("input.careSince", "input.careSince")]
    literal = request.replace("$input: DeclarationRequestInput!", "").replace("()", "") \
        .replace("input: $input", 'input: {municipalityCode: "GM0363", caregiver: {bsn: "%s", '
                 'postcode: "1012 AB", email: "%s"}, careRecipient: {name: "B", postcode: '
                 '"1012 AB", relationship: "p"}, hoursPerWeek: "%s", careSince: "2020-01-01", '
                 'purposes: [OTHER]}' % (spaced, email, iban))
    second = gql(literal, token=token("municipality", municipality="GM0363"))
    assert {e["extensions"]["field"] for e in second["errors"]} == {
        "input.caregiver.name", "input.hoursPerWeek"}
    for text in (json.dumps(answer), json.dumps(second)):
        assert personal_data_in(text) == []


def test_graphql_answers_are_never_cached_nor_sniffed(gql):
    for response in (gql.post("{ health { status } }"), gql.post("{ nonsense }"),
                     requests.post(gql.url, data="not json", timeout=10)):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"].startswith("application/json")
    other = requests.get(gql.url.replace("/graphql", "/no-such-page"), timeout=10)
    assert other.headers["X-Content-Type-Options"] == "nosniff"


def test_a_deeply_nested_json_body_is_bad_user_input_not_an_internal_error(gql):
    for body in ("[" * 100_000 + "]" * 100_000,
                 '{"query": "{ health { status } }", "variables": {"v": ' + "[" * 100_000 +
                 "]" * 100_000 + "}}",
                 '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = requests.post(gql.url, data=body, timeout=10,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text[:200]
        assert error_codes(response.json()) == ["BAD_USER_INPUT"]
        assert "Traceback" not in response.text and "Recursion" not in response.text


def test_a_fragment_bomb_is_refused_at_once_while_others_are_answered(gql):
    import threading
    import time

    from tests.unit.test_limits import _fragment_bomb

    bomb = "query { supportPoints { items { ...F0 } } } " + _fragment_bomb("SupportPoint", "id name")
    answers = []
    attackers = [threading.Thread(target=lambda: answers.append(gql(bomb))) for _ in range(10)]
    started = time.monotonic()
    for attacker in attackers:
        attacker.start()
    health = requests.get(gql.url.replace("/graphql", "/health"), timeout=5)
    for attacker in attackers:
        attacker.join()
    assert health.status_code == 200
    assert time.monotonic() - started < 2.0
    assert [error_codes(answer) for answer in answers] == [["BAD_USER_INPUT"]] * 10
