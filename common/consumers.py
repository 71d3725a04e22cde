"""Reliable event handlers: each receives a validated envelope from a proven publisher,
changes nothing twice (the service's inbox), retries a failing event with growing delays and
finally parks it in the dead-letter queue instead of dropping it. Fields it does not know are
ignored (see common/events.py)."""
from nameko.events import EventHandler
from nameko.messaging import QueueConsumer
from pydantic import ValidationError

from common import clock, metrics
from common.events import Envelope, event_type, subscription
from common.logging import get_logger, redact_text
from common.publishing import OPERATOR, broker_users, publish
from common.topology import (broker, dead_letter_exchange, declare_topology, retry_delays_ms,
                             retry_exchange, retry_queue_name)

ATTEMPTS_HEADER = "x-mantelzorg-attempts"
ORIGIN_HEADER = "x-mantelzorg-queue"
ERROR_HEADER = "x-mantelzorg-error"
FAILED_AT_HEADER = "x-mantelzorg-failed-at"
REFUSED_HEADER = "x-mantelzorg-publisher-refused"   # never replayed
EVENT_OUTCOMES = ("handled", "duplicate", "retried", "dead_lettered", "refused")

log = get_logger()


# How long the consume loop waits on the connection before it looks at its own state again.
# A stop waits for two such looks (one cancels the consumers, the next ends the loop): with
# kombu's one second every process took two seconds to stop on SIGTERM.
CONSUME_LOOK_SECONDS = 0.1


class BrokerTolerantQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that acknowledging on a connection the broker has
    just reset does not stop the service (nameko only expects amqp's own ConnectionError
    there). The message was not acknowledged: the broker hands it out again after the
    consumer reconnects. It stops within a fraction of a second (CONSUME_LOOK_SECONDS)."""

    def consume(self, *args, **kwargs):
        kwargs["safety_interval"] = CONSUME_LOOK_SECONDS
        return super().consume(*args, **kwargs)

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except OSError:
            log.warning("amqp.ack_lost")

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except OSError:
            log.warning("amqp.requeue_lost")


def trusted_publishers(config, source, consumer):
    """The broker users an event of ``source`` may come from at ``consumer``: the source's
    own; the consumer's own (its retries, which it sent after checking the first delivery);
    the operator's (a replayed dead letter, a republished state)."""
    users = broker_users(config)
    return {users[source], users[consumer], users[OPERATOR]}


class ReliableEventHandler(EventHandler):
    """A nameko event handler that receives a validated Envelope from the service that owns
    the event's type (RabbitMQ's validated ``user_id``), retries a failing event with
    growing delays and finally parks it in the dead-letter queue instead of dropping it."""

    queue_consumer = BrokerTolerantQueueConsumer()

    def __init__(self, event, **kwargs):
        super().__init__(event_type(event).source, event, **kwargs)

    def setup(self):
        service = self.container.service_name
        self.subscription = subscription(self.event_type, service, self.method_name)
        self.retry_delays = retry_delays_ms(self.container.config)
        self.connection = broker(self.container.config)
        self.publishers = trusted_publishers(self.container.config, self.source_service, service)
        declare_topology(self.container.config, [self.subscription], consumer=True)
        # Every outcome's series exists from the start at 0: an alert on
        # increase(...dead_lettered...) also sees the first event a process parks.
        for outcome in EVENT_OUTCOMES:
            metrics.EVENTS_HANDLED.labels(service, self.event_type, outcome)
        super().setup()

    def stop(self):
        super().stop()
        self.connection.release()

    def handle_message(self, body, message):
        if message.properties.get("user_id") not in self.publishers:
            # Not from the service that owns the event: parked for an operator to look at,
            # never handled (and never replayed: the replay checks the same).
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type,
                                          "refused").inc()
            log.error("event.publisher_refused", event_type=self.event_type)
            self._park(message, body, "not published by the event's owner", attempts=1,
                       refused=True)
            self.queue_consumer.ack_message(message)
            return
        try:
            envelope = Envelope.received(body)
            envelope.parsed_payload()
            if envelope.type != self.event_type or envelope.source != self.source_service:
                raise ValueError("the envelope names another type or source than its route")
        except (ValidationError, ValueError) as exc:
            self._park(message, body, f"invalid envelope: {_reason(exc)}", attempts=1)
            self.queue_consumer.ack_message(message)
            return
        super().handle_message(envelope, message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            self._retry_or_park(message, exc_info)
        elif result is False:
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type, "duplicate").inc()
        else:
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type, "handled").inc()
        self.queue_consumer.ack_message(message)
        return result, exc_info

    def _retry_or_park(self, message, exc_info):
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 1))
        error = redact_text(f"{exc_info[0].__name__}: {exc_info[1]}")[:500]
        service = self.container.service_name
        if attempts <= len(self.retry_delays):
            delay = self.retry_delays[attempts - 1]
            headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts + 1}
            # Into the queue that waits that long, then hands it back to the subscription's.
            publish(self.connection, message.payload, retry_exchange(service),
                    retry_queue_name(self.subscription, delay), headers)
            metrics.EVENTS_HANDLED.labels(service, self.event_type, "retried").inc()
            log.warning("event.retry", event_type=self.event_type, attempts=attempts,
                        retry_in_ms=delay, error=error)
        else:
            self._park(message, message.payload, error, attempts)

    def _park(self, message, body, error, attempts, refused=False):
        headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts, REFUSED_HEADER: refused,
                   ORIGIN_HEADER: self.subscription.queue, ERROR_HEADER: error,
                   FAILED_AT_HEADER: clock.now().isoformat()}
        publish(self.connection, body, dead_letter_exchange(), "", headers)
        if not refused:   # a refusal is counted as such, not as a failing handler
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type,
                                          "dead_lettered").inc()
        log.error("event.dead_lettered", event_type=self.event_type, attempts=attempts, error=error)


def _reason(error):
    """Why a body was refused, without the values it carried."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in error.errors(include_input=False))[:300]
    return redact_text(str(error))[:300]


handles_event = ReliableEventHandler.decorator

