"""A handler that keeps failing: its event is retried, parked, listed and replayed."""
import uuid

import pytest
from kombu import Connection
from nameko.standalone.events import get_event_exchange

from common import events
from common.events import Subscription, new_envelope
from common.consumers import handles_event
from common.dead_letters import list_dead_letters, replay_dead_letters
from common.publishing import CORRELATION_HEADER, publish
from tests.support import eventually


class Probe:
    """Fails while ``failing`` is set; records what it handled."""
    failing = True
    attempts = []
    handled = []


class ProbeService:
    name = "dead_letter_probe"

    @handles_event("support_point.deactivated")
    def on_deactivated(self, event):
        Probe.attempts.append(str(event.event_id))
        if Probe.failing:
            raise RuntimeError("the probe is told to fail")
        Probe.handled.append(str(event.event_id))


@pytest.fixture
def probe(container_factory, amqp_uri, monkeypatch):
    monkeypatch.setattr(events, "SUBSCRIPTIONS", events.SUBSCRIPTIONS + (
        Subscription("support_point.deactivated", ProbeService.name, "on_deactivated"),))
    Probe.failing, Probe.attempts, Probe.handled = True, [], []
    container = container_factory(ProbeService, {
        "AMQP_URI": amqp_uri, "EVENT_MAX_ATTEMPTS": 3, "EVENT_RETRY_DELAY_MS": 100})
    container.start()
    return container


def test_failing_event_is_parked_then_replayed(probe, amqp_uri):
    config = {"AMQP_URI": amqp_uri}
    envelope = new_envelope("support_point.deactivated", {
        "id": str(uuid.uuid4()), "name": "Opgeheven", "kind": "LOCAL",
        "municipality_code": "GM0363", "serves_municipality_codes": ["GM0363"],
        "areas": ["INFORMATION"], "active": False, "version": 2}, "test-dlq", "registry")
    event_id = str(envelope.event_id)
    with Connection(amqp_uri) as connection:
        publish(connection, envelope.model_dump(mode="json"), get_event_exchange("registry", {}),
                envelope.type, {CORRELATION_HEADER: "test-dlq"})

    parked = eventually(lambda: [d for d in list_dead_letters(config) if d["event_id"] == event_id])
    assert parked, "the event never reached the dead-letter queue"
    assert Probe.attempts.count(event_id) == 3
    assert parked[0]["attempts"] == 3
    assert "RuntimeError" in parked[0]["error"]
    assert parked[0]["queue"].endswith("--dead_letter_probe.on_deactivated")
    # listing does not consume: it is still there
    assert [d for d in list_dead_letters(config) if d["event_id"] == event_id]

    Probe.failing = False
    replayed = replay_dead_letters(config, [event_id])
    assert [r["event_id"] for r in replayed] == [event_id]
    assert eventually(lambda: event_id in Probe.handled)
    assert not [d for d in list_dead_letters(config) if d["event_id"] == event_id]


def test_malformed_event_is_parked_without_running_the_handler(probe, amqp_uri):
    config = {"AMQP_URI": amqp_uri}
    marker = str(uuid.uuid4())
    body = {"event_id": marker, "type": "support_point.deactivated", "payload": {"id": 1}}
    with Connection(amqp_uri) as connection:
        publish(connection, body, get_event_exchange("registry", {}),
                "support_point.deactivated", {})
    parked = eventually(lambda: [d for d in list_dead_letters(config) if d["event_id"] == marker])
    assert parked and "invalid envelope" in parked[0]["error"]
    assert marker not in Probe.attempts
