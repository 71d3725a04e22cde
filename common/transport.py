"""How a platform process talks to the broker for RPC: replies without publisher confirms
that never stop a service, and a reply listener of its own that outlives a broker restart."""
import weakref

import amqp.exceptions
import nameko.rpc
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher

from common.consumers import BrokerTolerantQueueConsumer
from common.logging import get_logger

# What a publish raises when the broker cannot be reached.
BROKER_UNREACHABLE = (OperationalError, OSError, amqp.exceptions.ConnectionError)

# A call the broker cannot take fails at once after one reconnect (a connection of the pool
# may have been closed by a broker restart), instead of retrying for seconds beyond the time
# its caller waits; the caller answers UNAVAILABLE (kombu's OperationalError).
CALL_RETRY_POLICY = {"max_retries": 1, "interval_start": 0}


class UnconfirmedPublisher(Publisher):
    use_confirms = False


class ReplyPublisher(UnconfirmedPublisher):
    """Sends RPC replies, without publisher confirms: the caller waits for the reply and has
    its own timeout, so a confirm would only add a broker round trip to every call. A reply
    the broker cannot take is lost, not the process: nameko would otherwise stop the whole
    service over one unanswered call, whose caller gets UNAVAILABLE when its timeout passes
    anyway."""

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
