"""CORS and the JSON answers of the gateway's web server, on a stand-in route."""
import pytest
from werkzeug.routing import Map, Rule
from werkzeug.test import Client
from werkzeug.wrappers import Response

from gateway.server import JsonWsgiApp, allowed_origins

PORTAL = "https://portal.example.nl"


class Route:
    def handle_request(self, request):
        return Response('{"data": {}}', mimetype="application/json")


class Server:
    def make_url_map(self):
        route = Rule("/graphql", methods=["POST", "GET"])
        route.endpoint = Route()
        return Map([route])


def _client(setting):
    return Client(JsonWsgiApp(Server(), allowed_origins(setting)))


def test_allowed_origins_are_read_from_a_comma_separated_setting():
    assert allowed_origins(None) == allowed_origins("") == frozenset()
    assert allowed_origins(f" {PORTAL}/ , https://b.example ") == {PORTAL, "https://b.example"}


def test_a_preflight_from_an_allowed_origin_is_answered():
    response = _client(PORTAL).options("/graphql", headers={
        "Origin": PORTAL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 200 and response.is_json
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin"


def test_an_answer_to_an_allowed_origin_carries_the_cors_headers():
    response = _client(PORTAL).post("/graphql", headers={"Origin": PORTAL})
    assert response.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "X-Correlation-ID" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("setting", [None, "https://other.example"])
def test_other_origins_get_no_cors_headers_and_their_preflight_is_forbidden(setting):
    client = _client(setting)
    preflight = client.options("/graphql", headers={
        "Origin": PORTAL, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403
    assert preflight.json["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "Access-Control-Allow-Origin" not in client.post(
        "/graphql", headers={"Origin": PORTAL}).headers


def test_any_origin_with_a_star():
    response = _client("*").post("/graphql", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://anyone.example"


def test_methods_and_paths_without_a_route_are_answered_with_json():
    client = _client(None)
    refused = client.open("/graphql", method="BREW")
    assert refused.status_code == 405 and refused.is_json
    assert set(refused.headers["Allow"].split(", ")) >= {"GET", "POST"}
    missing = client.open("/elsewhere", method="OPTIONS")
    assert missing.status_code == 404 and missing.json["errors"][0]["extensions"] == {
        "code": "NOT_FOUND"}
