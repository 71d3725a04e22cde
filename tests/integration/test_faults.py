"""Faults as an operator meets them, on a platform and RabbitMQ node of these tests' own: a
service killed with SIGKILL in the middle of its work, the broker restarted under load.
Whatever a caller was told succeeded exists exactly once afterwards, with exactly one event;
whatever failed failed with UNAVAILABLE, and asked again with the same Idempotency-Key it
gets the first answer when it was done and is done now when it was not; the services
reconnect by themselves. (A node failing in a cluster: test_broker_cluster.py.)"""
import collections
import contextlib
import dataclasses
import os
import signal
import uuid

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.errors import BadUserInput
from common.topology import declare_topology
from ops import reference
from ops.platform import process_named
from tests.conftest import free_port, running_platform
from tests.integration.test_declaration import DECIDE, request_input
from tests.rabbit_node import RabbitNode, require_installed
from tests.support import (Caregiver, GraphQLClient, Handled, drain, error_codes, eventually,
                           fund_knows_areas, token, trip)

AMSTERDAM = "GM0363"
STAFF = {"sub": "staff-fault", "role": "municipality", "municipality": AMSTERDAM}
HEALTH = "{ health { status services { name status } } }"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    require_installed()
    with RabbitNode(tmp_path_factory.mktemp("rabbit"), free_port(), free_port()) as node:
        yield node


@contextlib.contextmanager
def platform_under_fault(amqp_uri, tmp_path_factory):
    """Every service and the gateway on the broker at ``amqp_uri``, with the demo's
    municipalities and PC4 areas known to the services that need them; the gateway gives up
    on a call after 3 s, so that failed calls answer quickly."""
    declare_topology({"AMQP_URI": amqp_uri})
    with running_platform(amqp_uri, tmp_path_factory,
                          GATEWAY_RPC_TIMEOUT_SECONDS="3") as running:
        with running.rpc(timeout=60) as rpc:
            reference.import_reference(rpc, reference.DEMO_DIR)
            assert eventually(lambda: known_to_declarations(rpc, AMSTERDAM), timeout=30)
            assert fund_knows_areas(rpc, reference.DEMO_DIR / "pc4.csv")
        yield running


@pytest.fixture(scope="module")
def faulty(rabbit, tmp_path_factory):
    """The platform on the tests' own broker node."""
    with platform_under_fault(rabbit.amqp_uri, tmp_path_factory) as running:
        yield running


def known_to_declarations(rpc, code):
    """The declaration service has had the municipality's event."""
    try:
        return rpc.declaration.municipality_settings(code)
    except BadUserInput:
        return None


@pytest.fixture(scope="module")
def clients(faulty):
    """An RPC proxy into the tests' own platform and a GraphQL client of its gateway."""
    with faulty.rpc(timeout=30) as rpc:
        yield rpc, GraphQLClient(f"{faulty.gateway_url()}/graphql")


class EventProbe:
    """A durable queue of the test's own that keeps every ``event`` of ``source`` from now on,
    also across a broker restart; each look opens a connection of its own."""

    def __init__(self, amqp_uri, source, event):
        self.amqp_uri = amqp_uri
        self.queue = Queue(f"fault-probe-{uuid.uuid4().hex[:8]}", routing_key=event,
                           exchange=get_event_exchange(source, {}), durable=True)

    def __enter__(self):
        with Connection(self.amqp_uri) as connection:
            self.queue(connection.channel()).declare()
        return self

    def __exit__(self, *_exc):
        with Connection(self.amqp_uri) as connection:
            self.queue(connection.channel()).delete()

    def received(self):
        """The bodies that arrived since the last look."""
        with Connection(self.amqp_uri) as connection:
            return drain(self.queue(connection.channel()))

    def event_ids_by(self, field, expected, of=lambda payload: True, timeout=60):
        """{payload[field]: its event ids} of the events whose payload is ``of`` the test,
        once ``expected`` values have arrived, and a second later for anything sent twice.
        An outbox relay killed or cut off between publishing and forgetting an event sends
        that same event again, which consumers drop: the same id twice is one event. (It
        does so when its claim on the event runs out, which may be in the next test.)"""
        seen = collections.defaultdict(set)

        def arrived():
            for body in self.received():
                if of(body["payload"]):
                    seen[body["payload"][field]].add(body["event_id"])
            return len(seen) >= expected
        assert eventually(arrived, timeout=timeout), f"{len(seen)} of {expected} events"
        eventlet.sleep(1)
        arrived()
        return seen


def outcome(answer, field):
    """("ok", data) or ("failed", the error codes)."""
    if answer.get("errors"):
        return "failed", tuple(error_codes(answer))
    return "ok", answer["data"][field]


def start_again(platform, name):
    """Starts the killed process ``name`` again, as its supervisor would."""
    platform.children[name].wait()
    platform.start_process(process_named(name))
    platform.wait_until_healthy(names=[name])


def test_a_decision_killed_with_sigkill_is_done_exactly_once(faulty, clients, rabbit):
    rpc, gateway = clients
    declarations = [rpc.declaration.request_declaration(request_input(AMSTERDAM), STAFF)
                    for _ in range(60)]
    staff = token("municipality", STAFF["sub"], municipality=AMSTERDAM)
    keys = {declaration["id"]: uuid.uuid4().hex for declaration in declarations}
    first_answer = eventlet.Event()

    def decide(declaration_id):
        return outcome(gateway(DECIDE, {"id": declaration_id, "decision": "ISSUE"},
                               token=staff, headers={"Idempotency-Key": keys[declaration_id]}),
                       "decideDeclaration")

    def first_decision(declaration_id):
        answer = decide(declaration_id)
        if not first_answer.ready():
            first_answer.send()
        return declaration_id, answer

    with EventProbe(rabbit.amqp_uri, "declaration", "declaration.issued") as issued:
        answers = eventlet.GreenPool(len(declarations)).imap(first_decision, list(keys))
        first_answer.wait()
        os.kill(faulty.children["declaration"].pid, signal.SIGKILL)   # the others at work
        results = dict(answers)
        start_again(faulty, "declaration")

        failed = {id_: codes for id_, (kind, codes) in results.items() if kind == "failed"}
        assert failed and len(failed) < len(results), "the kill fell outside the decisions"
        assert set(failed.values()) == {("UNAVAILABLE",)}
        # Every decision asked again with its key: one that succeeded answers exactly as it
        # did; one that failed was done before the kill (and answers what it was told then)
        # or not at all (and is done now). Either way it succeeds, once.
        retried = dict(eventlet.GreenPool(10).imap(lambda id_: (id_, decide(id_)), list(keys)))
        assert {id_: kind for id_, (kind, _) in retried.items()} == dict.fromkeys(keys, "ok")
        assert all(retried[id_] == answer for id_, answer in results.items() if answer[0] == "ok")
        assert all(retried[d["id"]][1]["reference"] == d["reference"] for d in declarations)

        for declaration in declarations:
            stored = rpc.declaration.declaration(declaration["reference"], STAFF)
            assert stored["status"] == "ISSUED", results[declaration["id"]]
            assert [h["action"] for h in stored["history"]] == ["request", "issue"]

        references = {d["reference"] for d in declarations}
        events = issued.event_ids_by("reference", len(declarations),
                                     of=lambda payload: payload["reference"] in references)
        assert sorted(events) == sorted(references)
        assert all(len(event_ids) == 1 for event_ids in events.values())


@dataclasses.dataclass(frozen=True)
class Submission:
    """One claim of one trip of its own (so that no other is a CONFLICT with it), sent with an
    Idempotency-Key of its own."""
    caregiver: Caregiver
    to_postcode: str
    key: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def send(self):
        """("ok", the claim) or ("failed", the error codes)."""
        return outcome(self.caregiver.claim(trip(toPostcode=self.to_postcode),
                                            idempotency_key=self.key), "submitTravelClaim")

    @property
    def trip(self):
        return self.caregiver.reference, self.to_postcode


def submissions(caregivers, count):
    """``count`` claims of the caregivers in turn (claims sent at the same time are mostly of
    different caregivers, as in life, and not in each other's way), each caregiver's to
    another destination: 3511 AA, 3511 AB, ..."""
    def destination(number):
        return f"3511 {chr(65 + number // 26)}{chr(65 + number % 26)}"
    return [Submission(caregivers[n % len(caregivers)], destination(n // len(caregivers)))
            for n in range(count)]


def stored_claims(caregivers):
    """Every claim the caregivers have, by its trip (declaration, destination)."""
    stored = collections.defaultdict(list)
    for caregiver in caregivers:
        for claim in caregiver.mine():
            [its_trip] = claim["trips"]
            stored[claim["declarationReference"], its_trip["toPostcode"]].append(claim["id"])
    return stored


def claims_of(caregivers):
    """Whether a claim's event payload is of one of the caregivers."""
    references = {caregiver.reference for caregiver in caregivers}
    return lambda payload: payload["declaration_reference"] in references


def test_a_claim_killed_with_sigkill_is_done_exactly_once(faulty, clients, rabbit):
    _rpc, gateway = clients
    caregivers = [Caregiver(gateway) for _ in range(10)]
    sent = submissions(caregivers, 50)   # as many as the gateway takes at once
    first_answer = eventlet.Event()

    def submit(submission):
        answer = submission.send()
        if not first_answer.ready():
            first_answer.send()
        return submission, answer

    with EventProbe(rabbit.amqp_uri, "travel_costs", "travel_claim.submitted") as submitted:
        answers = eventlet.GreenPool(len(sent)).imap(submit, sent)
        first_answer.wait()
        os.kill(faulty.children["travel_costs"].pid, signal.SIGKILL)   # the others at work
        results = dict(answers)
        start_again(faulty, "travel_costs")

        failed = [s for s, (kind, _) in results.items() if kind == "failed"]
        assert failed and len(failed) < len(results), "the kill fell outside the claims"
        assert {results[s][1] for s in failed} == {("UNAVAILABLE",)}
        # The caller asks again with the same key. An accepted claim answers exactly as it
        # did the first time and runs nothing again. A failed one was done before the kill
        # (and answers the claim it stored then) or not at all (and is done now): every one
        # is accepted, once.
        retried = dict(eventlet.GreenPool(10).imap(
            lambda submission: (submission, submission.send()), sent))
        assert {s: kind for s, (kind, _) in retried.items()} == dict.fromkeys(sent, "ok")
        assert all(retried[s] == answer for s, answer in results.items() if answer[0] == "ok")
        accepted = {s: claim["id"] for s, (_kind, claim) in retried.items()}

        stored = stored_claims(caregivers)
        assert sorted(stored) == sorted(s.trip for s in sent)       # none lost, none extra
        assert {trip_: ids for trip_, ids in stored.items()} == \
            {s.trip: [claim_id] for s, claim_id in accepted.items()}

        events = submitted.event_ids_by("id", len(sent), of=claims_of(caregivers))
        assert sorted(events) == sorted(ids[0] for ids in stored.values())
        assert all(len(event_ids) == 1 for event_ids in events.values())


def sent_under_fault(requests, fault, after, at_once):
    """{request: its outcome} of ``requests`` (each with ``send()``), ``at_once`` of them at
    a time, with ``fault()`` made once ``after`` of them were answered."""
    answered = []

    def send(request):
        answer = request.send()
        answered.append(request)
        return request, answer

    def when_under_way():
        assert eventually(lambda: len(answered) >= after, timeout=120)
        fault()

    faulting = eventlet.spawn(when_under_way)
    results = dict(eventlet.GreenPool(at_once).imap(send, requests))
    faulting.wait()
    return results


def restart(rabbit):
    rabbit.stop_app()
    eventlet.sleep(1)
    rabbit.start_app()


def test_a_broker_restart_under_load_loses_no_claim_that_was_accepted(faulty, clients, rabbit):
    rpc, gateway = clients
    caregivers = [Caregiver(gateway) for _ in range(10)]
    sent = submissions(caregivers, 200)

    with EventProbe(rabbit.amqp_uri, "travel_costs", "travel_claim.submitted") as submitted:
        results = sent_under_fault(sent, lambda: restart(rabbit), after=40, at_once=10)

        accepted = {s: claim["id"] for s, (kind, claim) in results.items() if kind == "ok"}
        failures = collections.Counter(codes for kind, codes in results.values()
                                       if kind == "failed")
        assert set(failures) <= {("UNAVAILABLE",)}, failures   # never silently, never otherwise
        assert accepted, "nothing was accepted"
        # The services and the gateway reconnected by themselves: all answer, and then (as a
        # client retries once the platform is back) ...
        health = []
        assert eventually(lambda: health.append(gateway(HEALTH)) or
                          health[-1].get("data", {}).get("health", {}).get("status") == "ok",
                          timeout=60), health[-1]
        # ... asked again with its key, each failed claim is either found done (the claim
        # stored before its reply was lost) or done now: accepted once, whatever happened.
        for submission in [s for s in sent if s not in accepted]:
            kind, claim = submission.send()
            assert kind == "ok", claim
            accepted[submission] = claim["id"]

        # A declaration's event reaches the fund, a new claim is accepted and announced.
        fund_issued = Handled(faulty, "travel_costs", "declaration.issued")
        newcomer = Caregiver(gateway)
        assert fund_issued.grown_by(1, timeout=30)
        late = Submission(newcomer, "3511 AA")
        kind, claim = late.send()
        assert kind == "ok", claim
        accepted[late] = claim["id"]

        stored = stored_claims([*caregivers, newcomer])
        assert stored == {s.trip: [claim_id] for s, claim_id in accepted.items()}
        # Every stored claim was announced once: the outbox relays reconnected too.
        events = submitted.event_ids_by("id", len(stored), of=claims_of([*caregivers, newcomer]))
        assert sorted(events) == sorted(ids[0] for ids in stored.values())
        assert all(len(event_ids) == 1 for event_ids in events.values())
