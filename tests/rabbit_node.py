"""A RabbitMQ node of a test's own, for tests that stop and start the broker: the shared
broker other test runs use is never touched. Its name, ports, configuration, data and logs
are its own; it is stopped by its pid."""
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from ops.broker import reachable

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"    # not the wrapper that switches user
CONTROL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def installed():
    return os.access(SERVER, os.X_OK) and os.access(CONTROL, os.X_OK)


class RabbitNode:
    def __init__(self, folder, amqp_port, dist_port, extra_config=""):
        folder = Path(folder)
        self.name = f"mantelzorg-fault-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_uri = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        self.pid_file = folder / "rabbit.pid"
        for part in ("home", "data", "log"):
            (folder / part).mkdir(parents=True, exist_ok=True)
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

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc):
        self.stop()

    def start(self, timeout=90):
        subprocess.run([SERVER, "-detached"], env=self.environ, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.control("wait", str(self.pid_file), "--timeout", str(timeout))
        finally:   # known as soon as it is written, so that a failed start is stopped too
            if self.pid_file.exists():
                self.pid = int(self.pid_file.read_text().strip())
        self._wait_until_reachable(timeout)

    def control(self, *arguments):
        subprocess.run([CONTROL, "-n", self.name, *arguments], env=self.environ, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

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
