"""The broker as a cluster, on three RabbitMQ nodes of this test's own (own names, ports and
data folders, clustered), with every platform queue a quorum queue (the virtual host's
default queue type, as production's default_queue_type) and every process given all three
nodes in AMQP_URI: the node holding the queue leaders is killed with SIGKILL while travel
claims and declaration decisions come in through the gateway. Every request answered with
success exists exactly once with exactly one event; every other one failed with UNAVAILABLE
and, asked again with its Idempotency-Key, is done exactly once now or answers what was
done; the processes fail over to the other nodes and go on without a restart."""
import collections
import uuid

import eventlet
import pytest

from ops.platform import PROCESSES
from tests.conftest import free_port
from tests.integration.test_declaration import DECIDE, request_input
from tests.integration.test_faults import (AMSTERDAM, HEALTH, STAFF, EventProbe, Submission,
                                           claims_of, outcome, platform_under_fault,
                                           sent_under_fault, stored_claims, submissions)
from tests.rabbit_node import RabbitCluster, require_installed
from tests.support import Caregiver, GraphQLClient, eventually, token

CLAIMS = DECISIONS = 200
SERVICE_QUEUES = {"rpc-declaration", "rpc-travel_costs"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_installed()
    with RabbitCluster(tmp_path_factory.mktemp("cluster"), free_port) as running:
        yield running


@pytest.fixture(scope="module")
def clustered(cluster, tmp_path_factory):
    """The platform with the three nodes in AMQP_URI."""
    with platform_under_fault(cluster.amqp_uri, tmp_path_factory) as running:
        yield running


class Decision:
    """The decision to issue one declaration, sent with an Idempotency-Key of its own."""

    def __init__(self, gateway, declaration):
        self.gateway = gateway
        self.declaration = declaration
        self.key = uuid.uuid4().hex

    def send(self):
        return outcome(self.gateway(DECIDE, {"id": self.declaration["id"], "decision": "ISSUE"},
                                    token=token("municipality", STAFF["sub"],
                                                municipality=AMSTERDAM),
                                    headers={"Idempotency-Key": self.key}),
                       "decideDeclaration")


def test_every_queue_is_a_quorum_queue_replicated_on_the_cluster(clustered, cluster):
    queues = cluster.queues()
    names = set(queues)
    assert {f"rpc-{process.name}" for process in PROCESSES if process.name != "gateway"} <= names
    assert any(name.startswith("rpc.reply-gateway-") for name in names)
    assert {kind for kind, _leader in queues.values()} == {"quorum"}


def test_losing_the_node_of_the_queue_leaders_loses_and_doubles_nothing(clustered, cluster):
    gateway = GraphQLClient(f"{clustered.gateway_url()}/graphql")
    pids = {name: child.pid for name, child in clustered.children.items()}
    caregivers = [Caregiver(gateway) for _ in range(10)]
    claims = submissions(caregivers, CLAIMS)
    with clustered.rpc(timeout=30) as rpc:
        decisions = [Decision(gateway, rpc.declaration.request_declaration(
            request_input(AMSTERDAM), STAFF)) for _ in range(DECISIONS)]
    leaders = collections.Counter(leader for name, (_kind, leader) in cluster.queues().items()
                                  if name in SERVICE_QUEUES)
    [(leader_name, _count)] = leaders.most_common(1)
    leader = cluster.node_named(leader_name)

    requests = [item for pair in zip(claims, decisions) for item in pair]

    with EventProbe(cluster.amqp_uri, "travel_costs", "travel_claim.submitted") as submitted, \
            EventProbe(cluster.amqp_uri, "declaration", "declaration.issued") as issued:
        results = sent_under_fault(requests, leader.kill, after=60, at_once=20)
        leader.pid = None        # gone: the other two carry on
        assert cluster.queues()[next(iter(SERVICE_QUEUES))][1] != leader_name

        failures = collections.Counter(codes for kind, codes in results.values()
                                       if kind == "failed")
        assert set(failures) <= {("UNAVAILABLE",)}, failures
        accepted = {r: answer for r, (kind, answer) in results.items() if kind == "ok"}
        assert len(accepted) > len(requests) // 2, failures

        # No process was restarted: each failed over to another node by itself.
        assert {name: child.pid for name, child in clustered.children.items()} == pids
        assert all(child.poll() is None for child in clustered.children.values())
        health = []
        assert eventually(lambda: health.append(gateway(HEALTH)) or
                          health[-1].get("data", {}).get("health", {}).get("status") == "ok",
                          timeout=60), health[-1]

        # What succeeded was done once. What failed is absent, or was done before its reply
        # was lost: asked again with its key, it is done now or answers what was done, and
        # never twice.
        stored = stored_claims(caregivers)
        for claim, (kind, answer) in results.items():
            if isinstance(claim, Submission) and kind == "ok":
                assert stored[claim.trip] == [answer["id"]]
        retried = dict(eventlet.GreenPool(10).imap(
            lambda request: (request, request.send()), [r for r in requests if r not in accepted]))
        assert {kind for kind, _answer in retried.values()} <= {"ok"}, retried
        for request, (_kind, answer) in retried.items():
            if isinstance(request, Submission) and request.trip in stored:
                assert stored[request.trip] == [answer["id"]]   # done before, the same claim
            accepted[request] = answer

        stored = stored_claims(caregivers)
        assert stored == {c.trip: [accepted[c]["id"]] for c in claims}
        with clustered.rpc(timeout=30) as rpc:
            for decision in decisions:
                declaration = rpc.declaration.declaration(decision.declaration["reference"],
                                                          STAFF)
                assert accepted[decision]["reference"] == declaration["reference"]
                assert declaration["status"] == "ISSUED"
                assert [h["action"] for h in declaration["history"]] == ["request", "issue"]

        claim_events = submitted.event_ids_by("id", len(claims), of=claims_of(caregivers),
                                              timeout=120)
        assert sorted(claim_events) == sorted(ids[0] for ids in stored.values())
        assert all(len(event_ids) == 1 for event_ids in claim_events.values())
        references = {d.declaration["reference"] for d in decisions}
        decision_events = issued.event_ids_by(
            "reference", len(references), of=lambda payload: payload["reference"] in references,
            timeout=120)
        assert sorted(decision_events) == sorted(references)
        assert all(len(event_ids) == 1 for event_ids in decision_events.values())

        # And new work is accepted on the two nodes left.
        newcomer = Caregiver(gateway)
        kind, claim = Submission(newcomer, "3511 AA").send()
        assert kind == "ok", claim
