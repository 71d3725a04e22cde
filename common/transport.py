"""How a platform process talks to the broker for RPC: calls and replies confirmed by the
broker within a second, or sent once more on a fresh connection; replies that never stop a
service; and a reply listener of its own that outlives a broker restart."""
import weakref

import amqp.exceptions
import kombu.pools
from kombu.entity import TRANSIENT_DELIVERY_MODE
import nameko.rpc
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.constants import DEFAULT_TRANSPORT_OPTIONS

from common.consumers import BrokerTolerantQueueConsumer
from common.logging import get_logger

# What a publish raises when the broker cannot be reached.
BROKER_UNREACHABLE = (OperationalError, OSError, amqp.exceptions.ConnectionError)

# A call the broker cannot take fails at once after one reconnect (a connection of the pool
# may have been closed by a broker restart), instead of retrying for seconds beyond the time
# its caller waits; the caller answers UNAVAILABLE (kombu's OperationalError).
CALL_RETRY_POLICY = {"max_retries": 1, "interval_start": 0}

# How long a call or a reply waits for the broker's confirm before it goes once more on a
# fresh connection. On RabbitMQ 3.10 a channel that published to a quorum queue whose leader's
# node was lost may stay silent for good (nothing it publishes there is delivered or
# confirmed) while a new connection reaches the same queue; a confirm timing out is how a
# publisher tells. A call may so arrive twice: the service drops the second
# (common/calls.py, ``AtMostOnceRpcConsumer``), the caller a second reply.
RPC_CONFIRM_TIMEOUT_SECONDS = 1.0

# Producers a process may hold at once per broker connection setting (kombu's default is 10):
# each call holds one until its confirm comes, and the gateway runs 50 requests at once.
kombu.pools.set_limit(max(kombu.pools.get_limit(), 50))


class RpcPublisher(Publisher):
    """Publishes a call or a reply and waits for the broker's confirm, at most
    RPC_CONFIRM_TIMEOUT_SECONDS; without one, once more on a fresh connection (to the next
    node), then it fails (kombu's OperationalError)."""

    use_confirms = True
    # Not written to disk by a classic queue before it is confirmed, which halves the wait
    # for the confirm. A call or reply the broker loses in a restart fails its caller with
    # UNAVAILABLE after its timeout, as one lost in any other way does; on quorum queues
    # every message is kept by the replicas anyway.
    delivery_mode = TRANSIENT_DELIVERY_MODE
    retry_policy = CALL_RETRY_POLICY
    # Its own: nameko sets ``confirm_publish`` in the class's dict on every publish, and the
    # producers' pool is chosen by these options.
    transport_options = {**DEFAULT_TRANSPORT_OPTIONS, "confirm_publish": True}

    def publish(self, payload, **kwargs):
        kwargs.setdefault("confirm_timeout", RPC_CONFIRM_TIMEOUT_SECONDS)
        super().publish(payload, **kwargs)


class ReplyPublisher(RpcPublisher):
    """Sends RPC replies. A reply the broker cannot take is lost, not the process: nameko
    would otherwise stop the whole service over one unanswered call, whose caller gets
    UNAVAILABLE when its timeout passes anyway."""

    def publish(self, payload, **kwargs):
        try:
            super().publish(payload, **kwargs)
        except BROKER_UNREACHABLE as error:
            get_logger().warning("rpc.reply_lost", error=type(error).__name__)


class ReplyQueueConsumer(BrokerTolerantQueueConsumer):
    """The replies' own consumer, with a connection of its own. Shared with the incoming
    calls, a reply waits behind them for the channel's prefetch window: a service calling
    another while it handles 20 calls at once then took over a second per call."""


class TolerantReplyListener(nameko.rpc.ReplyListener):
    """Receives the replies to the process's own RPC calls (the gateway's, a service's call
    to another) and outlives a broker restart:

    - acknowledging a reply on a connection the broker has just reset neither stops the
      process (nameko's own consumer would) nor keeps the reply from its caller;
    - the table of awaited replies keeps a call only while its caller waits: a call whose
      reply never comes (its caller answered UNAVAILABLE) leaves nothing behind.

    It reconnects as every consumer of the process does, with kombu's growing delay."""

    queue_consumer = ReplyQueueConsumer()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # correlation id -> the event its caller waits on, as long as the caller holds it
        self._reply_events = weakref.WeakValueDictionary()
