"""Publishing events, and proving who published them.

Every message a platform process publishes carries RabbitMQ's ``user_id`` property set to the
broker user the process connects as; the broker refuses a message whose ``user_id`` is not
the connection's own user, so a consumer can trust it. ``BROKER_USERS`` tells every process
which broker user each platform process connects as (``<process>=<user>`` pairs, comma
separated; ``operator`` for the ``mantelzorg`` command). Unset, every process is taken to
connect as the process's own user (development: one user for all).
"""
import threading
import time

from amqp import spec
from kombu import Connection, Exchange, Producer
from kombu.pools import producers
from nameko.standalone.events import get_event_exchange

from common import config as settings
from common.events import is_consumed
from common.logging import CORRELATION_KEY

CORRELATION_HEADER = f"nameko.{CORRELATION_KEY}"   # nameko turns it into context data
OPERATOR = "operator"
# A publish that cannot reach the broker gives up after a few tries; the relay's timer
# tries again, so no worker waits for the broker's return.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
# How long a publish waits for the broker's confirm. It holds the publisher's one channel,
# and every worker's relay waits behind it: without a limit, a confirm lost with a broker
# node stopped every worker of the service.
CONFIRM_TIMEOUT_SECONDS = 5.0


def connection_user(connection_or_config):
    """The broker user a connection (or the process of a config) connects as."""
    if isinstance(connection_or_config, Connection):
        return connection_or_config.userid
    return Connection(settings.amqp_uri(connection_or_config)).userid


class BrokerUsers(dict):
    """{process name: broker user}; a process not named connects as this process's user."""

    def __init__(self, named, own):
        super().__init__(named)
        self.own = own

    def __missing__(self, name):
        return self.own


def broker_users(config=None):
    """The broker users of ``BROKER_USERS`` (``<process>=<user>``, comma separated)."""
    named = {}
    for item in (settings.setting(config, "BROKER_USERS") or "").split(","):
        process, _, user = item.strip().partition("=")
        if process and user:
            named[process.strip()] = user.strip()
    return BrokerUsers(named, connection_user(config))


def publish(connection, body, exchange, routing_key, headers):
    """One persistent message, confirmed by the broker, carrying the connection's user."""
    with producers[connection].acquire(block=True, timeout=10) as producer:
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers,
                         serializer="json", delivery_mode=2, retry=True,
                         user_id=connection_user(connection),
                         declare=[exchange] if isinstance(exchange, Exchange) and exchange.name else [])


class EventPublisher:
    """Publishes a service's events with publisher confirms, many at a time: a batch is
    published on a channel in confirm mode and its confirms are then awaited together, so
    an event costs a fraction of a round trip to the broker instead of one. An event of a
    type that has consumers goes out ``mandatory``: if no queue takes it, the broker returns
    it (basic.return, before its confirm) instead of dropping it, and it does not count as
    published. A batch whose confirms do not all come within ``CONFIRM_TIMEOUT_SECONDS``
    fails as a whole (none of it counts as published) and the connection is dropped; so is
    one after a batch the broker nacked in part: on RabbitMQ 3.10 a channel that published
    to a quorum queue whose leader's node was lost nacks whatever it publishes there from
    then on, for good, while a new connection reaches the queue's new leader."""

    def __init__(self, service, config):
        # Confirms are awaited here, per batch, not by the transport per message.
        self.connection = Connection(settings.amqp_uri(config), ssl=settings.amqp_ssl(config))
        self.user = connection_user(self.connection)
        self.exchange = get_event_exchange(service, config)
        self.lock = threading.Lock()   # one channel: one batch and its confirms at a time
        self.channel = self.producer = None
        self.next_tag = 0
        self.unconfirmed = {}          # delivery tag -> event id, in publishing order
        # event id -> why it was refused: "returned" (no queue took it) or "nacked"
        self.refused = {}

    def _open(self):
        if self.producer is None:
            self.connection.ensure_connection(**PUBLISH_RETRY_POLICY)
            channel = self.connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self.producer = Producer(channel, exchange=self.exchange, on_return=self._on_return)
            self.exchange(channel).declare()
            self.channel, self.next_tag = channel, 0
            self.unconfirmed.clear()
        return self.producer

    def _on_return(self, _error, _exchange, _routing_key, message):
        self.refused[message.properties.get("message_id")] = "returned"

    def _settle(self, delivery_tag, multiple):
        if not multiple:
            return [self.unconfirmed.pop(delivery_tag, None)]
        settled = []
        for tag in list(self.unconfirmed):
            if tag > delivery_tag:
                break
            settled.append(self.unconfirmed.pop(tag))
        return settled

    def _on_ack(self, delivery_tag, multiple):
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag, multiple):
        for event_id in self._settle(delivery_tag, multiple):
            self.refused.setdefault(event_id, "nacked")

    def publish(self, envelope, routing_key=None):
        """Returns whether the broker routed the event (an event nobody consumes counts as
        routed). ``routing_key`` a queue's name sends it to that consumer alone."""
        return bool(self.publish_many([envelope], routing_key))

    def publish_many(self, envelopes, routing_key=None):
        """Publishes ``envelopes`` and waits for all their confirms at once. Returns the
        ids of those the broker confirmed and routed; raises when the confirms do not all
        come in time (the connection is then dropped, and nothing counts as published)."""
        with self.lock:
            try:
                producer = self._open()
                self.refused.clear()
                for envelope in envelopes:
                    producer.publish(
                        envelope, routing_key=routing_key or envelope["type"],
                        serializer="json", delivery_mode=2,
                        headers={CORRELATION_HEADER: envelope["correlation_id"]},
                        message_id=envelope["event_id"], user_id=self.user,
                        mandatory=routing_key is not None or is_consumed(envelope["type"]))
                    self.next_tag += 1
                    self.unconfirmed[self.next_tag] = envelope["event_id"]
                deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
                while self.unconfirmed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("the broker did not confirm a batch of events")
                    self.channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=remaining)
            except Exception:
                # A confirm that never came (a queue's leader lost with its broker node)
                # leaves the channel waiting for it: start again on a fresh connection.
                self._drop_connection()
                raise
            if "nacked" in self.refused.values():
                self._drop_connection()
            return {envelope["event_id"] for envelope in envelopes} - set(self.refused)

    def _drop_connection(self):
        self.channel = self.producer = None
        self.unconfirmed.clear()
        self.connection.collect()

    def release(self):
        self.connection.release()
