"""GraphiQL is a page for people trying the API; a production gateway serves it only when
an operator turns it on. Here a gateway of its own with the setting off."""
import requests

from tests.conftest import lone_gateway


def test_a_gateway_with_graphiql_off_answers_not_found_and_still_serves_graphql(tmp_path):
    with lone_gateway(tmp_path, GATEWAY_GRAPHIQL="false") as gateway:
        page = requests.get(f"{gateway['site']}/graphql", timeout=10)
        assert page.status_code == 404 and "graphiql" not in page.text.lower()
        assert page.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        answer = requests.post(f"{gateway['site']}/graphql", json={"query": "{ __typename }"},
                               timeout=10)
        assert answer.json() == {"data": {"__typename": "Query"}}
