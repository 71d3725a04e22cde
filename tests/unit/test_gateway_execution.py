"""How the gateway runs a request against its services: independent root fields ask their
services at the same time, one deadline bounds the whole request, and health's detail is
for admin only. The services are stand-ins here; the real ones are in tests/integration."""
import time

import eventlet

from common.config import SERVICE_NAMES
from gateway.auth import ANONYMOUS, Principal
from gateway.context import GraphQLContext
from gateway.executor import run_query


class Services:
    """RPC proxies whose calls answer after ``delay`` seconds (never, with None), counting
    how many are under way at once."""

    def __init__(self, delay):
        self.delay = delay
        self.running = 0
        self.most_at_once = 0
        self.calls = []
        self.expiries = []
        self.request_ids = []

    def __getattr__(self, service):
        owner = self

        class Method:
            def __init__(self, method):
                self.method = method

            def call_async(self, *args, **kwargs):
                owner.calls.append((service, self.method))
                owner.running += 1
                owner.most_at_once = max(owner.most_at_once, owner.running)
                return Reply(service, self.method)

        class Reply:
            def __init__(self, service_name, method):
                self.answer = {"health": {"status": "ok", "outbox_pending": 3},
                               "get_support_point": None}[method]
                self.done = False

            def result(self):
                try:
                    eventlet.sleep(60 if owner.delay is None else owner.delay)
                    return self.answer
                finally:
                    owner.running -= 1

        def expiring(_self, method, seconds, actor, request_id=None):
            owner.expiries.append(seconds)
            owner.request_ids.append(request_id)
            return Method(method)

        return type("Proxy", (), {"expiring": expiring})()


def _run(query, services, principal=ANONYMOUS, timeout=10, deadline=15):
    return run_query({"query": query},
                     GraphQLContext(services, principal, timeout, deadline_seconds=deadline))


POINTS = "{ a: supportPoint(id: \"1\") { id } b: supportPoint(id: \"2\") { id } " \
         "c: supportPoint(id: \"3\") { id } }"


def test_independent_root_fields_ask_their_services_at_the_same_time():
    services = Services(delay=0.2)
    answer = _run(POINTS, services)
    assert answer == {"data": {"a": None, "b": None, "c": None}}
    assert services.most_at_once == 3


def test_health_asks_every_service_at_once():
    services = Services(delay=0.2)
    answer = _run("{ health { status } }", services)
    assert answer["data"]["health"]["status"] == "ok"
    assert services.most_at_once == len(SERVICE_NAMES)


def test_mutations_stay_one_after_another():
    services = Services(delay=0.05)
    _run('mutation { a: deactivateSupportPoint(id: "1", reason: "x") { id } '
         'b: deactivateSupportPoint(id: "2", reason: "x") { id } }', services,
         principal=Principal(sub="a", role="admin"))
    assert services.most_at_once == 1


def test_one_deadline_bounds_the_whole_request_when_a_service_does_not_answer():
    services = Services(delay=None)
    started = time.monotonic()
    answer = _run(POINTS, services, timeout=10, deadline=0.3)
    waited = time.monotonic() - started
    assert waited < 10, "the request waited for the call's own timeout, not its deadline"
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"UNAVAILABLE"}
    assert all("took longer than 0.3 s" in e["message"] for e in answer["errors"])


def test_a_service_that_does_not_answer_makes_health_degraded_not_slow():
    services = Services(delay=None)
    answer = _run("{ health { status services { name status } } }", services, deadline=15)
    assert answer["data"]["health"]["status"] == "degraded"
    assert {s["status"] for s in answer["data"]["health"]["services"]} == {"unavailable"}


def test_the_unpublished_events_of_health_are_for_admin_only():
    query = "{ health { services { name outboxPending } } }"
    for principal, expected in ((Principal(sub="a", role="admin"), 3), (ANONYMOUS, None),
                                (Principal(sub="p", role="partner"), None),
                                (Principal(sub="m", role="municipality",
                                           municipality="GM0363"), None)):
        services = _run(query, Services(delay=0), principal)["data"]["health"]["services"]
        assert {s["outboxPending"] for s in services} == {expected}, principal.role


def test_every_call_expires_when_its_caller_stops_waiting():
    services = Services(delay=0)
    _run(POINTS, services, timeout=4, deadline=15)
    assert len(services.expiries) == 3
    assert all(3.5 < seconds <= 4 for seconds in services.expiries)
    services = Services(delay=0)
    _run(POINTS, services, timeout=4, deadline=1)   # the request's deadline comes first
    assert all(0.5 < seconds <= 1 for seconds in services.expiries)


def test_the_calls_of_a_request_with_a_request_identity_each_carry_their_own():
    """Numbered per method in the order the calls are made: a retried request numbers them
    alike; a request without an Idempotency-Key sends none."""
    services = Services(delay=0)
    context = GraphQLContext(services, ANONYMOUS, timeout=4)
    for method in ("get_support_point", "get_support_point", "health"):
        context.call("registry", method, "p1")
    assert services.request_ids == [None] * 3
    context.request_id = "r"
    for method in ("get_support_point", "get_support_point", "health"):
        context.call("registry", method, "p1")
    assert services.request_ids[3:] == ["r:registry.get_support_point:1",
                                        "r:registry.get_support_point:2", "r:registry.health:1"]
