"""The listener for the replies to a process's own RPC calls, through a broker restart: a reply
acknowledged on a connection the broker has just reset still reaches its caller and does not
stop the process, and a caller that stopped waiting leaves nothing behind. (On the real broker:
tests/integration/test_faults.py restarts it under load.)"""
import gc
import importlib
import inspect
from types import SimpleNamespace

from nameko.rpc import RpcProxy

from common.transport import TolerantReplyListener
from ops.platform import PROCESSES

REPLY = {"result": {"status": "ok"}, "error": None}


class Reply:
    """A reply message as the broker delivers it."""

    def __init__(self, correlation_id, connection_reset=False):
        self.properties = {"correlation_id": correlation_id}
        self.channel = SimpleNamespace(connection=object())
        self.connection_reset = connection_reset
        self.acknowledged = False

    def ack(self):
        if self.connection_reset:   # what the socket raises once the broker went away
            raise ConnectionResetError(104, "Connection reset by peer")
        self.acknowledged = True


def test_a_reply_acknowledged_on_a_reset_connection_still_reaches_its_caller():
    listener = TolerantReplyListener()
    waiting = listener.get_reply_event("call-1")
    listener.handle_message(REPLY, Reply("call-1", connection_reset=True))   # raises nothing
    assert waiting.ready() and waiting.wait() == REPLY


def test_a_caller_that_stopped_waiting_leaves_nothing_behind():
    listener = TolerantReplyListener()
    waiting = listener.get_reply_event("waiting")
    for number in range(100):   # their callers timed out and went on: no reply will come
        listener.get_reply_event(f"given-up-{number}")
    gc.collect()
    assert list(listener._reply_events) == ["waiting"]

    late = Reply("given-up-7")
    listener.handle_message(REPLY, late)   # acknowledged and dropped
    assert late.acknowledged and not waiting.ready()
    listener.handle_message(REPLY, Reply("waiting"))
    assert waiting.wait() == REPLY and list(listener._reply_events) == []


def test_every_rpc_proxy_of_every_process_uses_it():
    proxies = {}
    for process in PROCESSES:
        module, name = process.target.split(":")
        service = getattr(importlib.import_module(module), name)
        proxies.update({f"{name}.{attribute}": proxy for attribute, proxy
                        in inspect.getmembers(service, lambda m: isinstance(m, RpcProxy))})
    assert "GatewayService.travel_costs" in proxies and "TravelCostsService.declaration" in proxies
    assert {name for name, proxy in proxies.items()
            if not isinstance(proxy.rpc_reply_listener, TolerantReplyListener)} == set()
