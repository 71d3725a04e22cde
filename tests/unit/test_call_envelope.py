"""The envelope of an RPC call as a service checks it (common/calls.py): the deadline with its
allowed clock skew, and who makes the call — an assertion signed by the gateway or the
operator, bound to service, method and call, or a platform service's proven broker user.
(On the real broker: tests/integration/test_call_deadlines.py, test_broker_permissions.py.)"""
import importlib
import threading
import time
from types import SimpleNamespace

import nameko.rpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nameko.containers import ServiceContainer
from nameko.rpc import Rpc

from common.calls import (ASSERTION_KEY, CALL_ID_KEY, DEADLINE_KEY, AtMostOnceRpcConsumer,
                          CallIdentities, CallRefused, CallSigner, CallsTaken, DeadlineAtStart,
                          PlatformRpc, Remembered, onward_envelope, system_actor)
from common.errors import Unavailable
from common.publishing import BrokerUsers
from ops.platform import PROCESSES

GATEWAY, OPERATOR = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
CAREGIVER = {"sub": "cg-1", "role": "caregiver", "bsn": "123456782"}
USERS = {"registry": "u-registry", "declaration": "u-declaration",
         "travel_costs": "u-travel-costs", "campaign": "u-campaign",
         "notifications": "u-notifications", "operator": "u-operator"}


def identities(service="declaration"):
    checker = CallIdentities()
    checker.public_keys = {"gateway": GATEWAY.public_key(), "operator": OPERATOR.public_key()}
    checker.skew = 1.0
    checker.users = BrokerUsers(USERS, "u-own")
    checker.service = service
    checker.used = Remembered()
    checker.lock = threading.Lock()
    return checker


def headers(envelope):
    return {f"nameko.{key}": value for key, value in envelope.items()}


def gateway_call(service="declaration", method="my_declarations", seconds=5, key=GATEWAY):
    return headers(CallSigner("gateway", key).headers(service, method, seconds, actor=CAREGIVER))


def test_the_gateways_assertion_gives_the_actor_of_its_own_call_once():
    checker = identities()
    call = gateway_call()
    assert checker.actor("my_declarations", call, None, [None], {}) == ("gateway", CAREGIVER)
    with pytest.raises(CallRefused) as again:
        checker.actor("my_declarations", call, None, [None], {})
    assert again.value.reason == "replayed"


@pytest.mark.parametrize("method, call, reason", [
    ("request_declaration", gateway_call, "binding"),                        # another method
    ("my_declarations", lambda: gateway_call(service="campaign"), "binding"),  # another service
    ("my_declarations", lambda: {**gateway_call(), f"nameko.{CALL_ID_KEY}": "other"}, "binding"),
    ("my_declarations", lambda: gateway_call(key=Ed25519PrivateKey.generate()), "signature"),
    ("my_declarations", lambda: gateway_call(seconds=-5), "signature"),      # long expired
])
def test_an_assertion_for_anything_else_is_refused(method, call, reason):
    with pytest.raises(CallRefused) as refused:
        identities().actor(method, call(), None, [None], {})
    assert refused.value.reason == reason
    assert refused.value.error.code == "UNAUTHENTICATED"


def test_the_operators_assertion_binds_the_arguments_as_they_are():
    checker = identities()
    signer = CallSigner("operator", OPERATOR)
    args = [{"municipalityCode": "GM0363"}, CAREGIVER]
    call = headers(signer.headers("declaration", "request_declaration", 5, args=args, kwargs={}))
    with pytest.raises(CallRefused) as changed:
        checker.actor("request_declaration", call, None,
                      [args[0], {**CAREGIVER, "bsn": "111222333"}], {})
    assert changed.value.reason == "arguments"
    call = headers(signer.headers("declaration", "request_declaration", 5, args=args, kwargs={}))
    assert checker.actor("request_declaration", call, None, args, {}) == ("operator", None)


def test_an_unsigned_call_is_its_services_own_or_refused():
    checker = identities()
    assert checker.actor("claim_eligibility", {}, "u-travel-costs", [], {}) == (
        "system:travel_costs", system_actor("travel_costs"))
    for user in (None, "u-someone-else"):
        with pytest.raises(CallRefused) as refused:
            checker.actor("claim_eligibility", {}, user, [], {})
        assert refused.value.reason == "unsigned"


def test_an_onward_call_takes_the_assertion_only_where_it_was_bound_to_it():
    call = gateway_call("travel_costs", "submit_travel_claim")
    inherited = {key.removeprefix("nameko."): value for key, value in call.items()}
    onward = onward_envelope(10, "declaration", "claim_eligibility", (), {}, inherited)
    assert onward[ASSERTION_KEY] == inherited[ASSERTION_KEY]
    assert onward[DEADLINE_KEY] == inherited[DEADLINE_KEY]   # never later than its own call's
    checker = identities()
    with pytest.raises(CallRefused):   # passed on by someone else than the fund
        checker.actor("claim_eligibility", headers(onward), "u-campaign", [], {})
    assert checker.actor("claim_eligibility", headers(onward), "u-travel-costs", [], {}) == (
        "gateway", CAREGIVER)
    # to any other method the service calls as itself: no assertion, its own deadline
    other = onward_envelope(1, "declaration", "declaration", (), {}, inherited)
    assert ASSERTION_KEY not in other and other[DEADLINE_KEY] < inherited[DEADLINE_KEY]


def test_a_call_is_refused_once_its_deadline_and_the_clock_skew_have_passed():
    checker = identities()
    assert not checker.expired({})
    assert not checker.expired({f"nameko.{DEADLINE_KEY}": time.time() - 0.5})
    assert checker.expired({f"nameko.{DEADLINE_KEY}": time.time() - 1.5})
    assert checker.expired({f"nameko.{DEADLINE_KEY}": "not a time"})


def test_every_rpc_entrypoint_of_every_service_is_the_platforms():
    """At most once, the deadline and the proven caller are not a patch of nameko: every
    service method is declared with common.calls.rpc, and only health is open to anyone."""
    entrypoints = []
    for process in PROCESSES:
        module, _, name = process.target.partition(":")
        container = ServiceContainer(getattr(importlib.import_module(module), name),
                                     {"AMQP_URI": "memory://"})
        entrypoints += [e for e in container.entrypoints if isinstance(e, Rpc)]
    assert len(entrypoints) > 30
    assert [e.method_name for e in entrypoints if type(e) is not PlatformRpc] == []
    assert {e.method_name for e in entrypoints if e.open} == {"health"}


def test_a_call_that_waited_for_a_worker_past_its_deadline_is_refused_as_it_starts():
    class Service:
        def request_declaration(self):
            return "done"

    def started(deadline):
        entrypoint = PlatformRpc()
        entrypoint.method_name = "request_declaration"
        entrypoint.container = SimpleNamespace(service_name="declaration")
        entrypoint.identities = identities()
        worker = SimpleNamespace(entrypoint=entrypoint, service=Service(),
                                 data={DEADLINE_KEY: deadline})
        DeadlineAtStart().worker_setup(worker)
        return worker.service

    assert started(time.time() + 5).request_declaration() == "done"
    with pytest.raises(Unavailable):
        started(time.time() - 5).request_declaration()
    assert Service().request_declaration() == "done"   # other workers are not touched


def test_a_method_for_one_service_refuses_every_other_caller():
    entrypoints = {e.method_name: e for process in PROCESSES
                   for e in ServiceContainer(getattr(importlib.import_module(
                       process.target.partition(":")[0]), process.target.partition(":")[2]),
                       {"AMQP_URI": "memory://"}).entrypoints
                   if isinstance(e, Rpc) and e.callers}
    assert set(entrypoints) == {"notice_recipient", "claim_notice"}
    assert {e.callers for e in entrypoints.values()} == {("notifications",)}


def test_only_the_named_service_may_call_a_method_for_it():
    class Service:
        def notice_recipient(self, reference):
            return reference

    def received(user_id, headers=None):
        entrypoint = PlatformRpc(callers=("notifications",))
        entrypoint.method_name = "notice_recipient"
        ran, refused = [], []
        entrypoint.container = SimpleNamespace(
            service_name="declaration", service_cls=Service,
            spawn_worker=lambda *args, **kwargs: ran.append(args))
        entrypoint.rpc_consumer = SimpleNamespace(refuse=lambda message, error: refused.append(
            error.code))
        entrypoint.identities = identities()
        entrypoint.actor_position = None
        message = SimpleNamespace(headers=headers or {}, properties={"user_id": user_id})
        entrypoint.handle_message({"args": ["MZ-1"], "kwargs": {}}, message)
        return "ran" if ran else refused

    assert received("u-notifications") == "ran"
    assert received("u-campaign") == ["FORBIDDEN"]
    assert received(None, gateway_call("declaration", "notice_recipient")) == ["FORBIDDEN"]


def test_an_operators_call_passes_on_to_the_onward_calls_it_names():
    """A fund's claim made by the operator's command: the declaration is asked by the fund,
    with the fund's arguments, under the operator's assertion of the first call."""
    signer = CallSigner("operator", OPERATOR)
    call = signer.headers("travel_costs", "submit_travel_claim", 5,
                          args=[{"trips": []}, CAREGIVER], kwargs={})
    onward = onward_envelope(10, "declaration", "claim_eligibility", (), {}, call)
    assert identities().actor("claim_eligibility", headers(onward), "u-travel-costs",
                              ["MZV-1", [], CAREGIVER], {}) == ("operator", None)


def delivery(correlation_id, deadline, reply_to="rpc.reply-gateway-1"):
    return SimpleNamespace(properties={"correlation_id": correlation_id, "reply_to": reply_to},
                           headers={f"nameko.{DEADLINE_KEY}": deadline},
                           delivery_info={"routing_key": "declaration.my_declarations"})


def test_a_call_published_twice_is_taken_once_until_its_deadline_has_passed():
    taken = CallsTaken(skew=1.0)
    soon = time.time() + 5
    assert taken.first_time(delivery("c-1", soon))
    assert not taken.first_time(delivery("c-1", soon))                  # its second copy
    assert taken.first_time(delivery("c-2", soon))                      # another call
    assert taken.first_time(delivery("c-1", soon, reply_to="rpc.reply-fund-1"))   # another caller
    assert taken.first_time(delivery("c-3", time.time() - 2))
    taken.first_time(delivery("c-4", soon))                             # forgets what has expired
    assert ("rpc.reply-gateway-1", "c-3") not in taken.taken
    assert ("rpc.reply-gateway-1", "c-1") in taken.taken


def test_the_second_delivery_of_a_call_is_acknowledged_and_neither_run_nor_answered(
        monkeypatch):
    handled, acknowledged = [], []
    monkeypatch.setattr(nameko.rpc.RpcConsumer, "handle_message",
                        lambda self, body, message: handled.append(message))
    consumer = AtMostOnceRpcConsumer()
    consumer.calls_taken = CallsTaken(skew=1.0)
    consumer.__dict__["queue_consumer"] = SimpleNamespace(ack_message=acknowledged.append)
    first, second = delivery("c-1", time.time() + 5), delivery("c-1", time.time() + 5)
    consumer.handle_message({}, first)
    consumer.handle_message({}, second)
    assert handled == [first] and acknowledged == [second]


def test_a_remembered_key_is_forgotten_once_its_time_has_passed_and_not_before():
    remembered = Remembered()
    remembered.add(("c-1", "declaration.decide"), until=100.0)
    remembered.add((None, "c-2"), until=100.0)      # the same time, a key of another shape
    remembered.add(("c-3", "declaration.decide"), until=200.0)
    remembered.forget_passed(now=150.0)
    assert ("c-1", "declaration.decide") not in remembered and (None, "c-2") not in remembered
    assert ("c-3", "declaration.decide") in remembered
