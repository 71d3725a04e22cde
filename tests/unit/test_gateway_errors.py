"""How the gateway answers when a service fails or does not answer, or the broker is away."""
from types import SimpleNamespace

import eventlet
import kombu.utils.functional
import pytest
from graphql import GraphQLError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError

from common.calls import CallSigner
from common.errors import BadUserInput, Conflict
from common.transport import TolerantReplyListener
from gateway.errors import format_error
from gateway.context import ExpiringServiceProxy, GraphQLContext
from gateway.service import GatewayService
from tests.conftest import free_port


class SilentService:
    """An RPC proxy whose replies never come, like a service that is down."""

    class method:
        @staticmethod
        def call_async(*args, **kwargs):
            class Reply:
                def result(self):
                    eventlet.sleep(60)
            return Reply()


class Gateway:
    registry = type("Proxy", (), {"expiring": lambda self, method, seconds, actor, request_id=None: SilentService.method})()


def test_a_service_that_does_not_answer_is_unavailable_not_a_hang():
    context = GraphQLContext(Gateway(), principal=None, timeout=0.2)
    with pytest.raises(TimeoutError) as raised:
        context.call("registry", "health")
    entry = format_error(GraphQLError("x", original_error=raised.value, path=["health"]))
    assert entry["extensions"] == {"code": "UNAVAILABLE"}
    assert entry["path"] == ["health"]


class GatewayWithoutBroker:
    """The gateway's own proxy to the registry in a worker whose broker does not answer: its
    port is closed, as while RabbitMQ restarts."""

    def __init__(self):
        worker = SimpleNamespace(context_data={}, container=SimpleNamespace(
            config={"AMQP_URI": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}))
        listener = TolerantReplyListener()
        listener.routing_key = "gateway-replies"
        self.registry = ExpiringServiceProxy(worker, "registry", listener,
                                             CallSigner("gateway", Ed25519PrivateKey.generate()),
                                             **GatewayService.registry.options)


def test_a_call_the_broker_cannot_take_is_unavailable_within_its_timeout(monkeypatch):
    waits = []   # kombu's waits between its attempts to reconnect and publish again
    monkeypatch.setattr(kombu.utils.functional, "sleep", waits.append)
    context = GraphQLContext(GatewayWithoutBroker(), principal=None, timeout=3)
    with pytest.raises(OperationalError) as raised:
        context.call("registry", "health")
    entry = format_error(GraphQLError("x", original_error=raised.value, path=["health"]))
    assert entry["extensions"] == {"code": "UNAVAILABLE"}
    assert sum(waits) < 3   # it does not keep the caller past its RPC timeout


def test_domain_errors_keep_their_code_and_field():
    entry = format_error(GraphQLError("x", original_error=BadUserInput(
        "input.caregiver.bsn: is not a valid BSN", field="input.caregiver.bsn")))
    assert entry["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.caregiver.bsn"}
    assert format_error(GraphQLError("x", original_error=Conflict("stale")))["extensions"]["code"] == "CONFLICT"


def test_unexpected_failures_say_nothing_of_their_inside():
    leaked = RemoteError("KeyError", "mongodb://db:27017 collection declarations bsn 111222333")
    entry = format_error(GraphQLError("x", original_error=leaked))
    assert entry == {"message": "internal error", "extensions": {"code": "INTERNAL"}}
    entry = format_error(GraphQLError("x", original_error=ValueError("secret detail")))
    assert entry["message"] == "internal error"
