"""A RabbitMQ node of a test's own, for tests that stop and start the broker: the shared
broker other test runs use is never touched. Its name, ports, configuration, data and logs
are its own; it is stopped by its pid."""
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ops.broker import reachable

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"    # not the wrapper that switches user
CONTROL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def installed():
    return os.access(SERVER, os.X_OK) and os.access(CONTROL, os.X_OK)


def require_installed():
    """A test that needs a node of its own fails, never skips, without the server
    (``make test`` installs it)."""
    if not installed():
        pytest.fail(f"{SERVER} is not installed (make test installs rabbitmq-server)")


class _Started:
    """Started on entering, stopped on leaving (also when it fails to start half-way)."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc):
        self.stop()


class RabbitNode(_Started):
    def __init__(self, folder, amqp_port, dist_port, cookie=None, extra_config=""):
        folder = Path(folder)
        self.name = f"mantelzorg-fault-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_uri = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        self.pid_file = folder / "rabbit.pid"
        for part in ("home", "data", "log"):
            (folder / part).mkdir(parents=True, exist_ok=True)
        if cookie is not None:    # nodes of one cluster share it (and their rabbitmqctl)
            cookie_file = folder / "home" / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
        (folder / "enabled_plugins").write_text("[].\n")       # no management port
        (folder / "rabbitmq.conf").write_text("loopback_users = none\n" + extra_config)
        # Instead of the machine's rabbitmq-env.conf, which names the shared node.
        (folder / "rabbitmq-env.conf").write_text(
            "ERL_EPMD_ADDRESS=127.0.0.1\n"
            'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n')
        self.environ = dict(
            os.environ, HOME=str(folder / "home"), RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(amqp_port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_CONF_ENV_FILE=str(folder / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(folder / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(folder / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(folder / "data"), RABBITMQ_LOG_BASE=str(folder / "log"),
            RABBITMQ_PID_FILE=str(self.pid_file))
        self.pid = None

    def start(self, timeout=90):
        self.launch()
        self.wait_until_started(timeout)

    def launch(self):
        """Starts the node in the background; ``wait_until_started`` waits for it."""
        subprocess.run([SERVER, "-detached"], env=self.environ, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_until_started(self, timeout=90):
        try:
            self.control("wait", str(self.pid_file), "--timeout", str(timeout))
        finally:   # known as soon as it is written, so that a failed start is stopped too
            if self.pid_file.exists():
                self.pid = int(self.pid_file.read_text().strip())
        self._wait_until_reachable(timeout)

    def control(self, *arguments):
        """rabbitmqctl on this node; its output."""
        return subprocess.run([CONTROL, "-n", self.name, *arguments], env=self.environ,
                              check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=120, text=True).stdout

    def kill(self):
        """SIGKILL, as a host that fails takes its node down."""
        os.kill(self.pid, signal.SIGKILL)

    def stop_app(self):
        self.control("stop_app")

    def start_app(self, timeout=60):
        self.control("start_app")
        self._wait_until_reachable(timeout)

    def _wait_until_reachable(self, timeout):
        deadline = time.monotonic() + timeout
        while not reachable(self.amqp_uri, timeout=2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ node {self.name} does not answer")
            time.sleep(0.2)

    def stop(self, grace=30):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                os.kill(self.pid, 0)
                time.sleep(0.2)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pid = None


class RabbitCluster(_Started):
    """``size`` nodes of a test's own, clustered (a shared Erlang cookie, each joined to the
    first), each with its own name, ports and data; ``vhost`` is made with quorum queues as
    its default queue type, so every queue declared durable without a type is one, as on the
    production cluster. ``amqp_uri``: every node's URL, separated by ';' (kombu fails over
    from one to the next)."""

    def __init__(self, folder, ports, size=3, vhost="mantelzorg"):
        cookie = uuid.uuid4().hex.upper()
        self.vhost = vhost
        self.nodes = [RabbitNode(Path(folder) / f"node{n}", ports(), ports(), cookie=cookie)
                      for n in range(size)]

    def start(self):
        for node in self.nodes:       # side by side: each takes seconds to boot
            node.launch()
        for node in self.nodes:
            node.wait_until_started()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.control("stop_app")
            node.control("join_cluster", first.name)
            node.start_app()
        first.control("add_vhost", self.vhost, "--default-queue-type", "quorum")
        first.control("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def stop(self):
        for node in self.nodes:
            node.stop()

    def node_uri(self, node):
        return f"{node.amqp_uri}{self.vhost}"

    @property
    def amqp_uri(self):
        return ";".join(self.node_uri(node) for node in self.nodes)

    def running_nodes(self):
        return [node for node in self.nodes if node.pid is not None]

    def queues(self):
        """{queue name: (type, leader node name)} of the virtual host."""
        listed = self.running_nodes()[0].control(
            "--quiet", "--formatter", "json", "list_queues", "-p", self.vhost,
            "name", "type", "leader")
        return {queue["name"]: (queue["type"], queue.get("leader"))
                for queue in json.loads(listed)}

    def node_named(self, name):
        return next(node for node in self.nodes if node.name == name)
