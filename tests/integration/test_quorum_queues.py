"""The platform's queues as quorum queues, on the real broker: what the cluster's
default_queue_type makes of the services' declarations is accepted, the retry policy of
deploy/k8s applies to the retry queues, and a retry queue hands an event back to its
subscription's quorum queue."""
from types import SimpleNamespace
from urllib.parse import quote, unquote, urlparse

import pytest
import requests
from kombu import Connection, Queue

from common.events import SUBSCRIPTIONS
from common.topology import DEAD_LETTER_QUEUE, retry_delays_ms, retry_exchange, retry_queue_name
from ops.broker import management_url
from tests.support import eventually
from tests.unit.test_k8s import objects, platform_queues


def as_quorum(queue):
    """The queue as the cluster declares it: the default queue type added to its arguments."""
    return Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key,
                 bindings=queue.bindings, durable=queue.durable, exclusive=queue.exclusive, auto_delete=queue.auto_delete,
                 queue_arguments={**(queue.queue_arguments or {}), "x-queue-type": "quorum"})


@pytest.fixture
def quorum_vhost(empty_amqp_uri):
    """A virtual host of its own with the retry policy of deploy/k8s and, as quorum queues,
    one queue of every kind the platform declares: the RPC and reply queues, the dead
    letters, and one subscription's queue with its retry queues."""
    api, auth = management_url(empty_amqp_uri)
    vhost = quote(unquote(urlparse(empty_amqp_uri).path.lstrip("/")), safe="")
    policy = objects("base", "Policy")["event-retry-queues"]["spec"]
    requests.put(f"{api}/policies/{vhost}/{quote(policy['name'], safe='')}", auth=auth, timeout=10,
                 json={"pattern": policy["pattern"], "apply-to": policy["applyTo"],
                       "definition": policy["definition"], "priority": 0}).raise_for_status()
    entry = SUBSCRIPTIONS[0]
    wanted = {entry.queue, DEAD_LETTER_QUEUE}
    kinds = ("rpc-", "rpc.reply-", f"{entry.queue}.")
    queues = [queue for queue in platform_queues()
              if queue.name in wanted or queue.name.startswith(kinds)]
    with Connection(empty_amqp_uri) as connection:
        channel = connection.channel()
        for queue in queues:
            as_quorum(queue)(channel).declare()
    return SimpleNamespace(amqp_uri=empty_amqp_uri, api=api, auth=auth, vhost=vhost,
                           entry=entry, queues=queues)


def test_each_kind_of_queue_is_a_quorum_queue_and_the_retry_policy_applies(quorum_vhost):
    api, auth, vhost = quorum_vhost.api, quorum_vhost.auth, quorum_vhost.vhost
    entry, queues = quorum_vhost.entry, quorum_vhost.queues

    def listed():
        return requests.get(f"{api}/queues/{vhost}", auth=auth, timeout=10).json()
    found = {q["name"]: q for q in listed()}
    assert {queue.name for queue in queues} <= set(found)
    assert {found[queue.name]["type"] for queue in queues} == {"quorum"}
    retry_queues = {retry_queue_name(entry, delay) for delay in retry_delays_ms()}

    def with_policy():
        return {q["name"] for q in listed() if q.get("policy") == "event-retry-queues"}
    # the broker applies a policy in the background
    assert eventually(lambda: with_policy() == retry_queues) and with_policy() == retry_queues


def test_a_quorum_retry_queue_hands_an_event_back_to_its_subscription(quorum_vhost):
    entry = quorum_vhost.entry
    first_retry = retry_queue_name(entry, retry_delays_ms()[0])
    with Connection(quorum_vhost.amqp_uri) as connection:
        channel = connection.channel()
        producer = connection.Producer(channel)
        producer.publish({"event_id": "retry-1"}, exchange=retry_exchange(entry.consumer),
                         routing_key=first_retry, serializer="json", delivery_mode=2)
        subscription = Queue(entry.queue)(channel)
        message = eventually(lambda: subscription.get(no_ack=True), timeout=30)
        assert message is not None and message.decode() == {"event_id": "retry-1"}
