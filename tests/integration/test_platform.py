"""The foundation end to end: real service processes, the real broker, embedded storage."""
import re
import uuid

import requests
from kombu import Connection

from common.events import new_envelope
from common.publishing import CORRELATION_HEADER, publish
from nameko.standalone.events import get_event_exchange
from ops.platform import PROCESSES, metrics_address
from tests.support import Handled, eventually, log_lines, scrape

HEALTH = "{ health { status services { name status outboxPending } } }"


def test_every_service_reports_healthy_through_the_gateway(gql):
    answer = gql(HEALTH)
    assert "errors" not in answer
    services = {s["name"]: s["status"] for s in answer["data"]["health"]["services"]}
    assert services == {"registry": "ok", "declaration": "ok", "travel_costs": "ok",
                        "campaign": "ok", "notifications": "ok"}
    assert answer["data"]["health"]["status"] == "ok"


def test_correlation_id_from_the_gateway_reaches_the_services_logs(gql, platform):
    correlation_id = f"corr-{uuid.uuid4().hex}"
    response = gql.post(HEALTH, headers={"X-Correlation-ID": correlation_id})
    assert response.status_code == 200
    assert response.headers["X-Correlation-ID"] == correlation_id

    def seen_in(name):
        return [line for line in log_lines(platform, name)
                if line.get("correlation_id") == correlation_id]

    for name in ("gateway", "registry", "campaign"):
        lines = eventually(lambda name=name: seen_in(name))
        assert lines, f"no log line of {name} carries the correlation id"
        assert all(line["service"] == name for line in lines)


def test_one_access_line_per_http_request_with_its_status(gql, platform):
    correlation_id = f"corr-{uuid.uuid4().hex}"
    assert gql.post(HEALTH, headers={"X-Correlation-ID": correlation_id}).status_code == 200
    missing = requests.get(f"{platform.gateway_url()}/no-such-page", timeout=5,
                           headers={"X-Correlation-ID": correlation_id + "-404"})
    assert missing.status_code == 404

    def access_lines(wanted):
        return [line for line in log_lines(platform, "gateway")
                if line.get("event") == "entrypoint.completed"
                and line.get("correlation_id") == wanted]

    answered = eventually(lambda: access_lines(correlation_id))
    assert [(line["entrypoint"], line["http_status"]) for line in answered] == [("graphql", 200)]
    not_found = eventually(lambda: access_lines(correlation_id + "-404"))
    assert [(line["entrypoint"], line["http_status"]) for line in not_found] == [
        ("not_found", 404)]
    # the web server's own access lines are not written besides ours
    assert not [line for line in log_lines(platform, "gateway")
                if line.get("logger") == "nameko.web.server" and line.get("level") == "info"]


def test_the_gateways_metrics_are_on_a_port_of_their_own_not_the_public_one(platform):
    public = requests.get(f"{platform.gateway_url()}/metrics", timeout=5)
    assert public.status_code == 404 and public.json()["errors"][0]["extensions"] == {
        "code": "NOT_FOUND"}
    private = requests.get(f"http://{platform.environ['GATEWAY_METRICS_ADDRESS']}/metrics",
                           timeout=5)
    assert private.status_code == 200 and "mantelzorg_entrypoint_requests_total" in private.text


def test_gateway_creates_a_correlation_id_when_none_is_sent(gql):
    response = gql.post(HEALTH)
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["X-Correlation-ID"])


def test_registry_event_is_handled_by_the_campaign_service(rpc, platform, municipalities):
    seat = "GM0344"
    registered = Handled(platform, "campaign", "support_point.registered")
    point = rpc.registry.register_support_point({
        "name": "Steunpunt Leidsche Rijn", "kind": "LOCAL", "municipalityCode": seat,
        "address": {"street": "Brink", "houseNumber": "2", "postcode": "3543 AA",
                    "city": "Utrecht"},
        "areas": ["INFORMATION"]}, {"sub": "test", "role": "admin"})
    assert registered.grown_by(1)
    correlated = [line for line in log_lines(platform, "campaign")
                  if line.get("event") == "campaign.support_point_projected"
                  and line.get("support_point_id") == point["id"]]
    assert correlated and correlated[0]["correlation_id"]


def _publish_registered(amqp_uri, envelope):
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        publish(connection, envelope.model_dump(mode="json"),
                get_event_exchange("registry", {}), envelope.type,
                {CORRELATION_HEADER: envelope.correlation_id})


def test_an_event_delivered_twice_is_handled_once(platform, amqp_uri):
    seat = f"GM9{uuid.uuid4().int % 1000:03d}"
    metrics = f"http://{platform.environ['CAMPAIGN_WEB_ADDRESS']}/metrics"
    duplicates = ('mantelzorg_events_handled_total{outcome="duplicate",service="campaign",'
                  'type="support_point.registered"}')
    seen_before = scrape(metrics, duplicates)
    registered = Handled(platform, "campaign", "support_point.registered")
    envelope = new_envelope("support_point.registered", {
        "id": str(uuid.uuid4()), "name": "Dubbel", "kind": "LOCAL", "municipality_code": seat,
        "serves_municipality_codes": [seat], "areas": ["INFORMATION"], "active": True,
        "version": 1}, "test-duplicate", "registry")
    _publish_registered(amqp_uri, envelope)
    _publish_registered(amqp_uri, envelope)
    assert eventually(lambda: scrape(metrics, duplicates) == seen_before + 1)
    assert registered.grown_by(1)


def test_calls_move_the_red_metrics(gql, platform):
    gateway = f"http://{platform.environ['GATEWAY_METRICS_ADDRESS']}/metrics"
    registry = f"http://{platform.environ['REGISTRY_WEB_ADDRESS']}/metrics"
    graphql_ok = ('mantelzorg_entrypoint_requests_total{entrypoint="graphql",kind="http",'
                  'outcome="success",service="gateway"}')
    health_ok = ('mantelzorg_entrypoint_requests_total{entrypoint="health",kind="rpc",'
                 'outcome="success",service="registry"}')
    before = scrape(gateway, graphql_ok), scrape(registry, health_ok)
    gql(HEALTH)
    gql(HEALTH)
    assert scrape(gateway, graphql_ok) == before[0] + 2
    assert scrape(registry, health_ok) >= before[1] + 2
    text = requests.get(registry, timeout=5).text
    assert "mantelzorg_entrypoint_duration_seconds_bucket" in text
    assert "mantelzorg_outbox_pending_events" in text


def test_every_process_has_frozen_its_startup_heap(platform):
    """Full garbage collections then skip the imported libraries: no ~100 ms pauses."""
    for process in PROCESSES:
        name, address = process.name, metrics_address(process, platform.environ)
        frozen = scrape(f"http://{address}/metrics",
                        f'mantelzorg_gc_frozen_objects{{service="{name}"}}')
        assert frozen > 10_000, f"{name} froze {frozen} objects"
