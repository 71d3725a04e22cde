"""Publishing events, and proving who published them.

Every message a platform process publishes carries RabbitMQ's ``user_id`` property set to the
broker user the process connects as; the broker refuses a message whose ``user_id`` is not
the connection's own user, so a consumer can trust it. ``BROKER_USERS`` tells every process
which broker user each platform process connects as (``<process>=<user>`` pairs, comma
separated; ``operator`` for the ``mantelzorg`` command). Unset, every process is taken to
connect as the process's own user (development: one user for all).
"""
import threading

from kombu import Connection, Exchange, Producer
from kombu.pools import producers
from nameko.standalone.events import get_event_exchange

from common import config as settings
from common.events import is_consumed
from common.logging import CORRELATION_KEY
from common.topology import broker

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
    """Publishes a service's events with publisher confirms. An event of a type that has
    consumers goes out ``mandatory``: if no queue takes it, the broker returns it
    (basic.return, before its confirm) instead of dropping it, and ``publish`` says so."""

    def __init__(self, service, config):
        self.connection = broker(config)
        self.user = connection_user(self.connection)
        self.exchange = get_event_exchange(service, config)
        self.returned = set()
        self.lock = threading.Lock()   # one producer: one publish and its confirm at a time
        self.producer = None

    def _on_return(self, _error, _exchange, _routing_key, message):
        self.returned.add(message.properties.get("message_id"))

    def publish(self, envelope, routing_key=None):
        """Returns whether the broker routed the event (an event nobody consumes counts as
        routed). ``routing_key`` a queue's name sends it to that consumer alone."""
        event_id = envelope["event_id"]
        with self.lock:
            if self.producer is None:
                self.producer = Producer(self.connection, exchange=self.exchange,
                                         on_return=self._on_return)
            self.returned.discard(event_id)
            try:
                self.producer.publish(
                    envelope, routing_key=routing_key or envelope["type"], serializer="json",
                    delivery_mode=2, headers={CORRELATION_HEADER: envelope["correlation_id"]},
                    message_id=event_id, user_id=self.user,
                    mandatory=routing_key is not None or is_consumed(envelope["type"]),
                    declare=[self.exchange], retry=True, retry_policy=PUBLISH_RETRY_POLICY,
                    confirm_timeout=CONFIRM_TIMEOUT_SECONDS)
            except Exception:
                # A confirm that never came (a queue's leader lost with its broker node)
                # leaves the channel waiting for it: start again on a fresh connection.
                self.producer = None
                self.connection.collect()
                raise
            routed = event_id not in self.returned
            self.returned.discard(event_id)
            return routed

    def release(self):
        self.connection.release()
