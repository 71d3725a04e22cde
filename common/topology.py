"""The broker's topology for events: which exchanges and queues exist, their names, and
declaring them.

- ``<source>.events``: nameko's topic exchange per publishing service. Each subscription's
  queue is bound to it twice: by the event type (every event of that type) and by the
  queue's own name (a republished event meant for that queue alone);
- ``evt-<source>-<type>--<consumer>.<handler>``: one durable queue per subscription;
- ``<consumer>.retries``: a direct exchange of the consuming service, which only it (and the
  operator replaying dead letters) may write to. Bound to it by their names: the consumer's
  retry queues, and its subscription queues, which the retry queues hand events back to;
- ``<that queue>.retry.<ms>ms``: one queue per retry delay, which holds a failed event for
  its delay (the queue's TTL, so the oldest is always the first due) and then hands it back
  to the subscription's queue through the consumer's retry exchange;
- ``mantelzorg.dead-lettering``: a fanout exchange every consumer parks events in, and the
  queue ``mantelzorg.dead-letters`` bound to it, which only the operator reads: events that
  failed EVENT_MAX_ATTEMPTS times, or that were not published by their owner.

No process publishes to the default exchange: it reaches every queue by name.

Retry delays start at EVENT_RETRY_DELAY_MS and double with every attempt up to
EVENT_RETRY_MAX_DELAY_MS. The defaults (14 attempts, 1 s, 2 min) keep retrying for about
14 minutes, so that a failing event outlives a 10-minute store outage before it is parked.
"""
from kombu import Connection, Exchange, Queue, binding
from kombu.exceptions import ChannelError
from nameko.standalone.events import get_event_exchange

from common import config as settings
from common import events

DEAD_LETTER_QUEUE = "mantelzorg.dead-letters"
# Its own name: a broker permission's pattern does not tell an exchange from a queue.
DEAD_LETTER_EXCHANGE = "mantelzorg.dead-lettering"
DEFAULT_MAX_ATTEMPTS = 14
DEFAULT_RETRY_DELAY_MS = 1000
DEFAULT_RETRY_MAX_DELAY_MS = 120_000


def broker(config=None):
    """A connection whose publishes wait for the broker's confirmation."""
    return Connection(settings.amqp_uri(config), ssl=settings.amqp_ssl(config),
                      transport_options={"confirm_publish": True})


def retry_delays_ms(config=None):
    """The wait before each retry of a failing event, in milliseconds: one entry per attempt
    that may follow a failure."""
    attempts = settings.int_setting(config, "EVENT_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
    first = settings.int_setting(config, "EVENT_RETRY_DELAY_MS", DEFAULT_RETRY_DELAY_MS)
    longest = settings.int_setting(config, "EVENT_RETRY_MAX_DELAY_MS", DEFAULT_RETRY_MAX_DELAY_MS)
    return [min(first * 2 ** number, longest) for number in range(max(attempts - 1, 0))]


def dead_letter_exchange():
    return Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True)


def dead_letter_queue():
    return Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange(), durable=True,
                 auto_delete=False)


def retry_exchange(consumer):
    """The consuming service's own exchange for its retries (and the operator's replays)."""
    return Exchange(f"{consumer}.retries", type="direct", durable=True)


def retry_queue_name(entry, delay_ms):
    return f"{entry.queue}.retry.{delay_ms}ms"


def subscription_queue(entry, config=None):
    """The queue the source's exchange routes the subscription's events to: by the event's
    type, and by the queue's own name (``republish`` sends to one consumer alone); and the
    consumer's retry exchange by its name (what a retry queue hands back)."""
    exchange = get_event_exchange(entry.source, config or {})
    return Queue(entry.queue, bindings=[binding(exchange, routing_key=entry.event),
                                        binding(exchange, routing_key=entry.queue),
                                        binding(retry_exchange(entry.consumer),
                                                routing_key=entry.queue)],
                 durable=True, auto_delete=False, exclusive=False)


def subscription_queues(entry, config=None):
    """The subscription's queue and one retry queue per delay (``retry_delays_ms``): each
    holds what enters it for its delay, then hands it back to the subscription's queue."""
    exchange = retry_exchange(entry.consumer)
    retries = [Queue(retry_queue_name(entry, delay), exchange=exchange,
                     routing_key=retry_queue_name(entry, delay), durable=True, auto_delete=False,
                     queue_arguments={"x-message-ttl": delay,
                                      "x-dead-letter-exchange": exchange.name,
                                      "x-dead-letter-routing-key": entry.queue})
               for delay in sorted(set(retry_delays_ms(config)))]
    return (subscription_queue(entry, config), *retries)


def declare_topology(config=None, entries=None, consumer=False):
    """Declare the consumers' queues (every subscription's, or those of ``entries``) with
    their retry queues, and the dead-letter queue, so that no event published before its
    consumer first started is dropped by the exchange. A ``consumer`` declaring its own
    declares the dead-letter queue only where its broker user may (the operator's
    declare-queues does so everywhere else)."""
    entries = events.SUBSCRIPTIONS if entries is None else entries
    with broker(config) as connection:
        channel = connection.channel()
        dead_letter_exchange()(channel).declare()
        try:
            dead_letter_queue()(connection.channel()).declare()
        except ChannelError:
            if not consumer:
                raise
        for entry in entries:
            for queue in subscription_queues(entry, config):
                queue(channel).declare()
    return [entry.queue for entry in entries]


def queue_exists(connection, name):
    """Asks passively, which needs no permission."""
    channel = connection.channel()   # a failed passive declare closes its channel
    try:
        channel.queue_declare(name, passive=True)
    except ChannelError:
        return False
    channel.close()
    return True


def missing_queues(config=None, entries=None):
    """The queues of ``declare_topology`` that do not exist (yet): a service's restricted
    user can wait for the topology with it."""
    entries = events.SUBSCRIPTIONS if entries is None else entries
    names = [DEAD_LETTER_QUEUE] + [queue.name for entry in entries
                                   for queue in subscription_queues(entry, config)]
    with broker(config) as connection:
        return [name for name in names if not queue_exists(connection, name)]
