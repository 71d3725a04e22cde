"""Making sure a RabbitMQ broker answers, starting a local one when it is installed."""
import shutil
import subprocess
import time
from urllib.parse import quote, urlparse

import requests
from kombu import Connection

from common import config as settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class BrokerMissing(RuntimeError):
    pass


def reachable(amqp_uri, timeout=3):
    try:
        with Connection(amqp_uri, connect_timeout=timeout,
                        ssl=settings.amqp_ssl()) as connection:
            connection.connect()
        return True
    except Exception:
        return False


def ensure_broker(amqp_uri, wait_seconds=60):
    """Returns when the broker at ``amqp_uri`` answers; starts ``rabbitmq-server -detached``
    for a local address when it is installed."""
    if reachable(amqp_uri):
        return
    host = urlparse(amqp_uri).hostname or "127.0.0.1"
    server = shutil.which("rabbitmq-server")
    if host not in LOCAL_HOSTS or server is None:
        raise BrokerMissing(
            f"No RabbitMQ answers at {host}; install it (Debian/Ubuntu: apt-get install "
            "rabbitmq-server) or point AMQP_URI at a running broker.")
    subprocess.run([server, "-detached"], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if reachable(amqp_uri):
            return
        time.sleep(1)
    raise BrokerMissing(f"rabbitmq-server was started but does not answer at {host} "
                        f"after {wait_seconds} s")


def management_url(amqp_uri, port=15672):
    parsed = urlparse(amqp_uri)
    return f"http://{parsed.hostname or '127.0.0.1'}:{port}/api", (
        parsed.username or "guest", parsed.password or "guest")


def ensure_management(amqp_uri, wait_seconds=60):
    """The management API (used by the tests to make throwaway vhosts)."""
    api, auth = management_url(amqp_uri)
    if _api_answers(api, auth):
        return
    plugins = shutil.which("rabbitmq-plugins")
    if plugins is None:
        raise BrokerMissing("The RabbitMQ management API does not answer and rabbitmq-plugins "
                            "is not installed to enable it.")
    subprocess.run([plugins, "enable", "rabbitmq_management"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _api_answers(api, auth):
            return
        time.sleep(1)
    raise BrokerMissing("The RabbitMQ management API did not come up on port 15672.")


def _api_answers(api, auth):
    try:
        return requests.get(f"{api}/overview", auth=auth, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def create_vhost(amqp_uri, name):
    """A throwaway virtual host; returns the AMQP URI that points into it."""
    api, auth = management_url(amqp_uri)
    requests.put(f"{api}/vhosts/{quote(name, safe='')}", auth=auth, timeout=10).raise_for_status()
    requests.put(f"{api}/permissions/{quote(name, safe='')}/{quote(auth[0], safe='')}", auth=auth,
                 json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=10).raise_for_status()
    parsed = urlparse(amqp_uri)
    return parsed._replace(path="/" + quote(name, safe="")).geturl()


def delete_vhost(amqp_uri, name):
    api, auth = management_url(amqp_uri)
    requests.delete(f"{api}/vhosts/{quote(name, safe='')}", auth=auth, timeout=10)


def create_user(amqp_uri, vhost, user, password, permissions):
    """A user of one virtual host with the given configure/write/read patterns; returns
    the AMQP URI it connects with."""
    api, auth = management_url(amqp_uri)
    requests.put(f"{api}/users/{quote(user, safe='')}", auth=auth, timeout=10,
                 json={"password": password, "tags": ""}).raise_for_status()
    requests.put(f"{api}/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}", auth=auth,
                 json={kind: permissions[kind] for kind in ("configure", "write", "read")},
                 timeout=10).raise_for_status()
    parsed = urlparse(amqp_uri)
    return parsed._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@"
                                  f"{parsed.hostname}:{parsed.port or 5672}",
                           path="/" + quote(vhost, safe="")).geturl()


def delete_user(amqp_uri, user):
    api, auth = management_url(amqp_uri)
    requests.delete(f"{api}/users/{quote(user, safe='')}", auth=auth, timeout=10)


# --- each process's own broker user ----------------------------------------------------------
# The one table of what each process's broker user may do: deploy/k8s/base/rabbitmq-users.yaml
# grants the same (a test holds it to this), and `mantelzorg broker-users` makes the users of
# docker-compose from that file.

# process name -> its broker user's name (Kubernetes names have no underscores)
PROCESS_USERS = {"registry": "registry", "declaration": "declaration",
                 "travel_costs": "travel-costs", "campaign": "campaign",
                 "notifications": "notifications", "gateway": "gateway", "operator": "operator"}


def _pattern(names):
    return "^(" + "|".join(names) + ")$"


def permissions(process):
    """{configure, write, read}: the patterns of the names ``process`` may declare, publish
    to or bind, and consume or bind from. No one may write to the default exchange
    (``amq.default``), which reaches every queue by name."""
    from common.events import CATALOGUE, SUBSCRIPTIONS

    if process == "operator":   # declares the topology, replays dead letters, calls as operator
        own = ["nameko-rpc", r"rpc\.reply-standalone_rpc_proxy-.+", "evt-.+",
               r"mantelzorg\.dead-letters", r"mantelzorg\.dead-lettering", r"[a-z_]+\.retries"]
        return {"configure": _pattern(own + [r"[a-z_]+\.events"]), "write": _pattern(own),
                "read": _pattern(own + [r"[a-z_]+\.events"])}
    configure = write = read = ["nameko-rpc", f"rpc-{process}", rf"rpc\.reply-{process}-.+"]
    sources = sorted({entry.source for entry in SUBSCRIPTIONS if entry.consumer == process})
    if sources:
        queues, exchanges = [rf"evt-.+--{process}\..+"], [rf"{s}\.events" for s in sources]
        configure, write, read = configure + queues + exchanges, write + queues, \
            read + queues + exchanges
    if any(kind.source == process for kind in CATALOGUE.values()):
        configure, write = configure + [rf"{process}\.events"], write + [rf"{process}\.events"]
    if sources:
        retrying = [rf"{process}\.retries", r"mantelzorg\.dead-lettering"]
        configure, write, read = configure + retrying, write + retrying, read + retrying[:1]
    return {"configure": _pattern(configure), "write": _pattern(write), "read": _pattern(read)}
