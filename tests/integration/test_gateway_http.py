"""The gateway's HTTP surface: every answer is JSON, limits and bad requests included."""
import json

import requests

from tests.support import error_codes, token


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
