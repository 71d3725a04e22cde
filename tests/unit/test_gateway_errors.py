"""How the gateway answers when a service fails or does not answer."""
import eventlet
import pytest
from graphql import GraphQLError
from nameko.exceptions import RemoteError

from common.errors import BadUserInput, Conflict
from gateway.errors import format_error
from gateway.context import GraphQLContext


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
    registry = type("Proxy", (), {"expiring": lambda self, method, seconds: SilentService.method})()


def test_a_service_that_does_not_answer_is_unavailable_not_a_hang():
    context = GraphQLContext(Gateway(), principal=None, timeout=0.2)
    with pytest.raises(TimeoutError) as raised:
        context.call("registry", "health")
    entry = format_error(GraphQLError("x", original_error=raised.value, path=["health"]))
    assert entry["extensions"] == {"code": "UNAVAILABLE"}
    assert entry["path"] == ["health"]


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
