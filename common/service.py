"""What every nameko service of the platform has: correlated logs, RED metrics on
``GET /metrics``, a heap the garbage collector need not walk, a ``health`` RPC, and, for
services with data, the outbox relay."""
import gc
import inspect
import uuid
import weakref

import amqp.exceptions
import eventlet
import nameko.rpc
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.exceptions import IncorrectSignature
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer
from nameko.web.handlers import http

from common.errors import BadUserInput, Unavailable
from common.logging import CorrelatedLogging, get_logger
from common.messaging import BrokerTolerantQueueConsumer, EventOutbox
from common.metrics import (FROZEN_OBJECTS, RPC_REDELIVERIES_REFUSED, EntrypointMetrics,
                            metrics_response)
from common.storage import RequestsOnce


class UnconfirmedPublisher(Publisher):
    use_confirms = False


# What a publish raises when the broker cannot be reached.
BROKER_UNREACHABLE = (OperationalError, OSError, amqp.exceptions.ConnectionError)


class ReplyPublisher(UnconfirmedPublisher):
    """Sends RPC replies. A reply the broker cannot take is lost, not the process: nameko
    would otherwise stop the whole service over one unanswered call, whose caller gets
    UNAVAILABLE when its timeout passes anyway."""

    def publish(self, payload, **kwargs):
        try:
            super().publish(payload, **kwargs)
        except BROKER_UNREACHABLE as error:
            get_logger().warning("rpc.reply_lost", error=type(error).__name__)


# RPC replies go without publisher confirms: the caller waits for the reply and has its own
# timeout, so a confirm would only add a broker round trip to every call. nameko offers the
# responder's publisher class as the place to choose this.
nameko.rpc.Responder.publisher_cls = ReplyPublisher


class AtMostOnceRpcConsumer(nameko.rpc.RpcConsumer):
    """Runs a call at most once. The broker hands a call out again only when the process it
    went to died or lost its connection before answering (SIGKILL, a broker restart): by then
    the work may be done, and running it again could do it twice. So a redelivered call is
    answered UNAVAILABLE without running; the caller, told it failed, may look and ask again."""

    queue_consumer = BrokerTolerantQueueConsumer()

    def handle_message(self, body, message):
        if message.delivery_info.get("redelivered"):
            method = message.delivery_info.get("routing_key", "")
            RPC_REDELIVERIES_REFUSED.labels(self.container.service_name, method).inc()
            get_logger().warning("rpc.redelivery_refused", method=method)
            refusal = Unavailable("the call was interrupted and may have been done; "
                                  "check before asking again")
            self.handle_result(message, None, (Unavailable, refusal, None))
            return
        super().handle_message(body, message)


# Every @rpc entrypoint of a platform service shares this consumer (a class attribute that
# nameko binds per container), so no service opts out by forgetting to.
nameko.rpc.Rpc.rpc_consumer = AtMostOnceRpcConsumer()


class SignatureReadOnce:
    """An entrypoint's check that a call fits its method, with the method's signature read
    once: nameko's own check (``inspect.getcallargs``) reads it anew for every call, 7 % of
    the gateway's CPU per request in a profile."""

    def check_signature(self, args, kwargs):
        signature = self.__dict__.get("_signature")
        if signature is None:
            signature = inspect.signature(getattr(self.container.service_cls, self.method_name))
            self._signature = signature
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc)) from None


# Every @rpc entrypoint checks its calls so, as the gateway's HTTP entrypoints do.
nameko.rpc.Rpc.check_signature = SignatureReadOnce.check_signature


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


# Every RPC proxy of a platform process uses it, as every @rpc entrypoint uses the consumer
# above.
nameko.rpc.RpcProxy.rpc_reply_listener = TolerantReplyListener()

# A call the broker cannot take fails at once after one reconnect (a connection of the pool
# may have been closed by a broker restart), instead of retrying for seconds beyond the time
# its caller waits; the caller answers UNAVAILABLE (kombu's OperationalError).
CALL_RETRY_POLICY = {"max_retries": 1, "interval_start": 0}


def ask(proxy, method, *args, timeout, service):
    """An RPC call of one service to another that answers UNAVAILABLE instead of waiting
    for ever, or when the broker cannot take it; the callee's refusals pass on as they are."""
    try:
        reply = getattr(proxy, method).call_async(*args)
    except BROKER_UNREACHABLE:
        raise Unavailable(f"the {service} service cannot be reached; try again later") from None
    with eventlet.Timeout(timeout, False):
        return reply.result()
    raise Unavailable(f"the {service} service did not answer; try again later")


class StartupHeapFreeze(DependencyProvider):
    """Once the service has started, everything that exists then (imported libraries, the
    GraphQL schema, configuration) is moved out of the collector's sight with ``gc.freeze``.
    Otherwise every full collection walks all of it and stops the whole process, every
    request in it included, for about 100 ms; after this it walks only what requests keep."""

    def start(self):
        gc.collect()
        gc.freeze()
        FROZEN_OBJECTS.labels(self.container.service_name).set(gc.get_freeze_count())


class InstrumentedService:
    """Logging, metrics and the frozen heap; the subclass chooses where ``/metrics`` is
    served (PlatformService on its web address, the gateway on an address of its own)."""
    log = CorrelatedLogging()
    metrics = EntrypointMetrics()
    startup_heap = StartupHeapFreeze()


class PlatformService(InstrumentedService):
    """Subclasses set ``name`` and ``store = Storage(<the service's store class>)``, and
    ``republishable`` when they publish events."""

    @http("GET", "/metrics")
    def prometheus_metrics(self, request):
        return metrics_response()

    outbox = EventOutbox()
    # Each mutation is done once per request identity: ``@once_per_request`` under its
    # ``@rpc`` (common.storage).
    once = RequestsOnce()
    # The events the service can send again from what it stores, for a new consumer:
    # {event type: (collection, payload of a stored document, field values to select)}.
    # A document's ``updated_at``, when it has one, is the time its event says it occurred.
    republishable = {}

    @rpc
    def health(self):
        return {
            "service": self.name,
            "status": "ok" if self.store.ping() else "degraded",
            "outbox_pending": self.outbox.pending(),
        }

    @rpc
    def republish(self, event_type, queue, after=None, limit=500):
        """One batch of the current state as ``event_type`` events, sent only to ``queue``:
        a consumer's queue of that event (``mantelzorg republish`` walks every batch). The
        events are new (new ids); a consumer that had the state already changes nothing."""
        if event_type not in self.republishable:
            raise BadUserInput(f"event_type: {self.name} does not republish {event_type!r}",
                               field="event_type")
        if not str(queue).startswith(f"evt-{self.name}-{event_type}--"):
            raise BadUserInput(f"queue: not a queue of {event_type} events", field="queue")
        collection, payload, equal = self.republishable[event_type]
        if not self.outbox.queue_exists(queue):
            raise BadUserInput(f"queue: {queue} does not exist", field="queue")
        documents = self.store.page(collection, after, limit, **equal)
        # Each event keeps the time of the document's last change: a consumer that orders by
        # event time never lets this older news overwrite a change made meanwhile.
        sent = self.outbox.send_to_queue(
            event_type, [(payload(d), d.get("updated_at")) for d in documents], queue,
            f"republish-{uuid.uuid4()}")
        self.log.info("events.republished", event_type=event_type, queue=queue, sent=sent)
        return {"sent": sent, "next": documents[-1]["_id"] if len(documents) == limit else None}

    @timer(interval=1.0)
    def relay_outbox(self):
        # Picks up what a worker could not publish right after its transaction.
        try:
            self.outbox.relay()
        except BROKER_UNREACHABLE as error:   # one line a second, until it answers again
            self.log.warning("outbox.broker_unreachable", error=type(error).__name__)
