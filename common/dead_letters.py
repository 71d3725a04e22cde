"""The operator's tools for the dead-letter queue: list what is parked, and replay it to the
queue it came from, through that consumer's retry exchange."""
from common.consumers import (ATTEMPTS_HEADER, ERROR_HEADER, FAILED_AT_HEADER, ORIGIN_HEADER,
                              REFUSED_HEADER)
from common import events
from common.publishing import broker_users, publish
from common.topology import broker, dead_letter_queue, retry_exchange


def _drain_dead_letters(channel):
    queue = dead_letter_queue()(channel)
    queue.declare()
    while True:
        message = queue.get(no_ack=False)
        if message is None:
            return
        yield message


def describe_dead_letter(message):
    headers = message.headers or {}
    body = message.decode() if hasattr(message, "decode") else message.payload
    return {
        "event_id": body.get("event_id") if isinstance(body, dict) else None,
        "type": body.get("type") if isinstance(body, dict) else None,
        "queue": headers.get(ORIGIN_HEADER),
        "attempts": headers.get(ATTEMPTS_HEADER),
        "error": headers.get(ERROR_HEADER),
        "failed_at": headers.get(FAILED_AT_HEADER),
    }


def list_dead_letters(config=None):
    """Every parked event; they stay parked (unacknowledged, then returned to the queue)."""
    with broker(config) as connection:
        channel = connection.channel()
        found = [describe_dead_letter(m) for m in _drain_dead_letters(channel)]
        channel.close()
    return found


def _consumer_of(queue):
    return next((entry.consumer for entry in events.SUBSCRIPTIONS if entry.queue == queue), None)


def replay_dead_letters(config=None, event_ids=None):
    """Send parked events (all, or those with the given ids) back to their queues with a
    fresh number of attempts. Returns what was replayed. Only what the consumer of that
    queue parked itself is replayed: a dead letter that another process wrote, naming a
    queue not its own, stays where it is."""
    replayed = []
    wanted = {str(e) for e in event_ids} if event_ids else None
    users = broker_users(config)
    with broker(config) as connection:
        channel = connection.channel()
        for message in _drain_dead_letters(channel):
            info = describe_dead_letter(message)
            consumer = _consumer_of(info["queue"])
            if consumer is None or (wanted is not None and info["event_id"] not in wanted):
                continue
            if (message.headers or {}).get(REFUSED_HEADER) \
                    or message.properties.get("user_id") != users[consumer]:
                continue
            headers = {k: v for k, v in (message.headers or {}).items()
                       if not k.startswith("x-mantelzorg-")}
            publish(connection, message.decode(), retry_exchange(consumer), info["queue"], headers)
            message.ack()
            replayed.append(info)
        channel.close()   # what was not replayed returns to the queue
    return replayed
