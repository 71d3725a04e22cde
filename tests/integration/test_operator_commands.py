"""The operators' commands against the real broker: the init containers' wait for the queue
topology, and republishing the current state to a new consumer."""
import csv
import uuid

import pytest
from kombu import Connection

from common.events import Envelope, Subscription
from common.topology import declare_topology, subscription_queues
from ops import cli
from ops.broker import create_vhost, delete_vhost
from tests.support import operator_of


def test_the_topology_check_waits_until_every_queue_exists(amqp_uri, monkeypatch):
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    name = f"mantelzorg-topology-{uuid.uuid4().hex[:8]}"
    fresh = create_vhost(base, name)
    try:
        monkeypatch.setenv("AMQP_URI", fresh)
        assert cli.main(["declare-queues", "--check"]) == 1
        assert cli.main(["declare-queues"]) == 0
        assert cli.main(["declare-queues", "--check"]) == 0
    finally:
        delete_vhost(base, name)


@pytest.fixture
def new_consumer_queue(platform, municipalities):
    """The queue a consumer that starts only now would have for municipality.imported."""
    entry = Subscription("municipality.imported", "newcomer", "on_municipality_imported")
    config = {"AMQP_URI": platform.environ["AMQP_URI"]}
    declare_topology(config, [entry])
    yield entry.queue
    with Connection(config["AMQP_URI"]) as connection:
        channel = connection.channel()
        for queue in subscription_queues(entry, config):
            queue(channel).delete()


def drain(amqp_uri, queue):
    bodies = []
    with Connection(amqp_uri) as connection:
        simple = connection.SimpleQueue(queue)
        while True:
            try:
                message = simple.get(block=True, timeout=1)
            except simple.Empty:
                break
            bodies.append(message.payload)
            message.ack()
        simple.close()
    return bodies


def test_a_new_consumer_gets_the_current_state_and_nobody_else(
        platform, new_consumer_queue, reference_data, monkeypatch, capsys):
    operator_of(platform, monkeypatch)
    assert cli.main(["republish", "municipality.imported", "--to", new_consumer_queue]) == 0
    received = [Envelope.model_validate(body) for body in drain(platform.environ["AMQP_URI"],
                                                                 new_consumer_queue)]
    # besides events published since the queue was declared, those sent by the command
    received = [e for e in received if e.correlation_id.startswith("republish-")]
    with open(reference_data / "municipalities.csv", newline="", encoding="utf-8") as rows:
        codes = {row["gemeentecode"] for row in csv.DictReader(rows)}
    assert {e.parsed_payload().code for e in received} >= codes
    assert all(e.type == "municipality.imported" and e.source == "registry" for e in received)
    assert len({e.event_id for e in received}) == len(received)
    assert f"sent {len(received)} municipality.imported event(s)" in capsys.readouterr().out


def test_republishing_refuses_a_queue_of_another_event(platform, monkeypatch, capsys):
    operator_of(platform, monkeypatch)
    wrong = "evt-registry-support_point.updated--campaign.on_support_point_changed"
    assert cli.main(["republish", "municipality.imported", "--to", wrong]) == 2
    assert "not a queue of municipality.imported events" in capsys.readouterr().err
    assert cli.main(["republish", "no.such_event", "--to", wrong]) == 2
