"""Starting and stopping the platform's processes: one per service, one for the gateway
(every HTTP-serving nameko service needs a port of its own)."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from nameko.standalone.rpc import ClusterRpcProxy

from common import config as settings
from common.config import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Process:
    name: str
    target: str          # module:Class for ``nameko run``
    config: str          # its nameko config, relative to the repository root
    address_variable: str   # the address of its /metrics (the gateway's public port is apart)
    default_port: int


def _service_process(number, name):
    """services/<name>/service.py holds <Name>Service; its metrics port is 8001, 8002, ..."""
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Service"
    return Process(name, f"services.{name}.service:{class_name}", f"services/{name}/config.yml",
                   f"{name.upper()}_WEB_ADDRESS", 8001 + number)


GATEWAY = Process("gateway", "gateway.service:GatewayService", "gateway/config.yml",
                  "GATEWAY_METRICS_ADDRESS", 8005)
PROCESSES = (*(_service_process(number, name) for number, name in enumerate(SERVICE_NAMES)),
             GATEWAY)


def metrics_address(process, environ):
    return settings.setting(None, process.address_variable, f"127.0.0.1:{process.default_port}",
                            environ=environ)


class Platform:
    """The running processes; ``logs`` names a folder to write each one's output to,
    otherwise they share this terminal. ``process_environ`` adds settings for one process
    (by name), such as its own broker user."""

    def __init__(self, environ=None, logs=None, process_environ=None):
        self.environ = dict(os.environ if environ is None else environ)
        self.environ.setdefault("PYTHONWARNINGS", "ignore")
        self.logs = Path(logs) if logs else None
        self.process_environ = process_environ or {}
        self.children = {}

    def log_file(self, name):
        return self.logs / f"{name}.log"

    def start(self):
        for process in PROCESSES:
            self.start_process(process)

    def start_process(self, process):
        """Starts one process, also again after it stopped."""
        output = None
        if self.logs:
            self.logs.mkdir(parents=True, exist_ok=True)
            output = open(self.log_file(process.name), "ab")
        self.children[process.name] = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "--config", process.config,
             process.target],
            cwd=ROOT, env={**self.environ, **self.process_environ.get(process.name, {})},
            stdout=output, stderr=subprocess.STDOUT if output else None,
            start_new_session=True)   # Ctrl-C reaches the launcher, which stops them in order

    def gateway_url(self):
        port = settings.setting(None, "GATEWAY_PORT", 8000, environ=self.environ)
        return f"http://127.0.0.1:{port}"

    def rpc(self, timeout=10):
        amqp = settings.setting(None, "AMQP_URI", settings.DEFAULT_AMQP_URI, environ=self.environ)
        return ClusterRpcProxy({"AMQP_URI": amqp}, timeout=timeout)

    def wait_until_healthy(self, timeout=90):
        deadline = time.monotonic() + timeout
        pending = set(SERVICE_NAMES)
        with self.rpc(timeout=3) as rpc:
            while pending and time.monotonic() < deadline:
                self.raise_if_exited()
                for name in sorted(pending):
                    try:
                        if getattr(rpc, name).health()["status"] == "ok":
                            pending.discard(name)
                    except Exception:
                        time.sleep(0.3)
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                if requests.get(f"{self.gateway_url()}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise TimeoutError(f"not healthy after {timeout} s: {sorted(pending) or ['gateway']}")

    def wait_while_running(self):
        while True:
            self.raise_if_exited()
            time.sleep(0.5)

    def raise_if_exited(self):
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with code {child.returncode}")

    def stop(self, grace=15):
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
